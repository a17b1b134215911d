"""The notebook that runs (release cells + the student's answers) and its results written into it."""
from __future__ import annotations

import nbformat

from .template import Template


def _status_of_error(cell) -> str:
    errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return errs[-1].get("ename", "Error") if errs else ""


def _assemble(sub, release):
    """The notebook that runs: the release's locked and test cells (whatever the submission did to
    them, deleted ones put back), the submission's answer cells, and the cells it added, in order."""
    import copy

    rel_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in release.cells]
    # the release's own cells without nbgrader metadata (set-up, demos) run from the release; the
    # submission's copies of them are not cells the student added
    unmarked = {c.source.strip() for c, gid in zip(release.cells, rel_ids) if not gid and c.cell_type == "code"}
    by_id, extras, pending = {}, {}, []
    for c in sub.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid and gid in rel_ids and gid not in by_id:
            by_id[gid] = c
            extras[gid], pending = pending, []
        elif c.cell_type == "code" and c.source.strip() and c.source.strip() not in unmarked:
            pending.append(c)
    cells, answers, added = [], {}, []
    for rc, gid in zip(release.cells, rel_ids):
        for e in extras.get(gid, []):
            cells.append(copy.deepcopy(e))
            added.append(len(cells) - 1)
        md = rc.metadata.get("nbgrader", {})
        if gid and md.get("solution") and gid in by_id:
            c = copy.deepcopy(by_id[gid])
            c.metadata["nbgrader"] = copy.deepcopy(md)
            c.cell_type = rc.cell_type
            cells.append(c)
            answers[len(cells) - 1] = gid
        else:
            cells.append(copy.deepcopy(rc))
            if gid and md.get("solution"):
                answers[len(cells) - 1] = gid
    for e in pending:
        cells.append(copy.deepcopy(e))
        added.append(len(cells) - 1)
    for k, c in enumerate(cells):
        c["id"] = f"cell-{k}"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(release.metadata))
    return nb, answers, added


def _task_of(nb, index: int, template: Template) -> str | None:
    """The test cell (task) that follows cell ``index``."""
    for c in nb.cells[index:]:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in template.cells and template.cells[gid][1]:
            return gid
    return None


def _index_of(nb, grade_id: str) -> int:
    for k, c in enumerate(nb.cells):
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return k
    return -1


def _result_output(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def _limit_outputs(nb, max_chars: int = 20000, max_outputs: int = 50) -> None:
    """A flood of output (or a huge image) is cut, as nbgrader's LimitOutput does, so the graded
    notebook and the feedback page stay small."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        outs = c.get("outputs", [])
        if len(outs) > max_outputs:
            outs = outs[:max_outputs] + [_result_output(f"… {len(outs) - max_outputs} more outputs cut\n")]
        for o in outs:
            if o.get("output_type") == "stream" and len(o.get("text", "")) > max_chars:
                o["text"] = o["text"][:max_chars] + f"\n… output cut ({len(o['text'])} characters)\n"
            data = o.get("data") or {}
            for mime, val in list(data.items()):
                if len(str(val)) > 10 * max_chars * (20 if mime.startswith("image/") else 1):
                    data[mime] = f"(a {mime} output of {len(str(val))} characters was cut)" \
                        if mime.startswith("text/") else ""
                    if not mime.startswith("text/"):
                        data.pop(mime)
                        data.setdefault("text/plain", f"(a {mime} output was cut)")
        c["outputs"] = outs


def _annotate(nb, template: Template, statuses: dict, messages: dict, earned: dict) -> None:
    """Each test cell ends with its hidden checks' result (never their code)."""
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in statuses:
            pts = template.cells[gid][0]
            text = (f"Hidden checks: {statuses[gid]} — {earned[gid]:g} / {pts:g} points"
                    + (f"\n{messages[gid]}" if messages.get(gid) else "") + "\n")
            c.outputs.append(_result_output(text))
