"""Tests for xaicourse.featurevis: TV and its gradient, the Lp projections and ascent step
(xaicourse.constraints), objectives, activation maximisation on the course CNNs, dataset
examples, the device rule, input validation, and the opt-in loader (xaicourse.models)."""
import math
import socket

import numpy as np
import pytest
import torch

from xaicourse import constraints as cs
from xaicourse import device as xdevice
from xaicourse import featurevis as fv
from xaicourse import maps
from xaicourse.models import SmallCNN, load_pretrained


@pytest.fixture(scope="module")
def grids(digits, shapes):
    """Unregularised and recommended-TV 1-image-per-class grids for both course CNNs."""
    out = {}
    for name, (model, split) in (("digits", digits), ("shapes", shapes)):
        classes = list(range(split.n_classes))
        st = fv.course_settings(name)
        out[name] = dict(
            plain=fv.activation_maximization(model, classes, split.image_shape, **{**st, "tv_weight": 0.0}),
            tv=fv.activation_maximization(model, classes, split.image_shape, **st),
        )
    return out


# ------------------------------------------------------------------ total variation
def test_total_variation_hand_computed():
    x = torch.tensor([[0.0, 1.0], [3.0, 1.0]])
    # dx: (1-0), (1-3) ; dy: (3-0), (1-1)  → anisotropic |1|+|−2|+|3|+|0| = 6
    assert fv.total_variation(x).item() == pytest.approx(6.0)
    # isotropic per pixel: (0,0): sqrt(1+9); (0,1): sqrt(0+0); (1,0): sqrt(4+0); (1,1): 0
    assert fv.total_variation(x, "isotropic").item() == pytest.approx(math.sqrt(10) + 2.0, abs=1e-5)


def test_total_variation_matches_loop_and_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 6, generator=g, dtype=torch.float64)
    a = x.numpy()
    ref_aniso = np.zeros(3)
    ref_iso = np.zeros(3)
    for n in range(3):
        for c in range(2):
            for i in range(5):
                for j in range(6):
                    dx = a[n, c, i, j + 1] - a[n, c, i, j] if j + 1 < 6 else 0.0
                    dy = a[n, c, i + 1, j] - a[n, c, i, j] if i + 1 < 5 else 0.0
                    ref_aniso[n] += abs(dx) + abs(dy)
                    ref_iso[n] += math.sqrt(dx * dx + dy * dy)
    np.testing.assert_allclose(fv.total_variation(x).numpy(), ref_aniso, rtol=1e-12)
    np.testing.assert_allclose(fv.total_variation(x, "isotropic", eps=0.0).numpy(), ref_iso, rtol=1e-12)
    iso, aniso = fv.total_variation(x, "isotropic"), fv.total_variation(x)
    assert (iso <= aniso).all() and (aniso <= math.sqrt(2) * iso + 1e-9).all()
    assert fv.total_variation(torch.full((2, 3, 4, 4), 0.7)).abs().max() == 0.0
    # invariant to adding a constant, 1-homogeneous
    assert torch.allclose(fv.total_variation(x + 5.0), aniso)
    assert torch.allclose(fv.total_variation(3.0 * x), 3.0 * aniso)


@pytest.mark.parametrize("kind", ["anisotropic", "isotropic"])
def test_total_variation_gradient_matches_finite_differences(kind):
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: fv.total_variation(t, kind), (x,), eps=1e-6, atol=1e-7)
    # and by hand: central differences of the summed TV on a few coordinates
    (grad,) = torch.autograd.grad(fv.total_variation(x, kind).sum(), x)
    h = 1e-6
    for idx in [(0, 0, 0, 0), (1, 2, 3, 4), (0, 1, 2, 2), (1, 0, 1, 3)]:
        e = torch.zeros_like(x)
        e[idx] = h
        fd = (fv.total_variation(x + e, kind).sum() - fv.total_variation(x - e, kind).sum()) / (2 * h)
        assert abs(fd.item() - grad[idx].item()) < 1e-6


