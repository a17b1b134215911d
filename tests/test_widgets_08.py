"""Lecture 08 panels: pickers and sliders give the numbers of the metrics functions."""
import torch

from xaicourse import attribution as A, data, metrics as M, models
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
    p = evaluation_panel(model, x, y, m, methods, steps=8)
    assert p.state.metric == "deletion" and p.state.method == "gradient"
    g = A.gradient(model, x, y)
    ref = M.curve_auc(*M.deletion_curve(model, x[:1], y[:1], g[:1], steps=8, value=0.5))[0]
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
    ref = M.curve_auc(*M.insertion_curve(model, x[3:4], y[3:4], ig[3:4], steps=8, fill="constant", value=0.5))[0]
    assert abs(p.state.value - float(ref)) < 1e-9


def test_mask_panel_sliders_change_the_mask():
    model, x, y, _ = _setup()
    p = mask_panel(model, x[0], int(y[0]), n_steps=20)
    ref = A.meaningful_perturbation(model, x[:1], int(y[0]), n_steps=20, return_mask=True)[0, 0]
    assert torch.allclose(p.state.mask, ref) and 0 <= p.state.p_target <= 1
    small = p.state.area
    p.controls["l1"].value = 0.001            # cheaper deletion → a larger deleted region
    assert p.state.l1 == 0.001 and p.state.area >= small
    p.controls["mode"].value = "preserve"
    ref = A.meaningful_perturbation(model, x[:1], int(y[0]), mode="preserve", l1=0.001, n_steps=20, return_mask=True)
    assert torch.allclose(p.state.mask, ref[0, 0])
