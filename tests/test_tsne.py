"""Tests for xaicourse.tsne: the pieces against scikit-learn and autograd, the estimator
against scikit-learn's exact t-SNE, and the input checks."""
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import squareform
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE as SkTSNE
from sklearn.manifold import trustworthiness
from sklearn.manifold._t_sne import _joint_probabilities, _kl_divergence
from sklearn.metrics import pairwise_distances

import xaicourse.tsne as T
from xaicourse.tsne import (TSNE, conditional_probabilities, joint_probabilities, kl_divergence,
                            kl_gradient, pca_init, squared_distances, student_t_probabilities)


@pytest.fixture(scope="module")
def digits300():
    d = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(d.data), 300, replace=False)
    return d.data[idx].astype(np.float64), d.target[idx]


def entropy_nats(P):
    return -(torch.special.xlogy(P, P)).sum(1)


# ----------------------------------------------------------------------------- pieces
def test_squared_distances_match_sklearn(digits300):
    X, _ = digits300
    D = squared_distances(torch.tensor(X)).numpy()
    ref = pairwise_distances(X, squared=True)
    assert np.abs(D - ref).max() <= 1e-9 * ref.max()
    assert np.all(np.diag(D) == 0) and D.min() >= 0


@pytest.mark.parametrize("perp", [5.0, 30.0, 80.0])
def test_binary_search_hits_perplexity(digits300, perp):
    X, _ = digits300
    D = squared_distances(torch.tensor(X))
    D0 = D.clone()
    P, beta = conditional_probabilities(D, perp, tol=1e-5, return_beta=True)
    assert torch.equal(D, D0)                      # the input is not modified
    assert torch.allclose(P.sum(1), torch.ones(len(P), dtype=P.dtype), atol=1e-12)
    assert torch.all(torch.diagonal(P) == 0)
    H = entropy_nats(P)
    assert (H - math.log(perp)).abs().max().item() <= 1e-5
    assert torch.all(beta > 0)
    # a narrower Gaussian (larger beta) for smaller perplexity
    if perp == 5.0:
        _, beta30 = conditional_probabilities(D, 30.0, return_beta=True)
        assert torch.all(beta > beta30)


def test_joint_probabilities_match_sklearn(digits300):
    X, _ = digits300
    D = squared_distances(torch.tensor(X))
    P = joint_probabilities(conditional_probabilities(D, 30.0)).numpy()
    ref = squareform(_joint_probabilities(pairwise_distances(X, squared=True), 30.0, 0))
    np.fill_diagonal(ref, 0.0)
    assert np.abs(P - ref).max() <= 1e-6 * ref.max()
    assert np.allclose(P, P.T) and abs(P.sum() - 1) < 1e-12
    # every point keeps at least weight 1/2N (the reason for symmetrising)
    assert P.sum(1).min() >= 1 / (2 * len(P)) - 1e-15


def test_search_is_stable_at_extreme_scales_and_duplicates():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(60, 5, generator=g, dtype=torch.float64)
    X[1] = X[0]                                    # a duplicate point
    for scale in (1e-6, 1.0, 1e6):
        P = conditional_probabilities(squared_distances(X * scale), 10.0)
        assert torch.isfinite(P).all()
        assert (entropy_nats(P) - math.log(10.0)).abs().max().item() <= 1e-5


def test_student_t_probabilities():
    Y = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    Q, W = student_t_probabilities(Y, return_kernel=True)
    assert W[0, 1].item() == pytest.approx(0.5) and W[0, 2].item() == pytest.approx(0.2)
    assert W[1, 2].item() == pytest.approx(1 / 6)
    assert Q.sum().item() == pytest.approx(1.0) and torch.all(torch.diagonal(Q) == 0)


def _random_problem(n=40, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 6, generator=g, dtype=torch.float64)
    P = joint_probabilities(conditional_probabilities(squared_distances(X), 8.0))
    Y = torch.randn(n, d, generator=g, dtype=torch.float64)
    return P, Y


@pytest.mark.parametrize("d", [1, 2, 3])
def test_kl_gradient_matches_autograd(d):
    P, Y = _random_problem(d=d)
    Y.requires_grad_(True)
    (auto,) = torch.autograd.grad(kl_divergence(P, Y), Y)
    ours = kl_gradient(P, Y.detach())
    rel = (ours - auto).norm() / auto.norm()
    assert rel.item() <= 1e-6, rel.item()


