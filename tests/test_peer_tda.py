"""Training-data attribution against the peers' own tests (captum's ``tests/influence/_core``,
ported to our API, numbers kept) and against ground truths: the objects' caching, their one sign
convention, the scikit-learn estimator rules, and the argument checks of issue #25.

Sign convention checked here: ``attribute(...)[j, i] > 0`` = training point i helped test point j.
"""
import os
import tempfile
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import (METHODS, GradCos, GradDot, InfluenceFunction, RepresenterPoints, TracInCP,
                                        add_trigger, fit, flip_labels, grad_dot, i_up_loss, influence, leave_one_out,
                                        plant_backdoor, recall_at_k, self_influence, tracin_cp)
from xaicourse.models import LogisticRegression

L2 = 1e-2


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def logreg():
    """Lecture 05's setting, smaller: L2-regularised logistic regression on 200 digits, float64,
    trained to the optimum of the objective influence functions assume."""
    sp = load_digits_tensors()
    X, y = sp.X_train[:200].double(), sp.y_train[:200]
    Xt, yt = sp.X_test[:6].double(), sp.y_test[:6]
    torch.manual_seed(0)
    m = LogisticRegression().double()
    fit(m, nn.CrossEntropyLoss(), X, y, l2=L2)
    return m, X, y, Xt, yt


def _coefficient_net(features=1):
    """captum.testing.helpers.influence.common.CoefficientNet: y = W x, no bias."""
    net = nn.Sequential()
    net.add_module("fc1", nn.Linear(features, 1, bias=False))
    return net


def _range_data(features=1):
    """captum's RangeDataset(1, 17, features): x = (k, ..., k), label k, k = 1 … 16."""
    x = torch.arange(1, 17, dtype=torch.float).repeat(features, 1).T.contiguous()
    return x, torch.arange(1, 17, dtype=torch.float)[:, None]


CAPTUM_WEIGHTS = [0.4379, 0.1653, 0.5132, 0.3651, 0.9992]   # captum's checkpoints of CoefficientNet


def _regression_checkpoints(features=1):
    net = _coefficient_net(features)
    cks = []
    for w in CAPTUM_WEIGHTS:
        net.fc1.weight.data.fill_(w)
        cks.append({k: v.clone() for k, v in net.state_dict().items()})
    return net, cks


# ----------------------------------------------------------------------------- captum's TracIn tests
@pytest.mark.parametrize("reduction", ["sum", "mean", "none"])
def test_tracin_regression_1d_numerical(reduction):
    """captum test_tracin_regression_1D_numerical: y = w x, loss (y − x)², label = x. Per checkpoint
    ∇_w ℓ = 2x²(w − 1), so TracInCP(x_i, x_j) = Σ_k 4 x_i² x_j² (w_k − 1)² (learning rate 1)."""
    net, cks = _regression_checkpoints()
    x, y = _range_data()
    tr = TracInCP(net, x, y, checkpoints=cks, learning_rates=1.0, loss_fn=nn.MSELoss(reduction=reduction),
                  batch_size=4)
    S = tr.attribute(x, y)
    w = torch.tensor(CAPTUM_WEIGHTS)
    k = torch.arange(1, 17, dtype=torch.float)
    want = 4 * (k[:, None] ** 2) * (k[None] ** 2) * ((w - 1) ** 2).sum()
    assert torch.allclose(S, want, rtol=1e-5)           # measured max rel. error ≈ 1e-7 (float32)


