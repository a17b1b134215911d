"""The course pipeline end to end: every notebook executes in quick mode (discovered, so new
lectures are covered automatically), the site index links them, exercises are in sync and
clean, and nbgrader grades solutions to full marks and untouched exercises to zero."""
import copy
import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from xaicourse import cli, course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = course.lecture_notebooks(ROOT) + course.solution_notebooks(ROOT)
EXERCISES = course.exercise_names(ROOT)


@pytest.fixture(scope="session")
def built(sites):
    """The instructor build (every lecture and solution executed once; see conftest ``sites``)."""
    return sites.instructor, sites.results


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_executes_in_quick_mode(built, nb):
    _, results = built
    r = results[nb]
    assert r.ok, r.error


@pytest.mark.slow
def test_site_index_links_every_lecture(built, sites):
    out, results = built
    for site_dir in (sites.student, sites.instructor):
        index = (site_dir / "index.html").read_text()
        for nb in course.lecture_notebooks(ROOT):
            name = f"lectures/{nb.stem}.html"
            assert f'href="{name}"' in index, (site_dir.name, name)
            page = (site_dir / name).read_text()
            imgs = re.findall(r'<img[^>]+src="\.\./(_images/[^"]+\.png)"', page)
            assert imgs and all((site_dir / i).stat().st_size > 1000 for i in imgs), \
                f"{name} shows no figure of our execution (inline backend lost?)"
            assert 'class="reference download internal"' in page and 'class="math' in page
            # every lecture ends with widgets; a static page must say they do not respond here
            assert "no Python runs behind a web page" in page and "_static/site.css" in page, name
        for ex in EXERCISES:
            assert f'href="exercises/{ex}.html"' in index, ex
    assert len(results) == len(NOTEBOOKS)
    index = (sites.instructor / "index.html").read_text()
    assert "Instructor only: solutions" in index
    for ex in EXERCISES:
        assert f'href="solutions/{ex}.html"' in index, ex


@pytest.mark.slow
def test_student_site_has_no_solution_or_hidden_test(sites):
    """Every line of solution code and hidden tests that the released exercises and lectures do
    not show anyway must be absent from every file of the student site (HTML text, search index,
    downloads); the instructor site must have them (so the check can fail)."""
    public = "".join(p.read_text() for p in sorted((ROOT / "exercises").glob("*/*.ipynb")))
    public += "".join(p.read_text() for p in course.lecture_notebooks(ROOT))
    secrets = {}
    for ex in EXERCISES:
        src = (ROOT / "solutions" / ex / f"{ex}.ipynb")
        for c in nbformat.read(src, as_version=4).cells:
            for block in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", c.source, re.S):
                for line in block.splitlines():
                    line = line.strip()
                    if len(line) > 24 and json.dumps(line)[1:-1] not in public and line not in public:
                        secrets.setdefault(ex, set()).add(line)
    secret = set().union(*secrets.values())
    assert len(secret) > 50

    def text_of(site_dir):
        parts = []
        for p in site_dir.rglob("*"):
            if p.is_file() and p.suffix in (".html", ".js", ".ipynb", ".txt", ".json") and "_static" not in p.parts:
                t = p.read_text(encoding="utf-8", errors="replace")
                parts.append(html.unescape(re.sub(r"<[^>]+>", "", t)) if p.suffix == ".html" else t)
                parts.append(t)
        return "\n".join(parts)

    student = text_of(sites.student)
    leaked = sorted(l for l in secret if l in student)
    assert not leaked, f"{len(leaked)} solution / hidden-test lines in the student site, e.g. {leaked[:3]}"
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "_check_integrity", "Instructor only"):
        assert marker not in student, marker
    assert not (sites.student / "solutions").exists()
    instructor = text_of(sites.instructor)  # the check can fail: the instructor site shows them
    shown = [ex for ex in EXERCISES if (sites.instructor / "solutions" / f"{ex}.html").exists()]
    assert shown
    for ex in shown:
        assert sum(l in instructor for l in secrets[ex]) > 0.5 * len(secrets[ex]), ex


def test_parameters_cell_first_and_device_toggle():
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), nb_path.name
        assert 'DEVICE = "auto"' in code[0].source, nb_path.name
        assert any("device_toggle(" in c.source for c in code), nb_path.name