def test_exaggerated_gradient_matches_autograd():
    P, Y = _random_problem(seed=1)
    Y.requires_grad_(True)
    _, W = student_t_probabilities(Y, return_kernel=True)
    off = ~torch.eye(len(Y), dtype=torch.bool)
    cost = -4.0 * (P[off] * torch.log(W[off])).sum() + torch.log(W.sum())
    (auto,) = torch.autograd.grad(cost, Y)
    ours = kl_gradient(P, Y.detach(), exaggeration=4.0)
    assert ((ours - auto).norm() / auto.norm()).item() <= 1e-6


def test_kl_gradient_finite_differences():
    P, Y = _random_problem(n=15, seed=2)
    g = kl_gradient(P, Y)
    eps = 1e-6
    for i, k in [(0, 0), (3, 1), (14, 0)]:
        Yp, Ym = Y.clone(), Y.clone()
        Yp[i, k] += eps
        Ym[i, k] -= eps
        fd = (kl_divergence(P, Yp) - kl_divergence(P, Ym)) / (2 * eps)
        assert fd.item() == pytest.approx(g[i, k].item(), rel=1e-5, abs=1e-9)


def test_kl_and_gradient_match_sklearn_objective():
    P, Y = _random_problem(n=30, seed=3)
    kl_sk, grad_sk = _kl_divergence(Y.numpy().ravel().copy(), squareform(P.numpy(), checks=False),
                                    1, 30, 2)
    assert kl_divergence(P, Y).item() == pytest.approx(kl_sk, rel=1e-9)
    assert np.allclose(kl_gradient(P, Y).numpy().ravel(), grad_sk, rtol=1e-8, atol=1e-14)


def test_fast_float32_step_matches_reference():
    P, Y = _random_problem(n=120, seed=4)
    Y = Y * 5
    step = T._Step(P.float())
    for alpha in (1.0, 12.0):
        fast = step.grad(Y.float(), alpha).double()
        ref = kl_gradient(P, Y, exaggeration=alpha)
        assert ((fast - ref).norm() / ref.norm()).item() <= 1e-4
    plogp = torch.special.xlogy(P, P).sum().item()
    step.grad(Y.float(), 1.0)
    assert step.kl(plogp) == pytest.approx(kl_divergence(P, Y).item(), rel=1e-4)
    assert T._exact_kl(P.float(), Y) == pytest.approx(kl_divergence(P.float().double(), Y).item(), rel=1e-10)


def test_pca_init_matches_sklearn(digits300):
    from sklearn.decomposition import PCA

    X, _ = digits300
    Z = PCA(2).fit_transform(X)
    Z = Z / np.std(Z[:, 0]) * 1e-4
    ours = pca_init(torch.tensor(X)).numpy()
    assert np.abs(ours - Z).max() <= 1e-6 * np.abs(Z).max()
    # more features than points goes through the Gram matrix, same answer
    Xw = X[:40]
    Zw = PCA(2).fit_transform(Xw)
    Zw = Zw / np.std(Zw[:, 0]) * 1e-4
    assert np.abs(pca_init(torch.tensor(Xw)).numpy() - Zw).max() <= 1e-6 * np.abs(Zw).max()


# ----------------------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def fitted(digits300):
    X, y = digits300
    Y0 = pca_init(torch.tensor(X)).numpy().astype(np.float32)
    ours = TSNE(perplexity=30.0, max_iter=500, init=Y0, device="cpu")
    E = ours.fit_transform(X)
    sk = SkTSNE(perplexity=30.0, max_iter=500, init=Y0, method="exact", random_state=0)
    Es = sk.fit_transform(X)
    return X, y, ours, E, sk, Es


def test_tsne_kl_close_to_sklearn_exact(fitted):
    X, y, ours, E, sk, Es = fitted
    assert ours.kl_divergence_ <= 1.02 * sk.kl_divergence_, (ours.kl_divergence_, sk.kl_divergence_)
    # (t-SNE's dynamics are chaotic: float32 vs float64 rounding already gives different maps
    # after ~50 steps, so the two KLs agree statistically, not digit for digit; the value
    # itself is checked against sklearn's objective in test_tsne_attributes.)
    sk_kl_of_ours = _kl_divergence(E.astype(np.float64).ravel(), squareform(ours.P_.double().numpy(),
                                                                           checks=False), 1, 300, 2)[0]
    assert ours.kl_divergence_ == pytest.approx(sk_kl_of_ours, rel=1e-6)
    t_ours = trustworthiness(X, E, n_neighbors=10)
    t_sk = trustworthiness(X, Es, n_neighbors=10)
    assert t_ours >= 0.97 and t_ours >= t_sk - 0.005, (t_ours, t_sk)
    assert E.shape == (300, 2) and E.dtype == np.float32


