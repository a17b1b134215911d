"""Exercise 03 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; the library routes (captum, the ``lime`` package, scikit-learn, ``xaicourse.attribution``
— moved here from test_course's LIBRARY_ANSWERS) and every attack family (tests/attacks.py) earn 0
on their task or are flagged; a partly wrong student (grace, from test_course's PARTIAL_ANSWERS)
gets exactly the points of her right tasks. alice (solution) and bob (untouched) are test_course's."""
import attacks
import pytest

EX = "03_gradients_vs_lime"
POINTS = {"gradient_tests": 3.0, "gradcam_tests": 3.0, "kernel_tests": 1.0, "ridge_tests": 3.0,
          "pipeline_tests": 2.0}
FULL = sum(POINTS.values())
NAMES = {"gradient_answer": ["vanilla_gradient"], "gradcam_answer": ["grad_cam_map"],
         "kernel_answer": ["lime_kernel_weights"], "ridge_answer": ["lime_ridge"], "pipeline_answer": ["lime_fit"]}
TASK = {"gradient_answer": "gradient_tests", "gradcam_answer": "gradcam_tests", "kernel_answer": "kernel_tests",
        "ridge_answer": "ridge_tests", "pipeline_answer": "pipeline_tests"}
USED_BY = {"kernel_answer": {"pipeline_tests"}, "ridge_answer": {"pipeline_tests"}}
"""lime_fit calls the student's own kernel and ridge: breaking those breaks task 3c too."""


def _lost(plan) -> set:
    return {TASK[a] for a in plan} | {t for a in plan for t in USED_BY.get(a, ())}


HONEST = {
    # per-sample gradients in a loop, float64 results; Grad-CAM with the hook as a context manager
    # and the maps in float64; LIME in float64 via the augmented least-squares problem
    "e03_h_loops": {
        "gradient_answer": (
            "def vanilla_gradient(model, x, target):\n"
            "    t = torch.as_tensor(target).reshape(-1)\n"
            "    if len(t) == 1:\n"
            "        t = t.repeat(len(x))\n"
            "    rows = []\n"
            "    for n in range(len(x)):\n"
            "        xn = x[n:n + 1].detach().clone().requires_grad_(True)\n"
            "        model(xn)[0, int(t[n])].backward()\n"
            "        rows.append(xn.grad[0].double())\n"
            "    return torch.stack(rows)\n"),
        "gradcam_answer": (
            "def grad_cam_map(model, layer, x, target):\n"
            "    acts = []\n"
            "    hook = model.get_submodule(layer).register_forward_hook(lambda m, i, o: acts.append(o))\n"
            "    try:\n"
            "        scores = model(x.detach().requires_grad_(True))\n"
            "    finally:\n"
            "        hook.remove()\n"
            "    A = acts[0]\n"
            "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
            "    grads = torch.autograd.grad(scores.gather(1, t[:, None]).sum(), A)[0]\n"
            "    alpha = grads.sum((2, 3)) / (A.shape[2] * A.shape[3])\n"
            "    cam = torch.einsum('nk,nkij->nij', alpha, A).clamp_min(0)[:, None]\n"
            "    up = F.interpolate(cam.double(), size=x.shape[-2:], mode='bilinear')\n"
            "    return up[:, 0].detach(), alpha.double().detach()\n"),
        "ridge_answer": (
            "def lime_ridge(Z, y, weights, alpha=1.0):\n"
            "    Z, y, w = (np.asarray(a, dtype=np.float64) for a in (Z, y, weights))\n"
            "    if not np.any(w > 0):\n"
            "        raise ValueError('every weight is zero')\n"
            "    n, K = Z.shape\n"
            "    s = np.sqrt(w)\n"
            "    A = np.vstack([np.c_[Z, np.ones(n)] * s[:, None], np.c_[np.sqrt(alpha) * np.eye(K), np.zeros(K)]])\n"
            "    theta = np.linalg.lstsq(A, np.r_[y * s, np.zeros(K)], rcond=None)[0]\n"
            "    return theta[:K], theta[K]\n"),
    },
    # torch.func-free vectorised torch code; kernel via the cosine formula; masks drawn with
    # Generator.random and thresholded, f queried in blocks of rows
    "e03_h_torch": {
        "gradient_answer": (
            "def vanilla_gradient(model, x, target):\n"
            "    x = x.detach().requires_grad_()\n"
            "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
            "    out = model(x)\n"
            "    picked = out.gather(1, t.reshape(-1, 1))\n"
            "    picked.backward(torch.ones_like(picked))\n"
            "    return x.grad.detach().clone()\n"),
        "kernel_answer": (
            "def lime_kernel_weights(Z, kernel_width=0.25):\n"
            "    if kernel_width <= 0:\n"
            "        raise ValueError('the kernel width must be positive')\n"
            "    Z = np.asarray(Z, dtype=np.float64)\n"
            "    ones = np.ones(Z.shape[1])\n"
            "    norms = np.sqrt((Z * Z).sum(1))\n"
            "    cos = np.where(norms > 0, (Z @ ones) / np.where(norms > 0, norms, 1.0) / np.linalg.norm(ones), 0.0)\n"
            "    return np.sqrt(np.exp(-(1.0 - cos) ** 2 / kernel_width ** 2))\n"),
        "pipeline_answer": (
            "def lime_fit(f, n_features, num_samples=1000, kernel_width=0.25, alpha=1.0, seed=0):\n"
            "    Z = (np.random.default_rng(seed).random((num_samples, n_features)) < 0.5).astype(np.float64)\n"
            "    Z[0] = 1.0\n"
            "    y = np.concatenate([np.ravel(f(Z[s:s + 256])) for s in range(0, num_samples, 256)])\n"
            "    w = lime_kernel_weights(Z, kernel_width)\n"
            "    beta, b = lime_ridge(Z, y, w, alpha)\n"
            "    return beta, b, Z, w\n"),
    },
}