def test_total_variation_validates():
    with pytest.raises(ValueError, match="kind must be one of"):
        fv.total_variation(torch.rand(1, 1, 4, 4), "l1")
    with pytest.raises(ValueError, match="x must be"):
        fv.total_variation(torch.rand(1, 1, 1, 4, 4))
    a = np.random.default_rng(0).random((4, 4))          # arrays are accepted (maps.total_variation)
    assert torch.allclose(fv.total_variation(a), fv.total_variation(torch.from_numpy(a)))
    assert fv.total_variation is maps.total_variation    # one function per idea (issue #25)
    with pytest.raises(TypeError, match="x must be a tensor or array"):
        fv.total_variation("img")


# ------------------------------------------------------------------ projection and the ascent step
@pytest.mark.parametrize("p", [2, math.inf])
def test_projection_is_feasible_idempotent_and_keeps_inside_points(p):
    g = torch.Generator().manual_seed(2)
    y = 0.5 + 2.0 * torch.randn(6, 3, 5, 5, generator=g, dtype=torch.float64)
    x = cs.project_lp(y, 1.5, p, center=0.5)
    assert (cs.lp_norm(x, p, 0.5) <= 1.5 + 1e-9).all()
    assert torch.allclose(cs.project_lp(x, 1.5, p, center=0.5), x)
    inside = 0.5 + 0.01 * torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    assert torch.equal(cs.project_lp(inside, 1.5, p, center=0.5), inside)
    if p == 2:  # along the ray through the centre
        d, dy = (x - 0.5).flatten(1), (y - 0.5).flatten(1)
        cos = (d * dy).sum(1) / (d.norm(dim=1) * dy.norm(dim=1))
        assert torch.allclose(cos, torch.ones(6, dtype=torch.float64))
    else:
        assert torch.equal(x, y.clamp(-1.0, 2.0))


def test_projection_onto_ball_and_box_is_the_exact_qp_solution():
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(3)
    y = 0.5 + 0.8 * torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)
    r = 1.0
    x = cs.project_lp(y, r, 2, center=0.5, clamp=(0.0, 1.0))
    assert (x >= 0).all() and (x <= 1).all() and (cs.lp_norm(x, 2, 0.5) <= r + 1e-12).all()
    for n in range(4):
        yn = y[n].flatten().numpy()
        res = minimize(lambda z: ((z - yn) ** 2).sum(), np.full(16, 0.5), method="SLSQP",
                       bounds=[(0, 1)] * 16, options={"ftol": 1e-14, "maxiter": 500},
                       constraints=[{"type": "ineq", "fun": lambda z: r ** 2 - ((z - 0.5) ** 2).sum()}])
        np.testing.assert_allclose(x[n].flatten().numpy(), res.x, atol=1e-6)


def test_ascent_step_directions():
    g = torch.Generator().manual_seed(4)
    x = 0.5 + 0.01 * torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(2, 1, 6, 6, generator=g, dtype=torch.float64)
    # p = inf: a signed step of size eta per pixel (FGSM-like), inside the box here
    x_inf = cs.ascent_step(x, grad, 0.1, radius=0.5, p="inf", center=0.5)
    assert torch.allclose(x_inf, x + 0.1 * grad.sign())
    # p = 2: the step has Euclidean length eta and points along the gradient
    x_2 = cs.ascent_step(x, grad, 0.3, radius=10.0, p=2, center=0.5)
    step = (x_2 - x).flatten(1)
    assert torch.allclose(step.norm(dim=1), torch.full((2,), 0.3, dtype=torch.float64))
    assert torch.allclose(step, 0.3 * grad.flatten(1) / grad.flatten(1).norm(dim=1, keepdim=True))
    # a zero gradient does not move (no NaN)
    assert torch.equal(cs.ascent_step(x, torch.zeros_like(x), 0.3, 10.0, 2, 0.5), x)
    # and a large step is projected back onto the ball
    far = cs.ascent_step(x, grad, 100.0, radius=2.0, p=2, center=0.5)
    assert (cs.lp_norm(far, 2, 0.5) <= 2.0 + 1e-9).all()