def test_tsne_attributes(fitted):
    X, y, ours, E, sk, Es = fitted
    assert ours.n_iter_ == 500 and len(ours.kl_history_) == 500
    assert ours.learning_rate_ == 50.0
    steps, kls = zip(*ours.kl_history_)
    assert steps[0] == 1 and steps[-1] == 500
    # the history's float32 KL agrees with the exact final value; it falls after exaggeration
    assert kls[-1] == pytest.approx(ours.kl_divergence_, rel=1e-3)
    assert kls[-1] < kls[260] < kls[0]
    # the returned map reproduces kl_divergence_ through the public function
    kl_check = kl_divergence(ours.P_.double(), torch.tensor(E, dtype=torch.float64)).item()
    assert kl_check == pytest.approx(ours.kl_divergence_, rel=1e-6)
    # classes stay apart: 5-NN accuracy in the map
    from sklearn.neighbors import KNeighborsClassifier
    acc = KNeighborsClassifier(5).fit(E[::2], y[::2]).score(E[1::2], y[1::2])
    acc_sk = KNeighborsClassifier(5).fit(Es[::2], y[::2]).score(Es[1::2], y[1::2])
    assert acc >= 0.85 and acc >= acc_sk - 0.03, (acc, acc_sk)


def test_tsne_seeded_random_init_is_deterministic(digits300):
    X, _ = digits300
    X = X[:80]
    a = TSNE(perplexity=10, max_iter=60, init="random", random_state=3).fit_transform(X)
    b = TSNE(perplexity=10, max_iter=60, init="random", random_state=3).fit_transform(X)
    c = TSNE(perplexity=10, max_iter=60, init="random", random_state=4).fit_transform(X)
    assert np.array_equal(a, b) and not np.allclose(a, c)


def test_tsne_snapshots_and_kl_every(digits300):
    X, _ = digits300
    m = TSNE(perplexity=10, max_iter=100, kl_every=25, snapshot_every=50).fit(X[:80])
    assert [s for s, _ in m.kl_history_] == [25, 50, 75, 100]
    assert [s for s, _ in m.snapshots_] == [50, 100]
    assert np.array_equal(m.snapshots_[-1][1], m.embedding_)


