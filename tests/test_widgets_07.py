"""Lecture 07 panels: the numbers they show are tracin_cp's."""
import matplotlib
import torch
from torch import nn

matplotlib.use("Agg")

from conftest import assert_gallery_readable  # noqa: E402
from xaicourse.data import load_digits_tensors  # noqa: E402
from xaicourse.data_attribution import detection_curve, tracin_cp  # noqa: E402
from xaicourse.models import SmallCNN, train  # noqa: E402
from xaicourse.widgets.tracin import detection_panel, proponents_panel  # noqa: E402


def test_proponents_panel_matches_tracin():
    sp = load_digits_tensors()
    m = SmallCNN(1, 10, width=4, hidden=16)
    X, y, Xt, yt = sp.X_train[:80], sp.y_train[:80], sp.X_test[:4], sp.y_test[:4]
    ck = train(m, X, y, epochs=2, lr=1e-2, checkpoint_every=1, progress=False, cache=False).checkpoints
    p = proponents_panel(m, ck, nn.CrossEntropyLoss(), X, y, Xt, yt, k=3, layers="fc2")
    p.controls["test"].value = 2
    ref = tracin_cp(m, ck, nn.CrossEntropyLoss(), X, y, Xt, yt, layers="fc2", progress=False)[2]
    assert p.state["proponents"] == torch.topk(ref, 3).indices.tolist()
    assert p.state["opponents"] == torch.topk(-ref, 3).indices.tolist()
    p.controls["normalize"].value = True
    refc = tracin_cp(m, ck, nn.CrossEntropyLoss(), X, y, Xt, yt, layers="fc2", normalize=True, progress=False)[2]
    assert torch.allclose(p.state["scores"], refc)


def test_proponents_gallery_is_readable_at_k10():
    """Issue #26: the panel drew one row of 2k+1 images with 7-pt titles; on the site the titles
    ended up ~5 px high. It now draws ``viz.gallery``: one row per kind, titles ≥ 8 pt."""
    sp = load_digits_tensors()
    m = SmallCNN(1, 10, width=4, hidden=16)
    X, y, Xt, yt = sp.X_train[:60], sp.y_train[:60], sp.X_test[:2], sp.y_test[:2]
    ck = train(m, X, y, epochs=1, lr=1e-2, checkpoint_every=1, progress=False, cache=False).checkpoints
    p = proponents_panel(m, ck, nn.CrossEntropyLoss(), X, y, Xt, yt, k=10, layers="fc2")
    assert_gallery_readable(p.figures[0], 20)
    assert any(a.patches for a in p.figures[0].axes)       # the score histogram


def test_detection_panel_reads_curves():
    flagged = torch.tensor([True, False, False, False, True, False, False, False, False, False])
    curves = {"perfect": detection_curve(flagged.double(), flagged), "worst": detection_curve(-flagged.double(), flagged)}
    p = detection_panel(curves)
    p.controls["x"].value = 0.2
    assert p.state["found"] == {"perfect": 1.0, "worst": 0.0}
    # the "% found" readout (issue 26: lecture 06 had one, 07 did not) shows every shown ranking's value
    assert p.readout is not None
    assert "perfect: 100%" in p.readout.value and "worst: 0%" in p.readout.value and "top 20%" in p.readout.value
    p.controls["worst"].value = False
    assert set(p.state["found"]) == {"perfect"} and "worst" not in p.readout.value
    p.controls["perfect"].value = False
    assert p.state["found"] == {} and "tick" in p.readout.value
