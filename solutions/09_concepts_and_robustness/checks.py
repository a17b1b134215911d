"""Hidden checks of exercise 09 (trusted: run by the grader, never inside the student's sandbox).

Task 1 asks for the pieces of TCAV on this student's own concept and random sets (a trigger of
their own size, corner and brightness on their own digits), their own layers and classes, of a
backdoored CNN trained here and of a randomly initialised CNN of their own width: the layer's
activations, the CAV, the per-input directional derivatives S(x) and the TCAV score. Task 2 asks
for the top-k overlap and for ONE step of the top-k attack on explanations with its intermediate
numbers (the perturbation δ, the top-k mass before and after, the overlap) on smooth networks of
this student's own. Task 3 asks for Welch's t-test (t, ν, p) on this student's own lists of TCAV-like
scores — lengths, effect sizes, containers and the constant-list conventions — and for Bonferroni's
correction of their own p-values; scipy.stats is ruled out there. References are computed here;
the kernel only ever sees inputs.

Numerical care (so that honest work in float32 or float64 earns full marks):

* A ReLU network's gradient jumps where a unit's pre-activation crosses 0 or a max-pool's winner
  changes. Inputs whose reference sits within ``MARGIN`` of such a kink (above the layer) are not
  used: there a float32 and a float64 computation could legitimately take different sides.
* A TCAV score counts signs: inputs with ``|S(x)|`` below ``S_MARGIN`` of the largest are not used.
* The attack step takes sign(∇M): the perturbation is compared where ``|∇M|`` is above
  ``SIGN_MARGIN`` of its largest entry (elsewhere either sign is accepted), and ``k`` is chosen
  where the k-th and (k+1)-th entries of both maps are apart (no near-tie decides the top-k set).
"""
import copy
import math
import threading

import numpy as np
import torch
from torch import nn

from xaicourse.checking import Failed, close, task

# the reference libraries and every module of the course package that computes activations, layer
# gradients, CAVs, TCAV, saliency maps, attacks or top-k overlaps (the set-up cells are locked
# read-only cells, so their own imports of xaicourse.models / .data / .robustness are not scanned)
RULED_OUT = ["captum", "quantus", "xaicourse.concepts", "xaicourse.robustness", "xaicourse.attribution",
             "xaicourse.metrics", "xaicourse.evaluation", "xaicourse.constraints", "xaicourse._torch", "xaicourse.maps", "xaicourse.featurevis",
             "xaicourse.widgets", "xaicourse.checking", "torch.func", "torch.autograd.functional"]
FORBIDDEN = {"cav_answer": RULED_OUT, "attack_answer": RULED_OUT,
             "ttest_answer": RULED_OUT + ["scipy.stats", "statsmodels", "pingouin"]}

LAYERS = ("relu1", "pool1", "relu2", "conv3", "gmp", "fc1", "relu4")
CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")
MARGIN = 1e-4        # |pre-activation| and max-pool gap kept away from a kink (float32 errors are ~1e-6)
S_MARGIN = 1e-4      # |S(x)| ≥ S_MARGIN·max|S| for the inputs of a TCAV score
SIGN_MARGIN = 1e-4   # entries of ∇M that decide the attack's sign: |∇M| ≥ SIGN_MARGIN·max|∇M| (per image)
GAP = 1e-3           # the k-th and (k+1)-th largest map entries differ by ≥ GAP·(k-th) (no near-tie)
COS_MIN = 0.995      # cos(v, v_ref) of an honest CAV: sklearn's default stopping rule gives ≥ 0.9995

_lock = threading.Lock()
_cache = {}


# ----------------------------------------------------------------------------- the models
def _split():
    with _lock:
        if "split" not in _cache:
            from xaicourse.data import load_digits_tensors
            _cache["split"] = load_digits_tensors()
        return _cache["split"]


