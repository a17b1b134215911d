"""Turn a percent-format script into a clean .ipynb (no outputs), with nbgrader markup.

    python tools/make_notebook.py SRC.py OUT.ipynb

Cell markers (one per line, starting the cell):
    # %% [markdown]                     markdown; each line's leading "# " is stripped
    # %%                                code
    # %% tags=["parameters"]            code with tags (JSON list)
    # %% nbgrader=solution id=NAME      autograded answer cell (### BEGIN/END SOLUTION inside)
    # %% nbgrader=tests id=NAME points=N   locked autograder test cell
    # %% nbgrader=readonly id=NAME      locked cell (add [markdown] before nbgrader= for markdown)
Sources are authoring aids, not course files: the .ipynb is what is committed.
"""
import json
import re
import sys

import nbformat

MARK = re.compile(r"^# %%(.*)$")


def parse_opts(rest: str) -> dict:
    opts = {"markdown": "[markdown]" in rest}
    m = re.search(r"tags=(\[.*?\])", rest)
    if m:
        opts["tags"] = json.loads(m.group(1))
    for key in ("nbgrader", "id", "points"):
        m = re.search(rf"{key}=([\w.\-]+)", rest)
        if m:
            opts[key] = m.group(1)
    return opts


def make_cell(opts: dict, lines: list[str]):
    while lines and not lines[-1].strip():
        lines.pop()
    while lines and not lines[0].strip():
        lines.pop(0)
    if opts["markdown"]:
        src = "\n".join(l[2:] if l.startswith("# ") else ("" if l.strip() == "#" else l) for l in lines)
        cell = nbformat.v4.new_markdown_cell(src)
    else:
        cell = nbformat.v4.new_code_cell("\n".join(lines))
    if "tags" in opts:
        cell.metadata["tags"] = opts["tags"]
    kind = opts.get("nbgrader")
    if kind:
        if "id" not in opts:
            raise SystemExit(f"nbgrader cell needs id=: {lines[:2]}")
        meta = {"grade": kind == "tests", "solution": kind == "solution", "locked": kind != "solution",
                "grade_id": opts["id"], "schema_version": 3}
        if kind == "tests":
            meta["points"] = float(opts.get("points", 1))
        cell.metadata["nbgrader"] = meta
    return cell


def convert(src: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    opts, buf = None, []
    for line in src.splitlines():
        m = MARK.match(line)
        if m:
            if opts is not None:
                nb.cells.append(make_cell(opts, buf))
            opts, buf = parse_opts(m.group(1)), []
        elif opts is not None:
            buf.append(line)
    if opts is not None:
        nb.cells.append(make_cell(opts, buf))
    for i, c in enumerate(nb.cells):  # stable ids so regenerating gives the same file
        c.id = f"cell-{i:03d}"
    return nb


if __name__ == "__main__":
    src, out = sys.argv[1], sys.argv[2]
    nb = convert(open(src, encoding="utf-8").read())
    nbformat.validate(nb)
    nbformat.write(nb, out)
    print(f"wrote {out} ({len(nb.cells)} cells)")
