"""Integrated gradients (lecture 04): parity with captum for every rule, completeness, baselines,
errors."""
import warnings

import numpy as np
import pytest
import torch

from xaicourse import attribution as A
from xaicourse._torch import quadrature
from xaicourse.attribution.gradients import RULES, blurred_baseline, sample_baselines, uniform_noise_baseline
from conftest import maxdiff

captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.approximation_methods import approximation_parameters  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
TOL = 1e-5


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("n", [2, 7, 50])
def test_points_and_weights_are_captums(method, n):
    sizes, alphas = approximation_parameters(method)
    a, w = quadrature(n, method, dtype=torch.float64)
    assert a.dtype == w.dtype == torch.float64
    np.testing.assert_allclose(a, alphas(n), atol=1e-12 if method == "gausslegendre" else 1e-7)
    np.testing.assert_allclose(w, sizes(n), atol=1e-12)
    a32, w32 = quadrature(n, method, dtype=torch.float32)
    assert a32.dtype == w32.dtype == torch.float32
    with pytest.warns(DeprecationWarning):
        from xaicourse.attribution.gradients import ig_points
        assert ig_points(n, method)[1] == w.tolist()


def _tanh_net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()


def test_float64_inputs_get_float64_quadrature_64_point_gauss_legendre_is_exact():
    """The issue's numbers: with weights rounded to float32 the 64-point rule's completeness error
    was 1.2e-9; in the inputs' dtype it is float64 rounding (measured ≈ 1e-16)."""
    net = _tanh_net()
    x = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    attr, delta = A.integrated_gradients(net, x, 1, n_steps=64, return_convergence_delta=True)
    assert attr.dtype == torch.float64
    assert delta.abs().max() < 1e-13
    # the same on the layer side: unit attribution of a hidden unit, internal influence is float64
    ua = A.unit_attribution(net, x, 3, layer="1", n_steps=64)
    with torch.no_grad():
        h = torch.tanh(net[0](x))[:, 3] - torch.tanh(net[0](torch.zeros_like(x)))[:, 3]
    assert (ua.sum(1) - h).abs().max() < 1e-13
    assert A.internal_influence(net, x, 1, layer="1", n_steps=64).dtype == torch.float64


@pytest.mark.parametrize("method", RULES)
@pytest.mark.parametrize("n", [2, 20, 50])
def test_ig_matches_captum_every_rule(digits, method, n):
    model, split = digits
    x, t = split.X_test[:32], split.y_test[:32]
    ours, d_ours = A.integrated_gradients(model, x, t, n_steps=n, method=method, return_convergence_delta=True)
    ref, d_ref = captum_attr.IntegratedGradients(model).attribute(
        x, target=t, n_steps=n, method=method, return_convergence_delta=True)
    assert maxdiff(ours, ref) <= TOL
    # captum's delta is Σ attr − (f(x) − f(x′)) too
    assert maxdiff(d_ours, d_ref) <= 1e-4


def test_ig_matches_captum_on_rgb_with_tensor_baseline_and_batching(shapes):
    model, split = shapes
    x, t = split.X_test[:4], split.y_test[:4]
    base = blurred_baseline(x, sigma=2.0)
    ig = captum_attr.IntegratedGradients(model)
    ref = ig.attribute(x, baselines=base, target=t, n_steps=16, method="riemann_middle")
    ours = A.integrated_gradients(model, x, t, baselines=base, n_steps=16, method="riemann_middle")
    assert maxdiff(ours, ref) <= TOL
    # splitting the interpolated images into passes changes nothing
    chunked = A.integrated_gradients(model, x, t, baselines=base, n_steps=16, method="riemann_middle",
                                     batch_size=9)
    assert maxdiff(chunked, ours) <= TOL
    # a constant baseline = captum's scalar baseline
    assert maxdiff(A.integrated_gradients(model, x, t, baselines=0.5, n_steps=8),
                   ig.attribute(x, baselines=0.5, target=t, n_steps=8)) <= TOL


