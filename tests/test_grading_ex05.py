"""Exercise 05 graded end to end (in the suite's one shared grading run): the solution earns full marks, the
untouched student version 0, and an answer that calls a library implementation scores 0 on
that task (the hidden tests switch the library off with ``xaicourse.grading.forbid``)."""
from pathlib import Path

import pytest
from conftest import library_call_students

ROOT = Path(__file__).resolve().parents[1]
EX = "05_influence_functions"
POINTS = {"hvp": 3, "cg": 3, "influence": 4}

LIBRARY_ANSWERS = {
    # Hessian-vector product from torch's functional API
    "hvp": "def hvp(f, theta, v):\n"
           "    return torch.autograd.functional.hvp(f, theta.detach(), v)[1].detach()\n",
    # conjugate gradient from scipy
    "cg": "def cg_solve(matvec, b, tol=1e-10, max_iter=1000):\n"
          "    import scipy.sparse.linalg as sla\n"
          "    op = sla.LinearOperator((len(b), len(b)), dtype=np.float64,\n"
          "                            matvec=lambda v: matvec(torch.as_tensor(v, dtype=b.dtype).reshape(-1)).numpy())\n"
          "    x, _ = sla.cg(op, b.numpy(), rtol=tol, atol=0.0, maxiter=max_iter)\n"
          "    return torch.as_tensor(x)\n",
    # the package's influence function
    "influence": "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
                 "    from xaicourse.data_attribution import influence\n"
                 "    return influence(model, loss_fn, X, y, x_test, y_test, l2=l2, method='cg')[0]\n",
}
# a library answer to one task also breaks the later tasks that build on it
EXPECTED = {"hvp": POINTS["cg"], "cg": POINTS["hvp"], "influence": POINTS["hvp"] + POINTS["cg"]}


def submissions():
    """alice (solution), bob (untouched) and one library-call student per task, graded in the
    suite's shared ``course_grades`` run (alice and bob are test_course's students too)."""
    return library_call_students(EX, {f"library_{task}": {f"{task}_answer": src} for task, src in LIBRARY_ANSWERS.items()})


@pytest.fixture(scope="module")
def grades(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


@pytest.mark.slow
def test_solution_full_marks_untouched_zero(grades):
    assert float(grades["alice"]["max_score"]) == sum(POINTS.values())
    assert float(grades["alice"]["score"]) == sum(POINTS.values()), grades["alice"]
    assert float(grades["bob"]["score"]) == 0.0, grades["bob"]


@pytest.mark.slow
@pytest.mark.parametrize("task", list(LIBRARY_ANSWERS))
def test_library_call_answer_scores_zero_on_its_task(grades, task):
    row = grades[f"library_{task}"]
    assert float(row["score"]) == EXPECTED[task], row
    assert float(row["score"]) <= sum(POINTS.values()) - POINTS[task]
