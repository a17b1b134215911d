"""Lecture 08 panels: pickers and sliders give the numbers of the evaluation functions."""
import torch

from xaicourse import attribution as A, data, evaluation as M, models
from xaicourse.widgets import evaluation_panel, mask_panel


def _setup():
    torch.set_num_threads(1)
    s = data.make_shapes(6, size=16, seed=5)
    torch.manual_seed(0)
    model = models.SmallCNN(3, 4, width=4).eval()
    return model, s.images, s.labels, s.masks


def test_evaluation_panel_metrics_match_the_package():
    model, x, y, m = _setup()
    methods = {"gradient": ("gradient", {}), "IG": ("integrated_gradients", dict(n_steps=8))}
    p = evaluation_panel(model, x, y, m, methods, n_steps=8)
    assert p.state.metric == "deletion" and p.state.method == "gradient"
    g = A.gradient(model, x, y)
    ref = M.curve_auc(*M.deletion_curve(model, x[:1], y[:1], g[:1], n_steps=8, baselines=0.5))[0]
    assert abs(p.state.value - float(ref)) < 1e-9
    with p.hold():
        p.controls["method"].value = "IG"
        p.controls["metric"].value = "mask IoU"
        p.controls["image"].value = 3
    st = p.redraw()
    ig = A.integrated_gradients(model, x, y, n_steps=8)
    assert abs(st["value"] - float(M.mask_iou(ig[3:4], m[3:4], absolute=True)[0])) < 1e-12
    p.controls["metric"].value = "pointing game"
    assert p.state.value == float(M.pointing_game(ig[3:4], m[3:4], absolute=True)[0])
    p.controls["metric"].value = "insertion"
    ref = M.curve_auc(*M.insertion_curve(model, x[3:4], y[3:4], ig[3:4], n_steps=8, baselines=0.5))[0]
    assert abs(p.state.value - float(ref)) < 1e-9


def test_evaluation_panel_signed_maps_are_centred_and_random_is_listed_once():
    model, x, y, m = _setup()
    methods = {"random": (M.random_attribution, {}), "gradient": ("gradient", {})}
    p = evaluation_panel(model, x, y, m, methods, n_steps=4)
    # the random control itself: one curve, one "random" in the legend (it was drawn twice)
    assert p.state.method == "random" and len(p.state.legend) == 1
    assert sum("random" in s for s in p.state.legend) == 1
    p.controls["method"].value = "gradient"
    assert len(p.state.legend) == 2 and sum("random" in s for s in p.state.legend) == 1
    # the signed gradient map in RdBu_r: limits symmetric about 0, so that zero is white
    lo, hi = p.state.clim
    assert lo < 0 < hi and abs(lo + hi) < 1e-12
    r = M.feature_map(A.gradient(model, x[:1], y[:1]), x[:1].shape)[0]
    assert abs(hi - float(r.abs().max())) < 1e-9


def test_mask_panel_sliders_change_the_mask():
    model, x, y, _ = _setup()
    p = mask_panel(model, x[0], int(y[0]), n_steps=20)
    ref = A.meaningful_perturbation(model, x[:1], int(y[0]), l1=10 ** -2.5, n_steps=20, return_mask=True)[0, 0]
    assert torch.allclose(p.state.mask, ref) and 0 <= p.state.p_target <= 1
    p.controls["l1"].value = 0.1
    small = p.state.area
    p.controls["l1"].value = 0.001            # cheaper deletion → a larger deleted region
    assert p.state.l1 == 0.001 and p.state.area >= small
    assert "0.001" in p.state.readout
    p.controls["mode"].value = "preserve"
    ref = A.meaningful_perturbation(model, x[:1], int(y[0]), mode="preserve", l1=0.001, n_steps=20, return_mask=True)
    assert torch.allclose(p.state.mask, ref[0, 0])


def test_mask_panel_default_deletes_a_visible_region_of_the_course_cnn():
    # λ₁ = 0.05 (the old default) gave an empty mask on the course CNN (deleted area ≈ 0.01, p unchanged)
    torch.set_num_threads(1)
    model, split, _ = models.course_model("shapes", progress=False)
    model = model.eval().cpu()
    for i in (0, 1):
        x, t = split.X_test[i], int(split.y_test[i])
        p = mask_panel(model, x, t, n_steps=40)
        with torch.no_grad():
            p0 = float(torch.softmax(model(x[None]), 1)[0, t])
        assert 0.1 < p.state.area < 0.6, p.state.area
        assert p.state.p_target < 0.5 * p0, (p.state.p_target, p0)