def test_projection_with_a_tensor_center_and_box():
    """The ball may be centred on a tensor (e.g. the original images of an attack, lecture 09)."""
    from scipy.optimize import minimize

    g = torch.Generator().manual_seed(13)
    c = 0.2 + 0.6 * torch.rand(3, 1, 3, 3, generator=g, dtype=torch.float64)   # centres inside [0, 1]
    y = c + 0.7 * torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64)
    x_inf = cs.project_lp(y, 0.25, "inf", center=c, clamp=(0.0, 1.0))
    assert torch.equal(x_inf, torch.minimum(torch.maximum(y, c - 0.25), c + 0.25).clamp(0, 1))
    r = 0.6
    x2 = cs.project_lp(y, r, 2, center=c, clamp=(0.0, 1.0))
    assert (cs.lp_norm(x2, 2, c) <= r + 1e-12).all()
    for n in range(3):
        yn, cn = y[n].flatten().numpy(), c[n].flatten().numpy()
        res = minimize(lambda z: ((z - yn) ** 2).sum(), cn, method="SLSQP", bounds=[(0, 1)] * 9,
                       options={"ftol": 1e-14, "maxiter": 500},
                       constraints=[{"type": "ineq", "fun": lambda z: r ** 2 - ((z - cn) ** 2).sum()}])
        np.testing.assert_allclose(x2[n].flatten().numpy(), res.x, atol=1e-6)
    # one centre for the whole batch broadcasts; a centre of another shape does not
    assert torch.allclose(cs.project_lp(y, r, 2, center=c[0]), c[0] + cs.project_lp(y - c[0], r, 2))
    with pytest.raises(ValueError, match="center must be a scalar or broadcastable"):
        cs.project_lp(y, r, 2, center=torch.zeros(2, 1, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="center .* must lie inside clamp"):
        cs.project_lp(y, r, 2, center=c + 1.0, clamp=(0.0, 1.0))


def test_constraints_reject_nan_inf_and_bad_steps():
    x = torch.full((2, 1, 4, 4), 0.5)
    g = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    for bad in (float("nan"), float("inf")):
        gb = g.clone()
        gb[1, 0, 2, 2] = bad
        for p in (2, "inf"):
            with pytest.raises(ValueError, match="grad contains NaN or inf"):
                cs.ascent_step(x, gb, 0.1, 0.5, p, 0.5)
        with pytest.raises(ValueError, match="step_size must be a finite number"):
            cs.ascent_step(x, g, bad, 0.5, 2, 0.5)
        xb = x.clone()
        xb[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="inputs contains NaN or inf"):
            cs.project_lp(xb, 0.5, 2, 0.5)
        with pytest.raises(ValueError, match="radius must be a positive"):
            cs.project_lp(x, bad, 2, 0.5)
    with pytest.raises(ValueError, match="step_size must be positive"):
        cs.ascent_step(x, g, 0.0, 0.5, 2, 0.5)
    with pytest.raises(ValueError, match="grad must have the shape of inputs"):
        cs.ascent_step(x, g[:1], 0.1, 0.5, 2, 0.5)
    with pytest.raises(TypeError, match="radius must be a real number"):
        cs.project_lp(x, "big", 2, 0.5)
    with pytest.raises(TypeError, match="inputs must be a torch.Tensor"):
        cs.lp_norm(np.zeros((2, 3)))
    with pytest.warns(DeprecationWarning):                # the old keyword still works
        assert torch.equal(cs.lp_norm(x=x), cs.lp_norm(x))


# ------------------------------------------------------------------ objectives
def test_objectives_read_the_right_units(digits):
    model, split = digits
    x = split.X_test[:5]
    acts = {}
    h = model.conv2.register_forward_hook(lambda m, i, o: acts.__setitem__("z", o))
    with torch.no_grad():
        logits = model(x)
    h.remove()
    z = acts["z"]
    with torch.no_grad():
        assert torch.allclose(fv.evaluate_objective(model, 3, x), logits[:, 3])
        assert torch.allclose(fv.evaluate_objective(model, fv.class_logit(3, squared=True), x), logits[:, 3] ** 2)
        assert torch.allclose(fv.evaluate_objective(model, fv.channel("conv2", 7, "sum"), x),
                              z[:, 7].sum((1, 2)), atol=1e-5)
        assert torch.allclose(fv.evaluate_objective(model, fv.channel("conv2", 7, "mean"), x),
                              z[:, 7].mean((1, 2)), atol=1e-6)
        assert torch.allclose(fv.evaluate_objective(model, fv.channel("conv2", 7, "sum", squared=True), x),
                              (z[:, 7] ** 2).sum((1, 2)), atol=1e-4)
        assert torch.allclose(fv.evaluate_objective(model, fv.neuron("conv2", 7, 2, 1), x), z[:, 7, 2, 1])
        feats = model.features(x)
        assert torch.allclose(fv.evaluate_objective(model, fv.neuron("relu4", 5), x), feats[:, 5])
        # one objective per image equals evaluating each separately
        objs = [fv.class_logit(0), fv.channel("conv2", 1), fv.neuron("conv2", 2, 0, 0), 4, fv.channel("conv1", 3)]
        per = fv.evaluate_objective(model, objs, x)
        single = torch.stack([fv.evaluate_objective(model, o, x[n:n + 1])[0] for n, o in enumerate(objs)])
        assert torch.allclose(per, single)


def test_objective_validation_messages(digits):
    model, split = digits
    x = split.X_test[:2]
    with pytest.raises(ValueError, match=r"layer 'conv9' is not in the model; valid layer names: conv1, relu1, pool1"):
        fv.evaluate_objective(model, fv.channel("conv9", 0), x)
    with pytest.raises(ValueError, match="channel 99 out of range: 'conv2' has 32 channels"):
        fv.evaluate_objective(model, fv.channel("conv2", 99), x)
    with pytest.raises(ValueError, match="position .* out of range"):
        fv.evaluate_objective(model, fv.neuron("conv2", 0, 8, 0), x)
    with pytest.raises(ValueError, match="reduce must be"):
        fv.channel("conv2", 0, reduce="max")
    with pytest.raises(TypeError, match="objective must be"):
        fv.evaluate_objective(model, "conv2", x)
    with pytest.raises(ValueError, match="one objective or one per image"):
        fv.evaluate_objective(model, [0, 1, 2], x)


def test_activation_maximization_validates_inputs(digits):
    model, split = digits
    shp = split.image_shape
    with pytest.raises(ValueError, match="p must be 2 or inf"):
        fv.activation_maximization(model, 0, shp, p=1)
    with pytest.raises(ValueError, match="p must be 2 or inf"):
        fv.activation_maximization(model, 0, shp, p=3.0)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="radius must be a positive"):
            fv.activation_maximization(model, 0, shp, radius=bad)
    with pytest.raises(ValueError, match="layer 'fc9' is not in the model; valid layer names: .*conv3.*fc2"):
        fv.activation_maximization(model, fv.channel("fc9", 0), shp, n_steps=2)
    with pytest.raises(ValueError, match="shape must be"):
        fv.activation_maximization(model, 0, (8, 8), n_steps=2)
    with pytest.raises(ValueError, match="steps must be"):
        fv.activation_maximization(model, 0, shp, n_steps=0)
    with pytest.raises(ValueError, match="center .* must lie inside clamp"):
        fv.activation_maximization(model, 0, shp, center=2.0, clamp=(0, 1))
    with pytest.raises(ValueError, match="jitter must be"):
        fv.activation_maximization(model, 0, shp, jitter=-1)


