"""The course pipeline end to end: every notebook executes in quick mode (discovered, so new
lectures are covered automatically), the site index links them, exercises are in sync and
clean, and nbgrader grades solutions to full marks and untouched exercises to zero."""
import copy
import csv
from pathlib import Path

import nbformat
import pytest

from xaicourse import cli, course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = course.lecture_notebooks(ROOT) + course.solution_notebooks(ROOT)
EXERCISES = course.exercise_names(ROOT)


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    results = course.build(ROOT, out=out, quick=True, jobs=2)
    return out, {r.path: r for r in results}


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_executes_in_quick_mode(built, nb):
    _, results = built
    r = results[nb]
    assert r.ok, r.error


@pytest.mark.slow
def test_site_index_links_every_lecture(built):
    out, results = built
    index = (out / "index.html").read_text()
    for nb in course.lecture_notebooks(ROOT):
        name = f"lectures__{nb.stem}.html"
        assert f"href='{name}'" in index, name
        page = (out / name).read_text()
        assert "data:image/png" in page, f"{name} shows no figure (inline backend lost?)"
    assert len(results) == len(NOTEBOOKS)


def test_parameters_cell_first_and_device_toggle():
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), nb_path.name
        assert 'DEVICE = "auto"' in code[0].source, nb_path.name
        assert any("device_toggle(" in c.source for c in code), nb_path.name


def test_committed_notebooks_have_no_outputs():
    assert course.notebooks_with_outputs(ROOT) == []


@pytest.mark.slow
def test_exercises_in_sync_with_solutions():
    assert course.check(ROOT, log=lambda *a: None) == []


def test_failing_notebook_reported_with_cell(tmp_path, capsys):
    (tmp_path / "lectures").mkdir()
    (tmp_path / "solutions").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom 42')")]
    nbformat.write(nb, tmp_path / "lectures" / "99_broken.ipynb")
    code = cli.main(["--root", str(tmp_path), "build", "--quick"])
    out = capsys.readouterr().out
    assert code == 1
    assert "99_broken.ipynb: failed in cell 1" in out and "boom 42" in out
    assert cli.main(["--root", str(tmp_path), "build", "--only", "nothing-matches"]) == 2


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


