"""Influence functions (lecture 05): exact vs the closed form of logistic regression, CG / LiSSA /
Arnoldi vs exact, influence vs leave-one-out retraining, captum parity, and the error messages."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import (fit, hessian_matrix, hessian_vector_product, i_up_loss,
                                        inverse_hvp, leave_one_out, parameter_names)
from xaicourse.models import MLP, LogisticRegression

warnings.filterwarnings("ignore", category=UserWarning)
L2 = 1e-2
N = 300


@pytest.fixture(scope="module")
def logreg():
    """An L2-regularised logistic regression on 300 digits, float64, trained to the optimum."""
    torch.set_num_threads(1)
    s = load_digits_tensors()
    X, y = s.X_train[:N].double(), s.y_train[:N]
    Xt, yt = s.X_test[:4].double(), s.y_test[:4]
    torch.manual_seed(0)
    model = LogisticRegression().double()
    info = fit(model, nn.CrossEntropyLoss(), X, y, l2=L2)
    assert info["grad_max"] <= 1e-8
    loss = nn.CrossEntropyLoss()
    exact = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="exact")
    return model, loss, X, y, Xt, yt, exact


def pearson(a, b):
    return float(np.corrcoef(np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel())[0, 1])


def closed_form(model, X, y, Xt, yt, l2):
    """Multinomial logistic regression by hand: ∇ℓ = (p − e_y) ⊗ [x, 1],
    H = (1/n) Σ (diag p − p pᵀ) ⊗ [x, 1][x, 1]ᵀ + λI, in the order (weight rows, bias)."""
    W, b = model.linear.weight.detach(), model.linear.bias.detach()

    def parts(Xs, ys):
        x = Xs.flatten(1)
        p = torch.softmax(x @ W.T + b, 1)
        r = p - nn.functional.one_hot(ys, 10).double()
        g = torch.cat([(r[:, :, None] * x[:, None, :]).flatten(1), r], 1)
        return x, p, g

    x, p, g = parts(X, y)
    _, _, gt = parts(Xt, yt)
    K, D = 10, x.shape[1]
    P = K * D + K
    H = torch.zeros(P, P, dtype=torch.float64)
    xe = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    for i in range(len(x)):
        A = torch.diag(p[i]) - torch.outer(p[i], p[i])
        # parameter (k, d) ↦ index k·D + d for weights, K·D + k for bias
        B = torch.einsum("kl,d,e->kdle", A, xe[i], xe[i])  # (K, D+1, K, D+1)
        Bw = B[:, :D, :, :D].reshape(K * D, K * D)
        H[:K * D, :K * D] += Bw
        H[:K * D, K * D:] += B[:, :D, :, D].reshape(K * D, K)
        H[K * D:, :K * D] += B[:, D, :, :D].reshape(K, K * D)
        H[K * D:, K * D:] += B[:, D, :, D]
    H = H / len(x) + l2 * torch.eye(P, dtype=torch.float64)
    return H, g, gt


# ------------------------------------------------------------------ exact vs closed form
def test_exact_influence_matches_closed_form_logistic_regression(logreg):
    model, loss, X, y, Xt, yt, exact = logreg
    assert parameter_names(model) == ["linear.weight", "linear.bias"]
    H, g, gt = closed_form(model, X, y, Xt, yt, L2)
    assert torch.allclose(hessian_matrix(model, loss, X, y, l2=L2), H, atol=1e-12)
    v = torch.randn(3, H.shape[0], dtype=torch.float64)
    assert torch.allclose(hessian_vector_product(model, loss, X, y, v, l2=L2), v @ H, atol=1e-12)
    ref = -gt @ torch.linalg.solve(H, g.T)
    assert exact.shape == (4, N)
    assert (exact - ref).abs().max() <= 1e-9 * ref.abs().max()


def test_damping_adds_to_the_diagonal(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    H, g, gt = closed_form(model, X, y, Xt, yt, L2)
    I = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="exact", damping=0.05)
    ref = -gt @ torch.linalg.solve(H + 0.05 * torch.eye(len(H), dtype=H.dtype), g.T)
    assert (I - ref).abs().max() <= 1e-9 * ref.abs().max()


# ------------------------------------------------------------------ approximations vs exact
def test_cg_and_arnoldi_match_exact(logreg):
    model, loss, X, y, Xt, yt, exact = logreg
    for method in ("cg", "arnoldi"):
        I = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method=method)
        assert (I - exact).abs().max() <= 1e-6 * exact.abs().max(), method
        assert min(pearson(I[k], exact[k]) for k in range(len(I))) >= 0.999999, method


def test_arnoldi_top_k_keeps_the_dominant_directions(logreg):
    model, loss, X, y, Xt, yt, exact = logreg
    I = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="arnoldi", arnoldi_dim=200, rank=100)
    assert min(pearson(I[k], exact[k]) for k in range(len(I))) >= 0.9


def test_lissa_matches_exact_with_documented_settings(logreg):
    model, loss, X, y, Xt, yt, exact = logreg
    # deterministic (full-batch) recursion, scale = 1.1 × λ_max by power iteration
    I = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="lissa", depth=300)
    assert min(pearson(I[k], exact[k]) for k in range(len(I))) >= 0.99
    # stochastic mini-batch recursion, averaged over repeats: same seed → same numbers
    kw = dict(l2=L2, method="lissa", depth=300, lissa_batch=100, repeats=2, seed=3)
    I1 = i_up_loss(model, loss, X, y, Xt[:2], yt[:2], **kw)
    I2 = i_up_loss(model, loss, X, y, Xt[:2], yt[:2], **kw)
    assert torch.equal(I1, I2)
    assert min(pearson(I1[k], exact[k]) for k in range(2)) >= 0.98


def test_lissa_monitor_converges_to_the_exact_solve(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    from xaicourse.data_attribution import per_example_grads
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    ref = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    _, hist, scale = inverse_hvp(model, loss, X, y, v, l2=L2, method="lissa", depth=600, record_every=100)
    errs = [float((h[0] - ref).norm() / ref.norm()) for _, _, h in hist]
    assert scale > 0 and len(errs) == 6
    assert all(b < a for a, b in zip(errs, errs[1:])) and errs[-1] < 0.05


# ------------------------------------------------------------------ ground truth
def test_influence_predicts_leave_one_out(logreg):
    model, loss, X, y, Xt, yt, exact = logreg
    for k in range(2):
        top = exact[k].abs().argsort(descending=True)[:12]
        actual = leave_one_out(model, loss, X, y, Xt[k:k + 1], yt[k:k + 1], top, l2=L2, progress=False)[0]
        predicted = -exact[k, top] / N
        assert pearson(predicted, actual) >= 0.99
        # same sign; first order: the size is underestimated for the most influential points
        assert torch.all(torch.sign(predicted) == torch.sign(actual))
        assert 0.6 <= float((predicted / actual).median()) <= 1.1


def test_leave_one_out_removes_the_point(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    before = [p.detach().clone() for p in model.parameters()]
    d = leave_one_out(model, loss, X, y, X[:2], y[:2], [0, 1], l2=L2, progress=False)
    assert d.shape == (2, 2)
    # removing a training point raises its own loss (it no longer pulls the fit towards itself)
    assert d[0, 0] > 0 and d[1, 1] > 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# ------------------------------------------------------------------ captum
def test_matches_captum_naive_influence(logreg, tmp_path):
    captum_inf = pytest.importorskip("captum.influence")
    from torch.utils.data import TensorDataset
    model, loss, X, y, Xt, yt, exact = logreg
    ck = tmp_path / "m.pt"
    torch.save(model.state_dict(), ck)
    # captum sums the per-example Hessians and adds hessian_reg: H_sum + reg·I = n (H + λI) for reg = nλ,
    # and scores +∇ℓ_testᵀ H_sum⁻¹ ∇ℓ — i.e. −I_up,loss / n
    naive = captum_inf.NaiveInfluenceFunction(model, TensorDataset(X, y), str(ck),
                                              loss_fn=nn.CrossEntropyLoss(reduction="none"),
                                              batch_size=N, projection_dim=650, hessian_reg=N * L2,
                                              hessian_inverse_tol=0.0)
    ref = naive.influence((Xt, yt))
    for method in ("exact", "cg", "arnoldi"):
        ours = -i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method=method) / N
        assert (ours - ref).abs().max() <= 1e-6 * ref.abs().max(), method


# ------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def nonconvex():
    torch.manual_seed(0)
    s = load_digits_tensors()
    m = MLP(64, 10, hidden=8)  # at its random initialisation: far from a minimum
    return m.double(), s.X_train[:100].double(), s.y_train[:100], s.X_test[:2].double(), s.y_test[:2]


def test_indefinite_hessian_asks_for_damping(nonconvex):
    m, X, y, Xt, yt = nonconvex
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="damping"):
        i_up_loss(m, loss, X, y, Xt, yt, method="exact")
    with pytest.raises(ValueError, match="damping"):
        i_up_loss(m, loss, X, y, Xt, yt, method="cg")


def test_singular_hessian_without_l2(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    with pytest.raises(ValueError, match="l2"):
        i_up_loss(model, loss, X, y, Xt, yt, l2=0.0, method="exact")


def test_lissa_divergence_names_a_scale(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    with pytest.raises(ValueError, match=r"diverges.*scale="):
        i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="lissa", scale=0.05, depth=500)


def test_argument_errors(logreg):
    model, loss, X, y, Xt, yt, _ = logreg
    with pytest.raises(ValueError, match="train_labels"):
        i_up_loss(model, loss, X, y[:-1], Xt, yt, l2=L2)
    with pytest.raises(ValueError, match="test_labels"):
        i_up_loss(model, loss, X, y, Xt, yt[:1], l2=L2)
    with pytest.raises(ValueError, match="method"):
        i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="newton")
    with pytest.raises(ValueError, match="l2"):
        i_up_loss(model, loss, X, y, Xt, yt, l2=-1.0)
    with pytest.raises(TypeError, match="train_inputs"):
        i_up_loss(model, loss, X.float(), y, Xt, yt, l2=L2)
    with pytest.raises(ValueError, match="indices"):
        leave_one_out(model, loss, X, y, Xt, yt, [N], l2=L2, progress=False)


# ------------------------------------------------------------------ issue 26: fair comparisons
def test_lissa_converges_above_half_the_largest_eigenvalue(logreg):
    """I − H/s has spectral radius < 1 iff 0 < λ < 2s: s = 0.6·λ_max converges, 0.45·λ_max diverges."""
    model, loss, X, y, Xt, yt, _ = logreg
    from xaicourse.data_attribution import per_example_grads
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    ref = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    lam_max = float(torch.linalg.eigvalsh(hessian_matrix(model, loss, X, y, l2=L2))[-1])
    est = inverse_hvp(model, loss, X, y, v, l2=L2, method="lissa", scale=0.6 * lam_max, depth=3000)
    assert float((est - ref).norm() / ref.norm()) < 1e-3
    with pytest.raises(ValueError, match=r"λ_max/2"):
        inverse_hvp(model, loss, X, y, v, l2=L2, method="lissa", scale=0.45 * lam_max, depth=3000)


def test_leave_one_out_starts_from_the_given_parameters(logreg):
    """No refit: the baseline is the model's own θ̂ (the θ̂ of the influence)."""
    model, loss, X, y, Xt, yt, _ = logreg
    import copy
    d = leave_one_out(model, loss, X, y, Xt[:1], yt[:1], [3], l2=L2)
    m = copy.deepcopy(model)
    with torch.no_grad():
        base = float(loss(m(Xt[:1]), yt[:1]))
    fit(m, loss, X, y, l2=L2, drop=[3])
    with torch.no_grad():
        assert abs(float(loss(m(Xt[:1]), yt[:1])) - base - float(d[0, 0])) < 1e-10