def test_activation_maximization_rejects_truncation_and_non_finite(digits):
    model, split = digits
    shp = split.image_shape
    with pytest.raises(TypeError, match="steps must be an int"):
        fv.activation_maximization(model, 0, shp, n_steps=2.5)
    with pytest.raises(TypeError, match="jitter must be an int"):
        fv.activation_maximization(model, 0, shp, n_steps=2, jitter=1.5)
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lr must be a finite number"):
            fv.activation_maximization(model, 0, shp, n_steps=2, lr=bad)
        with pytest.raises(ValueError, match="tv_weight must be a finite number"):
            fv.activation_maximization(model, 0, shp, n_steps=2, tv_weight=bad)
    with pytest.raises(ValueError, match="lr must be positive"):
        fv.activation_maximization(model, 0, shp, n_steps=2, lr=0.0)
    with pytest.raises(ValueError, match="tv_kind must be one of"):
        fv.activation_maximization(model, 0, shp, n_steps=2, tv_kind="l1")
    # a shape the model cannot take: 3 channels for the 1-channel digits CNN
    with pytest.raises(ValueError, match="cannot take an input of this shape|has 3 channels"):
        fv.activation_maximization(model, 0, (3, 8, 8), n_steps=2)


def test_evaluate_objective_and_dataset_examples_check_the_batch(digits):
    model, split = digits
    X = split.X_test[:20]
    with pytest.raises(ValueError, match="inputs.*(cannot take|has 3 channels)|(cannot take|has 3 channels).*inputs"):
        fv.evaluate_objective(model, 0, X.repeat(1, 3, 1, 1))
    bad = X.clone()
    bad[4, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="inputs contains NaN or inf"):
        fv.top_activating_examples(model, 0, bad, k=3)
    with pytest.raises(ValueError, match="inputs contains NaN or inf"):
        fv.evaluate_objective(model, 0, bad)
    for dtype in (torch.uint8, torch.int64):
        with pytest.raises(TypeError, match=r"floating-point .* divide by 255"):
            fv.top_activating_examples(model, 0, (X * 255).to(dtype), k=3)
    with pytest.raises(ValueError, match="cannot take|has 3 channels"):
        fv.top_activating_examples(model, 0, X.repeat(1, 3, 1, 1), k=3)
    with pytest.raises(TypeError, match="k must be an int"):
        fv.top_activating_examples(model, 0, X, k=2.5)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        fv.gaussian_blur(X[0], 1.0)


