"""An exercise's grading template (its release notebook, points and hidden checks) and the grading
settings; running nbgrader itself."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .layout import INLINE_BACKEND, _course_dir
from .preprocessors import NBGRADER_CONFIG


@dataclass
class Settings:
    root: Path
    timeout: int = 120
    sandbox: str = "none"
    memory_mb: int = 6144
    disk_mb: int = 512
    hide: tuple = ()
    artifacts: Path | None = None
    feedback: bool = True
    wall: float = 0.0          # seconds for the whole submission (0: timeout × cells + 180)


@dataclass
class Template:
    exercise: str
    course: Path
    release_nb: object
    max_score: float
    cells: dict = field(default_factory=dict)   # grade_id → (points, is_test)
    checks: object = None                       # xaicourse.checking.Checks
    context: str = ""                           # the locked code cells (for the import scan)


def make_template(root: Path, exercise: str, workdir: Path) -> Template:
    """``nbgrader generate_assignment`` for one exercise (the release notebook and its points) and
    the exercise's hidden checks (``solutions/<exercise>/checks.py``, trusted code)."""
    from nbgrader.api import Gradebook

    from ..checking import load_checks

    course = _course_dir(root, [exercise], dest=workdir / f"template-{exercise}")
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    r = _nbgrader(course, "generate_assignment", exercise, "--force")
    if r.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {exercise} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        max_score = float(gb.find_assignment(exercise).max_score)
    rel = nbformat.read(course / "release" / exercise / f"{exercise}.ipynb", as_version=4)
    cells = {}
    for c in rel.cells:
        md = c.metadata.get("nbgrader", {})
        if md.get("grade"):
            cells[md["grade_id"]] = (float(md.get("points", 0)), not md.get("solution", False))
    checks = load_checks(root, exercise)
    missing = [gid for gid, (_, is_test) in cells.items() if is_test and gid not in checks.tasks]
    if missing:
        raise RuntimeError(f"{checks.source and 'solutions/' + exercise + '/checks.py'}: no hidden check for the "
                           f"test cell(s) {', '.join(missing)} — add @task({missing[0]!r}) there")
    context = "\n".join(c.source for c in rel.cells if c.cell_type == "code"
                        and not c.metadata.get("nbgrader", {}).get("solution"))
    return Template(exercise, course, rel, max_score, cells, checks, context)


def _nbgrader(course: Path, *args: str, timeout: float | None = None, cmd_prefix=None):
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
           f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    return subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=_env())


def _env() -> dict:
    env = dict(os.environ, MPLBACKEND=INLINE_BACKEND, XAICOURSE_QUICK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    import xaicourse
    pkg_parent = str(Path(xaicourse.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