def _backdoored():
    """The notebook's backdoored digits CNN (the same recipe), trained once here and cached."""
    split = _split()
    with _lock:
        if "cnn" not in _cache:
            from xaicourse.data_attribution.poison import plant_backdoor
            from xaicourse.models import SmallCNN, train
            bd = plant_backdoor(split.X_train[:700], split.y_train[:700], 40, target_class=0, size=2, seed=0)
            _cache["cnn"] = train(SmallCNN(1, 10, width=16), bd.inputs, bd.labels, epochs=10, lr=3e-3, seed=0,
                                  device="cpu", cache=True, progress=False, tag="ex09-checks").model.eval()
        return _cache["cnn"]


def prepare():
    _backdoored()


def _random_cnn(g: torch.Generator, width: int, hidden: int):
    """A SmallCNN with this student's random weights (thread-safe: no global RNG)."""
    from xaicourse.models import SmallCNN

    m = SmallCNN(1, 10, width=width, hidden=hidden)
    with torch.no_grad():
        for p in m.parameters():
            std = 1.0 / math.sqrt(p[0].numel()) if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m.eval()


# ----------------------------------------------------------------------------- TCAV references
def _acts(model, layer, X):
    mod = dict(model.named_modules())[layer]
    store = {}
    h = mod.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        with torch.no_grad():
            model(X)
    finally:
        h.remove()
    return store["a"].reshape(len(X), -1).detach()


def _dd(model, layer, v, X, target):
    """S(x) = ∇h_{l,k}(f_l(x)) · v, in the dtype of ``model`` and ``X``."""
    mod = dict(model.named_modules())[layer]
    store = {}
    h = mod.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        out = model(X.detach().clone().requires_grad_(True))
    finally:
        h.remove()
    (g,) = torch.autograd.grad(out[:, target].sum(), store["a"])
    return (g.reshape(len(X), -1) @ v.to(g)).detach()


def _margins(model, layer, X):
    """Per input: the distance (float64) to the nearest kink above ``layer`` — a ReLU input near 0,
    or a max-pool window whose two largest entries are close (exact ties are the same in any dtype)."""
    names = [n for n, _ in model.named_modules() if n]
    above = names[names.index(layer) + 1:]
    mods = dict(model.named_modules())
    seen = {}
    hooks = [mods[n].register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, i[0].detach()))
             for n in above if isinstance(mods[n], (nn.ReLU, nn.MaxPool2d, nn.AdaptiveMaxPool2d))]
    try:
        with torch.no_grad():
            model(X)
    finally:
        for h in hooks:
            h.remove()
    out = torch.full((len(X),), math.inf, dtype=torch.float64)
    for n, z in seen.items():
        z = z.double()
        if isinstance(mods[n], nn.ReLU):
            m = z.abs().flatten(1).amin(1)
        else:
            if isinstance(mods[n], nn.MaxPool2d):
                w = nn.functional.unfold(z.flatten(0, 1)[:, None], 2, stride=2)    # (N·C, 4, windows)
                w = w.reshape(len(z), -1, 4, w.shape[-1]).transpose(2, 3).reshape(len(z), -1, 4)
            else:
                w = z.flatten(2)                                                   # (N, C, H·W)
            top = torch.topk(w, 2, dim=-1).values
            gap = top[..., 0] - top[..., 1]
            gap = torch.where(gap == 0, torch.full_like(gap, math.inf), gap)
            m = gap.flatten(1).amin(1)
        out = torch.minimum(out, m)
    return out


def _stable(model, layer, X, n, v=None, target=None):
    """(``model`` in float64) The first ``n`` inputs of ``X`` away from every kink above ``layer`` (and, given ``v`` and
    ``target``, with |S| away from 0)."""
    keep = _margins(model, layer, X.double()) >= MARGIN
    if v is not None:
        S = _dd(model, layer, v.double(), X.double(), target)
        keep &= (S.abs() >= S_MARGIN * S.abs().max()) | (S == 0)
    idx = torch.nonzero(keep).flatten()[:n]
    if len(idx) < n:
        raise RuntimeError(f"only {len(idx)} stable inputs of {len(X)}")  # a grading error, never the student's
    return X[idx]