def test_layer_sizes_match_the_modules(shapes):
    model, split = shapes
    sizes = fv.layer_sizes(model, split.X_test[0])
    mods = dict(model.named_modules())
    expect = {n: (m.out_channels if isinstance(m, torch.nn.Conv2d) else m.out_features)
              for n, m in mods.items() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
    assert sizes == {None: split.n_classes, **expect}
    assert fv.layer_sizes(model, split.X_test[0], ["relu2"]) == {None: 4, "relu2": mods["conv2"].out_channels}
    with pytest.raises(ValueError, match="layer 'conv7' is not in the model"):
        fv.layer_sizes(model, split.X_test[0], ["conv7"])


# ------------------------------------------------------------------ the device rule
@pytest.fixture
def cpu_device(monkeypatch):
    """set_device("cpu") for one test; the notebook-wide device is restored afterwards."""
    monkeypatch.setattr(xdevice, "_current", xdevice._current)
    return xdevice.set_device("cpu")


def _unavailable_device():
    if not torch.cuda.is_available():
        return "cuda"
    if not xdevice._mps_available():
        return "mps"
    pytest.skip("every device kind is available: no way to make 'auto' fail")


def test_device_none_means_current_device(cpu_device, monkeypatch, digits):
    model, split = digits
    # "auto" now asks for a device that is not there; device=None must follow set_device("cpu")
    missing = _unavailable_device()
    monkeypatch.setenv("XAICOURSE_DEVICE", missing)
    with pytest.raises(RuntimeError):
        xdevice.get_device(None)
    assert xdevice.current_device() == torch.device("cpu")
    r = fv.activation_maximization(model, [0, 1], split.image_shape, n_steps=5, p="inf", radius=0.5, center=0.5)
    assert r.x.device.type == "cpu" and torch.isfinite(r.final_objective).all()
    idx, vals = fv.top_activating_examples(model, 2, split.X_test, k=3)
    with torch.no_grad():
        assert torch.equal(idx, torch.argsort(model(split.X_test)[:, 2], descending=True)[:3])
    assert next(model.parameters()).device.type == "cpu"
    # an explicit device is honoured (and fails clearly when it is not there)
    with pytest.raises(RuntimeError, match="not available"):
        fv.activation_maximization(model, 0, split.image_shape, n_steps=2, device=missing)
    with pytest.raises(RuntimeError, match="not available"):
        fv.top_activating_examples(model, 0, split.X_test, k=2, device=missing)


def test_dataset_examples_leave_the_model_as_found(cpu_device):
    torch.manual_seed(1)
    m = SmallCNN(1, 3, width=4).train()
    X = torch.rand(30, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    idx, vals = fv.top_activating_examples(m, fv.channel("conv2", 1), X, k=4, batch_size=7)
    assert m.training and all(mod.training for mod in m.modules())
    m.eval()
    with torch.no_grad():
        ref = fv.evaluate_objective(m, fv.channel("conv2", 1), X)
    assert torch.equal(idx, torch.argsort(ref, descending=True, stable=True)[:4])
    assert torch.allclose(vals, ref[idx])


# ------------------------------------------------------------------ on the course models
@pytest.mark.parametrize("name", ["digits", "shapes"])
@pytest.mark.parametrize("p", [2, math.inf])
def test_constraint_holds_on_course_models(name, p, digits, shapes):
    model, split = digits if name == "digits" else shapes
    if p == 2:
        radius = fv.data_radius(split.X_train, 2, center=0.5)
        kw = dict(clamp=(0.0, 1.0), tv_weight=0.05 if name == "digits" else 0.002)
    else:
        radius = 0.3
        kw = dict(tv_weight=0.0)
    objs = [0, fv.channel("conv2", 3), fv.neuron("conv3", 1, 1, 1), fv.channel("conv1", 2, "sum", squared=True)]
    r = fv.activation_maximization(model, objs, split.image_shape, n_steps=40, lr=0.2, p=p, radius=radius,
                                   center=0.5, jitter=1, blur_every=5, blur_sigma=0.5, seed=3, **kw)
    assert r.x.shape == (4,) + split.image_shape
    assert (cs.lp_norm(r.x, p, center=0.5) <= radius + 1e-6).all()
    if p == 2:
        assert r.x.min() >= 0.0 and r.x.max() <= 1.0
    assert r.history["objective"].shape == (40, 4) and r.history["tv"].shape == (40, 4)
    assert torch.isfinite(r.history["objective"]).all()
    # the ascent made progress on every unit
    assert (r.final_objective > r.history["objective"][0]).all()


def test_real_images_are_feasible_for_the_course_settings(digits, shapes):
    for name, (_, split) in (("digits", digits), ("shapes", shapes)):
        st = fv.course_settings(name)
        assert (cs.lp_norm(split.X_train, st["p"], st["center"]) <= st["radius"] + 1e-6).all()
    assert fv.data_radius(digits[1].X_train, 2) == pytest.approx(3.389, abs=0.01)


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_optimised_input_beats_best_dataset_image_for_every_class(name, grids, digits, shapes):
    model, split = digits if name == "digits" else shapes
    data = torch.cat([split.X_train, split.X_test])
    res = grids[name]["plain"]
    for c in range(split.n_classes):
        idx, best = fv.top_activating_examples(model, c, data, k=1)
        ratio = res.final_objective[c] / best[0]
        assert ratio > 1.0, f"class {c}: optimised logit {res.final_objective[c]:.2f} ≤ best real {best[0]:.2f}"
    # and it is a feasible image
    st = fv.course_settings(name)
    assert (cs.lp_norm(res.x, st["p"], st["center"]) <= st["radius"] + 1e-6).all()


@pytest.mark.parametrize("name", ["digits", "shapes"])
def test_recommended_tv_weight_halves_tv_and_keeps_activation(name, grids):
    plain, tv = grids[name]["plain"], grids[name]["tv"]
    tv_kept = (tv.final_tv / plain.final_tv).mean().item()
    act_kept = (tv.final_objective / plain.final_objective).mean().item()
    assert tv_kept <= 0.5, f"TV only dropped by {1 - tv_kept:.0%}"
    assert act_kept >= 0.8, f"only {act_kept:.0%} of the activation kept"


def test_unregularised_result_is_noisier_than_the_data(grids, shapes):
    _, split = shapes
    plain = grids["shapes"]["plain"]
    assert plain.final_tv.min() > 2 * fv.total_variation(split.X_train).max()


def test_seeded_and_history(digits):
    model, split = digits
    kw = dict(n_steps=30, lr=0.2, p="inf", radius=0.5, center=0.5, jitter=1, init_std=0.05)
    a = fv.activation_maximization(model, [1, 2], split.image_shape, seed=7, **kw)
    b = fv.activation_maximization(model, [1, 2], split.image_shape, seed=7, **kw)
    c = fv.activation_maximization(model, [1, 2], split.image_shape, seed=8, **kw)
    assert torch.equal(a.x, b.x) and torch.equal(a.history["objective"], b.history["objective"])
    assert not torch.equal(a.x, c.x)
    # the recorded TV is the TV of the iterate
    x0 = cs.project_lp(0.5 + 0.05 * torch.randn((2,) + split.image_shape, generator=torch.Generator().manual_seed(7)),
                       0.5, "inf", 0.5)
    assert torch.allclose(a.history["tv"][0], fv.total_variation(x0), atol=1e-5)
    # batch of restarts from a (B, C, H, W) shape and one objective
    r = fv.activation_maximization(model, 3, (3,) + split.image_shape, **kw)
    assert r.x.shape == (3,) + split.image_shape and len(set(r.x.flatten(1).sum(1).tolist())) == 3


def test_tv_sweep_rows_match_single_runs(digits):
    model, split = digits
    st = fv.course_settings("digits", n_steps=20)
    sw = fv.tv_sweep(model, [0, 1], split.image_shape, [0.0, 0.4], **st)
    single = fv.activation_maximization(model, [0, 1], split.image_shape, **{**st, "tv_weight": 0.4})
    assert torch.allclose(sw["activation"][1], single.final_objective)
    assert torch.allclose(sw["tv"][1], fv.total_variation(single.x))
    assert sw["x"].shape == (2, 2) + split.image_shape


def test_gaussian_blur():
    x = torch.rand(2, 3, 9, 9, generator=torch.Generator().manual_seed(5))
    y = fv.gaussian_blur(x, 1.0)
    assert y.shape == x.shape
    assert torch.allclose(fv.gaussian_blur(torch.full((1, 1, 8, 8), 0.3), 1.0), torch.full((1, 1, 8, 8), 0.3))
    assert (fv.total_variation(y) < fv.total_variation(x)).all()
    with pytest.raises(ValueError, match="sigma must be positive"):
        fv.gaussian_blur(x, 0.0)


# ------------------------------------------------------------------ dataset examples
def test_top_activating_examples_matches_brute_force(digits):
    model, split = digits
    X = split.X_test
    with torch.no_grad():
        logits = model(X)[:, 4]
    idx, vals = fv.top_activating_examples(model, 4, X, k=6, batch_size=37)
    ref = torch.argsort(logits, descending=True)[:6]
    assert torch.equal(idx, ref)
    assert torch.allclose(vals, logits[ref])
    assert (vals[:-1] >= vals[1:]).all()
    # a channel objective, (X, y) tuples and a torch Dataset give the same answer
    obj = fv.channel("conv3", 5)
    a = fv.top_activating_examples(model, obj, X, k=3)
    b = fv.top_activating_examples(model, obj, (X, split.y_test), k=3)
    c = fv.top_activating_examples(model, obj, torch.utils.data.TensorDataset(X, split.y_test), k=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[0], c[0])
    with pytest.raises(ValueError, match="k must be an int in"):
        fv.top_activating_examples(model, 4, X, k=0)
    with pytest.raises(ValueError, match="one objective"):
        fv.top_activating_examples(model, [1, 2], X, k=2)


def test_tiny_model_on_cpu_leaves_model_unchanged():
    torch.manual_seed(0)
    m = SmallCNN(1, 3, width=4).train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    fv.activation_maximization(m, [0, 1, 2], (1, 8, 8), n_steps=5, device="cpu")
    assert m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.grad is None for p in m.parameters())


# ------------------------------------------------------------------ opt-in pretrained weights
def test_pretrained_requires_opt_in(monkeypatch):
    monkeypatch.delenv("XAICOURSE_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(RuntimeError, match="allow_download=True"):
        load_pretrained("resnet18")
    with pytest.raises(ValueError, match="source must be"):
        load_pretrained("resnet18", source="keras", allow_download=True)
    with pytest.raises(ValueError, match="not a timm model"):
        load_pretrained("no_such_net", allow_download=True)
    with pytest.raises(ValueError, match="not a torchvision model"):
        load_pretrained("no_such_net", source="torchvision", allow_download=True)


@pytest.mark.parametrize("source", ["timm", "torchvision"])
def test_pretrained_fails_clearly_offline(source, monkeypatch, tmp_path):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError, match=f"could not load pretrained weights for {source} model 'resnet18'.*"
                                           r"course_model\('digits'\|'shapes'\)"):
        load_pretrained("resnet18", source=source, allow_download=True)


# ------------------------------------------------------------------ the lecture's widget
def test_featurevis_panel_runs_the_tested_functions(shapes):
    import matplotlib

    matplotlib.use("Agg")
    from xaicourse import widgets

    model, split = shapes
    st = fv.course_settings("shapes")
    box = widgets.featurevis_panel(model, split.X_test[:50], st, n_steps=20, k=3)
    c = box.controls
    c["layer"].value = "conv2"
    assert c["unit"].max == 31                      # conv2 has 32 channels
    c["unit"].value = 5
    c["jitter"].value = 1
    res = box.redraw()
    direct = fv.activation_maximization(model, fv.channel("conv2", 5), (3, 32, 32),
                                        **{**st, "n_steps": 20, "jitter": 1, "blur_every": 0, "blur_sigma": 0.5})
    assert torch.equal(res.x, direct.x)
    assert res.objectives[0] == fv.channel("conv2", 5)


def test_blur_is_maps_blur_with_the_old_radius():
    """featurevis' blur = maps.gaussian_blur(truncate=2.0): the old kernel of half-width ⌈2σ⌉."""
    x = torch.rand(1, 1, 9, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    for sigma in (0.5, 1.0, 1.3):
        half = math.ceil(2 * sigma)
        t = torch.arange(-half, half + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (t / sigma) ** 2)
        k = k / k.sum()
        y = torch.nn.functional.pad(x, (half,) * 4, mode="reflect")
        y = torch.nn.functional.conv2d(torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
        assert torch.allclose(fv.gaussian_blur(x, sigma), y, atol=1e-15)
        assert torch.equal(fv.gaussian_blur(x, sigma), maps.gaussian_blur(x, sigma, truncate=2.0))


def test_probe_findings_are_refused_by_name():
    """Issue #25's probe on featurevis: options named in the error, a train-mode BatchNorm untouched."""
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.BatchNorm2d(2), torch.nn.ReLU(),
                             torch.nn.Flatten(), torch.nn.Linear(2 * 8 * 8, 3)).train()
    x = torch.rand(4, 1, 8, 8)
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    v = fv.evaluate_objective(bn, fv.channel("0", 1), x)
    assert all(torch.equal(before[k], t) for k, t in bn.state_dict().items()) and bn.training
    with torch.no_grad():
        bn.eval()
        assert torch.allclose(v, bn[0](x)[:, 1].mean((1, 2)))
    for bad, exc in ((-1, ValueError), (1.5, TypeError), (True, TypeError), ("1", TypeError)):
        with pytest.raises(exc, match="k must"):
            fv.class_logit(bad)
        with pytest.raises(exc, match="c must"):
            fv.channel("0", bad)
        with pytest.raises(exc, match="i must"):
            fv.neuron("0", 0, bad, 1)
        with pytest.raises(exc, match="j must"):
            fv.neuron("0", 0, 1, bad)
    assert fv.class_logit(np.int64(2)) == fv.class_logit(2)
    with pytest.raises(ValueError, match="seed must be"):
        fv.activation_maximization(bn, 0, (1, 8, 8), n_steps=1, seed=-1)
    with pytest.raises(TypeError, match="progress must be"):
        fv.activation_maximization(bn, 0, (1, 8, 8), n_steps=1, progress="yes")
    with pytest.raises(TypeError, match="inputs must be"):
        fv.top_activating_examples(bn, 0, "images", k=1)
    with pytest.warns(DeprecationWarning):
        old = fv.activation_maximization(bn, 0, (1, 8, 8), steps=2)
    assert torch.equal(old.x, fv.activation_maximization(bn, 0, (1, 8, 8), n_steps=2).x)
    with pytest.raises(TypeError, match="n_steps"):
        fv.activation_maximization(bn, 0, (1, 8, 8), steps=2, n_steps=2)
    with pytest.warns(DeprecationWarning):
        assert fv.course_settings("digits", n_steps=7) == fv.course_settings("digits", steps=7)
    with pytest.raises(ValueError, match="dataset"):
        fv.course_settings("digts")


def test_constraints_name_inputs_and_refuse_nan_p():
    x = torch.rand(2, 3)
    for bad in (float("nan"), 3, "two", None):
        with pytest.raises(ValueError, match="p must be 2 or inf"):
            cs.lp_norm(x, bad)
    with pytest.raises(ValueError, match="inputs is empty"):
        cs.project_lp(x[:0], 1.0)
    with pytest.raises(ValueError, match="center must be a scalar or broadcastable to inputs"):
        cs.lp_norm(x, 2, torch.zeros(3, 2))
    with pytest.warns(DeprecationWarning):
        assert torch.equal(cs.project_lp(x=x, radius=0.1), cs.project_lp(x, 0.1))