def test_damped_influence_is_compared_with_damped_retraining(logreg):
    """A damped influence ((H + δI)⁻¹) predicts the retraining with the proximal term (δ/2)‖θ − θ̂‖²
    (leave_one_out(damping=δ)) to second order, but not plain leave-one-out: with δ = 5λ the plain
    retraining moves much further than the damped prediction."""
    model, loss, X, y, Xt, yt, exact = logreg
    delta = 5 * L2
    damped = i_up_loss(model, loss, X, y, Xt[:1], yt[:1], l2=L2, method="exact", damping=delta)[0]
    top = damped.abs().argsort(descending=True)[:8]
    pred = -damped[top] / N
    act_damped = leave_one_out(model, loss, X, y, Xt[:1], yt[:1], top, l2=L2, damping=delta)[0]
    act_plain = leave_one_out(model, loss, X, y, Xt[:1], yt[:1], top, l2=L2)[0]
    assert float((pred - act_damped).abs().max()) <= 0.15 * float(act_damped.abs().max())
    assert 0.9 <= float((act_damped / pred).median()) <= 1.15
    assert float((act_plain / pred).median()) > 1.5 and float((act_plain - pred).abs().max()) > 2 * float(pred.abs().max())


def test_leave_one_out_of_a_model_stopped_early(logreg):
    """θ̂ not stationary: the baseline is the retraining without removal, so removing nothing would
    measure 0 and a point's ΔL is its effect alone."""
    model, loss, X, y, Xt, yt, _ = logreg
    torch.manual_seed(1)
    m = LogisticRegression().double()
    fit(m, loss, X, y, l2=L2, max_iter=5)
    d = leave_one_out(m, loss, X, y, X[:2], y[:2], [0, 1], l2=L2)
    # each point's removal raises its own loss far more than the other's: the common drift of
    # the unfinished training is not counted
    assert d[0, 0] > 10 * abs(float(d[1, 0])) and d[1, 1] > 10 * abs(float(d[0, 1]))
