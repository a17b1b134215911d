"""Exercise 02's hidden tests grade the student's own work: a "library-call answer" — an answer
cell that calls the package's implementation of the task (``xaicourse.tsne``), its private
helpers, scikit-learn's t-SNE internals, or (for the analytic gradient) autograd — scores 0 on
that task, while the solution scores full marks. All variants are graded in the suite's ONE grading run
(one student per variant), the other task always solved, so a variant's score is exactly the
points of the task it does not cheat on."""
import contextlib
import copy
import textwrap

import nbformat
import pytest

from test_course import ROOT, _cell  # the grading tests' notebook helpers

import xaicourse.device
import xaicourse.grading
from xaicourse.grading import ForbiddenCall

EX = "02_tsne"
POINTS = {"perplexity": 4.0, "gradient": 4.0}

# task → {student: answer cell replacing the solution}
CHEATS = {
    "perplexity": {
        "pkg_conditional": """
            from xaicourse.tsne import conditional_probabilities

            def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):
                return conditional_probabilities(D, perplexity, tol=tol, max_steps=max_steps, return_beta=True)
            """,
        "pkg_search_block": """
            import xaicourse.tsne

            def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):
                return xaicourse.tsne._search_block(D.clone(), torch.arange(len(D)), math.log(perplexity), tol,
                                                    max_steps)
            """,
        "sk_search": """
            import sklearn.manifold._utils

            def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):
                P = torch.from_numpy(sklearn.manifold._utils._binary_search_perplexity(
                    D.float().numpy(), perplexity, 0))
                # β from the ratio of two entries of each row: log(p_ij / p_ik) = β (D_ik − D_ij)
                j, k = D.clone().fill_diagonal_(float("inf")).argsort(1)[:, :2].T
                r = torch.arange(len(D))
                beta = torch.log(P[r, j] / P[r, k]) / (D[r, k] - D[r, j])
                return P, beta
            """,
    },
    "gradient": {
        "pkg_kl_gradient": """
            import xaicourse.tsne

            def tsne_gradient(P, Y):
                return xaicourse.tsne.kl_gradient(P, Y)
            """,
        "autograd_grad": """
            def tsne_gradient(P, Y):
                Y = Y.detach().clone().requires_grad_(True)
                W = 1 / (1 + sq_dists(Y))
                W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))
                m = P > 0
                g, = torch.autograd.grad((P[m] * torch.log(P[m] * W.sum() / W[m])).sum(), Y)
                return g
            """,
        "autograd_backward": """
            def tsne_gradient(P, Y):
                Y = Y.detach().clone().requires_grad_(True)
                W = 1 / (1 + sq_dists(Y))
                W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))
                m = P > 0
                (P[m] * torch.log(P[m] * W.sum() / W[m])).sum().backward()
                return Y.grad
            """,
        "torch_func_grad": """
            import torch.func

            def _kl(Y, P):
                sq = (Y * Y).sum(1)
                W = 1 / (1 + (sq[:, None] + sq[None, :] - 2 * Y @ Y.T))
                W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))
                return (torch.special.xlogy(P, P) - P * torch.log(W / W.sum() + torch.eye(len(Y)))).sum()

            def tsne_gradient(P, Y):
                return torch.func.grad(_kl)(Y, P)
            """,
        "sk_kl_divergence": """
            from scipy.spatial.distance import squareform
            from sklearn.manifold._t_sne import _kl_divergence

            def tsne_gradient(P, Y):
                n, d = Y.shape
                _, g = _kl_divergence(Y.numpy().ravel().copy(), squareform(P.numpy(), checks=False), 1, n, d)
                return torch.from_numpy(g).view(n, d)
            """,
    },
}


def submissions():
    """The solution and one student per cheat (graded in the suite's shared ``course_grades`` run)."""
    sol = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    subs = {("alice", EX): sol}
    for task, variants in CHEATS.items():
        for student, src in variants.items():
            nb = copy.deepcopy(sol)
            _cell(nb, f"{task}_answer").source = textwrap.dedent(src).strip() + "\n"
            subs[f"{task}__{student}", EX] = nb
    return subs


@pytest.fixture(scope="module")
def ex02_grades(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


@pytest.mark.slow
def test_solution_scores_full_marks(ex02_grades):
    r = ex02_grades["alice"]
    assert float(r["max_score"]) == sum(POINTS.values()), r
    assert float(r["score"]) == float(r["max_score"]), r


@pytest.mark.slow
@pytest.mark.parametrize("task, student", [(t, s) for t, v in CHEATS.items() for s in v])
def test_library_call_answer_scores_zero_on_its_task(ex02_grades, task, student):
    r = ex02_grades[f"{task}__{student}"]
    other = sum(p for t, p in POINTS.items() if t != task)      # the untouched task keeps its points
    assert r["status"].startswith("ok"), r
    assert float(r["score"]) == other, r


# ----------------------------------------------------------------------------- in-process check
# Before trusting a 0 from nbgrader: every cheat above must be a *correct* answer (it passes the
# visible and hidden tests when nothing is switched off), and it must fail because of the switch
# (ForbiddenCall), not for some other reason.
@pytest.fixture
def notebook_state(monkeypatch):
    """Run the solution's cells in this process; restore the device and thread count after."""
    import torch

    monkeypatch.setenv("XAICOURSE_QUICK", "1")
    dev, threads = xaicourse.device._current, torch.get_num_threads()
    nb = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    ns: dict = {}
    for c in [c for c in nb.cells if c.cell_type == "code"][:3]:       # parameters, setup, own data
        exec(compile(c.source, "<setup>", "exec"), ns)
    yield nb, ns
    xaicourse.device._current = dev
    torch.set_num_threads(threads)


@pytest.mark.parametrize("task, student", [(t, s) for t, v in CHEATS.items() for s in v])
def test_library_call_answers_are_right_but_forbidden(notebook_state, monkeypatch, task, student):
    nb, ns = notebook_state
    answer = textwrap.dedent(CHEATS[task][student])
    tests = _cell(nb, f"{task}_tests").source
    exec(compile(answer, "<answer>", "exec"), ns)
    with pytest.raises(ForbiddenCall):                              # graded as the hidden test runs
        exec(compile(tests, "<tests>", "exec"), dict(ns))
    # the same tests with nothing switched off: the answer itself is correct
    monkeypatch.setattr(xaicourse.grading, "forbid", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(xaicourse.grading, "_SNAPSHOT", None)  # the integrity check re-baselines
    exec(compile(tests, "<tests>", "exec"), dict(ns))


def test_compiled_search_imported_by_name_is_forbidden(notebook_state):
    nb, ns = notebook_state
    answer = "from sklearn.manifold._utils import _binary_search_perplexity as _bsp\n" + textwrap.dedent(
        CHEATS["perplexity"]["sk_search"]).replace("sklearn.manifold._utils._binary_search_perplexity", "_bsp")
    exec(compile(answer, "<answer>", "exec"), ns)
    with pytest.raises(ForbiddenCall):
        exec(compile(_cell(nb, "perplexity_tests").source, "<tests>", "exec"), dict(ns))
