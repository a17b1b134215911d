"""Exercise 09 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; the library routes (captum's layer attributions and TCAV, quantus, the course package,
torch.func, scipy.stats's t-test) and the attack families of tests/attacks.py earn 0 on their task or are flagged.
scikit-learn's ``LogisticRegression`` is ALLOWED for the CAV's classifier (the task says so: the
classifier is not what the task teaches; the solution uses it). alice (solution) and bob (untouched)
are test_course's students."""
import attacks
import pytest

EX = "09_concepts_and_robustness"
POINTS = {"cav_tests": 5.0, "attack_tests": 3.0, "ttest_tests": 2.0}
FULL = sum(POINTS.values())
NAMES = {"cav_answer": ["layer_acts", "train_cav", "directional_derivatives", "tcav_score_of"],
         "attack_answer": ["topk_overlap", "topk_attack_step"], "ttest_answer": ["welch_ttest", "bonferroni"]}
TASK = {"cav_answer": "cav_tests", "attack_answer": "attack_tests", "ttest_answer": "ttest_tests"}

# the solution's CAV fit (scikit-learn, allowed), reused by library students that replace the rest
_SKLEARN_CAV = """
def train_cav(concept_acts, random_acts):
    from sklearn.linear_model import LogisticRegression
    A = torch.cat([concept_acts, random_acts]).double().numpy()
    y = np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))]
    w = LogisticRegression(C=1.0, max_iter=2000).fit(A, y).coef_[0]
    return torch.tensor(w / np.linalg.norm(w), dtype=torch.float32)
"""
# the solution's attack step, reused by library students that replace only the overlap
_ATTACK_STEP = """
def topk_attack_step(model, x, target, k, eps):
    if not eps > 0 or not 1 <= k <= x.shape[-2] * x.shape[-1]:
        raise ValueError("eps must be > 0 and 1 <= k <= H*W")
    def saliency(z, create_graph=False):
        (g,) = torch.autograd.grad(model(z)[:, target].sum(), z, create_graph=create_graph)
        m = g.abs().sum(1)
        return m / m.flatten(1).sum(1).view(-1, 1, 1)
    x0 = x.detach().clone().requires_grad_(True)
    S0 = saliency(x0, create_graph=True)
    top = torch.topk(S0.detach().flatten(1), k, dim=1).indices
    mass0 = S0.flatten(1).gather(1, top).sum(1)
    (grad,) = torch.autograd.grad(mass0.sum(), x0)
    x1 = (x.detach() - eps * grad.sign()).clamp(0.0, 1.0)
    S1 = saliency(x1.clone().requires_grad_(True))
    mass1 = S1.flatten(1).gather(1, top).sum(1)
    return {"delta": x1 - x.detach(), "mass_before": mass0.detach(), "mass_after": mass1.detach(),
            "overlap": topk_overlap(S0.detach(), S1.detach(), k)}
"""

