"""Plain nbgrader agrees with us on the two ends: every solution earns full marks and every
untouched exercise 0 with ``nbgrader autograde`` itself (visible tests only), run in the course's
own install — the test-only packages (pytest, quantus, playwright) cannot be imported by a kernel.

nbgrader scores a test cell 0 when it raises *or writes to stderr*, so a solution that prints a
warning loses the points of that cell for every student whose instructor grades with plain
nbgrader; and a notebook that imports a test-only package fails for every student who installed
the course with the README's first command."""
import ast
import functools
import importlib.metadata as md
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from xaicourse import course
from xaicourse.autograding.layout import _course_dir

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = course.exercise_names(ROOT)
TEST_ONLY = ("pytest", "quantus", "playwright", "_pytest")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.lru_cache(maxsize=1)
def course_install_modules() -> frozenset[str]:
    """Top-level modules a course install (``pip install .``, no extras) provides: the stdlib and the
    distributions in the closure of xaicourse's non-extra requirements."""
    from packaging.requirements import Requirement

    seen, todo = set(), ["xaicourse"]
    while todo:
        name = _canon(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue   # an extra (e.g. xaicourse[test]) or another platform
            todo.append(req.name)
    allowed = {mod for mod, dists in md.packages_distributions().items() if any(_canon(d) in seen for d in dists)}
    return frozenset(allowed | set(sys.stdlib_module_names) | {"xaicourse", "__future__"})


def imported_modules(nb) -> set[str]:
    names = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        src = "\n".join("pass" if line.lstrip().startswith(("%", "!")) else line for line in c.source.splitlines())
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_install_closure_excludes_test_only_packages():
    mods = course_install_modules()
    assert {"torch", "numpy", "captum", "nbgrader", "IPython", "json"} <= mods
    assert not set(TEST_ONLY) & mods


@pytest.mark.parametrize("ex", EXERCISES)
def test_exercise_imports_only_the_course_install(ex):
    mods = course_install_modules()
    for kind in ("solutions", "exercises"):
        nb = nbformat.read(ROOT / kind / ex / f"{ex}.ipynb", as_version=4)
        outside = sorted(imported_modules(nb) - mods)
        assert outside == [], f"{kind}/{ex} imports {outside}: not in the course install (only in the test extra?)"


# ----------------------------------------------------------------------------- nbgrader autograde
def _grade_one(ex: str, base: Path) -> dict:
    from nbgrader.api import Gradebook

    c = _course_dir(ROOT, [ex], dest=base / ex)
    r = course._nbgrader(c, "generate_assignment", ex, "--force")
    assert r.returncode == 0, r.stdout + r.stderr
    for student, src in (("solution", c / "source" / ex / f"{ex}.ipynb"), ("blank", c / "release" / ex / f"{ex}.ipynb")):
        d = c / "submitted" / student / ex
        d.mkdir(parents=True)
        nbformat.write(nbformat.read(src, as_version=4), d / f"{ex}.ipynb")
    r = course._nbgrader(c, "autograde", ex, "--create", "--force", "--Execute.timeout=600", timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with Gradebook(f"sqlite:///{c / 'gradebook.db'}") as gb:
        out = {}
        for student in ("solution", "blank"):
            s = gb.find_submission(ex, student)
            out[student] = (s.score, s.max_score)
    # the failing cells' outputs, to say why a solution lost points
    graded = nbformat.read(c / "autograded" / "solution" / ex / f"{ex}.ipynb", as_version=4)
    from nbgrader.utils import determine_grade, is_grade
    lost = [(cell.metadata["nbgrader"]["grade_id"], [o.get("text", o.get("evalue", ""))[-300:] for o in cell.outputs
             if o.output_type == "error" or o.get("name") == "stderr"])
            for cell in graded.cells if is_grade(cell) and cell.cell_type == "code"
            and determine_grade(cell)[0] != determine_grade(cell)[1]]
    out["lost"] = lost
    return out


@pytest.fixture(scope="module")
def plain_grades(tmp_path_factory):
    base = tmp_path_factory.mktemp("plain-nbgrader")
    block = base / "course-install-only"
    block.mkdir()
    for name in TEST_ONLY:   # the kernels nbgrader starts see the course install, not the test extra
        (block / f"{name}.py").write_text(f"raise ImportError('{name} is a test-only package: not in the course install')\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(block))
        with ThreadPoolExecutor(2) as pool:
            return dict(zip(EXERCISES, pool.map(lambda ex: _grade_one(ex, base), EXERCISES)))


@pytest.mark.slow
@pytest.mark.parametrize("ex", EXERCISES)
def test_plain_nbgrader_solution_full_blank_zero(plain_grades, ex):
    g = plain_grades[ex]
    score, max_score = g["solution"]
    assert max_score > 0
    assert score == max_score, (ex, g["solution"], g["lost"])
    assert g["blank"][0] == 0.0, (ex, g["blank"])
