"""The lecture panels show what the tested package functions compute, and leave the model alone.

Every panel is driven the same way: change a control through ``panel.controls[...]`` (which
redraws), then compare the numbers in ``panel.state`` with a direct call of the package function
for the same settings. After the redraws the model must be on its device, in its mode, with
``requires_grad`` as it was and no ``.grad`` on any parameter.
"""
import copy

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from xaicourse import featurevis as fv  # noqa: E402
from xaicourse import widgets  # noqa: E402
from xaicourse._torch import model_device  # noqa: E402
from xaicourse.attribution import METHODS, attribute, gradient, perturbation_scores  # noqa: E402
from xaicourse.attribution import lime as L  # noqa: E402
from xaicourse.models import course_model  # noqa: E402
from xaicourse.tsne import TSNE  # noqa: E402
from xaicourse.widgets import Panel  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    model, split, _ = course_model("digits", progress=False)
    return model, split


def fresh(model):
    """A copy in *training* mode with no .grad: a panel must not switch it to eval or leave grads."""
    m = copy.deepcopy(model).train()
    for p in m.parameters():
        p.grad = None
    return m


def assert_model_untouched(model, device=torch.device("cpu")):
    assert model_device(model) == device
    assert all(m.training for m in model.modules()), "panel left the model in eval mode"
    assert all(p.requires_grad for p in model.parameters()), "panel left parameters frozen"
    assert all(p.grad is None for p in model.parameters()), "panel left .grad on the parameters"


def titles(panel):
    return " | ".join(ax.get_title() for fig in panel.figures for ax in fig.axes)


# ------------------------------------------------------------------ the shared Panel
def test_panel_redraws_once_per_change_and_applies_enable_rules():
    from ipywidgets import Checkbox, IntSlider

    calls = []

    def draw(a, on):
        calls.append((a, on))
        return {"double": 2 * a, "readout": f"a={a}"}

    controls = {"a": IntSlider(value=1, min=0, max=10, description="a"), "on": Checkbox(value=False)}

    def on_change(name, change):          # a change made here must not trigger a second redraw
        if name == "on":
            controls["a"].value = 7

    p = Panel(controls, draw, readout=True, on_change=on_change, enabled_when={"a": lambda v: v["on"]})
    assert calls == [(1, False)] and p.controls["a"].disabled
    assert p.state == {"double": 2, "readout": "a=1"} and p.state.double == 2 and p.readout.value == "a=1"
    p.controls["on"].value = True
    assert calls[1:] == [(7, True)] and not p.a.disabled and p.state.double == 14
    assert p.controls["a"].style.description_width == "initial"
    with pytest.raises(ValueError, match="unknown controls"):
        Panel({"a": IntSlider()}, lambda a: None, enabled_when={"b": lambda v: True})
    with pytest.raises(AttributeError, match="no entry 'nope'"):
        p.state.nope


# ------------------------------------------------------------------ 00 introduction
def test_perturbation_panel_matches_perturbation_scores_and_gradient(digits):
    base, split = digits
    model = fresh(base)
    x, t = split.X_test[0], int(split.y_test[0])
    panel = widgets.perturbation_panel(model, x, t, delta=0.5)
    assert isinstance(panel, Panel)
    g = gradient(base, x[None], t)[0]
    panel.controls["row"].value = 3
    panel.controls["col"].value = 5
    for delta in (1.0, 0.001):
        panel.controls["delta"].value = delta
        s = panel.state
        d = panel.controls["delta"].value
        R = perturbation_scores(base, x[None], t, delta=d)[0]
        assert torch.allclose(s.R, R, atol=1e-6) and torch.allclose(s.grad, g, atol=1e-6)
        assert s.R_over_delta == pytest.approx(R[:, 3, 5].sum().item() / d, rel=1e-6)
        assert s.minus_grad == pytest.approx(-g[:, 3, 5].sum().item(), rel=1e-6)
        assert f"R_i/δ = {s.R_over_delta:+.4f}" in panel.readout.value
    # first-order Taylor: at δ = 0.001 the finite difference R_i/δ is −∂f/∂x_i (float32 noise only)
    assert s.R_over_delta == pytest.approx(s.minus_grad, abs=5e-3 + 1e-2 * abs(s.minus_grad))
    assert titles(panel).count("sum over channels") == 2
    assert panel.delta is panel.controls["delta"] and panel.row.value == 3 and panel.col.value == 5
    assert_model_untouched(model)