LIBRARY = {
    # test_course's "03_gradients_vs_lime": the package (and scikit-learn's Ridge) everywhere
    "e03_lib": {
        "gradient_answer": (
            "from captum.attr import Saliency as _S\n"
            "def vanilla_gradient(model, x, target):\n"
            "    return _S(model).attribute(x, target=target, abs=False).detach()\n"),
        "gradcam_answer": (
            "from xaicourse.attribution import grad_cam as _gc\n"
            "from xaicourse.attribution.cam import layer_activation_and_grad as _lag\n"
            "def grad_cam_map(model, layer, x, target):\n"
            "    _, g = _lag(model, x, target, layer=layer)\n"
            "    return _gc(model, x, target, layer=layer)[:, 0], g.mean((2, 3))\n"),
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
    # test_course's "03_gradients_vs_lime:captum": captum's LayerGradCam / Lime kernel / Lime, the
    # lime package's LimeBase (task 1 is the solution's: it keeps its 3 points)
    "e03_lib_captum": {
        "gradcam_answer": (
            "from captum.attr import LayerGradCam as _LGC, LayerAttribution as _LA\n"
            "from captum._utils.gradient import compute_layer_gradients_and_eval as _clge\n"
            "def grad_cam_map(model, layer, x, target):\n"
            "    mod = model.get_submodule(layer)\n"
            "    xx = x.detach().clone().requires_grad_(True)\n"
            "    a = _LGC(model, mod).attribute(xx, target=target, relu_attributions=True)\n"
            "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
            "    (g,), _ = _clge(model, mod, (xx,), target_ind=t)\n"
            "    cam = _LA.interpolate(a, tuple(x.shape[2:]), interpolate_mode='bilinear')[:, 0].detach()\n"
            "    return cam, g.mean((2, 3)).detach()\n"),
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
    # the vector-Jacobian product of torch.autograd.functional (a library route to the gradient)
    "e03_lib_vjp": {"gradient_answer": (
        "from torch.autograd.functional import vjp as _vjp\n"
        "def vanilla_gradient(model, x, target):\n"
        "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
        "    out, g = _vjp(lambda z: model(z).gather(1, t[:, None])[:, 0], x.detach(), torch.ones(len(x), dtype=x.dtype))\n"
        "    return g.detach()\n")},
    # scikit-learn's cosine distance for the kernel
    "e03_lib_pairwise": {"kernel_answer": (
        "from sklearn.metrics import pairwise_distances as _pd\n"
        "def lime_kernel_weights(Z, kernel_width=0.25):\n"
        "    if not kernel_width > 0:\n"
        "        raise ValueError('kernel_width must be > 0')\n"
        "    Z = np.asarray(Z, dtype=float)\n"
        "    d = _pd(Z, np.ones((1, Z.shape[1])), metric='cosine').ravel()\n"
        "    return np.exp(-d ** 2 / (2 * kernel_width ** 2))\n")},
}

PARTIAL = {
    # test_course's grace: Grad-CAM upsampled with align_corners=True, lime's kernel without the
    # square root (3a wrong, and 3c that uses it): tasks 1 and 3b right → 3 + 3 of 12
    "e03_grace": ({
        "gradcam_answer": (
            "def grad_cam_map(model, layer, x, target):\n"
            "    store = {}\n"
            "    h = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__('A', o))\n"
            "    try:\n"
            "        out = model(x.detach().clone().requires_grad_(True))\n"
            "    finally:\n"
            "        h.remove()\n"
            "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
            "    (g,) = torch.autograd.grad(out[torch.arange(len(x)), t].sum(), store['A'])\n"
            "    alpha = g.mean((2, 3))\n"
            "    cam = torch.relu((alpha[:, :, None, None] * store['A']).sum(1, keepdim=True))\n"
            "    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode='bilinear', align_corners=True)\n"
            "    return cam[:, 0].detach(), alpha.detach()\n"),
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

CHEATS = {  # the generic families, spread over the five tasks
    "e03_cheat_refs": {"gradient_answer": attacks.refs(NAMES["gradient_answer"])},
    "e03_cheat_subclass": {"gradcam_answer": attacks.subclass(NAMES["gradcam_answer"]),
                           "ridge_answer": attacks.subclass(NAMES["ridge_answer"])},
    # one rebinding cell only: two would wrap the call agent twice through the same global, a
    # recursion that hangs every call (then every task times out, the student's own doing)
    "e03_cheat_rebind": {"kernel_answer": attacks.rebind(NAMES["kernel_answer"])},
    "e03_cheat_files": {"pipeline_answer": attacks.trusted_files(NAMES["pipeline_answer"])},
}


def submissions():
    plan = {**HONEST, **LIBRARY, **CHEATS, **{s: answers for s, (answers, _) in PARTIAL.items()}}
    return attacks.students(EX, plan)


def plant(folder, student, ex):
    if student == "e03_cheat_files":
        attacks.plant_payloads(folder)


@pytest.fixture(scope="module")
def grades(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


def _task_points(row, task):
    part = next(p for p in row["tasks"].split("; ") if p.startswith(task + "="))
    return float(part.rsplit(" ", 1)[1].split("/")[0])


@pytest.mark.slow
@pytest.mark.parametrize("student", list(HONEST))
def test_honest_variants_full_marks(grades, student):
    row = grades[student]
    assert float(row["score"]) == FULL, row
    assert not row["status"].startswith("flagged"), row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY) + list(CHEATS))
def test_attacks_earn_nothing_on_their_task(grades, student):
    row = grades[student]
    plan = {**LIBRARY, **CHEATS}[student]
    attacked = {TASK[a] for a in plan}
    for task in attacked:
        assert _task_points(row, task) == 0.0, (task, row)
    # the other tasks were answered honestly and keep their points (a library answer is right, so
    # lime_fit may use it; a cheat's wrong kernel or ridge also costs task 3c)
    lost = _lost(plan) if student in CHEATS else attacked
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in lost), row


@pytest.mark.slow
def test_library_routes_are_flagged(grades):
    for student, plan in LIBRARY.items():
        row = grades[student]
        assert row["status"].startswith("flagged"), row
        for answer in plan:
            assert f"{TASK[answer]}=flagged 0/" in row["tasks"], (answer, row)
    assert float(grades["e03_lib"]["score"]) == 0.0
    assert float(grades["e03_lib_captum"]["score"]) == 3.0  # its task 1 is the solution's


@pytest.mark.slow
@pytest.mark.parametrize("student", list(PARTIAL))
def test_partly_wrong_answers_partial_credit(grades, student):
    row = grades[student]
    assert float(row["score"]) == PARTIAL[student][1], row
    assert "gradcam_tests=failed" in row["tasks"] and "kernel_tests=failed" in row["tasks"], row
    assert "pipeline_tests=failed" in row["tasks"] and not row["status"].startswith("flagged"), row


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e03_cheat_files" in grades
    assert attacks.marker_absent()
