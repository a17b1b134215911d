"""Attacks on attributions: maps equal the package's methods, the constraints hold (‖δ‖∞ ≤ ε,
prediction and confidence kept), the measures agree with scipy / hand examples, the surrogate
is needed for ReLU networks, bad inputs."""

import math

import pytest
import torch
from scipy.stats import spearmanr

from xaicourse import attribution as A
from xaicourse import robustness as R
from xaicourse.models import SmallCNN


@pytest.fixture(scope="module")
def cnn():
    torch.manual_seed(0)
    return SmallCNN(3, 3, width=4, hidden=8).eval()


@pytest.fixture(scope="module")
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_topk_intersection_hand_examples():
    a = torch.tensor([[5.0, 4, 3, 2, 1, 0]])
    b = torch.tensor([[0.0, 4, 3, 2, 1, 5]])
    assert R.topk_intersection(a, b, 1).item() == 0.0
    assert R.topk_intersection(a, b, 3).item() == pytest.approx(2 / 3)
    assert R.topk_intersection(a, a, 4).item() == 1.0
    assert R.topk_intersection(a, b, 6).item() == 1.0


def test_rank_correlation_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 30), generator=g).double()       # many ties
    b = a + torch.randn(4, 30, generator=g)
    ours = R.rank_correlation(a, b)
    for n in range(4):
        assert ours[n].item() == pytest.approx(spearmanr(a[n], b[n]).statistic, abs=1e-12)
    assert R.rank_correlation(torch.zeros(1, 5), torch.zeros(1, 5)).item() == 1.0


def test_center_of_mass():
    m = torch.zeros(1, 5, 7)
    m[0, 1, 2] = 1.0
    m[0, 3, 6] = 1.0
    assert R.center_of_mass(m).tolist() == [[2.0, 4.0]]


@pytest.mark.parametrize("method", R.ATTACK_METHODS)
def test_maps_equal_package_methods(cnn, x, method):
    t = torch.tensor([0, 1, 2])
    ref = {"gradient": lambda: A.gradient(cnn, x, t),
           "smoothgrad": lambda: A.smoothgrad(cnn, x, t, sigma=0.15, n_samples=5, seed=2, input_range=(0, 1)),
           "integrated_gradients": lambda: A.integrated_gradients(cnn, x, t, n_steps=8),
           "grad_cam": lambda: A.grad_cam(cnn, x, t, layer="conv3")[:, :1]}[method]().abs().sum(1)
    ours = R.attribution_map(method, cnn, x, t, n_samples=5, seed=2, n_steps=8)
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()


def test_relu_map_gradient_vanishes_but_surrogate_does_not(cnn, x):
    xg = x.clone().requires_grad_(True)
    m = R.attribution_map("gradient", cnn, xg, 0, create_graph=True)
    (g,) = torch.autograd.grad(m[:, :4, :4].sum(), xg, allow_unused=True)
    assert g is None or g.abs().max() == 0          # piecewise-linear: the Hessian is zero
    sur = R.smooth_surrogate(cnn, beta=10.0)
    assert not any(isinstance(mod, torch.nn.ReLU) for mod in sur.modules())
    assert any(isinstance(mod, torch.nn.ReLU) for mod in cnn.modules())       # original untouched
    m2 = R.attribution_map("gradient", sur, xg, 0, create_graph=True)
    (g2,) = torch.autograd.grad(m2[:, :4, :4].sum(), xg)
    assert g2.abs().max() > 0


@pytest.mark.parametrize("kind", R.ATTACK_KINDS)
def test_attack_keeps_constraints(cnn, x, kind):
    eps = 8 / 255
    p0 = torch.softmax(cnn(x), 1)
    r = R.attack_attribution(cnn, "gradient", x, kind=kind, eps=eps, n_iter=6, k=20, confidence_tol=0.05)
    assert (r.delta_linf <= eps + 1e-6).all()
    assert r.inputs.min() >= 0 and r.inputs.max() <= 1
    p1 = torch.softmax(cnn(r.inputs), 1)
    assert torch.equal(p1.argmax(1), p0.argmax(1))
    c0, c1 = p0.max(1).values, p1.gather(1, p0.argmax(1)[:, None])[:, 0]
    assert ((c1 - c0).abs() <= 0.05 * c0 + 1e-6).all()
    again = R.topk_intersection(R.attribution_map("gradient", cnn, x, r.prediction),
                                R.attribution_map("gradient", cnn, r.inputs, r.prediction), 20)
    assert torch.allclose(again, r.topk_intersection)
    assert r.moved.any()