@pytest.mark.parametrize("features", [1, 20])
def test_tracin_regression_top_proponent_is_largest_gradient(features):
    """captum test_tracin_regression ("check_idx"): every point's top proponent is x = 16 (the largest
    gradient), and the proponent ranking of every test point is sorted by |x|."""
    net, cks = _regression_checkpoints(features)
    x, y = _range_data(features)
    for params in (None, "fc1"):
        tr = TracInCP(net, x, y, checkpoints=cks, learning_rates=1.0, loss_fn=nn.MSELoss(reduction="none"),
                      params=params)
        idx, scores = tr.top_k(x, y, k=len(x), proponents=True)
        assert (idx[:, 0] == 15).all()
        assert all(torch.equal(i, torch.arange(15, -1, -1)) for i in idx)
        assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_tracin_matches_captum_tracincp_and_fast():
    """Same model, checkpoints and data in captum's TracInCP (all layers) and TracInCPFast (last
    layer's weight): equal scores to float32 round-off (tolerance 1e-4 relative)."""
    from captum.influence import TracInCP as CaptumTracInCP
    from captum.influence import TracInCPFast

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))
    X, y = torch.randn(30, 5), torch.randint(0, 3, (30,))
    Xt, yt = torch.randn(4, 5), torch.randint(0, 3, (4,))
    cks, lrs = [], [0.5, 0.25, 0.1]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, lr in enumerate(lrs):
            for p in net.parameters():
                p.data += 0.3 * torch.randn_like(p)
            cks.append({"state_dict": {n: v.clone() for n, v in net.state_dict().items()}, "lr": lr})
            paths.append(os.path.join(tmp, f"ck-{k}.pt"))
            torch.save(cks[-1], paths[-1])

        def load(model, path):
            c = torch.load(path)
            model.load_state_dict(c["state_dict"])
            return c["lr"]

        ref = CaptumTracInCP(net, TensorDataset(X, y), paths, checkpoints_load_func=load,
                             loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=7,
                             sample_wise_grads_per_batch=True).influence((Xt, yt))
        fast = TracInCPFast(net, net[2], TensorDataset(X, y), paths, checkpoints_load_func=load,
                            loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=7).influence((Xt, yt))
        ref_self = CaptumTracInCP(net, TensorDataset(X, y), paths, checkpoints_load_func=load,
                                  loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=7).self_influence()
    ours = TracInCP(net, X, y, checkpoints=cks, batch_size=7)
    S = ours.attribute(Xt, yt)
    assert (S - ref).abs().max() <= 1e-4 * ref.abs().max()
    S_fast = TracInCP(net, X, y, checkpoints=cks, params="2.weight").attribute(Xt, yt)
    assert (S_fast - fast).abs().max() <= 1e-4 * fast.abs().max()
    assert (ours.self_influence() - ref_self).abs().max() <= 1e-4 * ref_self.abs().max()
    # the function is a thin wrapper with the same numbers
    assert torch.allclose(tracin_cp(net, cks, nn.CrossEntropyLoss(), X, y, Xt, yt), S)


def test_tracin_self_influence_is_the_diagonal_and_top_k_is_topk():
    """captum test_tracin_self_influence and test_tracin_k_most_influential."""
    net, cks = _regression_checkpoints(3)
    x, y = _range_data(3)
    tr = TracInCP(net, x, y, checkpoints=cks, learning_rates=[0.1, 0.2, 0.3, 0.4, 0.5],
                  loss_fn=nn.MSELoss())
    S = tr.attribute(x, y)
    assert torch.allclose(tr.self_influence(), torch.diagonal(S), rtol=1e-5)
    idx, sc = tr.top_k(x[:3], y[:3], 4, proponents=False)
    ref = torch.topk(S[:3], 4, dim=1, largest=False)
    assert torch.equal(idx, ref.indices) and torch.allclose(sc, ref.values)


def test_tracin_cache_is_reused():
    net, cks = _regression_checkpoints(2)
    x, y = _range_data(2)
    tr = TracInCP(net, x, y, checkpoints=cks, learning_rates=1.0, loss_fn=nn.MSELoss())
    a = tr.attribute(x[:2], y[:2])
    G = tr.train_gradients()
    b = tr.attribute(x[2:5], y[2:5])
    assert tr.train_gradients() is G and len(G) == len(cks)
    nocache = TracInCP(net, x, y, checkpoints=cks, learning_rates=1.0, loss_fn=nn.MSELoss(), cache=False)
    assert torch.allclose(nocache.attribute(x[2:5], y[2:5]), b) and nocache.train_gradients() is None
    with pytest.warns(RuntimeWarning, match="cache_mb"):
        small = TracInCP(net, x, y, checkpoints=cks, learning_rates=1.0, loss_fn=nn.MSELoss(), cache_mb=0)
        assert torch.allclose(small.attribute(x[:2], y[:2]), a)