def _cav_ref(A_c, A_r):
    """The exact minimiser of ½‖w‖² + C·Σ log-loss (C = 1, free intercept), normalised."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    A = torch.cat([A_c, A_r]).double().numpy()
    y = np.r_[np.ones(len(A_c)), np.zeros(len(A_r))]
    with threadpool_limits(1):
        w = LogisticRegression(C=1.0, max_iter=20000, tol=1e-10).fit(A, y).coef_[0]
    return torch.tensor(w / np.linalg.norm(w))


def _unit(g, D):
    return nn.functional.normalize(torch.randn(D, generator=g, dtype=torch.float64), dim=0)


def _no_grad(info, what):
    if info and info[0]["requires_grad"]:
        raise Failed(f"{what} must return a detached tensor (requires_grad=False)")


def _vec(v, what):
    """A returned vector as a float64 tensor (a tensor, an array or a list of numbers)."""
    if isinstance(v, torch.Tensor):
        return v.double().reshape(v.shape)
    try:
        return torch.as_tensor(np.asarray(v, dtype=np.float64))
    except (TypeError, ValueError):
        raise Failed(f"{what}: expected a tensor of numbers, got {type(v).__name__}") from None


@task("cav_tests")
def cav(k):
    split = _split()
    cnn = copy.deepcopy(_backdoored())           # own copies: hooks and dtypes are per check (threads)
    rng, g = k.rng("cav"), k.generator("cav")
    # this student's concept (a trigger of their own size, corner, value on their own digits) and random set
    size, corner, value = int(rng.integers(2, 4)), k.choice(CORNERS, "corner"), round(float(rng.uniform(0.7, 1.0)), 3)
    pool = rng.permutation(len(split.X_test))
    n_c, n_r = int(rng.integers(24, 37)), int(rng.integers(24, 37))
    concept = _add_trigger(split.X_test[pool[:n_c]], size, value, corner)
    random_ = split.X_train[rng.choice(len(split.X_train), n_r, replace=False)]
    l1, l2 = (str(s) for s in rng.choice(LAYERS, 2, replace=False))
    l3 = str(rng.choice(LAYERS))
    small = _random_cnn(g, k.choice([4, 6, 8], "width"), k.choice([16, 24, 32], "hidden"))
    cnn64, small64 = _double_copy(cnn), _double_copy(small)
    m_cnn, m_small = k.module(cnn), k.module(small)

    # 1. the layer's activations (continuous in the input: no kink issue)
    for model, spec, layer, X in ((cnn64, m_cnn, l1, concept), (cnn64, m_cnn, l2, random_),
                                  (small64, m_small, l3, concept)):
        got, info = k.call("layer_acts", spec, layer, X, meta=True)
        _no_grad(info, "layer_acts")
        close(got, _acts(model, layer, X.double()), atol=1e-5, rtol=1e-5, what=f"layer_acts at {layer!r}")

    # 2. the CAV on this student's activations (float32 at l1, float64 on the other CNN)
    A_c, A_r = _acts(cnn, l1, concept), _acts(cnn, l1, random_)
    for a_c, a_r, what in ((A_c, A_r, f"train_cav at {l1!r}"),
                           (_acts(small64, l3, concept.double()), _acts(small64, l3, random_.double()),
                            f"train_cav at {l3!r} of another CNN (float64 activations)")):
        ref = _cav_ref(a_c, a_r)
        v = _vec(k.call("train_cav", a_c, a_r), what)
        if tuple(v.shape) != tuple(ref.shape):
            raise Failed(f"{what}: shape {tuple(v.shape)}, expected {tuple(ref.shape)}")
        if not bool(torch.isfinite(v).all()) or abs(float(v.norm()) - 1) > 1e-4:
            raise Failed(f"{what}: not a unit vector (norm {float(v.norm()):.6g})")
        c = float(v @ ref)
        if c < COS_MIN:
            raise Failed(f"{what}: cos(v, v_ref) = {c:.4f} < {COS_MIN} — is it the logistic regression of the task "
                         f"(C = 1, intercept, all rows, label 1 = concept)?")
    v1 = _cav_ref(A_c, A_r).float()

    # 3. directional derivatives: this student's class, inputs away from kinks; the CAV and random directions
    t1 = int(rng.integers(0, 10))
    cand, cand_y = split.X_test[pool[n_c:]], split.y_test[pool[n_c:]]
    zeros = cand[cand_y == 0]
    X1 = _stable(cnn64, l1, zeros, 12)
    X2 = _stable(cnn64, l2, cand, 16)
    X3 = _stable(small64, l3, cand, 12)
    v2 = _unit(g, _acts(cnn, l2, X2[:1]).shape[1])
    v3 = _unit(g, _acts(small, l3, X3[:1]).shape[1])
    for model, spec, layer, v, X, t in ((cnn64, m_cnn, l1, v1, X1, 0), (small64, m_small, l3, v3.float(), X3, t1)):
        got = k.call("directional_derivatives", spec, layer, v, X, t)
        ref = _dd(model, layer, v.double(), X.double(), t)
        close(got, ref, atol=1e-5 * max(1.0, float(ref.abs().max())), rtol=1e-4,
              what=f"directional_derivatives at {layer!r} for class {t}")
    got = k.call("directional_derivatives", k.module(cnn64), l2, v2, X2.double(), t1)
    ref = _dd(cnn64, l2, v2, X2.double(), t1)
    close(got, ref, atol=1e-9 * max(1.0, float(ref.abs().max())), rtol=1e-7,
          what=f"directional_derivatives in float64 at {l2!r} for class {t1}")

    # 4. TCAV scores: the trigger's CAV for class 0 on class-0 digits, its opposite, random directions
    for model, spec, layer, v, X, t in ((cnn64, m_cnn, l1, v1, zeros, 0), (cnn64, m_cnn, l1, -v1, zeros, 0),
                                        (cnn64, m_cnn, l2, v2.float(), cand, t1),
                                        (small64, m_small, l3, v3.float(), cand, t1)):
        Xs = _stable(model, layer, X, 10, v, t)
        want = float((_dd(model, layer, v.double(), Xs.double(), t) > 0).double().mean())
        got = k.call("tcav_score_of", spec, layer, v, Xs, t)
        close(got, want, atol=1e-6, shape=False, what=f"tcav_score_of at {layer!r} for class {t}")


def _double_copy(model):
    return copy.deepcopy(model).double()


def _add_trigger(images, size, value, corner):
    from xaicourse.data_attribution.poison import add_trigger
    return add_trigger(images, size=size, value=value, corner=corner)


# ----------------------------------------------------------------------------- the attack step
def _smooth_net(g, d_in, hidden, n_out, second):
    """Flatten → Linear → Softplus → Linear → (Tanh|Softplus) → Linear, this student's weights."""
    layers = [nn.Flatten(), nn.Linear(d_in, hidden), nn.Softplus(), nn.Linear(hidden, hidden // 2),
              getattr(nn, second)(), nn.Linear(hidden // 2, n_out)]
    with torch.no_grad():
        for m in layers:
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 1.5 / math.sqrt(m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
    return layers


def _saliency(model, z, target, create_graph):
    (gr,) = torch.autograd.grad(model(z)[:, target].sum(), z, create_graph=create_graph)
    m = gr.abs().sum(1)
    return m / m.flatten(1).sum(1).view(-1, 1, 1)


def _step_ref(model, x, target, k, eps):
    """S(x), ∇M(x), top-k set B, and x + δ, all in float64."""
    x0 = x.double().detach().clone().requires_grad_(True)
    S0 = _saliency(model, x0, target, True)
    top = torch.topk(S0.detach().flatten(1), k, dim=1).indices
    M0 = S0.flatten(1).gather(1, top).sum(1)
    (gm,) = torch.autograd.grad(M0.sum(), x0)
    x1 = (x.double() - eps * gm.sign()).clamp(0, 1)
    return S0.detach(), gm, top, M0.detach(), x1


def _after(model, x1, target, top):
    S1 = _saliency(model, x1.detach().clone().requires_grad_(True), target, False).detach()
    return S1, S1.flatten(1).gather(1, top).sum(1)


def _gap_ok(S, k):
    v = torch.topk(S.flatten(1), k + 1, dim=1).values if k < S[0].numel() else None
    return v is None or bool(((v[:, k - 1] - v[:, k]) >= GAP * v[:, k - 1]).all())


def _overlap(a, b, k):
    ia, ib = torch.topk(a.flatten(1), k, dim=1).indices, torch.topk(b.flatten(1), k, dim=1).indices
    return torch.tensor([len(set(ia[n].tolist()) & set(ib[n].tolist())) / k for n in range(len(a))],
                        dtype=torch.float64)


@task("attack_tests")
def attack(k):
    rng, g = k.rng("attack"), k.generator("attack")
    # 1. top-k overlap of this student's maps: near-copies, reversals, unrelated maps; (N, H, W) and (N, D)
    A = torch.rand(6, 5, 7, generator=g, dtype=torch.float64)
    B = torch.rand(6, 5, 7, generator=g, dtype=torch.float64)
    B[:2] = A[:2] + 0.02 * torch.rand(2, 5, 7, generator=g, dtype=torch.float64)
    B[2] = 1 - A[2]
    for kk in sorted({1, int(rng.integers(2, 9)), int(rng.integers(9, 30)), 35}):
        got = k.call("topk_overlap", A.float(), B.float(), kk)
        close(got, _overlap(A.float(), B.float(), kk), atol=1e-6, what=f"topk_overlap(k={kk}) of (6, 5, 7) maps")
    P, Q = torch.randn(4, 50, generator=g, dtype=torch.float64), torch.randn(4, 50, generator=g, dtype=torch.float64)
    kk = int(rng.integers(3, 20))
    close(k.call("topk_overlap", P, Q, kk), _overlap(P, Q, kk), atol=1e-6, what=f"topk_overlap(k={kk}) of (4, 50) maps")

    # 2. one step of the top-k attack on two smooth nets of this student's: digits (float32), RGB (float64)
    split = _split()
    cases = []
    idx = torch.as_tensor(rng.choice(len(split.X_test), 5, replace=False))
    net1 = _smooth_net(g, 64, k.choice([32, 40, 48], "h1"), 10, "Tanh")
    cases.append((net1, split.X_test[idx], int(rng.integers(0, 10)), float(np.round(rng.uniform(0.02, 0.08), 3)), False))
    net2 = _smooth_net(g, 3 * 6 * 6, k.choice([24, 32], "h2"), 5, "Softplus")
    x2 = torch.rand(4, 3, 6, 6, generator=g, dtype=torch.float64)
    cases.append((net2, x2, int(rng.integers(0, 5)), float(np.round(rng.uniform(0.02, 0.08), 3)), True))
    for layers, x, t, eps, double in cases:
        model = copy.deepcopy(nn.Sequential(*layers)).double()
        HW = x.shape[-2] * x.shape[-1]
        kk = None
        for j in (int(j) for j in rng.permutation(np.arange(3, HW // 3))):
            S0, gm, top, M0, x1 = _step_ref(model, x, t, j, eps)
            if _gap_ok(S0, j) and _gap_ok(_after(model, x1, t, top)[0], j):
                kk = j
                break
        if kk is None:
            raise RuntimeError("no k without a near-tie")     # a grading error, never the student's
        spec = k.sequential(*[_copy(m, double) for m in layers])
        got = k.call("topk_attack_step", spec, x.double() if double else x.float(), t, kk, eps)
        what = f"topk_attack_step(k={kk}, eps={eps}) on {tuple(x.shape)} {'float64' if double else 'float32'} images"
        if not isinstance(got, dict) or not {"delta", "mass_before", "mass_after", "overlap"} <= set(got):
            raise Failed(f"{what}: return a dict with the keys 'delta', 'mass_before', 'mass_after', 'overlap'")
        d = got["delta"]
        d = torch.as_tensor(np.asarray(d)) if not isinstance(d, torch.Tensor) else d
        if tuple(d.shape) != tuple(x.shape):
            raise Failed(f"{what}: delta has shape {tuple(d.shape)}, expected {tuple(x.shape)}")
        d = d.double()
        want_d = x1 - x.double()
        sure = gm.abs() >= SIGN_MARGIN * gm.abs().flatten(1).amax(1).view(-1, 1, 1, 1)
        close(torch.where(sure, d, want_d), want_d, atol=1e-6, what=f"{what}: delta")
        xs = x.double() + d
        if float(d.abs().max()) > eps + 1e-6 or float(xs.min()) < -1e-6 or float(xs.max()) > 1 + 1e-6:
            raise Failed(f"{what}: x + delta must stay within eps of x and inside [0, 1]")
        close(got["mass_before"], M0, atol=1e-5, what=f"{what}: mass_before")
        S1, M1 = _after(model, xs.clamp(0, 1), t, top)
        close(got["mass_after"], M1, atol=1e-5, what=f"{what}: mass_after")
        close(got["overlap"], _overlap(S0, S1, kk), atol=1e-6, what=f"{what}: overlap")
    layers, x, t, eps, _ = cases[0]
    spec = k.sequential(*[_copy(m, False) for m in layers])
    k.raises(ValueError, "topk_attack_step", spec, x, t, 5, 0.0)
    k.raises(ValueError, "topk_attack_step", spec, x, t, 5, -eps)
    k.raises(ValueError, "topk_attack_step", spec, x, t, 0, eps)
    k.raises(ValueError, "topk_attack_step", spec, x, t, 65, eps)


def _copy(m, double):
    c = copy.deepcopy(m)
    return c.double() if double else c.float()


# ----------------------------------------------------------------------------- the t-test
def _welch_ref(s, r):
    """(t, ν, p) of the two-sided Welch t-test, float64 — scipy's, trusted side."""
    from scipy.stats import ttest_ind
    s, r = np.asarray(s, dtype=np.float64), np.asarray(r, dtype=np.float64)
    vs, vr = s.var(ddof=1) / len(s), r.var(ddof=1) / len(r)
    dof = (vs + vr) ** 2 / (vs ** 2 / (len(s) - 1) + vr ** 2 / (len(r) - 1))
    import warnings
    with warnings.catch_warnings():          # scipy warns on nearly constant lists; its result is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_ind(s, r, equal_var=False)
    return float(res.statistic), float(dof), float(res.pvalue)


def _scores(rng, n, p):
    """n TCAV-like scores: fractions of a batch of this student's size, around p."""
    N = int(rng.integers(20, 61))
    return rng.binomial(N, p, n) / N


def _ttest_reply(got, what):
    if not isinstance(got, dict) or not {"t", "dof", "p"} <= set(got):
        raise Failed(f"{what}: return a dict with the keys 't', 'dof', 'p'")
    out = {}
    for key in ("t", "dof", "p"):
        v = got[key]
        try:
            out[key] = float(v.reshape(-1)[0]) if hasattr(v, "reshape") and getattr(v, "ndim", 0) else float(v)
        except (TypeError, ValueError, IndexError):
            raise Failed(f"{what}: '{key}' is not a number") from None
    return out


@task("ttest_tests")
def ttest(k):
    rng = k.rng("ttest")
    # 1. this student's score lists: different lengths, containers and effect sizes (one list constant once)
    cases = []
    for j in range(4):
        n_s, n_r = (int(v) for v in rng.integers(4, 16, 2))
        p_s, p_r = float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.2, 0.9))
        if j == 0:
            p_r = p_s                                            # no effect: a large p
        s, r = _scores(rng, n_s, p_s), _scores(rng, n_r, p_r)
        while s.std() == 0 or r.std() == 0:
            s, r = _scores(rng, n_s, p_s), _scores(rng, n_r, p_r)
        cases.append((s, r))
    s = _scores(rng, int(rng.integers(5, 12)), 0.6)
    while s.std() == 0:
        s = _scores(rng, len(s), 0.6)
    cases.append((np.ones(int(rng.integers(4, 10))), s))          # a constant concept list (all scores 1)
    kinds = ["list", "ndarray", "tensor", "tensor64", "list"]
    for (s, r), kind in zip(cases, kinds):
        args = {"list": lambda a: [float(v) for v in a], "ndarray": lambda a: np.asarray(a, dtype=np.float64),
                "tensor": lambda a: torch.tensor(a, dtype=torch.float32),
                "tensor64": lambda a: torch.tensor(a, dtype=torch.float64)}[kind]
        s_in, r_in = args(s), args(r)
        # the reference sees exactly what the student sees (float32 tensors are rounded)
        s_ref = np.asarray(torch.as_tensor(s_in).double()) if kind == "tensor" else np.asarray(s, dtype=np.float64)
        r_ref = np.asarray(torch.as_tensor(r_in).double()) if kind == "tensor" else np.asarray(r, dtype=np.float64)
        t, dof, p = _welch_ref(s_ref, r_ref)
        what = f"welch_ttest of {len(s)} vs {len(r)} scores ({kind})"
        got = _ttest_reply(k.call("welch_ttest", s_in, r_in), what)
        close(got["t"], t, atol=1e-6, rtol=1e-4, shape=False, what=f"{what}: t")
        close(got["dof"], dof, atol=1e-6, rtol=1e-4, shape=False, what=f"{what}: dof")
        close(got["p"], p, atol=1e-9, rtol=1e-4, shape=False, what=f"{what}: p")
    # 2. both constant: the conventions
    c = float(rng.integers(1, 8)) / 8                            # exact in binary: the lists are truly constant
    for s, r, want in (([c] * 4, [c] * 6, 1.0), ([c] * 5, [1.0] * 3, 0.0)):
        got = k.call("welch_ttest", s, r)
        if not isinstance(got, dict) or "p" not in got:
            raise Failed("welch_ttest of two constant lists: return a dict with 'p'")
        close(float(got["p"]), want, atol=0, shape=False, what=f"welch_ttest of two constant lists (means {s[0]}, {r[0]}): p")
    k.raises(ValueError, "welch_ttest", [0.5], [0.4, 0.6, 0.5])
    k.raises(ValueError, "welch_ttest", [0.5, 0.7, 0.6], [0.4])
    # 3. Bonferroni on this student's p-values and alpha
    m = int(rng.integers(8, 40))
    alpha = float(rng.choice([0.01, 0.05, 0.1]))
    pv = np.concatenate([rng.uniform(0, alpha / m, 3) * 0.999, rng.uniform(alpha / m * 1.001, 1.0, m - 3)])
    rng.shuffle(pv)
    got = k.call("bonferroni", pv.tolist(), alpha)
    got = np.asarray(got)
    if got.shape != (m,):
        raise Failed(f"bonferroni of {m} p-values: shape {got.shape}, expected ({m},)")
    if got.dtype != bool:
        raise Failed(f"bonferroni: return a bool array, got dtype {got.dtype}")
    if not np.array_equal(got, pv < alpha / m):
        raise Failed(f"bonferroni of {m} p-values at alpha = {alpha}: wrong entries")
