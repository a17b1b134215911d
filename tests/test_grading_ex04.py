"""Exercise 04 grading round trip: the solution gets full marks, the untouched exercise 0, and an
answer that calls the library's implementation gets 0 on that task."""
from pathlib import Path

import pytest
from conftest import library_call_students

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


def submissions():
    """alice (solution), bob (untouched) and one library-call student per task, graded in the
    suite's shared ``course_grades`` run (alice and bob are test_course's students too)."""
    return library_call_students(EX, {"lib_" + answer: {answer: src} for answer, (_, src) in LIBRARY_ANSWERS.items()})


@pytest.fixture(scope="module")
def grades(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


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
