"""The course folder layout that the course pipeline and the grader share: the exercises under
``solutions/``, the nbgrader course folder built from them, the kernels' inline backend.

It lives here, below ``course``, so that ``course`` uses the grader and not the other way round
(``course`` re-exports these names).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["INLINE_BACKEND", "TRUSTED_FILES", "exercise_names"]

# Kernels draw figures inline (into the notebook) even when the caller runs headless with Agg.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"

TRUSTED_FILES = ("checks.py",)   # instructor-only files next to a solution: never released, never in a sandbox


def exercise_names(root: Path) -> list[str]:
    return sorted(p.name for p in (Path(root) / "solutions").glob("[0-9][0-9]*_*") if p.is_dir())


def _course_dir(root: Path, names: list[str], dest: Path | None = None) -> Path:
    """A (temporary, unless ``dest``) nbgrader course folder whose source/ holds the solutions."""
    course = Path(tempfile.mkdtemp(prefix="xaicourse-nbgrader-")) if dest is None else Path(dest)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\\nraise NotImplementedError()'}\n")
    for name in names:
        # checks.py (the hidden checks) never enters a course folder: nbgrader would release it
        shutil.copytree(Path(root) / "solutions" / name, course / "source" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", *TRUSTED_FILES))
    return course