def test_tsne_accepts_torch_and_ints(digits300):
    X, _ = digits300
    Xi = X[:50].astype(np.int64)
    a = TSNE(perplexity=5, max_iter=50).fit_transform(Xi)
    b = TSNE(perplexity=5, max_iter=50).fit_transform(torch.tensor(Xi, dtype=torch.float32))
    assert np.allclose(a, b, atol=1e-4 * np.abs(a).max())


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("X, perp, match", [
    (np.random.rand(10, 3), 9.0, "perplexity"),
    (np.random.rand(10, 3), 20.0, "perplexity"),
    (np.random.rand(3, 3), 1.0, "at least 4 samples"),
    (np.random.rand(10), 2.0, "X must be 2-D"),
    (np.random.rand(10, 1, 8, 8), 2.0, "X must be 2-D.*flatten"),
])
def test_bad_input(X, perp, match):
    with pytest.raises(ValueError, match=match):
        TSNE(perplexity=perp).fit_transform(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_input(bad):
    X = np.random.rand(20, 3)
    X[4, 1] = bad
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        TSNE(perplexity=5).fit_transform(X)


@pytest.mark.filterwarnings("ignore:n_iter was renamed:FutureWarning")
@pytest.mark.parametrize("kwargs, match", [
    (dict(learning_rate=-1.0), "learning_rate"),
    (dict(learning_rate="fast"), "learning_rate"),
    (dict(n_iter=0), "n_iter"),
    (dict(max_iter=0), "max_iter"),
    (dict(n_components=0), "n_components"),
    (dict(early_exaggeration=0.5), "early_exaggeration"),
    (dict(init="spectral"), "init"),
    (dict(init=np.zeros((19, 2))), "init must have shape"),
    (dict(perplexity=0.5), "perplexity"),
    (dict(n_threads=0), "n_threads"),
])
def test_bad_parameters(kwargs, match):
    X = np.random.rand(20, 3)
    kwargs.setdefault("perplexity", 5)
    with pytest.raises(ValueError, match=match):
        TSNE(**kwargs).fit_transform(X)


def test_size_limit_points_to_approximate_methods(monkeypatch):
    monkeypatch.setattr(T, "MAX_SAMPLES", 50)
    with pytest.raises(ValueError, match="MAX_SAMPLES.*barnes_hut.*openTSNE"):
        TSNE(perplexity=5).fit_transform(np.random.rand(51, 3))
    assert TSNE(perplexity=5, max_iter=5).fit_transform(np.random.rand(50, 3)).shape == (50, 2)


def test_piece_validation():
    with pytest.raises(ValueError, match="D must be square"):
        conditional_probabilities(torch.rand(4, 5), 2.0)
    with pytest.raises(ValueError, match="non-negative"):
        conditional_probabilities(-torch.ones(6, 6), 2.0)
    with pytest.raises(ValueError, match="perplexity"):
        conditional_probabilities(torch.rand(6, 6), 5.0)
    with pytest.raises(TypeError, match="perplexity"):
        conditional_probabilities(torch.rand(6, 6), "30")
    with pytest.raises(ValueError, match="Y contains NaN"):
        kl_gradient(torch.rand(3, 3), torch.tensor([[0.0, 1.0], [float("nan"), 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="same N"):
        kl_divergence(torch.rand(3, 3), torch.rand(4, 2))


# ----------------------------------------------------------------------------- widget
def test_tsne_panel_shows_what_tsne_computes(digits300):
    from xaicourse.widgets import tsne_panel

    X, y = digits300
    X, y = X[:60], y[:60]
    box = tsne_panel(X, y, perplexities=(5, 10, 100), perplexity=10, n_iter=60, snapshot_every=20)
    assert list(box.perplexity.options) == [5, 10]          # 100 ≥ N − 1 is dropped
    ref = TSNE(perplexity=10.0, max_iter=60, init="pca").fit(X)
    assert box.state["perplexity"] == 10 and box.state["step"] == 60
    assert box.state["kl"] == pytest.approx(dict(ref.kl_history_)[60], rel=1e-6)
    box.step.value = 20
    assert box.state["step"] == 20 and box.state["kl"] == pytest.approx(dict(ref.kl_history_)[20], rel=1e-6)
    box.perplexity.value = 5
    ref5 = TSNE(perplexity=5.0, max_iter=60, init="pca", snapshot_every=20).fit(X)
    assert box.state["kl"] == pytest.approx(dict(ref5.kl_history_)[20], rel=1e-6)
    assert trustworthiness(X, ref5.snapshots_[0][1], n_neighbors=10) == pytest.approx(
        box.state["trustworthiness"])


def test_thread_setting_is_restored(digits300):
    X, _ = digits300
    before = torch.get_num_threads()
    TSNE(perplexity=5, max_iter=5).fit(X[:50])                 # runs on one thread by default
    assert torch.get_num_threads() == before
    a = TSNE(perplexity=5, max_iter=30, n_threads=1).fit_transform(X[:50])
    b = TSNE(perplexity=5, max_iter=30).fit_transform(X[:50])
    assert torch.get_num_threads() == before and np.array_equal(a, b)


# ----------------------------------------------------------------------------- scikit-learn estimator API
def test_get_set_params_clone_and_repr(digits300):
    X, _ = digits300
    X = X[:60]
    m = TSNE(perplexity=7.0, max_iter=40, init="random", random_state=2, kl_every=5, device="cpu")
    p = m.get_params()
    assert p["perplexity"] == 7.0 and p["max_iter"] == 40 and p["kl_every"] == 5 and p["random_state"] == 2
    assert p["n_iter"] == "deprecated" and p["init"] == "random" and p["device"] == "cpu"
    assert TSNE().set_params(**p).get_params() == p              # round trip
    assert m.set_params(perplexity=8.0) is m and m.perplexity == 8.0
    with pytest.raises(ValueError, match="Invalid parameter"):
        m.set_params(n_iters=3)
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    r = repr(m)      # scikit-learn's repr: only the parameters that differ from the defaults
    assert r.startswith("TSNE(") and "perplexity=8.0" in r and "max_iter=40" in r and "early_exaggeration" not in r
    a = m.fit_transform(X)
    assert not hasattr(c, "embedding_")                          # a clone is unfitted
    b = c.fit_transform(X)
    assert np.array_equal(a, b) and m.n_features_in_ == 64
    assert m.get_params() == c.get_params()                      # fit leaves the parameters alone


def test_parameters_are_checked_in_fit_not_init():
    m = TSNE(perplexity="x", max_iter=-3, init="spectral", learning_rate=0)   # no error yet
    assert m.get_params()["max_iter"] == -3
    with pytest.raises(ValueError, match="max_iter"):
        m.fit(np.random.rand(20, 3))


def test_n_iter_is_a_deprecated_alias_of_max_iter(digits300):
    X, _ = digits300
    X = X[:60]
    with pytest.warns(FutureWarning, match="n_iter was renamed max_iter") as rec:
        old = TSNE(perplexity=5, n_iter=40)
        a = old.fit_transform(X)
    assert rec[0].filename == __file__                           # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = TSNE(perplexity=5, max_iter=40)
        b = new.fit_transform(X)
    assert np.array_equal(a, b) and old.n_iter_ == new.n_iter_ == 40
    assert old.kl_divergence_ == new.kl_divergence_
    with pytest.raises(ValueError, match="both max_iter=40 and n_iter=40"):
        TSNE(perplexity=5, max_iter=40, n_iter=40).fit(X)
    with pytest.warns(FutureWarning), pytest.raises(TypeError, match="n_iter must be an int"):
        TSNE(perplexity=5, n_iter=2.5).fit(X)
    assert TSNE().get_params()["max_iter"] is None             # None = 1000 steps, as scikit-learn


def test_object_array_same_as_float(digits300):
    X, _ = digits300
    X = X[:60]
    a = TSNE(perplexity=5, max_iter=40).fit_transform(X)
    Xo = X.astype(object)
    assert Xo.dtype == object
    b = TSNE(perplexity=5, max_iter=40).fit_transform(Xo)
    c = TSNE(perplexity=5, max_iter=40).fit_transform(X.tolist())
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_complex_input_rejected():
    X = np.random.rand(20, 3) + 1j * np.random.rand(20, 3)
    with pytest.raises(ValueError, match="X must hold real numbers. Complex data not supported"):
        TSNE(perplexity=5).fit(X)
    with pytest.raises(ValueError, match="X must hold real numbers. Complex data not supported"):
        TSNE(perplexity=5).fit(torch.tensor(X))
    with pytest.raises(ValueError, match="X must hold real numbers. Complex data not supported"):
        TSNE(perplexity=5).fit(np.random.rand(20, 3).astype(object) + 1j)
    with pytest.raises(ValueError, match="init must hold real numbers"):
        TSNE(perplexity=5, init=np.zeros((20, 2), dtype=complex)).fit(np.random.rand(20, 3))


@pytest.mark.parametrize("init", ["pca", "random", "array"])
def test_zero_features_rejected(init):
    X = np.empty((12, 0))
    init = np.zeros((12, 2)) if init == "array" else init
    # scikit-learn's check_estimators_empty_data expects this wording
    with pytest.raises(ValueError, match=r"0 feature\(s\) \(shape=\(12, 0\)\) while a minimum of 1 is required"):
        TSNE(init=init).fit(X)
    with pytest.raises(ValueError, match="X must have at least 4 samples"):
        TSNE(init=init).fit(np.empty((0, 3)))


@pytest.mark.parametrize("kwargs, name", [
    (dict(max_iter=2.5), "max_iter"),
    (dict(max_iter=True), "max_iter"),
    (dict(n_components=2.0), "n_components"),
    (dict(kl_every=1.5), "kl_every"),
    (dict(snapshot_every=np.float64(10)), "snapshot_every"),
    (dict(exaggeration_iter=250.0), "exaggeration_iter"),
    (dict(n_iter_without_progress=3.5), "n_iter_without_progress"),
    (dict(n_threads=1.5), "n_threads"),
    (dict(random_state=1.5), "random_state"),
    (dict(perplexity="5"), "perplexity"),
    (dict(early_exaggeration=None), "early_exaggeration"),
    (dict(learning_rate=[100]), "learning_rate"),
])
def test_integer_and_number_parameters_are_not_truncated(kwargs, name):
    kwargs.setdefault("perplexity", 5)
    with pytest.raises(TypeError, match=name):
        TSNE(**kwargs).fit(np.random.rand(20, 3))


def test_numpy_ints_and_random_states_accepted(digits300):
    X, _ = digits300
    X = X[:50]
    a = TSNE(perplexity=5, max_iter=np.int64(30), n_components=np.int32(2), init="random",
             random_state=np.int64(3)).fit_transform(X)
    b = TSNE(perplexity=5, max_iter=30, init="random", random_state=3).fit_transform(X)
    assert np.array_equal(a, b)
    c = TSNE(perplexity=5, max_iter=30, init="random", random_state=np.random.RandomState(0)).fit_transform(X)
    d = TSNE(perplexity=5, max_iter=30, init="random", random_state=np.random.RandomState(0)).fit_transform(X)
    assert np.array_equal(c, d)


@pytest.fixture
def restore_device():
    """Put the notebook device (set_device) back as it was, so no test leaks its choice."""
    import xaicourse.device as dv

    old = dv._current
    yield dv
    dv._current = old


def test_device_none_follows_set_device(restore_device, monkeypatch, digits300):
    X, _ = digits300
    dv = restore_device
    missing = "cuda" if not torch.cuda.is_available() else "mps" if not dv._mps_available() else None
    if missing is None:
        pytest.skip("every device kind is available: cannot make 'auto' differ from set_device('cpu')")
    dv.set_device("cpu")
    # from now on "auto" resolves to a device this machine lacks: only set_device's choice works
    monkeypatch.setenv("XAICOURSE_DEVICE", missing)
    with pytest.raises(RuntimeError, match=missing):
        TSNE(perplexity=5, max_iter=5, device="auto").fit(X[:30])
    m = TSNE(perplexity=5, max_iter=5).fit(X[:30])             # device=None → current_device() = cpu
    assert m.P_.device.type == "cpu" and dv.current_device() == torch.device("cpu")
    dv._current = None                                           # nothing chosen: "auto" (the env) again
    with pytest.raises(RuntimeError, match=missing):
        TSNE(perplexity=5, max_iter=5).fit(X[:30])


@parametrize_with_checks([TSNE(perplexity=2, max_iter=250, device="cpu")])
def test_sklearn_estimator_checks(estimator, check):
    """scikit-learn's own estimator checks (input conversion, error types and messages, clone,
    params, no state in __init__, idempotent fit, ...), with sklearn's test settings for TSNE."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        check(estimator)


def test_probe_findings_are_refused_by_name():
    """Issue #25's probe on the t-SNE pieces: negative / unnormalised probabilities, a bad
    exaggeration and empty data are refused with the argument's name (no silent result)."""
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.random((12, 5)))
    D = T.squared_distances(X)
    Pc = conditional_probabilities(D, perplexity=3.0)
    P = joint_probabilities(Pc)
    Y = torch.from_numpy(rng.random((12, 2)))
    with pytest.raises(ValueError, match="P_cond"):
        joint_probabilities(Pc - 1)
    with pytest.raises(ValueError, match="P_cond's rows must each sum to 1"):
        joint_probabilities(Pc[:-1, :-1])
    for f in (kl_divergence, T.kl_gradient):
        with pytest.raises(ValueError, match="P must hold"):
            f(P - 1, Y)
    for bad, exc in ((float("nan"), ValueError), (float("inf"), ValueError), (-1.0, ValueError), (True, TypeError),
                     ("4", TypeError), (None, TypeError)):
        with pytest.raises(exc, match="exaggeration"):
            T.kl_gradient(P, Y, exaggeration=bad)
    with pytest.raises(ValueError, match="X is empty"):
        T.squared_distances(torch.zeros(0, 5))
    with pytest.raises(ValueError, match="X must hold at least 2 points"):
        T.pca_init(torch.zeros(0, 5))
    assert torch.allclose(T.kl_gradient(P, Y, exaggeration=np.float64(4.0)), T.kl_gradient(P, Y, exaggeration=4.0))
