import pytest
import torch

from xaicourse import models
from xaicourse.attribution import perturbation_scores


def test_linear_model_gives_minus_delta_w():
    torch.manual_seed(0)
    m = models.LogisticRegression(64, 10).double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    R = perturbation_scores(m, x, [1, 4, 9], delta=0.3)
    w = m.linear.weight.detach()
    for n, t in enumerate([1, 4, 9]):
        torch.testing.assert_close(R[n].flatten(), -0.3 * w[t], atol=1e-12, rtol=0)


def test_small_delta_approaches_gradient_on_cnn():
    torch.manual_seed(0)
    m = models.SmallCNN(1, 10).double().eval()
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    xg = x.clone().requires_grad_(True)
    m(xg)[0, 3].backward()
    errs = [((-perturbation_scores(m, x, 3, delta=d) / d) - xg.grad).norm() / xg.grad.norm() for d in (1.0, 1e-6)]
    assert errs[1] < 1e-4 < errs[0]


def test_patch_mode_matches_manual_patch_perturbation():
    torch.manual_seed(1)
    m = models.SmallCNN(3, 4).eval()
    x = torch.rand(1, 3, 16, 16)
    R = perturbation_scores(m, x, 2, delta=0.5, patch=4)
    x2 = x.clone()
    x2[:, :, 4:8, 8:12] += 0.5
    with torch.no_grad():
        expect = m(x)[0, 2] - m(x2)[0, 2]
    assert torch.allclose(R[0, :, 4:8, 8:12], expect.expand(3, 4, 4), atol=1e-6)


def test_bad_inputs():
    m = models.LogisticRegression(64, 10)
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="delta"):
        perturbation_scores(m, x, 0, delta=0)
    with pytest.raises(ValueError, match="target out of range"):
        perturbation_scores(m, x, 10)
    with pytest.raises(ValueError, match="batched"):
        perturbation_scores(m, torch.rand(64), 0)
    with pytest.raises(ValueError, match="NaN"):
        perturbation_scores(m, torch.full((1, 1, 8, 8), float("nan")), 0)
    with pytest.raises(ValueError, match="must be batched"):
        perturbation_scores(models.SmallCNN(1, 10), torch.rand(1, 8, 8), 0)
    with pytest.raises(ValueError, match="patch"):
        perturbation_scores(m, x, 0, patch=0)


def test_intro_widget_panel_redraws_with_consistent_numbers():
    from xaicourse.widgets import perturbation_panel
    import matplotlib
    matplotlib.use("Agg")
    torch.manual_seed(0)
    m = models.LogisticRegression(64, 10)
    x = torch.rand(1, 8, 8)
    panel = perturbation_panel(m, x, target=5, delta=0.1)
    panel.row.value, panel.col.value = 2, 3
    panel.delta.value = 0.01
    text = panel.readout.value
    # for a linear model R_i/δ = -w_i = -∂f/∂x_i exactly, at any δ
    w = m.linear.weight[5, 2 * 8 + 3].item()
    assert f"R_i/δ = {-w:+.4f}" in text and f"−∂f/∂x_i = {-w:+.4f}" in text