HONEST = {
    # float64 throughout: activations collected in batches, the CAV by Newton's method written out
    # (no scikit-learn), S one input at a time on a float64 copy returned as NumPy, the overlap with
    # NumPy argsort, the attack step on a float64 copy returning NumPy arrays
    "e09_h_float64": {
        "cav_answer": """import copy


def layer_acts(model, layer, X):
    acts = []
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.append(o.detach().double().flatten(1)))
    try:
        with torch.no_grad():
            for s in range(0, len(X), 7):          # in batches of 7
                model(X[s:s + 7])
    finally:
        h.remove()
    return torch.cat(acts)


def train_cav(concept_acts, random_acts):
    # Newton's method on ½‖w‖² + Σ log(1 + exp(−s(w·a + b))) in float64 — no scikit-learn
    A = torch.cat([torch.as_tensor(concept_acts), torch.as_tensor(random_acts)]).double()
    s = torch.cat([torch.ones(len(concept_acts)), -torch.ones(len(random_acts))]).double()
    Z = torch.cat([A, torch.ones(len(A), 1, dtype=torch.float64)], 1)
    R = torch.eye(Z.shape[1], dtype=torch.float64)
    R[-1, -1] = 0.0                                 # the intercept is not penalised
    theta = torch.zeros(Z.shape[1], dtype=torch.float64)
    for _ in range(100):
        p = torch.sigmoid(-s * (Z @ theta))
        grad = R @ theta - Z.T @ (s * p)
        H = R + Z.T @ (Z * (p * (1 - p))[:, None])
        step = torch.linalg.solve(H, grad)
        theta = theta - step
        if float(step.abs().max()) < 1e-12:
            break
    w = theta[:-1]
    return (w / w.norm()).numpy()


def directional_derivatives(model, layer, cav, X, target):
    m64 = copy.deepcopy(model).double()
    v = torch.as_tensor(cav).double().reshape(-1)
    out = []
    for x in X.double():                            # one input at a time
        store = {}
        h = dict(m64.named_modules())[layer].register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            y = m64(x[None].requires_grad_(True))[0, target]
        finally:
            h.remove()
        (g,) = torch.autograd.grad(y, store["a"])
        out.append(float(g.reshape(-1) @ v))
    return np.array(out)


def tcav_score_of(model, layer, cav, X, target):
    return np.mean(directional_derivatives(model, layer, cav, X, target) > 0)
""",
        "attack_answer": """import copy


def topk_overlap(a, b, k):
    a = np.asarray(torch.as_tensor(a).detach(), dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(torch.as_tensor(b).detach(), dtype=np.float64).reshape(len(b), -1)
    ta, tb = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
    return np.array([len(np.intersect1d(ta[n], tb[n])) / k for n in range(len(a))])


def topk_attack_step(model, x, target, k, eps):
    if eps <= 0 or k < 1 or k > x.shape[-1] * x.shape[-2]:
        raise ValueError("eps must be > 0 and 1 <= k <= H*W")
    m = copy.deepcopy(model).double()               # everything in float64
    def smap(z, graph):
        (g,) = torch.autograd.grad(m(z)[:, target].sum(), z, create_graph=graph)
        s = g.abs().sum(1)
        return s / s.sum((1, 2), keepdim=True)
    z = x.double().detach().requires_grad_(True)
    S0 = smap(z, True)
    B = torch.argsort(S0.detach().flatten(1), dim=1, descending=True)[:, :k]
    M0 = torch.gather(S0.flatten(1), 1, B).sum(1)
    (gm,) = torch.autograd.grad(M0.sum(), z)
    x1 = torch.clamp(x.double() - eps * torch.sign(gm), 0, 1)
    S1 = smap(x1.requires_grad_(True), False).detach()
    M1 = torch.gather(S1.flatten(1), 1, B).sum(1)
    return {"delta": (x1 - x.double()).detach().numpy(), "mass_before": M0.detach().numpy(),
            "mass_after": M1.numpy(), "overlap": topk_overlap(S0.detach(), S1, k)}
""",
        # the t-test in pure Python floats: the tail by the incomplete beta function, constants by set()
        "ttest_answer": """import math


def welch_ttest(scores, random_scores):
    from scipy.special import betainc
    s = [float(v) for v in scores]
    r = [float(v) for v in random_scores]
    if min(len(s), len(r)) < 2:
        raise ValueError("need at least two scores per list")
    ms, mr = sum(s) / len(s), sum(r) / len(r)
    if len(set(s)) == 1 and len(set(r)) == 1:
        return {"t": math.nan, "dof": math.nan, "p": 1.0 if ms == mr else 0.0}
    a = sum((v - ms) ** 2 for v in s) / (len(s) - 1) / len(s)
    b = sum((v - mr) ** 2 for v in r) / (len(r) - 1) / len(r)
    t = (ms - mr) / math.sqrt(a + b)
    nu = (a + b) ** 2 / (a * a / (len(s) - 1) + b * b / (len(r) - 1))
    return {"t": t, "dof": nu, "p": float(betainc(nu / 2, 0.5, nu / (nu + t * t)))}


def bonferroni(p_values, alpha):
    return np.array([p * len(p_values) < alpha for p in p_values], dtype=bool)
"""},

    # the forward stopped at the layer, scikit-learn's newton-cholesky solver, S by grad_outputs and
    # einsum, a vectorised overlap (scatter/gather), the attack step one image at a time
    "e09_h_vectorised": {
        "cav_answer": """class _Stop(Exception):
    pass


def layer_acts(model, layer, X):
    # stop the forward pass at the layer: nothing after it is computed
    found = {}
    def hook(m, i, o):
        found["a"] = o
        raise _Stop
    h = dict(model.named_modules())[layer].register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(X)
    except _Stop:
        pass
    finally:
        h.remove()
    return found["a"].flatten(1).clone()


def train_cav(concept_acts, random_acts):
    from sklearn.linear_model import LogisticRegression
    A = np.concatenate([np.asarray(concept_acts, dtype=np.float64), np.asarray(random_acts, dtype=np.float64)])
    y = np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))].astype(int)
    clf = LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-8, max_iter=500).fit(A, y)
    w = torch.from_numpy(clf.coef_[0])
    return w / torch.linalg.vector_norm(w)


def directional_derivatives(model, layer, cav, X, target):
    acts = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: acts.update(a=o))
    try:
        out = model(X.clone().requires_grad_(True))
    finally:
        h.remove()
    onehot = torch.zeros_like(out)
    onehot[:, target] = 1.0
    (g,) = torch.autograd.grad(out, acts["a"], grad_outputs=onehot)
    return torch.einsum("nd,d->n", g.flatten(1), cav.to(g.dtype))


def tcav_score_of(model, layer, cav, X, target):
    S = directional_derivatives(model, layer, cav, X, target)
    return (S > 0).sum().item() / len(S)
""",
        "attack_answer": """def topk_overlap(a, b, k):
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    in_a = torch.zeros(a.shape, dtype=torch.bool).scatter_(1, a.topk(k, dim=1).indices, True)
    return in_a.gather(1, b.topk(k, dim=1).indices).sum(1).double() / k


def topk_attack_step(model, x, target, k, eps):
    if eps <= 0:
        raise ValueError("eps must be > 0")
    if not 0 < k <= x[0, 0].numel():
        raise ValueError("k out of range")
    deltas, before, after, overlaps = [], [], [], []
    for xi in x:                                    # one image at a time
        z = xi[None].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[0, target], z, create_graph=True)
        S = g[0].abs().sum(0).flatten()
        S = S / S.sum()
        B = S.detach().argsort(descending=True)[:k]
        m0 = S[B].sum()
        (gm,) = torch.autograd.grad(m0, z)
        x1 = (xi - eps * gm[0].sign()).clamp(0, 1)
        z1 = x1[None].clone().requires_grad_(True)
        (g1,) = torch.autograd.grad(model(z1)[0, target], z1)
        S1 = g1[0].abs().sum(0).flatten()
        S1 = S1 / S1.sum()
        deltas.append(x1 - xi)
        before.append(m0.detach())
        after.append(S1[B].sum())
        overlaps.append(topk_overlap(S.detach()[None], S1[None], k)[0])
    return {"delta": torch.stack(deltas).detach(), "mass_before": torch.stack(before),
            "mass_after": torch.stack(after), "overlap": torch.stack(overlaps)}
""",
        # the t-test in torch float64, the two-sided tail by integrating the t density (no betainc)
        "ttest_answer": """def welch_ttest(scores, random_scores):
    import math
    s = torch.as_tensor(np.asarray(scores, dtype=np.float64)).reshape(-1)
    r = torch.as_tensor(np.asarray(random_scores, dtype=np.float64)).reshape(-1)
    if len(s) < 2 or len(r) < 2:
        raise ValueError("at least 2 scores per list")
    if bool((s == s[0]).all()) and bool((r == r[0]).all()):
        return {"t": float("nan"), "dof": float("nan"), "p": 0.0 if bool(s[0] != r[0]) else 1.0}
    a, b = s.var(unbiased=True) / len(s), r.var(unbiased=True) / len(r)
    t = float((s.mean() - r.mean()) / torch.sqrt(a + b))
    nu = float((a + b) ** 2 / (a ** 2 / (len(s) - 1) + b ** 2 / (len(r) - 1)))
    # P(|T| >= |t|) = 2 * integral of the t density from |t| to infinity; x = tan(u) maps it to a finite interval
    logc = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(nu * math.pi)
    u = torch.linspace(math.atan(abs(t)), math.pi / 2, 400001, dtype=torch.float64)[:-1]
    x = torch.tan(u)
    dens = torch.exp(logc - (nu + 1) / 2 * torch.log1p(x * x / nu)) / torch.cos(u) ** 2
    tail = torch.trapezoid(dens, u).item()
    return {"t": t, "dof": nu, "p": 2 * tail}


def bonferroni(p_values, alpha):
    p = torch.as_tensor(np.asarray(p_values, dtype=np.float64))
    return (p < alpha / p.numel()).numpy()
"""},

}