def test_set_of_baselines_is_the_mean_over_baselines(digits):
    model, split = digits
    x, t = split.X_test[:8], split.y_test[:8]
    bases = sample_baselines(split.X_train, k=3, seed=1)
    ours, delta = A.integrated_gradients(model, x, t, baselines=bases, n_steps=32, return_convergence_delta=True)
    ig = captum_attr.IntegratedGradients(model)
    ref = sum(ig.attribute(x, baselines=b.expand_as(x), target=t, n_steps=32) for b in bases) / 3
    assert maxdiff(ours, ref) <= TOL
    # completeness against the mean baseline output
    with torch.no_grad():
        fx = model(x)[torch.arange(8), t]
        fb = torch.stack([model(b.expand_as(x))[torch.arange(8), t] for b in bases]).mean(0)
    assert maxdiff(ours.flatten(1).sum(1) - (fx - fb), delta) <= 1e-4
    # the same seed draws the same baselines, another seed others
    assert all(torch.equal(a, b) for a, b in zip(bases, sample_baselines(split.X_train, k=3, seed=1)))
    assert not torch.equal(bases[0], sample_baselines(split.X_train, k=3, seed=2)[0])


def test_completeness_within_one_percent_with_64_gauss_legendre_steps(digits):
    model, split = digits
    x, t = split.X_test[:64], split.y_test[:64]
    attr, delta = A.integrated_gradients(model, x, t, n_steps=64, return_convergence_delta=True)
    with torch.no_grad():
        gap = model(x)[torch.arange(64), t] - model(torch.zeros_like(x))[torch.arange(64), t]
    rel = delta.abs() / gap.abs()
    assert rel.mean() < 0.01 and rel.median() < 0.01
    assert delta.abs().sum() / gap.abs().sum() < 0.01
    # and the quadrature really converges: more steps, smaller delta overall
    _, d2 = A.integrated_gradients(model, x, t, n_steps=8, return_convergence_delta=True)
    assert d2.abs().mean() > 2 * delta.abs().mean()


def test_ig_on_a_linear_model_is_exact_with_any_rule():
    lin = torch.nn.Linear(5, 3)
    x, b = torch.randn(4, 5), torch.randn(4, 5)
    for method in RULES:
        if method == "riemann_trapezoid":
            continue  # captum's trapezoid weights sum to (n−1)/n
        attr = A.integrated_gradients(lin, x, 2, baselines=b, n_steps=3, method=method)
        assert maxdiff(attr, lin.weight[2].detach() * (x - b)) <= 1e-5
    attr = A.integrated_gradients(lin, x, 2, baselines=b, n_steps=4, method="riemann_trapezoid")
    assert maxdiff(attr, 0.75 * lin.weight[2].detach() * (x - b)) <= 1e-5


def test_baseline_helpers():
    x = torch.rand(2, 3, 9, 9)
    blur = blurred_baseline(x, sigma=1.5)
    assert blur.shape == x.shape
    assert maxdiff(blur.mean((2, 3)), x.mean((2, 3))) < 0.05       # brightness kept
    assert blur.diff(dim=3).abs().mean() < x.diff(dim=3).abs().mean() / 2   # detail removed
    const = torch.full_like(x, 0.3)
    assert maxdiff(blurred_baseline(const, sigma=2.0), const) <= 1e-6
    n1, n2 = uniform_noise_baseline(x, seed=3), uniform_noise_baseline(x, seed=3)
    assert torch.equal(n1, n2) and 0 <= n1.min() and n1.max() <= 1
    assert not torch.equal(n1, uniform_noise_baseline(x, seed=4))


def test_model_left_as_found(digits):
    model, split = digits
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    A.integrated_gradients(model, split.X_test[:2], 0, n_steps=4)
    assert model.training and flags == [p.requires_grad for p in model.parameters()]
    assert all((g is None and p.grad is None) or torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))
    model.eval()


def test_bad_input(digits):
    model, split = digits
    x = split.X_test[:2]
    with pytest.raises(ValueError, match="n_steps"):
        A.integrated_gradients(model, x, 0, n_steps=0)
    with pytest.raises(ValueError, match="n_steps"):
        A.integrated_gradients(model, x, 0, n_steps=1, method="riemann_trapezoid")
    with pytest.raises(ValueError, match="method.*gausslegendre"):
        A.integrated_gradients(model, x, 0, method="simpson")
    with pytest.raises(ValueError, match="baselines.*shape"):
        A.integrated_gradients(model, x, 0, baselines=torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match="baselines.*shape"):
        A.integrated_gradients(model, x, 0, baselines=torch.zeros(1, 8, 7))
    with pytest.raises(ValueError, match="baselines must be one of"):
        A.integrated_gradients(model, x, 0, baselines="black")
    with pytest.raises(ValueError, match="baselines"):
        A.integrated_gradients(model, x, 0, baselines=[])
    with pytest.raises(TypeError, match="n_steps"):
        A.integrated_gradients(model, x, 0, n_steps=2.5)
    assert "integrated_gradients" in A.METHODS
