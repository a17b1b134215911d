"""Lecture 04 panels, driven through their controls; the numbers they show are checked."""
import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

from xaicourse.attribution import integrated_gradients, internal_influence  # noqa: E402
from xaicourse.models import course_model  # noqa: E402
from xaicourse.widgets.integrated_gradients import baseline_panel, convergence_panel, internal_panel  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    model, split, _ = course_model("digits", progress=False)
    return model.eval(), split


def test_convergence_panel(digits):
    model, split = digits
    x, t = split.X_test[0], int(split.y_test[0])
    p = convergence_panel(model, x, t, steps=(2, 8, 32))
    p.controls["rule"].value = "riemann_left"
    p.controls["n_steps"].value = 4
    s4 = p.state
    _, d = integrated_gradients(model, x[None], t, n_steps=4, method="riemann_left", return_convergence_delta=True)
    assert s4["rule"] == "riemann_left" and s4["delta"] == pytest.approx(float(d), abs=1e-6)
    p.controls["rule"].value = "gausslegendre"
    p.controls["n_steps"].value = 64
    _, d64 = integrated_gradients(model, x[None], t, n_steps=64, return_convergence_delta=True)
    assert p.state["delta"] == pytest.approx(float(d64), abs=1e-6)
    assert p.state["rel_delta"] < 0.05                        # 64 Gauss–Legendre steps: a few % at most
    # the curves are the deltas of integrated_gradients for each rule and step count
    c = p.state["curves"]
    _, d = integrated_gradients(model, x[None], t, n_steps=8, method="riemann_trapezoid", return_convergence_delta=True)
    assert c["riemann_trapezoid"][1] == pytest.approx(abs(float(d)), abs=1e-6)


def test_baseline_panel(digits):
    model, split = digits
    x, t = split.X_test[1], int(split.y_test[1])
    p = baseline_panel(model, x, t, split.X_train[:200], n_steps=32)
    seen = {}
    for kind in ("black", "blurred", "noise", "mean", "expected"):
        p.controls["baseline"].value = kind
        s = p.state
        seen[kind] = s["attr_sum"]
        assert abs(s["attr_sum"] - s["gap"] - s["delta"]) < 1e-4      # δ = Σ IG − (f(x) − f(x′))
        assert abs(s["delta"]) < 0.1 * abs(s["gap"]) + 0.05
    assert len({round(v, 3) for v in seen.values()}) == 5                 # each baseline tells another story


def test_internal_panel(digits):
    model, split = digits
    x, t = split.X_test[2], int(split.y_test[2])
    p = internal_panel(model, x, t, layers=("conv3", "fc1"), n_steps=8)
    assert p.controls["contrast"].disabled
    p.controls["layer"].value = "fc1"
    ref = internal_influence(model, x[None], t, layer="fc1", n_steps=8)[0]
    assert torch.allclose(p.state["influence"], ref, atol=1e-6)
    assert p.state["top_units"][0] == int(ref.argmax())
    p.controls["quantity"].value = "comparative"
    assert not p.controls["contrast"].disabled
    p.controls["contrast"].value = (t + 3) % 10
    ref = internal_influence(model, x[None], t, layer="fc1", n_steps=8, contrast=(t + 3) % 10)[0]
    assert torch.allclose(p.state["influence"], ref, atol=1e-6) and p.state["contrast"] == (t + 3) % 10


def test_convergence_panel_log_axis_labels_do_not_overprint(digits):
    """Issue 26: the log axes labelled their minor ticks too, and the labels overprinted. Now the x
    axis has exactly one label per step count and no minor labels, the y axis none either."""
    model, split = digits
    x, t = split.X_test[0], int(split.y_test[0])
    steps = (2, 4, 8, 16, 32)
    p = convergence_panel(model, x, t, steps=steps)
    fig = p.figures[0]
    fig.canvas.draw()
    ax = fig.axes[2]
    labels = [tl.get_text() for tl in ax.get_xticklabels() if tl.get_text()]
    assert labels == [str(s) for s in steps], labels
    assert not [tl.get_text() for tl in ax.get_xticklabels(minor=True) if tl.get_text()]
    assert not [tl.get_text() for tl in ax.get_yticklabels(minor=True) if tl.get_text()]
    # no two x labels overlap on the drawn figure
    boxes = [tl.get_window_extent() for tl in ax.get_xticklabels() if tl.get_text()]
    assert all(a.x1 <= b.x0 for a, b in zip(boxes, boxes[1:]))
    assert "% of f(x) − f(0)" in ax.get_title()              # the readout states the chosen point's δ


def test_baseline_panel_offers_the_mean_baseline(digits):
    model, split = digits
    x, t = split.X_test[3], int(split.y_test[3])
    p = baseline_panel(model, x, t, split.X_train[:50], n_steps=16)
    assert "mean" in p.controls["baseline"].options
    p.controls["baseline"].value = "mean"
    s = p.state
    assert s["baseline"] == "mean"
    assert abs(s["attr_sum"] - s["gap"] - s["delta"]) < 1e-4
    with torch.no_grad():                                     # the mean baseline is a flat image of x's mean
        gap = float(model(x[None])[0, t] - model(torch.full_like(x, float(x.mean()))[None])[0, t])
    assert s["gap"] == pytest.approx(gap, abs=1e-5)