LIBRARY = {  # reference libraries, by routes a list of forbidden functions would miss
    # captum's layer attributions: the activations and the gradient at the layer (× nothing)
    "e09_lib_captum_layers": {"cav_answer": """
from captum.attr import LayerActivation as _LA, LayerGradientXActivation as _LGXA


def layer_acts(model, layer, X):
    return _LA(model, dict(model.named_modules())[layer]).attribute(X).reshape(len(X), -1).detach()
""" + _SKLEARN_CAV + """

def directional_derivatives(model, layer, cav, X, target):
    g = _LGXA(model, dict(model.named_modules())[layer], multiply_by_inputs=False).attribute(X, target=target)
    return (g.reshape(len(X), -1) @ cav.to(g)).detach()


def tcav_score_of(model, layer, cav, X, target):
    return float((directional_derivatives(model, layer, cav, X, target) > 0).float().mean())
"""},
    # captum's TCAV and CAV classes: the CAV from captum's classifier, the score from TCAV.interpret
    # with that CAV injected (as tests/test_concepts.py does)
    "e09_lib_captum_tcav": {"cav_answer": """
import tempfile as _tf
import captum.concept as _cc
from captum.concept._utils.classifier import Classifier as _Clf, DefaultClassifier as _DC


def layer_acts(model, layer, X):
    store = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        with torch.no_grad():
            model(X)
    finally:
        h.remove()
    return store["a"].flatten(1).detach()


def train_cav(concept_acts, random_acts):
    X = torch.cat([concept_acts, random_acts]).float()
    y = torch.cat([torch.zeros(len(concept_acts)), torch.ones(len(random_acts))]).long()
    clf = _DC()
    clf.train_and_eval(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=len(X)))
    cav = _cc.CAV([_cc.Concept(0, "c", None), _cc.Concept(1, "r", None)], "layer", {"weights": clf.weights()})
    w = cav.stats["weights"][0]
    return (w / w.norm()).detach()


def directional_derivatives(model, layer, cav, X, target):
    store = {}
    h = dict(model.named_modules())[layer].register_forward_hook(lambda m, i, o: store.update(a=o))
    try:
        out = model(X.clone().requires_grad_(True))
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out[:, target].sum(), store["a"])
    return (g.flatten(1) @ cav.to(g)).detach()


def tcav_score_of(model, layer, cav, X, target):
    class Fixed(_Clf):
        def __init__(self):
            pass
        def train_and_eval(self, dataloader, **kw):
            return {"accs": torch.tensor(1.0)}
        def weights(self):
            return torch.stack([cav, -cav])
        def classes(self):
            return [0, 1]
    tc = _cc.TCAV(model, [layer], classifier=Fixed(), save_path=_tf.mkdtemp())
    out = tc.interpret(X, [[_cc.Concept(0, "c", [X[:5]]), _cc.Concept(1, "r", [X[5:10]])]], target=target)
    return float(out["0-1"][layer]["sign_count"][0])
"""},
    # the course package for both tasks (moved here from test_course.py's LIBRARY_ANSWERS)
    "e09_lib_package": {
        "cav_answer": """
from xaicourse.concepts import layer_activations as _la, directional_derivatives as _dd, tcav_score as _ts
from xaicourse.concepts import _fit_logistic as _fl


def layer_acts(model, layer, X):
    return _la(model, layer, X)


def train_cav(concept_acts, random_acts):
    A = torch.cat([concept_acts, random_acts]).double().numpy()
    w = _fl(A, np.r_[np.ones(len(concept_acts)), np.zeros(len(random_acts))], 1.0).coef_[0]
    return torch.tensor(w / np.linalg.norm(w))


def directional_derivatives(model, layer, cav, X, target):
    return _dd(model, layer, cav, X, target)


def tcav_score_of(model, layer, cav, X, target):
    return _ts(model, layer, cav, X, target)
""",
        "attack_answer": """
from xaicourse.robustness import topk_intersection as _ti, attribution_map as _am


def topk_overlap(a, b, k):
    return _ti(a, b, k)


def topk_attack_step(model, x, target, k, eps):
    if not eps > 0 or not 1 <= k <= x.shape[-2] * x.shape[-1]:
        raise ValueError("eps must be > 0 and 1 <= k <= H*W")
    def S(z, graph):
        m = _am("gradient", model, z, target, create_graph=graph)
        return m / m.flatten(1).sum(1).view(-1, 1, 1)
    x0 = x.detach().clone().requires_grad_(True)
    S0 = S(x0, True)
    top = torch.topk(S0.detach().flatten(1), k, dim=1).indices
    m0 = S0.flatten(1).gather(1, top).sum(1)
    (g,) = torch.autograd.grad(m0.sum(), x0)
    x1 = (x - eps * g.sign()).clamp(0, 1).detach()
    S1 = S(x1, False)
    return {"delta": x1 - x, "mass_before": m0.detach(), "mass_after": S1.flatten(1).gather(1, top).sum(1),
            "overlap": _ti(S0.detach(), S1, k)}
"""},
    # scipy's Welch t-test (and its t distribution) for the whole task
    "e09_lib_scipy_ttest": {"ttest_answer": """
from scipy import stats as _st


def welch_ttest(scores, random_scores):
    s, r = np.asarray(scores, dtype=np.float64), np.asarray(random_scores, dtype=np.float64)
    if len(s) < 2 or len(r) < 2:
        raise ValueError("need two scores")
    if np.ptp(s) == 0 and np.ptp(r) == 0:
        return {"t": float("nan"), "dof": float("nan"), "p": 0.0 if s.mean() != r.mean() else 1.0}
    res = _st.ttest_ind(s, r, equal_var=False)
    vs, vr = s.var(ddof=1) / len(s), r.var(ddof=1) / len(r)
    return {"t": float(res.statistic), "dof": float((vs + vr) ** 2 / (vs ** 2 / (len(s) - 1) + vr ** 2 / (len(r) - 1))),
            "p": float(res.pvalue)}


def bonferroni(p_values, alpha):
    return np.asarray(p_values) < alpha / len(p_values)
"""},
    # quantus's top-k intersection against the mask of b's top k
    "e09_lib_quantus": {"attack_answer": """
def topk_overlap(a, b, k):
    from quantus.metrics.localisation.top_k_intersection import TopKIntersection
    a2 = a.reshape(len(a), -1).double().numpy()
    b2 = b.reshape(len(b), -1).double().numpy()
    mask = np.zeros(b2.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(-b2, axis=1)[:, :k], True, axis=1)
    m = TopKIntersection(k=k, normalise=False, abs=False, disable_warnings=True)
    return torch.as_tensor(np.asarray(m.evaluate_batch(a_batch=a2, s_batch=mask), dtype=np.float64))
""" + _ATTACK_STEP},
    # the gradient of the gradient by torch.func (nested grad)
    "e09_lib_func": {"attack_answer": """
from torch.func import grad as _grad


def topk_overlap(a, b, k):
    ia, ib = a.flatten(1).topk(k, dim=1).indices, b.flatten(1).topk(k, dim=1).indices
    return torch.tensor([len(set(ia[n].tolist()) & set(ib[n].tolist())) / k for n in range(len(a))])


def topk_attack_step(model, x, target, k, eps):
    if not eps > 0 or not 1 <= k <= x.shape[-2] * x.shape[-1]:
        raise ValueError("eps must be > 0 and 1 <= k <= H*W")
    def S(z):
        m = _grad(lambda u: model(u)[:, target].sum())(z).abs().sum(1)
        return m / m.flatten(1).sum(1).view(-1, 1, 1)
    S0 = S(x)
    top = S0.flatten(1).topk(k, dim=1).indices
    g = _grad(lambda z: S(z).flatten(1).gather(1, top).sum())(x)
    x1 = (x - eps * g.sign()).clamp(0, 1)
    S1 = S(x1)
    return {"delta": (x1 - x).detach(), "mass_before": S0.flatten(1).gather(1, top).sum(1).detach(),
            "mass_after": S1.flatten(1).gather(1, top).sum(1).detach(), "overlap": topk_overlap(S0, S1, k)}
"""},
}