def test_committed_notebooks_have_no_outputs():
    assert course.notebooks_with_outputs(ROOT) == []


def test_committed_notebooks_are_valid_with_unique_cell_ids():
    """nbformat 4.5 wants an id on every cell (a missing one is a warning today, an error tomorrow)."""
    import json
    for nb_path in sorted(NOTEBOOKS + list((ROOT / "exercises").glob("*/*.ipynb"))):
        raw = json.loads(nb_path.read_text())
        ids = [c.get("id") for c in raw["cells"]]
        assert None not in ids, f"{nb_path.relative_to(ROOT)}: cell {ids.index(None)} has no id"
        assert len(set(ids)) == len(ids), f"{nb_path.relative_to(ROOT)}: repeated cell ids"
        nbformat.validate(nbformat.reads(nb_path.read_text(), as_version=4))


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
    "03_gradients_vs_lime": {  # the package (and scikit-learn's Ridge) everywhere
        "gradient_answer": (
            "from captum.attr import Saliency as _S\n"
            "def vanilla_gradient(model, x, target):\n"
            "    return _S(model).attribute(x, target=target, abs=False).detach()\n"),
        "gradcam_answer": (
            "from xaicourse.attribution import grad_cam as _gc\n"
            "def grad_cam_map(model, layer, x, target):\n"
            "    return _gc(model, x, target, layer=layer)[:, 0]\n"),
        "kernel_answer": (
            "from xaicourse.attribution.lime import distances as _d, kernel_weights as _k\n"
            "def lime_kernel_weights(Z, kernel_width=0.25):\n"
            "    Z = np.asarray(Z, dtype=float)\n"
            "    return _k(_d(np.r_[np.ones((1, Z.shape[1])), Z])[1:], kernel_width)\n"),
        "ridge_answer": (
            "from sklearn.linear_model import Ridge as _R\n"
            "def lime_ridge(Z, y, weights, alpha=1.0):\n"
            "    if np.sum(weights) <= 0:\n"
            "        raise ValueError('all weights are zero')\n"
            "    r = _R(alpha=alpha).fit(Z, y, sample_weight=weights)\n"
            "    return r.coef_, r.intercept_\n"),
        "pipeline_answer": (
            "from xaicourse.attribution import lime as _L\n"
            "def lime_fit(f, n_features, num_samples=1000, kernel_width=0.25, alpha=1.0, seed=0):\n"
            "    Z = _L.sample_masks(num_samples, n_features, seed).astype(float)\n"
            "    w = _L.kernel_weights(_L.distances(Z), kernel_width)\n"
            "    beta, b = _L.weighted_ridge(Z, np.asarray(f(Z), dtype=float), w, alpha)\n"
            "    return beta, b, Z, w\n"),
    },
    "03_gradients_vs_lime:captum": {  # captum's LayerGradCam / Lime kernel / Lime, the lime package's LimeBase
        "gradcam_answer": (
            "from captum.attr import LayerGradCam as _LGC, LayerAttribution as _LA\n"
            "def grad_cam_map(model, layer, x, target):\n"
            "    a = _LGC(model, layer).attribute(x.detach().clone().requires_grad_(True), target=target,\n"
            "                                     relu_attributions=True)\n"
            "    return _LA.interpolate(a, tuple(x.shape[2:]), interpolate_mode='bilinear')[:, 0].detach()\n"),
        "kernel_answer": (
            "from captum.attr._core.lime import get_exp_kernel_similarity_function as _sim\n"
            "def lime_kernel_weights(Z, kernel_width=0.25):\n"
            "    if not kernel_width > 0:\n"
            "        raise ValueError('kernel_width must be > 0')\n"
            "    k = _sim('cosine', kernel_width)\n"
            "    Z = torch.as_tensor(np.asarray(Z, dtype=float))\n"
            "    return np.array([k(torch.ones(Z.shape[1]), z, None) for z in Z])\n"),
        "ridge_answer": (
            "from lime.lime_base import LimeBase as _LB\n"
            "from sklearn.linear_model import Ridge as _R\n"
            "def lime_ridge(Z, y, weights, alpha=1.0):\n"
            "    if np.sum(weights) <= 0:\n"
            "        raise ValueError('all weights are zero')\n"
            "    Z = np.asarray(Z, dtype=float)\n"
            "    b, exp, _, _ = _LB(lambda w: w).explain_instance_with_data(\n"
            "        Z, np.asarray(y, dtype=float)[:, None], np.asarray(weights, dtype=float), 0, Z.shape[1],\n"
            "        feature_selection='none', model_regressor=_R(alpha=alpha))\n"
            "    beta = np.zeros(Z.shape[1])\n"
            "    for j, v in exp:\n"
            "        beta[j] = v\n"
            "    return beta, b\n"),
        "pipeline_answer": (
            "from captum.attr import Lime as _Lime\n"
            "from captum.attr._core.lime import get_exp_kernel_similarity_function as _sim\n"
            "from captum._utils.models.linear_model import SkLearnRidge as _SR\n"
            "def lime_fit(f, n_features, num_samples=1000, kernel_width=0.25, alpha=1.0, seed=0):\n"
            "    torch.manual_seed(seed)\n"
            "    seen, ws = [], []\n"
            "    def fwd(z):\n"
            "        seen.append(z.detach().double().numpy().copy())\n"
            "        return torch.as_tensor(f(seen[-1]))\n"
            "    k = _sim('cosine', kernel_width)\n"
            "    def sim(a, b_, i, **kw):\n"
            "        ws.append(k(a, b_, i)); return ws[-1]\n"
            "    lime = _Lime(fwd, interpretable_model=_SR(alpha=alpha), similarity_func=sim)\n"
            "    coef = lime.attribute(torch.ones(1, n_features, dtype=torch.float64), baselines=0.0,\n"
            "                          n_samples=num_samples - 1, perturbations_per_eval=1)\n"
            "    b = float(lime.interpretable_model.bias())\n"
            "    Z = np.concatenate([np.ones((1, n_features))] + seen)   # captum leaves out the instance itself\n"
            "    return coef[0].double().numpy(), b, Z, np.r_[1.0, ws]\n"),
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
    "08_evaluating_explanations": {
        "deletion_answer": (
            "from xaicourse.metrics import deletion_curve as _dc, curve_auc as _auc\n"
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    return _dc(model, x[None], int(target), attribution[None], steps=steps, value=fill_value)[1][0]\n"
            "def deletion_auc(scores, D, steps):\n"
            "    fr = torch.tensor([round(j * D / steps) / D for j in range(steps + 1)], dtype=torch.float64)\n"
            "    return float(_auc(fr, torch.as_tensor(scores, dtype=torch.float64)[None])[0])\n"),
        "pointing_answer": (
            "from xaicourse.metrics import pointing_game as _pg\n"
            "def pointing_game(attributions, masks):\n"
            "    return _pg(attributions, masks, absolute=True)\n"),
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
"""Keys: an exercise, or "exercise:variant" for a further library-call submission (student "lib-variant")."""
LIBRARY_KEEPS = {"00_introduction": 0.0, "03_gradients_vs_lime": 0.0, "06_representer_points": 0.0, "07_tracin": 0.0,
                 "03_gradients_vs_lime:captum": 3.0,  # its task 1 is the solution's
                 "08_evaluating_explanations": 0.0, "09_concepts_and_robustness": 0.0}
"""The points each library-call submission may keep (tasks it did not answer with a library)."""

PARTIAL_ANSWERS = {
    # ex03: Grad-CAM upsampled with align_corners=True, lime's kernel without the square root (3a wrong,
    # and 3c that uses it): tasks 1 and 3b right → 3 + 3 of 12
    ("grace", "03_gradients_vs_lime"): ({
        "gradcam_answer": (
            "def grad_cam_map(model, layer, x, target):\n"
            "    store = {}\n"
            "    h = layer.register_forward_hook(lambda m, i, o: store.__setitem__('A', o))\n"
            "    try:\n"
            "        out = model(x.detach().clone().requires_grad_(True))\n"
            "    finally:\n"
            "        h.remove()\n"
            "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
            "    (g,) = torch.autograd.grad(out[torch.arange(len(x)), t].sum(), store['A'])\n"
            "    cam = torch.relu((g.mean((2, 3), keepdim=True) * store['A']).sum(1, keepdim=True))\n"
            "    return F.interpolate(cam, size=tuple(x.shape[2:]), mode='bilinear', align_corners=True)[:, 0].detach()\n"),
        "kernel_answer": (
            "def lime_kernel_weights(Z, kernel_width=0.25):\n"
            "    if not kernel_width > 0:\n"
            "        raise ValueError('kernel_width must be > 0')\n"
            "    Z = np.asarray(Z, dtype=float)\n"
            "    n = np.linalg.norm(Z, axis=1) * np.sqrt(Z.shape[1])\n"
            "    d = 1 - np.divide(Z.sum(1), n, out=np.zeros(len(Z)), where=n > 0)\n"
            "    return np.exp(-d ** 2 / kernel_width ** 2)\n"),
    }, 6.0),
}
"""(student, exercise) → (answers replacing the solution's cells, the score they must get)."""


def _library_student(key):
    ex, _, variant = key.partition(":")
    return ex, "lib-" + variant if variant else "lib"


def _solution(ex):
    return nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)


def submissions():
    """This module's students (graded with the other modules' in conftest's ``course_grades``)."""
    subs = {}
    for ex in EXERCISES:
        subs["alice", ex] = _solution(ex)
        subs["bob", ex] = nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4)
    sol = _solution("00_introduction")
    ex0 = nbformat.read(ROOT / "exercises/00_introduction/00_introduction.ipynb", as_version=4)
    wrong = copy.deepcopy(sol)  # task 2 forgot the sign of R_i (R_i/δ → −∂f/∂x_i): task 1 still right
    _cell(wrong, "topweights_answer").source = (
        "def gradient_limit(f, x, i, deltas, exact):\n"
        "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
        "    errors = torch.stack([((f(x[None])[0] - f((x + float(dl) * torch.eye(x.numel(), dtype=x.dtype)[i])[None])[0])\n"
        "                           / dl - exact).abs() for dl in deltas.tolist()]).double()\n"
        "    return errors, float(deltas[errors.argmin()])\n")
    subs["carol", "00_introduction"] = wrong
    hang = copy.deepcopy(sol)
    _cell(hang, "perturbation_answer").source = "import time\nwhile True:\n    time.sleep(0.5)\n"
    subs["dave", "00_introduction"] = hang
    crash = copy.deepcopy(sol)
    _cell(crash, "perturbation_answer").source = "import os\nos._exit(3)\n"
    subs["eve", "00_introduction"] = crash
    tamper = copy.deepcopy(ex0)  # unsolved, but the locked tests edited to pass / deleted
    _cell(tamper, "perturbation_tests").source = "pass"
    tamper.cells = [c for c in tamper.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "topweights_tests"]
    subs["frank", "00_introduction"] = tamper
    # library-call answers: every graded task answered by calling the package's (or captum's,
    # scikit-learn's) implementation of the same thing — hidden tests must give them no points
    for key, answers in LIBRARY_ANSWERS.items():
        ex, student = _library_student(key)
        lib = _solution(ex)
        for grade_id, source in answers.items():
            _cell(lib, grade_id).source = source
        subs[student, ex] = lib
    for (student, ex), (answers, _) in PARTIAL_ANSWERS.items():
        nb = _solution(ex)
        for grade_id, source in answers.items():
            _cell(nb, grade_id).source = source
        subs[student, ex] = nb
    return subs


@pytest.fixture(scope="session")
def grades(course_grades):
    return course_grades


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
    assert set(submissions()) <= set(grades)


@pytest.mark.slow
@pytest.mark.parametrize("key", list(LIBRARY_ANSWERS))
def test_library_call_answers_earn_nothing(grades, key):
    r = grades[tuple(reversed(_library_student(key)))]
    assert float(r["score"]) == LIBRARY_KEEPS[key], r


@pytest.mark.slow
@pytest.mark.parametrize("student, ex", list(PARTIAL_ANSWERS))
def test_partly_wrong_answers_partial_credit(grades, student, ex):
    r = grades[(student, ex)]
    assert float(r["score"]) == PARTIAL_ANSWERS[(student, ex)][1], r


@pytest.mark.slow
def test_check_catches_stale_exercise_and_outputs(tmp_path, capsys):
    import shutil
    # one exercise is enough to show both problems (a copy of all would regenerate them all)
    for d in ("lectures/00_introduction.ipynb", "solutions/00_introduction", "exercises/00_introduction"):
        (tmp_path / d).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / d).is_dir() else shutil.copy)(ROOT / d, tmp_path / d)
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
