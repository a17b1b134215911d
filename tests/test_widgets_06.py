"""Lecture 06 panels driven like a user: the gallery shows RepresenterPoints' top positive / negative
representers and their contributions (which sum to the logit); the mislabel panel reads
detection_curve of |α|, the loss and a random order, and |α| beats random at 10 % flipped labels."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from conftest import assert_gallery_readable  # noqa: E402
from xaicourse.data import load_digits_tensors  # noqa: E402
from xaicourse.data_attribution import RepresenterPoints, detection_rate, flip_labels  # noqa: E402
from xaicourse.models import SmallCNN, train  # noqa: E402
from xaicourse.widgets.representer_points import mislabel_panel, representer_gallery_panel  # noqa: E402

N = 300


@pytest.fixture(scope="module")
def noisy():
    torch.manual_seed(0)
    sp = load_digits_tensors()
    X, Xt, yt = sp.X_train[:N], sp.X_test[:6], sp.y_test[:6]
    y, flipped = flip_labels(sp.y_train[:N], 0.1, 10, seed=1)
    m = SmallCNN(1, 10, width=4, hidden=16)
    train(m, X, y, epochs=8, lr=1e-2, progress=False, cache=False)
    rp = RepresenterPoints(l2=1e-2).from_model(m, X, y)
    return m, rp, X, y, flipped, Xt, yt


def test_gallery_matches_package(noisy):
    m, rp, X, y, flipped, Xt, yt = noisy
    ft = rp.features_of(m, Xt)
    p = representer_gallery_panel(rp, ft, X, Xt, yt, k=4)
    p.controls["test"].value = 3
    st = p.state
    v, i = rp.top_representers(ft, 4, "positive")
    assert st["positive"] == i[3].tolist() and torch.allclose(torch.tensor(st["positive_values"]).double(), v[3])
    v, i = rp.top_representers(ft, 4, "negative")
    assert st["negative"] == i[3].tolist() and torch.allclose(torch.tensor(st["negative_values"]).double(), v[3])
    assert all(a > 0 for a in st["positive_values"]) and all(a < 0 for a in st["negative_values"])
    assert st["target"] == int(rp.predict(ft)[3])
    assert abs(st["total"] - st["logit"]) < 1e-6 * max(1.0, abs(st["logit"]))  # Σ_i α_i Φ_iᵀΦ_t = W Φ_t
    # explaining the true class instead of the predicted one
    p.controls["cls"].value = "true"
    st = p.state
    assert st["target"] == int(yt[3])
    assert st["positive"] == rp.top_representers(ft, 4, "positive", target=yt)[1][3].tolist()
    p.controls["k"].value = 2
    assert len(p.state["negative"]) == 2
    with pytest.raises(ValueError, match="test_features"):
        representer_gallery_panel(rp, ft[:2], X, Xt, yt)
    with pytest.raises(ValueError, match="fitted"):
        representer_gallery_panel(RepresenterPoints(), ft, X, Xt, yt)


def test_true_class_on_a_correct_prediction_says_so(noisy):
    """Issue #26: "explain class → true" on a correctly classified image redrew the same figure and
    said nothing. Now the readout explains why and lists misclassified test images to try."""
    m, rp, X, y, flipped, Xt, yt = noisy
    ft = rp.features_of(m, Xt)
    pred = rp.predict(ft)
    right = [j for j in range(len(yt)) if int(pred[j]) == int(yt[j])]
    wrong = [j for j in range(len(yt)) if int(pred[j]) != int(yt[j])]
    assert right, "the fixture needs a correctly classified test image"
    p = representer_gallery_panel(rp, ft, X, Xt, yt, k=3)
    p.controls["test"].value = right[0]
    assert p.state["message"] == ""                       # "predicted": nothing to say
    p.controls["cls"].value = "true"
    st = p.state
    assert "classified correctly" in st["message"] and "classified correctly" in p.readout.value
    assert st["misclassified"] == wrong
    for j in wrong[:3]:
        assert f"#{j}" in st["message"]
    if wrong:                                             # a misclassified image: no message, another class
        p.controls["test"].value = wrong[0]
        assert p.state["message"] == "" and p.state["target"] == int(yt[wrong[0]]) != int(pred[wrong[0]])


def test_gallery_figure_is_readable_at_k10(noisy):
    """Issue #26: at k = 10 the second row's titles overlapped the first row; titles were 7 pt on a
    figure 16 in wide; the histogram had 5-pt ticks. The panel now draws ``viz.gallery``."""
    m, rp, X, y, flipped, Xt, yt = noisy
    p = representer_gallery_panel(rp, rp.features_of(m, Xt), X, Xt, yt, k=10)
    assert_gallery_readable(p.figures[0], 20)
    assert any(a.patches for a in p.figures[0].axes)       # the histogram is there


def test_mislabel_panel_matches_detection_rate(noisy):
    m, rp, X, y, flipped, Xt, yt = noisy
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(m(X), y, reduction="none")
    p = mislabel_panel(rp, flipped, losses=loss, seed=0)
    p.controls["x"].value = 0.1
    found = p.state["found"]
    assert set(found) == {"|α|", "loss", "random"}
    assert found["|α|"] == pytest.approx(detection_rate(rp.importance(), flipped, 0.1))
    assert found["loss"] == pytest.approx(detection_rate(loss, flipped, 0.1))
    assert found["|α|"] >= 2 * max(found["random"], 0.1)   # far better than random inspection (≈ 10 %)
    p.controls["x"].value = 1.0
    assert all(v == 1.0 for v in p.state["found"].values())
    p.controls["loss"].value = False
    assert set(p.state["found"]) == {"|α|", "random"}
    with pytest.raises(ValueError, match="flipped"):
        mislabel_panel(rp, flipped[:10])
