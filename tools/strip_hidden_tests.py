"""Remove the ``### BEGIN HIDDEN TESTS`` … ``### END HIDDEN TESTS`` blocks from solution notebooks.

Hidden checks live in ``solutions/NN_topic/checks.py`` (run by the grader outside the sandbox);
a notebook keeps only its visible tests. ``python tools/strip_hidden_tests.py [NAME …]`` (idempotent).
"""
import re
import sys
from pathlib import Path

import nbformat

BLOCK = re.compile(r"\n?### BEGIN HIDDEN TESTS\n.*?### END HIDDEN TESTS\n?", re.S)


def strip(path: Path) -> int:
    nb = nbformat.read(path, as_version=4)
    n = 0
    for c in nb.cells:
        new = BLOCK.sub("\n", c.source).rstrip() if "### BEGIN HIDDEN TESTS" in c.source else c.source
        if new != c.source:
            c.source, n = new, n + 1
    if n:
        nbformat.write(nb, path)
    return n


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[1]
    names = sys.argv[1:] or sorted(p.name for p in (root / "solutions").iterdir() if p.is_dir())
    for name in names:
        p = root / "solutions" / name / f"{name}.ipynb"
        print(f"{p.relative_to(root)}: {strip(p)} hidden-test block(s) removed")