# ------------------------------------------------------------------ 01 activation maximisation
def test_featurevis_panel_matches_activation_maximization(digits):
    base, split = digits
    model = fresh(base)
    data = split.X_test[:40]
    st = fv.course_settings("digits", steps=10)
    panel = widgets.featurevis_panel(model, data, st, steps=10, k=3)
    c = panel.controls
    # the class-logit entry has a visible label and a string value (None showed a blank box)
    assert c["layer"].value == "logits" and c["layer"].label == "class logit"
    assert c["reduce"].disabled and not c["tv"].disabled and c["sigma"].disabled
    c["unit"].value = 7
    res = fv.activation_maximization(base, fv.class_logit(7), (1, 8, 8),
                                     **{**st, "jitter": 0, "blur_every": 0, "blur_sigma": 0.5})
    assert torch.equal(panel.state.x, res.x)
    assert torch.equal(panel.state.final_objective, res.final_objective)
    c["tv_on"].value = False
    assert c["tv"].disabled
    draws = []
    inner = panel._draw
    panel._draw = lambda **v: (draws.append(v), inner(**v))[1]
    c["layer"].value = "conv2"                       # one redraw, although the unit range changes too
    assert len(draws) == 1 and c["unit"].max == fv.layer_sizes(base, data[0])["conv2"] - 1
    assert not c["reduce"].disabled
    with panel.hold():
        c["unit"].value = 3
        c["reduce"].value = "sum"
        c["blur"].value = 2
        c["jitter"].value = 1
    assert not c["sigma"].disabled                   # rules applied when the hold ends
    panel.redraw()
    obj = fv.channel("conv2", 3, reduce="sum")
    res = fv.activation_maximization(base, obj, (1, 8, 8), **{**st, "tv_weight": 0.0, "jitter": 1,
                                                              "blur_every": 2, "blur_sigma": 0.5})
    s = panel.state
    assert s.objectives[0] == obj and torch.equal(s.x, res.x)
    assert torch.equal(s.history["objective"], res.history["objective"])
    idx, vals = fv.top_activating_examples(base, obj, data, k=3)
    assert torch.equal(s.top_indices, idx) and torch.allclose(s.top_values, vals)
    assert "conv2 channel 3 (sum over positions)" in panel.figures[0]._suptitle.get_text()
    assert_model_untouched(model)


# ------------------------------------------------------------------ 02 t-SNE
def test_tsne_panel_matches_tsne_runs_and_keeps_label_colours(digits):
    _, split = digits
    keep = torch.isin(split.y_test, torch.tensor([1, 3, 7]))
    X, y = split.X_test[keep][:45].flatten(1), split.y_test[keep][:45]
    panel = widgets.tsne_panel(X, y, perplexities=(5, 10, 50), perplexity=10, max_iter=40, snapshot_every=20)
    assert list(panel.controls["perplexity"].options) == [5, 10]         # 50 ≥ N − 1 is dropped
    kw = "max_iter" if "max_iter" in getattr(TSNE(), "get_params", dict)() else "n_iter"
    ref = TSNE(perplexity=10.0, init="pca", random_state=0, snapshot_every=20, **{kw: 40}).fit(X)
    s = panel.state
    assert s.step == 40 and s.kl == pytest.approx(dict(ref.kl_history_)[40], rel=1e-9)
    assert np.array_equal(s.embedding, dict(ref.snapshots_)[40])
    panel.controls["step"].value = 20
    assert panel.state.step == 20 and panel.state.kl == pytest.approx(dict(ref.kl_history_)[20], rel=1e-9)
    panel.controls["perplexity"].value = 5
    ref5 = TSNE(perplexity=5.0, init="pca", random_state=0, snapshot_every=20, **{kw: 40}).fit(X)
    assert panel.state.kl == pytest.approx(dict(ref5.kl_history_)[20], rel=1e-9)
    assert "KL(P‖Q) = <b>" + f"{panel.state.kl:.3f}" in panel.readout.value
    # viz.embedding_scatter fixes the colour range: label k is tab10's k-th colour even if only 1, 3, 7 occur
    norm = panel.figures[0].axes[0].collections[0].norm
    assert (norm.vmin, norm.vmax) == (0, 9)
    old = widgets.tsne_panel(X, y, perplexities=(10,), perplexity=10, n_iter=40, snapshot_every=20)
    assert old.state.kl == s.kl                                          # n_iter: the old name still works
    with pytest.raises(ValueError, match="max_iter or its old name n_iter"):
        widgets.tsne_panel(X, y, n_iter=40, max_iter=60)