def test_topk_attack_needs_the_surrogate(cnn, x):
    kw = dict(kind="topk", eps=16 / 255, n_iter=10, k=20, confidence_tol=None)
    stuck = R.attack_attribution(cnn, "gradient", x, beta=None, **kw)     # ReLU: zero map gradient
    assert stuck.delta_linf.max() == 0 and (stuck.topk_intersection == 1).all()
    tk = R.attack_attribution(cnn, "gradient", x, beta=10.0, **kw)
    assert tk.topk_intersection.mean() < 0.6


def test_random_sign_convention(x):
    out = R.random_sign(x, 0.1, seed=4)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out, (x + 0.1 * z.sign()).clamp(0, 1))


def test_bad_inputs(cnn, x):
    for eps in (0.0, -0.1):
        with pytest.raises(ValueError, match="eps"):
            R.attack_attribution(cnn, "gradient", x, eps=eps)
        with pytest.raises(ValueError, match="eps"):
            R.random_sign(x, eps)
    with pytest.raises(ValueError, match="kind"):
        R.attack_attribution(cnn, "gradient", x, kind="bottom")
    with pytest.raises(ValueError, match="attribution_fn"):
        R.attack_attribution(cnn, "lime", x)
    with pytest.raises(ValueError, match="k must be"):
        R.attack_attribution(cnn, "gradient", x, k=10_000)
    with pytest.raises(ValueError, match="layer 'nope'"):
        R.attack_attribution(cnn, "grad_cam", x, layer="nope", n_iter=1)
    with pytest.raises(ValueError, match="same shape"):
        R.topk_intersection(torch.zeros(1, 4), torch.zeros(1, 5), 2)


def test_ig_map_of_a_relu_net_is_piecewise_linear_not_constant(cnn, x):
    """IG (black baseline) = x ⊙ mean of ∇f at α_j·x: its derivative in x is that mean, not 0 —
    unlike the gradient map, whose derivative vanishes (the docstring's claim, lecture 09)."""
    xg = x.clone().requires_grad_(True)
    m = R.attribution_map("integrated_gradients", cnn, xg, 0, create_graph=True, n_steps=8)
    (g,) = torch.autograd.grad(m[:, :4, :4].sum(), xg, allow_unused=True)
    assert g is not None and g.abs().max() > 1e-6
    # the derivative IS the averaged path gradient (sign-corrected) on the differentiated pixels
    ig = A.integrated_gradients(cnn, x, 0, n_steps=8)
    gbar = ig / x.where(x != 0, torch.ones_like(x))                  # ḡ where x ≠ 0
    want = (ig.sign() * gbar)[:, :, :4, :4]
    sel = (x[:, :, :4, :4] != 0) & (ig[:, :, :4, :4] != 0)
    assert torch.allclose(g[:, :, :4, :4][sel], want[sel], atol=1e-4, rtol=1e-3)


def test_summary_excludes_unmoved_images(cnn, x):
    kw = dict(kind="topk", eps=16 / 255, n_iter=3, k=20, confidence_tol=None)
    stuck = R.attack_attribution(cnn, "gradient", x, beta=None, **kw)     # nothing moves
    s = stuck.summary()
    assert s["n_moved"] == 0 and s["n_unmoved"] == len(x) and math.isnan(s["topk_intersection"])
    r = R.attack_attribution(cnn, "gradient", x, beta=10.0, **kw)
    r.moved[0] = False                                                  # pretend image 0 had no feasible δ
    r.topk_intersection[0] = 1.0
    s = r.summary()
    assert s["n_unmoved"] == 1 and s["n_moved"] == len(x) - 1
    assert s["topk_intersection"] == pytest.approx(r.topk_intersection[1:].double().mean().item())
    assert s["spearman"] == pytest.approx(r.spearman[1:].double().mean().item())
