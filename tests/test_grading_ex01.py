"""Exercise 01 grades the student's own work: an answer that calls the package's implementation
(``featurevis.total_variation``, ``constraints.ascent_step`` / ``project_lp``, however imported)
scores 0 on that task, while the solution scores full marks. One grading run grades every
variant (one student each); the exercise's task points (3 and 4) tell the tasks apart."""
import math
from pathlib import Path

import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EX = "01_activation_maximization"
POINTS = {"tv_tests": 3.0, "pga_tests": 4.0}

TV_LIBRARY = '''from xaicourse.featurevis import total_variation as _package_tv


def total_variation(x):
    return _package_tv(x)
'''
PGA_LIBRARY = '''import xaicourse.constraints


def pga_step(x, grad, step_size, radius, p, center=0.5):
    return xaicourse.constraints.ascent_step(x, grad, step_size, radius, p, center)
'''
PGA_OWN_STEP_LIBRARY_PROJECTION = '''from xaicourse.constraints import project_lp as proj


def pga_step(x, grad, step_size, radius, p, center=0.5):
    if p == math.inf:
        d = grad.sign()
    else:
        n = grad.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        d = torch.where(n > 0, grad / n.clamp_min(1e-30), torch.zeros_like(grad))
    return proj(x + step_size * d, radius, p, center)
'''
# student: (answer cells replaced, tasks expected to score)
VARIANTS = {
    "alice": ({}, ("tv_tests", "pga_tests")),
    "tv_library": ({"tv_answer": TV_LIBRARY}, ("pga_tests",)),
    "pga_library": ({"pga_answer": PGA_LIBRARY}, ("tv_tests",)),
    "pga_library_projection": ({"pga_answer": PGA_OWN_STEP_LIBRARY_PROJECTION}, ("tv_tests",)),
}


def _solution():
    return nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _define(source: str, name: str):
    ns = {"math": math, "torch": torch}
    exec("\n".join(line for line in source.splitlines() if "### " not in line), ns)
    return ns[name]


def test_library_answers_are_numerically_right():
    """So a 0 below is the switch-off at work, not a wrong answer."""
    sol = _solution()
    tv_ref = _define(_cell(sol, "tv_answer").source, "total_variation")
    pga_ref = _define(_cell(sol, "pga_answer").source, "pga_step")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(3, 2, 5, 6, generator=g, dtype=torch.float64)
    assert torch.allclose(_define(TV_LIBRARY, "total_variation")(x), tv_ref(x), rtol=1e-12)
    for answer in (PGA_LIBRARY, PGA_OWN_STEP_LIBRARY_PROJECTION):
        step = _define(answer, "pga_step")
        for eta, r, p in ((0.1, 0.3, math.inf), (0.5, 1.0, 2), (3.0, 0.5, 2)):
            assert torch.allclose(step(x, grad, eta, r, p), pga_ref(x, grad, eta, r, p), atol=1e-12)


def submissions():
    """One student per variant (graded with the suite's other submissions in ``course_grades``)."""
    subs = {}
    for student, (changes, _) in VARIANTS.items():
        nb = _solution()
        for grade_id, source in changes.items():
            _cell(nb, grade_id).source = source
        subs[student, EX] = nb
    return subs


@pytest.mark.slow
def test_library_call_answers_score_zero_on_their_task(course_grades):
    for student, (_, scoring) in VARIANTS.items():
        r = course_grades[student, EX]
        assert float(r["max_score"]) == sum(POINTS.values()), r
        assert float(r["score"]) == sum(POINTS[t] for t in scoring), r