# ------------------------------------------------------------------ 03 gradients vs LIME
def test_attribution_panel_matches_attribute_for_every_method(digits):
    base, split = digits
    model = fresh(base)
    images, labels = split.X_test[:2], split.y_test[:2]
    panel = widgets.attribution_panel(model, images, labels, layer="conv3")
    c = panel.controls
    with panel.hold():                                # three changes, one redraw
        c["image"].value = 1
        c["sigma"].value = 0.2
        c["n"].value = 4
    c["heatmap"].value = "sum_squares"
    seen = set()
    for m in METHODS:
        c["method"].value = m
        s = panel.state
        assert s.method == m and s.index == 1 and s.target == int(labels[1])
        assert c["sigma"].disabled == c["n"].disabled == (m != "smoothgrad"), m
        assert ("layer" in s.options) == (m == "grad_cam"), m       # only Grad-CAM gets layer=
        if m == "smoothgrad":
            assert s.options == {"sigma": 0.2, "n_samples": 4, "seed": 0}
        if m == "grad_cam":
            assert s.options == {"layer": "conv3"}
        expect = attribute(m, base, images[1:2], int(labels[1]), **s.options)[0]
        assert torch.allclose(s.attribution, expect, atol=1e-6, rtol=1e-5), m
        assert "(sum of squares)" in titles(panel)
        seen.add(m)
    assert seen == set(METHODS)
    c["heatmap"].value = "sum"
    assert "(sum over channels)" in titles(panel)
    assert_model_untouched(model)


def test_lime_panel_matches_lime_explain_and_stability(digits):
    base, split = digits
    model = fresh(base)
    x, t = split.X_test[3], int(split.y_test[3])
    panel = widgets.lime_panel(model, x, t, n_seeds=3, k=4, num_samples=40, output="logit")
    assert panel.state.num_samples == 40
    panel.controls["samples"].value = 60
    panel.controls["kernel_width"].value = 0.5
    kw = panel.controls["kernel_width"].value
    seg = L.segment_image(x, "grid", cell=2)
    e = L.lime_explain(base, x[None], t, seed=0, n_samples=60, kernel_width=kw, segments=seg, output="logit")[0]
    s = panel.state
    assert s.num_samples == 60 and s.kernel_width == kw
    assert np.allclose(s.explanation.coefficients, e.coefficients, atol=1e-9)
    assert np.allclose(s.explanation.weights, e.weights)
    assert s.effective_samples == pytest.approx(e.weights.sum() ** 2 / (e.weights ** 2).sum())
    agree, tops = L.lime_stability(base, x, t, seeds=range(3), k=4, n_samples=60, kernel_width=kw,
                                   segments=seg, output="logit")
    assert s.agreement == pytest.approx(agree) and panel.meter.value == pytest.approx(agree)
    assert all(np.array_equal(a, b) for a, b in zip(s.tops, tops))
    assert panel.samples is panel.controls["samples"] and panel.kernel_width.value == kw
    assert_model_untouched(model)
