"""Lecture 04b panels, driven through every control; the numbers they show are checked."""
import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402
import torch  # noqa: E402

from xaicourse.attribution import deeplift, internal_influence, lrp  # noqa: E402
from xaicourse.models import course_model  # noqa: E402
from xaicourse.widgets.propagation import PROPAGATION_RULES, influence_panel, propagation_panel  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    model, split, _ = course_model("digits", progress=False)
    return model.eval(), split


def test_propagation_panel_every_rule(digits):
    model, split = digits
    x, t = split.X_test[:4], split.y_test[:4]
    p = propagation_panel(model, x, t)
    assert p.controls["rule"].value == "lrp_epsilon" and p.controls["rule"].options     # a rule is selected
    assert not p.controls["epsilon"].disabled
    assert p.state["epsilon"] == pytest.approx(0.25)                                   # the package default
    ref = lrp(model, x[:1], int(t[0]), epsilon=0.25)[0]
    assert torch.allclose(p.state["attribution"], ref, atol=1e-6)
    assert "Σ R" in p.readout.value and f"{p.state['sum']:.3f}" in p.readout.value    # readout shows the number
    seen = {}
    for value in PROPAGATION_RULES.values():
        p.controls["rule"].value = value
        seen[value] = p.state["attribution"]
        assert p.state["rule"] == value
        assert p.controls["epsilon"].disabled == (value not in ("lrp_epsilon", "lrp_wsquare"))
        assert abs(p.state["sum"] - float(p.state["attribution"].sum())) < 1e-4
    # DeepLIFT accounts for all of f(x) − f(0) (summation-to-delta), LRP-ε for less than f(x)
    p.controls["rule"].value = "deeplift"
    assert p.state["kept"] == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(p.state["attribution"], deeplift(model, x[:1], int(t[0]))[0], atol=1e-6)
    # LRP-0 is input × gradient of the centred input (x − 0.5: SmallCNN's first step)
    x0 = x[:1].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x0)[0, int(t[0])], x0)
    assert torch.allclose(seen["lrp_0"], ((x[:1] - 0.5) * g)[0], atol=1e-4)
    # ε and the image slider redraw with their values
    p.controls["rule"].value = "lrp_epsilon"
    p.controls["epsilon"].value = 10.0
    big = p.state["kept"]
    p.controls["epsilon"].value = 1e-3
    assert abs(p.state["kept"]) > abs(big)                        # a larger ε absorbs more relevance
    p.controls["image"].value = 3
    assert torch.allclose(p.state["attribution"], lrp(model, x[3:4], int(t[3]), epsilon=1e-3)[0], atol=1e-6)
    with pytest.raises(ValueError, match="one class per image"):
        propagation_panel(model, x, t[:2])


def test_influence_panel_distributions_and_quantities(digits):
    model, split = digits
    x, t = split.X_test[:40], split.y_test[:40]
    p = influence_panel(model, x, t, layers=("conv3", "fc1"), n_steps=8)
    assert p.controls["layer"].value == "fc1" and p.controls["contrast"].disabled
    a = int(t[0])
    ref = internal_influence(model, x[:1], a, layer="fc1", distribution="point")[0]
    assert torch.allclose(p.state["influence"], ref, atol=1e-6) and p.state["top_units"][0] == int(ref.argmax())
    assert str(p.state["top_units"]) in p.readout.value
    # the class-wide distribution: every image of class A in the set
    p.controls["distribution"].value = "set"
    n_a = int((t == a).sum())
    assert p.state["n_images"] == n_a and f"{n_a} images of class {a}" in p.readout.value
    ref = internal_influence(model, x[t == a], a, layer="fc1", distribution="set")[0]
    assert torch.allclose(p.state["influence"], ref, atol=1e-6)
    # the line from the black image, on conv3 (channels summed over space)
    p.controls["distribution"].value = "line"
    p.controls["layer"].value = "conv3"
    ref = internal_influence(model, x[:1], a, layer="conv3", n_steps=8)[0].flatten(1).sum(1)
    assert torch.allclose(p.state["influence"], ref, atol=1e-5)
    # the comparative quantity f_A − f_B
    p.controls["quantity"].value = "comparative"
    assert not p.controls["contrast"].disabled
    b = (a + 3) % 10
    p.controls["contrast"].value = b
    ref = internal_influence(model, x[:1], a, layer="conv3", n_steps=8, contrast=b)[0].flatten(1).sum(1)
    assert torch.allclose(p.state["influence"], ref, atol=1e-5) and p.state["contrast"] == b
    assert f"f_{a} − f_{b}" in p.readout.value
    # class B = class A is said, not silently computed as zero
    p.controls["contrast"].value = a
    assert p.state["contrast"] is None and "class B = class A" in p.readout.value
    # another image moves class A
    j = int((t != a).nonzero()[0])
    p.controls["image"].value = j
    assert p.state["class_a"] == int(t[j])
