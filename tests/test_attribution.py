"""Attribution methods of lecture 03: parity with captum and lime, axioms, errors."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xaicourse import attribution as A
from xaicourse.attribution import lime as L
from xaicourse.models import course_model

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", category=UserWarning)
TOL = 1e-5


@pytest.fixture(scope="module", params=["digits", "shapes"])
def cnn(request):
    model, split, _ = course_model(request.param, progress=False)
    model.eval()
    return model, split.X_test[:6], split.y_test[:6]


@pytest.fixture(scope="module")
def shapes_cnn():
    model, split, _ = course_model("shapes", progress=False)
    return model.eval(), split


def maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ------------------------------------------------------------------ captum parity
def test_saliency_and_input_x_gradient_match_captum(cnn):
    model, x, t = cnn
    assert maxdiff(A.saliency(model, x, t), captum_attr.Saliency(model).attribute(x, target=t)) <= TOL
    assert maxdiff(A.saliency(model, x, t, absolute=False),
                   captum_attr.Saliency(model).attribute(x, target=t, abs=False)) <= TOL
    assert maxdiff(A.input_x_gradient(model, x, t), captum_attr.InputXGradient(model).attribute(x, target=t)) <= TOL
    # squared gradient is the square of captum's saliency
    assert maxdiff(A.squared_gradient(model, x, t), captum_attr.Saliency(model).attribute(x, target=t) ** 2) <= TOL


@pytest.mark.parametrize("base,abs_,chunk", [("gradient", False, None), ("saliency", True, 4)])
def test_smoothgrad_matches_noise_tunnel_with_identical_noise(cnn, base, abs_, chunk):
    model, x, t = cnn
    torch.manual_seed(11)
    ref = captum_attr.NoiseTunnel(captum_attr.Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=10, nt_samples_batch_size=chunk, stdevs=0.2, target=t, abs=abs_)
    ours = A.smoothgrad(model, x, t, sigma=0.2, n_samples=10, seed=11, input_range=(0, 1), base=base,
                        batch_size=chunk)
    assert maxdiff(ours, ref) <= TOL
    # and the noise really matters: another seed gives a different map
    other = A.smoothgrad(model, x, t, sigma=0.2, n_samples=10, seed=12, input_range=(0, 1), base=base)
    assert maxdiff(other, ref) > 1e-3


def test_guided_backprop_matches_captum_and_restores_model(cnn):
    model, x, t = cnn
    before = A.saliency(model, x, t, absolute=False)
    gbp = A.guided_backprop(model, x, t)
    assert maxdiff(gbp, captum_attr.GuidedBackprop(model).attribute(x, target=t)) <= TOL
    assert maxdiff(gbp, before) > 1e-4  # the ReLU rule changes the map
    assert all(len(m._backward_hooks) == 0 and len(m._forward_hooks) == 0 for m in model.modules())
    assert maxdiff(A.saliency(model, x, t, absolute=False), before) == 0.0


@pytest.mark.parametrize("layer,mode", [("relu3", "bilinear"), ("conv3", "nearest"), ("conv2", "bilinear")])
def test_grad_cam_matches_layer_grad_cam(cnn, layer, mode):
    model, x, t = cnn
    lg = captum_attr.LayerGradCam(model, getattr(model, layer)).attribute(x, target=t, relu_attributions=True)
    ref = captum_attr.LayerAttribution.interpolate(lg, tuple(x.shape[2:]), interpolate_mode=mode)
    ours = A.grad_cam(model, x, t, layer=layer, interpolate_mode=mode)
    assert ours.shape == x.shape
    assert maxdiff(ours, ref.expand_as(x)) <= TOL
    assert ours.min() >= 0
    raw = A.grad_cam(model, x, t, layer=getattr(model, layer), relu=False, upsample=False)
    lg_raw = captum_attr.LayerGradCam(model, getattr(model, layer)).attribute(x, target=t)
    assert maxdiff(raw, lg_raw) <= TOL


@pytest.mark.parametrize("window,stride,baseline", [(3, 2, 0.0), (4, 3, 0.5), (2, 2, 0.0)])
def test_occlusion_matches_captum(cnn, window, stride, baseline):
    model, x, t = cnn
    x = x[:2]
    ref = captum_attr.Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(1, stride, stride),
        baselines=baseline, target=t[:2], perturbations_per_eval=64)
    assert maxdiff(A.occlusion(model, x, t[:2], window=window, stride=stride, baselines=baseline), ref) <= TOL


# ------------------------------------------------------------------ axioms / exact cases
def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    g = A.saliency(model, x, [1, 2], absolute=False)
    h = 1e-6
    for idx in [(0, 0, 0, 0), (0, 2, 1, 1), (1, 1, 0, 1)]:
        e = torch.zeros_like(x)
        e[idx] = h
        t = 1 if idx[0] == 0 else 2
        fd = (model(x + e)[idx[0], t] - model(x - e)[idx[0], t]) / (2 * h)
        assert abs(fd.item() - g[idx].item()) < 1e-7


def test_linear_model_input_x_gradient_and_occlusion_are_contributions():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.rand(4, 1, 4, 4, dtype=torch.float64)
    w, b = lin[1].weight[2].reshape(1, 1, 4, 4), lin[1].bias[2]
    ixg = A.input_x_gradient(lin, x, 2)
    assert torch.allclose(ixg, (w * x).expand_as(x), atol=1e-12)
    assert torch.allclose(ixg.sum((1, 2, 3)), lin(x)[:, 2] - b, atol=1e-12)  # completeness for linear f
    occ = A.occlusion(lin, x, 2, window=1, stride=1, baselines=0.0)
    assert torch.allclose(occ, w * x, atol=1e-12)


def test_smoothgrad_zero_noise_is_the_gradient(shapes_cnn):
    model, split = shapes_cnn
    x = split.X_test[:3]
    assert maxdiff(A.smoothgrad(model, x, 1, sigma=0.0, n_samples=3), A.saliency(model, x, 1, absolute=False)) < 1e-6


def test_saturated_relu_model_has_zero_gradient_but_nonzero_occlusion():
    # f(x) = min(x1 + x2, 1) = 1 − ReLU(1 − x1 − x2): at x = (1, 1) both features matter, gradient is 0
    f = nn.Sequential(nn.Linear(2, 1), nn.ReLU(), nn.Linear(1, 1))
    with torch.no_grad():
        f[0].weight[:] = torch.tensor([[-1.0, -1.0]]); f[0].bias[:] = 1.0
        f[2].weight[:] = -1.0; f[2].bias[:] = 1.0
    x = torch.tensor([[1.0, 1.0]])
    assert A.saliency(f, x, 0).abs().max() == 0
    assert torch.allclose(A.occlusion(f, x, 0, window=2, stride=1), torch.tensor([[1.0, 1.0]]))


# ------------------------------------------------------------------ LIME vs the lime package
@pytest.mark.parametrize("num_features", [None, 3, 5, 10])
def test_lime_surrogate_matches_lime_package_on_same_samples(shapes_cnn, num_features):
    lime_base = pytest.importorskip("lime.lime_base")
    model, split = shapes_cnn
    x, t = split.X_test[1], int(split.y_test[1])
    seg = L.segment_image(x, "slic", n_segments=40)
    e = L.lime_explain(model, x[None], t, segments=seg, n_samples=400, num_features=num_features,
                       kernel_width=0.3, seed=3)[0]
    base = lime_base.LimeBase(lambda d: np.sqrt(np.exp(-(d ** 2) / 0.3 ** 2)), random_state=0)
    labels = np.zeros((len(e.predictions), 4))
    labels[:, t] = e.predictions
    b, exp, score, local = base.explain_instance_with_data(
        e.samples, labels, e.distances, t, num_features or e.samples.shape[1],
        feature_selection="lasso_path" if num_features else "none")
    coef = np.zeros_like(e.coefficients)
    for i, v in exp:
        coef[i] = v
    assert np.abs(coef - e.coefficients).max() <= 1e-6
    assert abs(b - e.intercept) <= 1e-6 and abs(score - e.score) <= 1e-6 and abs(local[0] - e.local_pred) <= 1e-6
    if num_features:
        assert len(e.selected) <= num_features and set(e.selected) == {i for i, _ in exp}


def test_lime_samples_kernel_and_end_to_end_match_lime_image(shapes_cnn):
    lime_image = pytest.importorskip("lime.lime_image")
    from sklearn.metrics import pairwise_distances

    model, split = shapes_cnn
    x, t = split.X_test[2], int(split.y_test[2])
    seg = L.segment_image(x, "grid", cell=4)
    img = x.numpy().transpose(1, 2, 0).astype(np.float64)

    def clf(batch):  # logits: no float32 saturation of probabilities
        with torch.no_grad():
            return model(torch.as_tensor(batch.transpose(0, 3, 1, 2), dtype=torch.float32)).double().numpy()

    fudged = L.fill_image(x, seg).numpy().transpose(1, 2, 0).astype(np.float64)
    data, labels = lime_image.LimeImageExplainer(random_state=5).data_labels(img, fudged, seg, clf, 300)
    e = L.lime_explain(model, x[None], t, segments=seg, n_samples=300, seed=5, output="logit")[0]
    assert (data == e.samples).all()
    assert np.abs(labels[:, t] - e.predictions).max() < 1e-4
    d = pairwise_distances(data, data[:1], metric="cosine").ravel()
    assert np.abs(d - e.distances).max() < 1e-12
    r = lime_image.LimeImageExplainer(random_state=5).explain_instance(
        img, clf, labels=(t,), top_labels=None, num_features=10 ** 4, num_samples=300, segmentation_fn=lambda im: seg,
        random_seed=0)
    coef = np.zeros_like(e.coefficients)
    for i, v in r.local_exp[t]:
        coef[i] = v
    assert np.abs(coef - e.coefficients).max() < 1e-4


def test_weighted_ridge_matches_sklearn():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    Z, y, w = rng.integers(0, 2, (200, 7)).astype(float), rng.normal(size=200), rng.random(200)
    beta, b = L.weighted_ridge(Z, y, w, alpha=0.7)
    ref = Ridge(alpha=0.7).fit(Z, y, sample_weight=w)
    assert np.abs(beta - ref.coef_).max() < 1e-10 and abs(b - ref.intercept_) < 1e-10
    assert abs(L.weighted_r2(Z, y, w, beta, b) - ref.score(Z, y, sample_weight=w)) < 1e-10


def test_lime_on_linear_model_is_exact():
    # f linear in the pixels and the fill is 0 → f(z) = b + Σ_k z'_k c_k exactly, c_k = Σ_{p∈k} w_p x_p
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    x = torch.rand(1, 1, 8, 8)
    e = L.lime_explain(lin, x, 1, segmentation="grid", cell=2, hide=0.0, output="logit", alpha=1e-8,
                       n_samples=300, seed=0)[0]
    c = (lin[1].weight[1].reshape(8, 8) * x[0, 0]).detach().numpy()
    expected = np.array([c[e.segments == k].sum() for k in range(16)])
    assert np.abs(e.coefficients - expected).max() < 1e-4
    assert e.score > 1 - 1e-8
    # tabular mode with a small radius recovers the gradient direction (here: the weights)
    et = L.lime_explain(lin, x.reshape(1, 64), 1, mode="tabular", sample_scale=0.01, output="logit",
                        n_samples=500, alpha=1e-6)[0]
    g = lin[1].weight[1].detach().numpy()
    cos = et.coefficients @ g / np.linalg.norm(et.coefficients) / np.linalg.norm(g)
    assert cos > 0.9999


def test_lime_stability_and_topk_agreement(shapes_cnn):
    model, split = shapes_cnn
    assert L.topk_agreement([[1, 2, 3], [3, 2, 1]]) == 1.0
    assert L.topk_agreement([[1, 2], [3, 4], [1, 3]]) == pytest.approx((0 + 0.5 + 0.5) / 3)
    same, _ = L.lime_stability(model, split.X_test[0], 0, seeds=[4, 4], n_samples=50, n_segments=20)
    assert same == 1.0
    few, _ = L.lime_stability(model, split.X_test[0], 0, seeds=range(4), n_samples=20, n_segments=40)
    assert few < 1.0  # 20 samples for ~30 superpixels: the top-5 changes with the seed


def test_lime_attribution_paints_segments(shapes_cnn):
    model, split = shapes_cnn
    x = split.X_test[:2]
    m = A.lime_attribution(model, x, [0, 1], n_samples=60, segmentation="grid", cell=8)
    assert m.shape == x.shape
    e = A.lime_explain(model, x[1:], 1, n_samples=60, segmentation="grid", cell=8)[0]
    assert torch.allclose(m[1, 0], torch.as_tensor(e.coefficients[e.segments], dtype=torch.float32))


# ------------------------------------------------------------------ errors
def test_errors(shapes_cnn):
    model, split = shapes_cnn
    x = split.X_test[:2]
    with pytest.raises(ValueError, match="target out of range"):
        A.saliency(model, x, 7)
    for fn in (A.saliency, A.smoothgrad, A.occlusion, A.lime_explain):
        with pytest.raises(ValueError, match=r"cannot take inputs of shape \(3, 32, 32\).*inputs\[None\]"):
            fn(model, x[0], 0)
    with pytest.raises(ValueError, match="cannot take inputs"):
        A.grad_cam(model, x[0], 0, layer="conv3")
    with pytest.raises(ValueError, match="not in the model"):
        A.grad_cam(model, x, 0, layer="conv9")
    with pytest.raises(ValueError, match="not a submodule"):
        A.grad_cam(model, x, 0, layer=nn.Conv2d(3, 3, 3))
    with pytest.raises(ValueError, match="n_samples"):
        A.lime_explain(model, x, 0, n_samples=1)
    with pytest.raises(ValueError, match="kernel_width"):
        A.lime_explain(model, x, 0, kernel_width=0.0)
    with pytest.raises(ValueError, match="kernel_width"):
        L.kernel_weights(np.ones(3), -1.0)
    with pytest.raises(ValueError, match="target out of range"):
        A.lime_explain(model, x, -1, n_samples=10)
    with pytest.raises(ValueError, match="stride"):
        A.occlusion(model, x, 0, window=2, stride=3)
    with pytest.raises(ValueError, match="sigma"):
        A.smoothgrad(model, x, 0, sigma=-0.1)
    with pytest.raises(ValueError, match="n_samples"):
        A.smoothgrad(model, x, 0, n_samples=0)
    with pytest.raises(ValueError, match="no nn.ReLU"):
        A.guided_backprop(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)), x, 0)
    with pytest.raises(ValueError, match="method"):
        L.segment_image(x[0], "watershed")
    with pytest.raises(ValueError, match="mode"):
        A.lime_explain(model, x, 0, mode="text")


def test_attribute_dispatcher_and_lime_panel(shapes_cnn):
    from xaicourse import widgets

    model, split = shapes_cnn
    x, t = split.X_test[:2], split.y_test[:2]
    from xaicourse.attribution.shapley import patch_mask

    opts = {"smoothgrad": dict(n_samples=3), "occlusion": dict(window=8, stride=8),
            "lime": dict(n_samples=40, segmentation="grid", cell=8),
            "integrated_gradients": dict(n_steps=8), "shapley_sampling": dict(n_samples=2),
            "shapley_exact": dict(feature_mask=patch_mask(32, 32, 16))}
    for m in A.METHODS:
        out = A.attribute(m, model, x, t, **opts.get(m, {}))
        assert out.shape == x.shape, m
    assert torch.equal(A.attribute("grad_cam", model, x, t, layer="conv3"), A.grad_cam(model, x, t, layer="conv3"))
    with pytest.raises(ValueError, match="method"):
        A.attribute("no_such_method", model, x, t)
    seg = L.segment_image(x[0], "grid", cell=8)
    panel = widgets.lime_panel(model, x[0], int(t[0]), segments=seg, n_seeds=3, output="logit")
    panel.samples.value = 60
    expect, _ = L.lime_stability(model, x[0], int(t[0]), seeds=range(3), k=5, n_samples=60,
                                 kernel_width=panel.kernel_width.value, segments=seg, output="logit")
    assert panel.meter.value == pytest.approx(expect)


# ------------------------------------------------------------------ the foundation primitives (issue #25)
def test_target_rule_baselines_and_the_gradient_primitive():
    from xaicourse import maps
    from xaicourse._torch import resolve_baselines, resolve_target, target_gradient

    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.rand(4, 6)
    # an extra leading dimension on a Linear-first model no longer slips through
    with pytest.raises(ValueError, match="extra or missing dimension"):
        A.gradient(mlp, x[None], 0)
    # target=None is the predicted class, everywhere
    pred = mlp(x).argmax(1)
    assert torch.equal(resolve_target(mlp, x, None), pred)
    for name in ("gradient", "integrated_gradients", "deeplift", "lrp", "occlusion", "shapley_sampling"):
        opts = {"occlusion": dict(window=1)}.get(name, {})
        assert torch.equal(A.METHODS[name](mlp, x, None, **opts), A.METHODS[name](mlp, x, pred, **opts)), name
    assert resolve_target(nn.Linear(6, 1), x, None).tolist() == [0, 0, 0, 0]     # one output column → 0
    # the gradient primitive: by hand, and at a layer
    xg = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(mlp(xg)[torch.arange(4), pred].sum(), xg)
    assert torch.equal(target_gradient(mlp, x, None), ref)
    h = mlp[1](mlp[0](x)).detach().requires_grad_(True)
    (ref_h,) = torch.autograd.grad(mlp[2](h)[:, 2].sum(), h)
    assert torch.allclose(target_gradient(mlp, x, 2, layer="1"), ref_h)
    # one baselines spec
    imgs = torch.rand(2, 3, 8, 8)
    assert torch.equal(resolve_baselines(imgs, "blur", sigma=1.5), maps.gaussian_blur(imgs, 1.5))
    assert torch.equal(resolve_baselines(imgs, "noise", seed=3), A.uniform_noise_baseline(imgs, seed=3))
    assert torch.equal(resolve_baselines(imgs, "mean"), imgs.mean((2, 3), keepdim=True).expand_as(imgs))
    assert torch.equal(resolve_baselines(imgs, 0.5), torch.full_like(imgs, 0.5))
    assert torch.equal(resolve_baselines(imgs, torch.ones(3, 1, 1)), torch.ones_like(imgs))
    with pytest.raises(ValueError, match="baselines must be one of"):
        resolve_baselines(imgs, "black")
    # deprecated names still work, with a warning
    with pytest.warns(DeprecationWarning, match="baselines"):
        old = A.occlusion(mlp, x, 1, window=2, stride=2, baseline=0.5)
    assert torch.equal(old, A.occlusion(mlp, x, 1, window=2, stride=2, baselines=0.5))
    with pytest.warns(DeprecationWarning, match="absolute"):
        assert torch.equal(A.saliency(mlp, x, 1, abs=False), A.saliency(mlp, x, 1, absolute=False))
    with pytest.warns(DeprecationWarning, match="layer"):
        old = A.internal_influence(mlp, x, 1, "1", n_steps=4)
    assert torch.equal(old, A.internal_influence(mlp, x, 1, layer="1", n_steps=4))
