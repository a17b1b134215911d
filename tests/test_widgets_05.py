"""Lecture 05 panels driven like a user: the gallery picks the most helpful / harmful training
points of the exact influence scores; the LiSSA monitor converges to the exact solve, shows the
damping bias and reports a diverging scale."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import assert_gallery_readable
from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import fit, i_up_loss, inverse_hvp, per_example_grads
from xaicourse.models import LogisticRegression
from xaicourse.widgets.influence_functions import influence_gallery_panel, lissa_panel

warnings.filterwarnings("ignore", category=UserWarning)
L2 = 1e-2


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    s = load_digits_tensors()
    X, y, Xt, yt = s.X_train[:200].double(), s.y_train[:200], s.X_test[:3].double(), s.y_test[:3]
    model = LogisticRegression().double()
    loss = nn.CrossEntropyLoss()
    fit(model, loss, X, y, l2=L2)
    return model, loss, X, y, Xt, yt


def test_gallery_shows_most_helpful_and_harmful(setup):
    model, loss, X, y, Xt, yt = setup
    S = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="exact")
    p = influence_gallery_panel(S, X, y, Xt, yt, k=4)
    p.controls["test"].value = 2
    st = p.state
    assert st["test"] == 2 and len(st["helpful"]) == 4
    assert st["helpful"] == torch.argsort(S[2])[:4].tolist()
    assert st["harmful"] == torch.argsort(S[2], descending=True)[:4].tolist()
    assert all(d > 0 for d in st["helpful_delta"]) and all(d < 0 for d in st["harmful_delta"])
    assert np.isclose(st["helpful_delta"][0], -float(S[2].min()) / len(X))
    p.controls["k"].value = 2
    assert len(p.state["harmful"]) == 2
    with pytest.raises(ValueError, match="scores"):
        influence_gallery_panel(S[:, :10], X, y, Xt, yt)


def test_gallery_is_readable_at_k10(setup):
    """Issue #26: at k = 10 the harmful row's titles overlapped the helpful row (7-pt titles on a
    16-inch figure, histogram ticks at 6 pt). The panel now draws ``viz.gallery``."""
    model, loss, X, y, Xt, yt = setup
    S = i_up_loss(model, loss, X, y, Xt, yt, l2=L2, method="exact")
    p = influence_gallery_panel(S, X, y, Xt, yt, k=10)
    assert_gallery_readable(p.figures[0], 20)
    assert any(a.patches for a in p.figures[0].axes)       # the histogram of all −I/n


def test_lissa_panel_converges_and_shows_damping_bias(setup):
    model, loss, X, y, Xt, yt = setup
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    exact = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    G = per_example_grads(model, loss, X, y)
    p = lissa_panel(model, loss, X, y, v, exact, l2=L2, train_grads=G, depth=400, record_every=20)
    st = p.state
    assert st["error"] is None and len(st["depths"]) == 21 and st["depths"][0] == 0
    assert st["errors"][-1] < st["errors"][0] and st["final_error"] < 0.05 and st["r"] > 0.999
    p.controls["damping"].value = 0.1           # damping: faster, but converges to the wrong answer
    assert p.state["final_error"] > 0.1
    p.controls["damping"].value = 1e-6
    p.controls["scale"].value = p.controls["scale"].min   # far below λ_max: diverges
    st = p.state
    assert st["error"] is not None and "scale=" in st["error"]


def test_lissa_panel_controls_are_readable(setup):
    """Issue 26: the "Hessian batch" dropdown was blank (value None), the damping readout was cut
    off, and depth = record_every plotted one invisible point."""
    model, loss, X, y, Xt, yt = setup
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    exact = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    p = lissa_panel(model, loss, X, y, v, exact, l2=L2, depth=100, record_every=10)
    batch = p.controls["batch"]
    # a selected option whose label is shown (ipywidgets leaves a Dropdown blank when the value is None)
    assert batch.index is not None and batch.label == "all" and batch.value is not None
    assert [lab for lab, _ in batch.options] == ["all", "256", "64"]
    batch.value = 64
    assert p.state["error"] is None and "batch 64" in p.readout.value
    batch.value = 0
    # the damping value is printed in full in the readout line, and the slider's own readout is short
    p.controls["damping"].value = 1e-3
    assert "δ = 1.0e-03" in p.readout.value and "λ_max/2" in p.readout.value
    assert len(format(1e-6, p.controls["damping"].readout_format)) <= 5
    # the smallest depth still draws a visible curve: ≥ 2 points with markers
    p.controls["damping"].value = 1e-6
    p.controls["depth"].value = p.controls["depth"].min
    st = p.state
    assert st["depths"] == [0, 10] and len(st["errors"]) == 2
    line = p.figures[0].axes[0].lines[0]
    assert len(line.get_xdata()) == 2 and line.get_marker() not in (None, "None", "", " ")


def test_lissa_panel_converges_between_half_and_full_lambda_max(setup):
    """The Neumann series converges for s > λ_max/2 (not only s > λ_max) and diverges below."""
    model, loss, X, y, Xt, yt = setup
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    exact = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    p = lissa_panel(model, loss, X, y, v, exact, l2=L2, depth=200, record_every=20)
    lam = p.state["lam_max"]
    p.controls["scale"].value = 0.6 * lam
    st = p.state
    assert st["error"] is None and st["final_error"] < st["errors"][0]
    p.controls["scale"].value = 0.4 * lam
    assert p.state["error"] is not None and "λ_max/2" in p.state["error"]
