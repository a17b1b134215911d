"""Make every hidden-test block of solutions/ start and end with ``check_integrity()``.

Run after adding an exercise: ``python tools/harden_hidden_tests.py`` (idempotent). The check
fails a task whose answers replaced a checking function, a builtin or an IPython hook.
"""
import glob
import sys
from pathlib import Path

import nbformat

HEAD = "from xaicourse.grading import check_integrity as _check_integrity\n_check_integrity()\n"
TAIL = "_check_integrity()\n"


def harden(src: str) -> str:
    begin, end = "### BEGIN HIDDEN TESTS\n", "### END HIDDEN TESTS"
    if begin not in src or HEAD in src:
        return src
    a = src.index(begin) + len(begin)
    b = src.index(end)
    body = src[a:b]
    if not body.endswith("\n"):
        body += "\n"
    return src[:a] + HEAD + body + TAIL + src[b:]


def main(root: Path) -> int:
    changed = 0
    for p in sorted(glob.glob(str(root / "solutions" / "*" / "*.ipynb"))):
        nb = nbformat.read(p, as_version=4)
        n = 0
        for c in nb.cells:
            new = harden(c.source)
            if new != c.source:
                c.source, n = new, n + 1
        if n:
            nbformat.write(nb, p)
            changed += n
            print(f"{p}: {n} hidden-test cell(s) hardened")
    return changed


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