LIBRARY_ANSWERS = {
    "00_introduction": {"perturbation_answer": (
        "def perturbation_score_vector(f, x, delta):\n"
        "    from xaicourse.attribution import perturbation_scores\n"
        "    if delta == 0:\n"
        "        raise ValueError('delta must be non-zero')\n"
        "    class F(torch.nn.Module):\n"
        "        def forward(self, X):\n"
        "            return f(X)[:, None]\n"
        "    return perturbation_scores(F(), x[None], 0, delta=delta)[0]\n"),
        "topweights_answer": (
            "def gradient_limit(f, x, i, deltas, exact):\n"
            "    from xaicourse.attribution import perturbation_scores\n"
            "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
            "    if not bool((deltas > 0).all()):\n"
            "        raise ValueError('steps must be positive')\n"
            "    class F(torch.nn.Module):\n"
            "        def forward(self, X):\n"
            "            return f(X)[:, None]\n"
            "    R = torch.stack([perturbation_scores(F(), x[None], 0, delta=float(dl))[0, i] for dl in deltas.tolist()])\n"
            "    errors = (R.double() / deltas + exact).abs()\n"
            "    return errors, float(deltas[errors.argmin()])\n"),
    },
    "03_gradients_vs_lime": {
        "gradient_answer": (
            "from captum.attr import Saliency as _S\n"
            "def vanilla_gradient(model, x, target):\n"
            "    return _S(model).attribute(x, target=target, abs=False).detach()\n"),
        "squared_answer": (
            "import xaicourse.attribution as _A\n"
            "def squared_gradient_map(model, x, target):\n"
            "    return _A.squared_gradient(model, x, target).sum(1)\n"),
        "ridge_answer": (
            "from sklearn.linear_model import Ridge as _R\n"
            "def lime_ridge(Z, y, weights, alpha=1.0):\n"
            "    if np.sum(weights) <= 0:\n"
            "        raise ValueError('all weights are zero')\n"
            "    r = _R(alpha=alpha).fit(Z, y, sample_weight=weights)\n"
            "    return r.coef_, r.intercept_\n"),
    },
    "06_representer_points": {
        "alpha_answer": (
            "def representer_alpha(features, labels, W, l2):\n"
            "    from xaicourse.data_attribution import RepresenterPoints\n"
            "    return RepresenterPoints(l2=l2).fit(features, labels, init=W).alpha_\n"),
        "contributions_answer": (
            "def representer_contributions(alpha, train_features, test_features, target):\n"
            "    from xaicourse.data_attribution import RepresenterPoints\n"
            "    rp = RepresenterPoints()\n"
            "    rp.alpha_, rp.features_ = alpha, train_features.to(alpha)\n"
            "    rp.weight_ = alpha.T @ rp.features_\n"
            "    rp.n_features_in_, rp.n_classes_ = train_features.shape[1], alpha.shape[1]\n"
            "    return rp.contributions(test_features, target)\n"),
    },
    "07_tracin": {
        "tracin_answer": (
            "from xaicourse.data_attribution import per_example_grads as _peg, tracin_cp as _tc\n"
            "def example_gradients(model, loss_fn, X, y):\n"
            "    return _peg(model, loss_fn, X, y)\n"
            "def tracin_scores(model, checkpoints, loss_fn, X_train, y_train, X_test, y_test):\n"
            "    return _tc(model, checkpoints, loss_fn, X_train, y_train, X_test, y_test, progress=False)\n"),
        "self_answer": (
            "from xaicourse.data_attribution import self_influence as _si\n"
            "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
            "    return _si(model, checkpoints, loss_fn, X, y, progress=False)\n"
            "def suspects(scores, k):\n"
            "    return torch.topk(scores, k).indices\n"),
    },
    "09_concepts_and_robustness": {
        "cav_answer": (
            "from xaicourse.concepts import layer_activations as _la, tcav_score as _ts, _cav_from_acts as _cf\n"
            "def layer_acts(model, layer, X):\n"
            "    return _la(model, layer, X)\n"
            "def train_cav(concept_acts, random_acts):\n"
            "    return _cf(concept_acts.double().numpy(), random_acts.double().numpy(), 'x', 0, 1.0, 0.01).vector\n"
            "def tcav_score_of(model, layer, cav, X, target):\n"
            "    return _ts(model, layer, cav, X, target)\n"),
        "attack_answer": (
            "from xaicourse.robustness import random_sign as _rs, topk_intersection as _ti\n"
            "def random_sign_perturbation(x, eps, seed):\n"
            "    return _rs(x, eps, seed=seed)\n"
            "def topk_overlap(a, b, k):\n"
            "    return _ti(a, b, k)\n"),
    },
}
"""The points each library-call submission may keep (tasks it did not answer with a library)."""
LIBRARY_KEEPS = {"00_introduction": 0.0, "03_gradients_vs_lime": 0.0, "06_representer_points": 0.0, "07_tracin": 0.0,
                  "09_concepts_and_robustness": 0.0}