CHEATS = {  # the generic families, each on at least one task, every task attacked by at least one
    "e09_cheat_refs": {"cav_answer": attacks.refs(NAMES["cav_answer"]),
                       "ttest_answer": attacks.refs(NAMES["ttest_answer"])},
    "e09_cheat_subclass": {"cav_answer": attacks.subclass(NAMES["cav_answer"]),
                           "attack_answer": attacks.subclass(NAMES["attack_answer"])},
    # one rebinding cell only: a second one wraps the first one's wrapper of the call agent through
    # the same global `_real`, an endless recursion that times every task out (the whole exercise 0,
    # the student's own doing, no extra coverage; test 07 says the same)
    "e09_cheat_rebind": {"attack_answer": attacks.rebind(NAMES["attack_answer"])},
    "e09_cheat_files": {"cav_answer": attacks.trusted_files(NAMES["cav_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e09_cheat_files":
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
    attacked = {TASK[a] for a in {**LIBRARY, **CHEATS}[student]}
    for task in attacked:
        assert _task_points(row, task) == 0.0, (task, row)
    # the other task was answered honestly and keeps its points
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in attacked), row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY))
def test_library_routes_are_flagged(grades, student):
    row = grades[student]
    assert row["status"].startswith("flagged"), row
    for task in {TASK[a] for a in LIBRARY[student]}:
        assert f"{task}=flagged" in row["tasks"], row


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e09_cheat_files" in grades
    assert attacks.marker_absent()
