"""Exercise 04 grading round trip: the solution gets full marks, the untouched exercise 0, and an
answer that calls the library's implementation gets 0 on that task."""
import copy
import csv
from pathlib import Path

import nbformat
import pytest

from xaicourse import cli
from xaicourse.course import generate_exercises

ROOT = Path(__file__).resolve().parents[1]
EX = "04_integrated_gradients"
POINTS = {"ig_tests": 4.0, "delta_tests": 2.0, "invariance_tests": 3.0}
LIBRARY_ANSWERS = {
    "ig_answer": ("ig_tests",
                  "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
                  "    from xaicourse.attribution import integrated_gradients\n"
                  "    if rule not in ('left', 'middle', 'right') or n_steps < 1:\n"
                  "        raise ValueError('bad rule or n_steps')\n"
                  "    return integrated_gradients(model, x, target, baselines=baseline, n_steps=n_steps,\n"
                  "                                method='riemann_' + rule)\n"),
    "delta_answer": ("delta_tests",
                     "def convergence_delta(model, x, target, baseline, attributions):\n"
                     "    from captum.attr import IntegratedGradients\n"
                     "    return IntegratedGradients(model).compute_convergence_delta(attributions, baseline, x,\n"
                     "                                                                target=target)\n"),
    "invariance_answer": ("invariance_tests",
                          "def invariance_gap(method, f_net, g_net, x, target=0):\n"
                          "    from xaicourse.metrics import check_axioms\n"
                          "    rows = check_axioms(method)\n"
                          "    return [r['value'] for r in rows if r['axiom'] == 'implementation_invariance'][0]\n"),
}


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture(scope="module")
def grades(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ex04")
    exercises = generate_exercises(ROOT, dest=tmp / "exercises", log=lambda *_: None)
    sol = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    students = {"alice": sol, "bob": nbformat.read(exercises / EX / f"{EX}.ipynb", as_version=4)}
    for answer, (_, src) in LIBRARY_ANSWERS.items():
        nb = copy.deepcopy(sol)
        _cell(nb, answer).source = src
        students["lib_" + answer] = nb
    subs = tmp / "submitted"
    for name, nb in students.items():
        (subs / name / EX).mkdir(parents=True)
        nbformat.write(nb, subs / name / EX / f"{EX}.ipynb")
    out = tmp / "grades.csv"
    assert cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out), "--timeout", "120", "-j", "2"]) == 0
    with open(out) as fh:
        return {r["student"]: r for r in csv.DictReader(fh) if r["exercise"] == EX}


@pytest.mark.slow
def test_solution_full_marks_untouched_zero(grades):
    total = sum(POINTS.values())
    assert float(grades["alice"]["max_score"]) == total
    assert float(grades["alice"]["score"]) == total, grades["alice"]
    assert float(grades["bob"]["score"]) == 0.0, grades["bob"]


@pytest.mark.slow
@pytest.mark.parametrize("answer", list(LIBRARY_ANSWERS))
def test_library_call_answer_scores_zero_on_its_task(grades, answer):
    task = LIBRARY_ANSWERS[answer][0]
    row = grades["lib_" + answer]
    assert float(row["score"]) == sum(POINTS.values()) - POINTS[task], row