def test_grad_dot_and_cos_siblings():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    X, y, Xt, yt = torch.randn(20, 4), torch.randint(0, 3, (20,)), torch.randn(3, 4), torch.randint(0, 3, (3,))
    d = GradDot(net, X, y).attribute(Xt, yt)
    assert torch.allclose(d, grad_dot(net, nn.CrossEntropyLoss(), X, y, Xt, yt))
    c = GradCos(net, X, y).attribute(Xt, yt)
    assert c.abs().max() <= 1 + 1e-6 and torch.allclose(GradCos(net, X, y).self_influence(), torch.ones(20))


# ----------------------------------------------------------------------------- influence functions
def test_influence_matches_captum_naive_influence(logreg):
    """captum's NaiveInfluenceFunction on the same model and data (hessian_reg = n·λ: captum's
    Hessian is of the summed loss) returns attribute / n; measured max |diff| ≈ 1e-12 on values ≈ 1e-2."""
    from captum.influence import NaiveInfluenceFunction

    m, X, y, Xt, yt = logreg
    n = len(X)
    P = sum(p.numel() for p in m.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.pt")
        torch.save(m.state_dict(), path)
        naive = NaiveInfluenceFunction(m, TensorDataset(X, y), path, loss_fn=nn.CrossEntropyLoss(reduction="none"),
                                       batch_size=n, projection_dim=P, hessian_reg=n * L2, hessian_inverse_tol=0.0)
        ref = naive.influence((Xt, yt))
    ours = InfluenceFunction(m, X, y, l2=L2).attribute(Xt, yt) / n
    assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max()


def test_sign_convention_against_leave_one_out(logreg):
    """Ground truth: retrain without point i. attribute / n predicts the rise of the test loss when
    i is removed (positive = i helped); measured Pearson r > 0.99 on the 8 strongest points."""
    m, X, y, Xt, yt = logreg
    inf = InfluenceFunction(m, X, y, l2=L2)
    s = inf.attribute(Xt[:1], yt[:1])[0]
    top = s.abs().argsort(descending=True)[:8]
    actual = leave_one_out(m, nn.CrossEntropyLoss(), X, y, Xt[:1], yt[:1], top, l2=L2)[0]
    pred = s[top] / len(X)
    r = torch.corrcoef(torch.stack([pred, actual]))[0, 1]
    assert r > 0.99
    assert (torch.sign(pred) == torch.sign(actual)).all()
    # Koh & Liang's quantity, by name, and the old function keep the paper's sign
    assert torch.allclose(inf.i_up_loss(Xt[:1], yt[:1])[0], -s)
    assert torch.allclose(i_up_loss(m, nn.CrossEntropyLoss(), X, y, Xt[:1], yt[:1], l2=L2, method="exact")[0], -s)
    with pytest.warns(DeprecationWarning, match="i_up_loss"):     # the old name: same numbers, a pointer
        old = influence(m, nn.CrossEntropyLoss(), X, y, Xt[:1], yt[:1], l2=L2, method="exact")[0]
    assert torch.equal(old, i_up_loss(m, nn.CrossEntropyLoss(), X, y, Xt[:1], yt[:1], l2=L2, method="exact")[0])


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_influence_any_reduction(logreg, reduction):
    """Issue #25: influence() failed for reduction="none" although its docstring allowed it."""
    m, X, y, Xt, yt = logreg
    ref = i_up_loss(m, nn.CrossEntropyLoss(), X, y, Xt, yt, l2=L2, method="exact")
    got = i_up_loss(m, nn.CrossEntropyLoss(reduction=reduction), X, y, Xt, yt, l2=L2, method="exact")
    assert (got - ref).abs().max() <= 1e-10 * ref.abs().max()
    got_cg = i_up_loss(m, nn.CrossEntropyLoss(reduction=reduction), X, y, Xt, yt, l2=L2, method="cg")
    assert (got_cg - ref).abs().max() <= 1e-6 * ref.abs().max()


def test_arnoldi_when_krylov_breaks_down():
    """H = 3·I (linear regression on scaled basis vectors): the Krylov space of any start vector is
    1-dimensional. Arnoldi used to invert H only along it (issue: off by 8.8e4 on scores of 1.1e5);
    now it restarts orthogonally and equals the exact inverse (measured rel. error ≈ 1e-16)."""
    P = 40
    X = (1.5 * P) ** 0.5 * torch.eye(P, dtype=torch.float64)  # H = (2/n) Σ x xᵀ = 3 I
    torch.manual_seed(0)
    y = torch.randn(P, dtype=torch.float64)
    model = nn.Linear(P, 1, bias=False).double()
    loss = nn.MSELoss()

    def loss_fn(out, t):
        return loss(out[:, 0], t)

    Xt, yt = torch.randn(5, P, dtype=torch.float64) * 10, torch.randn(5, dtype=torch.float64)
    exact = InfluenceFunction(model, X, y, loss_fn=loss_fn, solver="exact")
    H = exact.obj.hessian()
    assert torch.allclose(H, 3 * torch.eye(P, dtype=torch.float64))
    ref = exact.attribute(Xt, yt)
    for kw in ({}, {"arnoldi_dim": P}):
        got = InfluenceFunction(model, X, y, loss_fn=loss_fn, solver="arnoldi", **kw).attribute(Xt, yt)
        assert (got - ref).abs().max() <= 1e-10 * ref.abs().max()
    # and against the closed form ∇ℓ_testᵀ H⁻¹ ∇ℓ_i with H⁻¹ = I/3
    G = exact.train_gradients()
    Gt = exact.test_gradients(Xt, yt)
    assert torch.allclose(ref, Gt @ G.T / 3, rtol=1e-10)


def test_influence_objects_share_and_cache(logreg):
    m, X, y, Xt, yt = logreg
    ex = InfluenceFunction(m, X, y, l2=L2)
    a = ex.attribute(Xt[:3], yt[:3])
    G, proj = ex._G, ex._proj
    b = ex.attribute(Xt[3:], yt[3:])
    assert ex._G is G and ex._proj is proj                       # training side reused
    for solver in ("cg", "arnoldi"):        # (LiSSA against exact: tests/test_influence.py)
        o = InfluenceFunction(m, X, y, l2=L2, solver=solver)
        got = torch.cat([o.attribute(Xt[:3], yt[:3]), o.attribute(Xt[3:], yt[3:])])
        assert (got - torch.cat([a, b])).abs().max() <= 1e-6 * a.abs().max(), solver
    # self-influence: the diagonal of attribute(train, train); positive (H positive definite)
    s = ex.self_influence()
    assert torch.allclose(s[:10], torch.diagonal(ex.attribute(X[:10], y[:10])))
    assert (s > 0).all()
    ar_self = InfluenceFunction(m, X, y, l2=L2, solver="arnoldi").self_influence()
    assert (ar_self - s).abs().max() <= 1e-6 * s.abs().max()
    cg = InfluenceFunction(m, X[:40], y[:40], l2=L2, solver="cg")   # iterative path: n solves
    cg_self = cg.self_influence()
    assert (cg_self - torch.diagonal(InfluenceFunction(m, X[:40], y[:40], l2=L2).attribute(X[:40], y[:40]))
            ).abs().max() <= 1e-6 * cg_self.abs().max()
    idx, sc = ex.top_k(Xt, yt, 5)
    assert torch.equal(idx, torch.topk(torch.cat([a, b]), 5, dim=1).indices)
    # labels=None: the predicted class
    with torch.no_grad():
        pred = m(Xt).argmax(1)
    assert torch.allclose(ex.attribute(Xt, None), ex.attribute(Xt, pred))


def test_methods_dict():
    assert METHODS["influence"] is InfluenceFunction and METHODS["tracin_cp"] is TracInCP
    assert all(hasattr(c, "attribute") and hasattr(c, "self_influence") and hasattr(c, "top_k")
               for c in METHODS.values())


# ----------------------------------------------------------------------------- representer points: sklearn rules
def test_representer_points_is_a_sklearn_estimator():
    from sklearn.base import clone

    rp = RepresenterPoints(l2=0.05, max_iter=50)
    c = clone(rp)
    assert c.get_params() == {"l2": 0.05, "max_iter": 50, "tol": 1e-8} and c is not rp
    bad = RepresenterPoints(l2=-1)              # __init__ does not validate ...
    assert clone(bad).l2 == -1
    torch.manual_seed(0)
    X, y = torch.randn(40, 6, dtype=torch.float64), torch.arange(40) % 3
    with pytest.raises(ValueError, match="l2"):  # ... fit does
        bad.fit(X, y)
    rp.set_params(l2=0.1).fit(X.numpy(), y.numpy())   # arrays accepted, like scikit-learn
    assert rp.l2 == 0.1 and rp.residual_ < 1e-4
    # the common interface: rows sum to the explained logit; self_influence = α_{i,y_i}‖Φ_i‖²
    S = rp.attribute(X[:5])
    pred = rp.predict(X[:5])
    assert torch.allclose(S.sum(1), rp.logits(X[:5])[torch.arange(5), pred])
    assert torch.allclose(rp.self_influence(), torch.diagonal(rp.attribute(X, y)))
    idx, sc = rp.top_k(X[:5], pred, 3)
    assert torch.equal(idx, rp.top_representers(X[:5], 3)[1])
    assert torch.allclose(rp.kernel(X[:2]), X[:2] @ X.T)


# ----------------------------------------------------------------------------- argument checks (issue #25)
def test_bad_arguments_are_refused(logreg):
    m, X, y, Xt, yt = logreg
    with pytest.raises(TypeError, match="indices"):
        leave_one_out(m, nn.CrossEntropyLoss(), X, y, Xt, yt, [1.5], l2=L2)
    with pytest.raises(ValueError, match="train_labels"):
        InfluenceFunction(m, X, torch.full_like(y, 10), l2=L2)           # class 10 of a 10-class model
    with pytest.raises(TypeError, match="train_labels"):
        InfluenceFunction(m, X, y.bool(), l2=L2)
    with pytest.raises(ValueError, match="NaN"):
        InfluenceFunction(m, X, y, l2=L2).attribute(Xt * float("nan"), yt)
    with pytest.raises(ValueError, match="solver"):
        InfluenceFunction(m, X, y, solver="newton")
    with pytest.raises(ValueError, match="seed"):
        InfluenceFunction(m, X, y, solver="lissa", seed=-1)
    with pytest.raises(TypeError, match="batch_size"):
        InfluenceFunction(m, X, y, batch_size=2.5)
    with pytest.raises(ValueError, match="k must"):
        InfluenceFunction(m, X, y, l2=L2).top_k(Xt, yt, len(X) + 1)
    with pytest.raises(TypeError, match="k must"):
        InfluenceFunction(m, X, y, l2=L2).top_k(Xt, yt, 2.0)
    with pytest.raises(TypeError):
        tracin_cp(m, [(m.state_dict(), 1.0)], nn.CrossEntropyLoss(), X, y, Xt, yt, "linear")  # keyword-only now
    with pytest.raises(ValueError, match="learning_rates"):
        TracInCP(m, X, y, checkpoints=[m.state_dict()] * 2, learning_rates=[1.0])


def test_poison_helpers_refuse_what_they_would_get_wrong():
    sp = load_digits_tensors()
    X, y = sp.X_train[:50], sp.y_train[:50]
    with pytest.raises(ValueError, match="corner"):
        add_trigger(X, corner="top-rigth")
    assert (add_trigger(X[:2], 2, corner="top-right")[..., :2, -2:] == 1).all()
    flat = X.flatten(1)
    with pytest.raises(ValueError, match="images"):
        plant_backdoor(flat, y, 3, target_class=0)                     # used to stamp rows of the batch
    with pytest.raises(ValueError, match="target_class"):
        plant_backdoor(X, y, 3, target_class=10)                       # no class 10 among the digits
    with pytest.raises(TypeError, match="n_poison"):
        plant_backdoor(X, y, 2.5, target_class=0)
    with pytest.raises(ValueError, match="size"):
        add_trigger(X, size=9)
    with pytest.raises(ValueError, match="seed"):
        flip_labels(y, 0.1, 10, seed=-1)
    with pytest.raises(ValueError, match="fraction"):
        flip_labels(y, 1.5, 10)
    with pytest.raises(ValueError, match="labels"):
        flip_labels(y, 0.1, 5)                                          # labels ≥ n_classes
    with pytest.raises(ValueError, match="k must"):
        recall_at_k(torch.randn(10), torch.arange(10) < 2, k=11)
    bd = plant_backdoor(X, y, 3, target_class=0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert bd.targets is bd.labels
    assert any(issubclass(x.category, DeprecationWarning) for x in w)


class _BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU())
        self.head = nn.Linear(6, 3, bias=False)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.head(self.body(x))


def test_train_mode_batchnorm_model_is_left_unchanged():
    torch.manual_seed(0)
    net = _BNNet().train()
    X, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    net(X)  # non-trivial running statistics
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [m.training for m in net.modules()]
    grads = [p.grad for p in net.parameters()]

    InfluenceFunction(net, X, y, solver="cg", damping=1.0).attribute(X[:3], y[:3])
    tr = TracInCP(net, X, y, checkpoints=[(before, 0.1), ({k: v * 1.01 if v.is_floating_point() else v
                                                          for k, v in before.items()}, 0.1)])
    tr.attribute(X[:3], None)
    tr.self_influence()
    GradDot(net, X, y).top_k(X[:3], y[:3], 2)
    RepresenterPoints(max_iter=20).from_model(net, X, y).attribute(X[:3])
    self_influence(net, [(before, 1.0)], nn.CrossEntropyLoss(), X, y)

    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert [m.training for m in net.modules()] == flags
    assert [p.grad for p in net.parameters()] == grads


def test_results_follow_the_inputs_dtype_and_device(logreg):
    m, X, y, Xt, yt = logreg
    for obj in (InfluenceFunction(m, X, y, l2=L2), TracInCP(m, X, y, checkpoints=[(m.state_dict(), 1.0)])):
        S = obj.attribute(Xt, yt)
        assert S.dtype == Xt.dtype and S.device == Xt.device and S.shape == (len(Xt), len(X))
        assert obj.self_influence().shape == (len(X),)


# ----------------------------------------------------------------------------- the bad-input probe
# results that are correct (not silent errors): features of any width / dtype / array form, labels
# as lists or arrays, labels 3..5 (scikit-learn infers 6 classes), a shorter label vector for flip_labels
SENSIBLE_RESULTS = {"RepresenterPoints.fit X=float32", "RepresenterPoints.fit X=wrong feat",
                    "RepresenterPoints.fit X=numpy", "RepresenterPoints.fit X=list",
                    "RepresenterPoints.fit y=out of range", "RepresenterPoints.fit y=numpy",
                    "RepresenterPoints.fit y=list", "flip_labels labels=short", "flip_labels labels=numpy",
                    "flip_labels labels=list"}


def test_bad_input_probe():
    """161 bad calls over the public API (wrong shapes, empty, NaN/inf, dtypes, numpy/lists, out-of-range
    labels / indices / k, bad options): measured 151 clear ValueError/TypeError, 10 correct results,
    0 raw tracebacks, 0 silent wrong results."""
    import numpy as np
    from xaicourse.data_attribution import detection_curve, detection_rate, per_example_grads

    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    X, y = torch.randn(12, 4, dtype=torch.float64), torch.arange(12) % 3
    Xt, yt = torch.randn(3, 4, dtype=torch.float64), torch.tensor([0, 1, 2])
    ck = [(net.state_dict(), 0.1)]
    CE = nn.CrossEntropyLoss()
    img, lab = torch.rand(10, 1, 6, 6), torch.arange(10) % 4
    bad_x = {"nan": X * float("nan"), "inf": X.clone().fill_(float("inf")), "empty": X[:0], "float32": X.float(),
             "extra dim": X[None], "no batch": X[0], "wrong feat": torch.randn(12, 5, dtype=torch.float64),
             "numpy": X.numpy(), "list": X.tolist(), "int": X.long()}
    bad_y = {"float": y.double() + 0.5, "out of range": y + 3, "negative": y - 1, "short": y[:-1], "2d": y[:, None],
             "bool": y.bool(), "numpy": y.numpy(), "list": y.tolist()}
    rows = []
    def probe(name, fn):
        try:
            out = fn()
            rows.append((name, "result", type(out).__name__))
        except (ValueError, TypeError) as e:
            rows.append((name, "clear", str(e)[:90]))
        except Exception as e:
            rows.append((name, "RAW", f"{type(e).__name__}: {str(e)[:90]}"))
    IF = lambda **kw: InfluenceFunction(net, X, y, l2=0.1, damping=0.5, **kw)
    TR = lambda **kw: TracInCP(net, X, y, checkpoints=ck, **kw)
    for k, v in bad_x.items():
        probe(f"InfluenceFunction train_inputs={k}", lambda: InfluenceFunction(net, v, y, l2=0.1))
        probe(f"InfluenceFunction.attribute inputs={k}", lambda: IF().attribute(v if len(v) != 12 else v[:3], yt))
        probe(f"TracInCP train_inputs={k}", lambda: TracInCP(net, v, y, checkpoints=ck))
        probe(f"tracin_cp test_inputs={k}", lambda: tracin_cp(net, ck, CE, X, y, v, y))
        probe(f"RepresenterPoints.fit X={k}", lambda: RepresenterPoints().fit(v, y))
    for k, v in bad_y.items():
        probe(f"InfluenceFunction train_labels={k}", lambda: InfluenceFunction(net, X, v, l2=0.1))
        probe(f"TracInCP.attribute labels={k}", lambda: TR().attribute(X, v))
        probe(f"leave_one_out train_labels={k}", lambda: leave_one_out(net, CE, X, v, Xt, yt, [0], l2=0.1))
        probe(f"RepresenterPoints.fit y={k}", lambda: RepresenterPoints().fit(X, v))
        probe(f"flip_labels labels={k}", lambda: flip_labels(v, 0.2, 3))
    for k, v in {"solver": dict(solver="newton"), "damping<0": dict(damping=-1), "seed float": dict(seed=1.5),
                 "seed neg": dict(seed=-1), "batch 0": dict(batch_size=0), "batch float": dict(batch_size=2.5),
                 "progress str": dict(progress="yes"), "depth 0": dict(depth=0), "tol nan": dict(tol=float("nan")),
                 "rank float": dict(rank=2.0), "loss str": dict(loss_fn="ce")}.items():
        probe(f"InfluenceFunction {k}", lambda: InfluenceFunction(net, X, y, l2=0.1, **v))
    for k, v in {"lr neg": dict(learning_rates=-1.0), "lr wrong len": dict(learning_rates=[1.0, 2.0]),
                 "batch 0": dict(batch_size=0), "normalize str": dict(normalize="yes"), "params bad": dict(params="nope"),
                 "cache int": dict(cache=1)}.items():
        probe(f"TracInCP {k}", lambda: TR(**v))
    probe("TracInCP checkpoints=[]", lambda: TracInCP(net, X, y, checkpoints=[]))
    probe("TracInCP checkpoints=dict", lambda: TracInCP(net, X, y, checkpoints=net.state_dict()))
    probe("TracInCP checkpoint wrong shapes", lambda: TracInCP(net, X, y, checkpoints=[(nn.Linear(2, 2).double().state_dict(), 1.0)]).attribute(Xt, yt))
    for k in (0, -1, 13, 2.0, True):
        probe(f"top_k k={k!r}", lambda: IF().top_k(Xt, yt, k))
        probe(f"TracInCP.top_k k={k!r}", lambda: TR().top_k(Xt, yt, k))
    probe("top_k proponents=str", lambda: IF().top_k(Xt, yt, 2, proponents="no"))
    for k in ([1.5], [12], [-13], 1.5, "a", [True], np.array([0.0])):
        probe(f"leave_one_out indices={k!r}", lambda: leave_one_out(net, CE, X, y, Xt, yt, k, l2=0.1))
    probe("leave_one_out dtype=int", lambda: leave_one_out(net, CE, X, y, Xt, yt, [0], l2=0.1, dtype=torch.int64))
    for k, v in {"flat": img.flatten(1), "target 4": dict(t=4), "target -1": dict(t=-1), "target float": dict(t=1.0),
                 "n_poison 0": dict(n=0), "n_poison float": dict(n=2.5), "seed neg": dict(seed=-1), "size 7": dict(size=7),
                 "labels float": dict(lab=lab.double())}.items():
        if isinstance(v, torch.Tensor):
            probe(f"plant_backdoor inputs={k}", lambda: plant_backdoor(v, lab, 2, 0))
        else:
            probe(f"plant_backdoor {k}", lambda: plant_backdoor(img, v.get("lab", lab), v.get("n", 2), v.get("t", 0),
                                                                 size=v.get("size", 2), seed=v.get("seed", 0)))
    for k, v in {"corner typo": dict(corner="top-rigth"), "size 0": dict(size=0), "size 2.5": dict(size=2.5),
                 "value nan": dict(value=float("nan")), "size 7": dict(size=7)}.items():
        probe(f"add_trigger {k}", lambda: add_trigger(img, **v))
    probe("add_trigger flat", lambda: add_trigger(img.flatten(1)))
    probe("flip_labels fraction 1.5", lambda: flip_labels(lab, 1.5, 4))
    probe("flip_labels seed -1", lambda: flip_labels(lab, 0.2, 4, seed=-1))
    probe("flip_labels seed 1.5", lambda: flip_labels(lab, 0.2, 4, seed=1.5))
    probe("flip_labels n_classes 3 (labels up to 3)", lambda: flip_labels(lab, 0.2, 3))
    sc, fl = torch.randn(10), torch.arange(10) < 3
    probe("detection_curve nan scores", lambda: detection_curve(sc * float("nan"), fl))
    probe("detection_curve fractions 2", lambda: detection_curve(sc, fl, [2.0]))
    probe("detection_curve length", lambda: detection_curve(sc, fl[:5]))
    probe("detection_curve float flags", lambda: detection_curve(sc, fl.double() * 0.5))
    probe("detection_rate fraction -1", lambda: detection_rate(sc, fl, -1))
    probe("recall_at_k k 11", lambda: recall_at_k(sc, fl, 11))
    probe("recall_at_k k 0", lambda: recall_at_k(sc, fl, 0))
    probe("recall_at_k no flags", lambda: recall_at_k(sc, fl & False))
    probe("RepresenterPoints unfitted attribute", lambda: RepresenterPoints().attribute(X))
    probe("RepresenterPoints max_iter float fit", lambda: RepresenterPoints(max_iter=2.5).fit(X, y))
    probe("RepresenterPoints attribute wrong d", lambda: RepresenterPoints().fit(X, y).attribute(torch.randn(2, 5)))
    probe("RepresenterPoints attribute labels 9", lambda: RepresenterPoints().fit(X, y).attribute(X[:2], [9, 0]))
    probe("per_example_grads batch 0", lambda: per_example_grads(net, CE, X, y, batch_size=0))
    raw = [r for r in rows if r[1] == "RAW"]
    results = {r[0] for r in rows if r[1] == "result"}
    assert not raw, raw
    assert results == SENSIBLE_RESULTS, results ^ SENSIBLE_RESULTS
    assert len(rows) >= 160