@pytest.fixture(scope="session")
def grades(tmp_path_factory):
    subs = tmp_path_factory.mktemp("submitted")

    def put(student, ex, nb):
        d = subs / student / ex
        d.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, d / f"{ex}.ipynb")

    for ex in EXERCISES:
        put("alice", ex, nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4))
        put("bob", ex, nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4))
    sol = nbformat.read(ROOT / "solutions/00_introduction/00_introduction.ipynb", as_version=4)
    ex0 = nbformat.read(ROOT / "exercises/00_introduction/00_introduction.ipynb", as_version=4)
    wrong = copy.deepcopy(sol)  # task 2 forgot the sign of R_i (R_i/δ → −∂f/∂x_i): task 1 still right
    _cell(wrong, "topweights_answer").source = (
        "def gradient_limit(f, x, i, deltas, exact):\n"
        "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
        "    errors = torch.stack([((f(x[None])[0] - f((x + float(dl) * torch.eye(x.numel(), dtype=x.dtype)[i])[None])[0])\n"
        "                           / dl - exact).abs() for dl in deltas.tolist()]).double()\n"
        "    return errors, float(deltas[errors.argmin()])\n")
    put("carol", "00_introduction", wrong)
    hang = copy.deepcopy(sol)
    _cell(hang, "perturbation_answer").source = "import time\nwhile True:\n    time.sleep(0.5)\n"
    put("dave", "00_introduction", hang)
    crash = copy.deepcopy(sol)
    _cell(crash, "perturbation_answer").source = "import os\nos._exit(3)\n"
    put("eve", "00_introduction", crash)
    tamper = copy.deepcopy(ex0)  # unsolved, but the locked tests edited to pass / deleted
    _cell(tamper, "perturbation_tests").source = "pass"
    tamper.cells = [c for c in tamper.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "topweights_tests"]
    put("frank", "00_introduction", tamper)
    # library-call answers: every graded task answered by calling the package's (or captum's,
    # scikit-learn's) implementation of the same thing — hidden tests must give them no points
    for ex, answers in LIBRARY_ANSWERS.items():
        lib = nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)
        for grade_id, source in answers.items():
            _cell(lib, grade_id).source = source
        put("lib", ex, lib)
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    code = cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out), "--timeout", "15", "-j", "2"])
    assert code == 0
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    return {(r["student"], r["exercise"]): r for r in rows}


@pytest.mark.slow
@pytest.mark.parametrize("ex", EXERCISES)
def test_solution_full_marks_exercise_zero(grades, ex):
    a, b = grades[("alice", ex)], grades[("bob", ex)]
    assert float(a["max_score"]) > 0
    assert float(a["score"]) == float(a["max_score"]), a
    assert float(b["score"]) == 0.0, b


@pytest.mark.slow
def test_wrong_answer_partial_credit(grades):
    r = grades[("carol", "00_introduction")]
    assert 0 < float(r["score"]) < float(r["max_score"])
    assert float(r["score"]) == 3.0  # task 1 right, task 2 wrong


@pytest.mark.slow
def test_hanging_and_crashing_submissions_get_rows(grades):
    dave = grades[("dave", "00_introduction")]
    assert float(dave["score"]) == 2.0  # the hanging task interrupted, the other still graded
    eve = grades[("eve", "00_introduction")]  # killed the kernel in task 1: task 2 re-run in a fresh kernel
    assert float(eve["score"]) == 2.0 and "kernel died in perturbation_answer" in eve["status"]


@pytest.mark.slow
def test_tampered_locked_cells_do_not_earn_points(grades):
    frank = grades[("frank", "00_introduction")]
    assert float(frank["score"]) == 0.0
    assert len(grades) == 2 * len(EXERCISES) + 4 + len(LIBRARY_ANSWERS)


@pytest.mark.slow
@pytest.mark.parametrize("ex", list(LIBRARY_ANSWERS))
def test_library_call_answers_earn_nothing(grades, ex):
    r = grades[("lib", ex)]
    assert float(r["score"]) == LIBRARY_KEEPS[ex], r


@pytest.mark.slow
def test_check_catches_stale_exercise_and_outputs(tmp_path, capsys):
    import shutil
    for d in ("lectures", "solutions", "exercises"):
        shutil.copytree(ROOT / d, tmp_path / d)
    ex = tmp_path / "exercises/00_introduction/00_introduction.ipynb"
    nb = nbformat.read(ex, as_version=4)
    nb.cells[0].source += "\n# edited by hand"
    nbformat.write(nb, ex)
    lec = tmp_path / "lectures/00_introduction.ipynb"
    nb = nbformat.read(lec, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    nbformat.write(nb, lec)
    assert cli.main(["--root", str(tmp_path), "check"]) == 1
    out = capsys.readouterr().out
    assert "exercises/00_introduction/00_introduction.ipynb is out of sync" in out, out
    assert "lectures/00_introduction.ipynb carries outputs" in out, out
