"""Lecture 09 panels: the numbers they show equal the package's."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from xaicourse.concepts import tcav
from xaicourse.models import SmallCNN
from xaicourse.robustness import attack_attribution
from xaicourse.widgets import attack_panel, tcav_panel


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    m = SmallCNN(3, 3, width=4, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    rnd = [torch.rand(6, 3, 16, 16, generator=g) for _ in range(4)]
    bright = torch.rand(6, 3, 16, 16, generator=g)
    bright[:, :, :4, :4] = 1.0
    x = torch.rand(12, 3, 16, 16, generator=g)
    y = torch.arange(12) % 3
    return m, rnd, bright, x, y


def test_tcav_panel(setup):
    m, rnd, bright, x, y = setup
    p = tcav_panel({"cnn": m}, {"patch": bright, "noise": rnd[0]}, rnd, x, y, ["relu2", "relu3"], n_random=3)
    p.controls["layer"].value = "relu2"
    p.controls["target"].value = 2
    s = p.state
    ref = tcav(m, x[y == 2], 2, layer="relu2", concepts={"patch": bright}, random_sets=rnd, n_random=3)["patch"]
    assert s.layer == "relu2" and s.target == 2
    assert s.score == pytest.approx(ref.score) and s.p_value == pytest.approx(ref.p_value)
    assert list(s.scores) == list(ref.scores)


def test_attack_panel(setup):
    m, _, _, x, _ = setup
    p = attack_panel(m, x[:3], eps_values=(4 / 255, 8 / 255), k=10, steps=3)
    p.controls["method"].value = "integrated_gradients"
    p.controls["kind"].value = "center"
    p.controls["eps"].value = 8 / 255
    s = p.state
    ref = attack_attribution(m, "integrated_gradients", x[:1], kind="center", eps=8 / 255, n_iter=3, k=10)
    assert s.topk_intersection == pytest.approx(ref.topk_intersection.item())
    assert s.spearman == pytest.approx(ref.spearman.item())
    assert s.prediction_kept and s.delta_linf <= 8 / 255 + 1e-6


def test_attack_panel_starts_at_the_smallest_eps_with_readable_labels(setup):
    m, _, _, x, _ = setup
    p = attack_panel(m, x[:2], eps_values=(16 / 255, 2 / 255, 8 / 255), k=10, steps=2)
    assert p.controls["eps"].value == 2 / 255                     # issue 26: ε started at its maximum
    assert p.controls["eps"].index == 0 and p.controls["eps"].options[0][0] == "2/255"
    method, kind = p.controls["method"], p.controls["kind"]
    assert method.value == "gradient" and kind.value == "topk"    # values stay the code names
    labels = dict((v, lab) for lab, v in method.options)
    assert labels["integrated_gradients"] == "integrated gradients" and labels["grad_cam"] == "Grad-CAM"
    assert dict((v, lab) for lab, v in kind.options)["random_sign"] == "random sign (baseline)"
    assert all("_" not in lab for lab, _ in list(method.options) + list(kind.options))
    method.value = "grad_cam"
    assert p.state.method == "grad_cam"


def test_attack_panel_says_when_no_perturbation_is_feasible(setup):
    m, _, _, x, _ = setup
    p = attack_panel(m, x[:2], eps_values=(8 / 255,), k=10, steps=2, confidence_tol=0.0)   # nothing is feasible
    s = p.state
    assert not s.moved and "no feasible" in s.message and s.delta_linf == 0
    p = attack_panel(m, x[:2], eps_values=(8 / 255,), k=10, steps=2)
    assert p.state.moved and "top-10" in p.state.message


def test_tcav_panel_layer_labels(setup):
    m, rnd, bright, x, y = setup
    p = tcav_panel({"cnn": m}, {"patch": bright}, rnd, x, y, [("relu2 (conv)", "relu2"), "relu3"], n_random=3)
    assert [lab for lab, _ in p.controls["layer"].options] == ["relu2 (conv)", "relu3"]
    assert p.controls["layer"].value == "relu2" and p.state.layer == "relu2"
