"""Lecture 05 panels driven like a user: the gallery picks the most helpful / harmful training
points of the exact influence scores; the LiSSA monitor converges to the exact solve, shows the
damping bias and reports a diverging scale."""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

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


def test_lissa_panel_converges_and_shows_damping_bias(setup):
    model, loss, X, y, Xt, yt = setup
    v = per_example_grads(model, loss, Xt[:1], yt[:1])[0]
    exact = inverse_hvp(model, loss, X, y, v, l2=L2, method="exact")
    G = per_example_grads(model, loss, X, y)
    p = lissa_panel(model, loss, X, y, v, exact, l2=L2, train_grads=G, depth=400, record_every=20)
    st = p.state
    assert st["error"] is None and len(st["depths"]) == 20
    assert st["errors"][-1] < st["errors"][0] and st["final_error"] < 0.05 and st["r"] > 0.999
    p.controls["damping"].value = 0.1           # damping: faster, but converges to the wrong answer
    assert p.state["final_error"] > 0.1
    p.controls["damping"].value = 1e-6
    p.controls["scale"].value = p.controls["scale"].min   # far below λ_max: diverges
    st = p.state
    assert st["error"] is not None and "scale=" in st["error"]
