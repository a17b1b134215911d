"""Internal influence (lecture 04): slices, distributions and quantities of interest; parity with
captum's InternalInfluence, LayerConductance and NeuronIntegratedGradients."""
import warnings

import pytest
import torch

from xaicourse.attribution.internal import internal_influence, layer_activations, layer_conductance, unit_attribution
from conftest import maxdiff

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", category=UserWarning)
TOL = 1e-5


@pytest.fixture(scope="module")
def digits(digits):
    """conftest's course model with a batch of 8 test digits."""
    model, split = digits
    return model.eval(), split.X_test[:8], split.y_test[:8]


@pytest.mark.parametrize("layer", ["conv2", "relu3", "fc1"])
def test_line_influence_and_conductance_match_captum(digits, layer):
    model, x, t = digits
    mod = dict(model.named_modules())[layer]
    base = torch.full_like(x, 0.1)
    for method in ("gausslegendre", "riemann_left"):
        ref = captum_attr.InternalInfluence(model, mod).attribute(x, base, target=t, n_steps=20, method=method)
        assert maxdiff(internal_influence(model, x, t, layer=layer, baselines=base, n_steps=20, method=method), ref) <= TOL
        ref = captum_attr.LayerConductance(model, mod).attribute(x, base, target=t, n_steps=20, method=method)
        assert maxdiff(layer_conductance(model, x, t, layer=layer, baselines=base, n_steps=20, method=method), ref) <= TOL


def test_point_set_and_comparative_quantities(digits):
    model, x, t = digits
    point = internal_influence(model, x, t, layer="fc1", distribution="point")
    ref = captum_attr.LayerGradientXActivation(model, model.fc1, multiply_by_inputs=False).attribute(x, target=t)
    assert maxdiff(point, ref) <= TOL
    s = internal_influence(model, x, t, layer="fc1", distribution="set")
    assert s.shape == (1, 64) and maxdiff(s, point.mean(0, keepdim=True)) <= 1e-6
    # comparative: influence on f_A − f_B is the difference of the two influences (linearity in q)
    other = (t + 1) % 10
    comp = internal_influence(model, x, t, layer="conv3", contrast=other, n_steps=16)
    a = internal_influence(model, x, t, layer="conv3", n_steps=16)
    b = internal_influence(model, x, other, layer="conv3", n_steps=16)
    assert maxdiff(comp, a - b) <= 1e-5
    # at the last layer the influence is the weight row: linear agreement
    fc2_in = internal_influence(model, x, t, layer="relu4", distribution="point")
    assert maxdiff(fc2_in, model.fc2.weight[t].detach()) <= 1e-6


def test_conductance_completeness_and_unit_attribution(digits):
    model, x, t = digits
    cond = layer_conductance(model, x, t, layer="conv3", n_steps=200, method="riemann_middle")
    with torch.no_grad():
        gap = model(x)[torch.arange(8), t] - model(torch.zeros_like(x))[torch.arange(8), t]
    rel = (cond.flatten(1).sum(1) - gap).abs() / gap.abs()
    assert rel.mean() < 0.02
    ua = unit_attribution(model, x, (5, 1, 0), layer="conv3", n_steps=16)
    ref = captum_attr.NeuronIntegratedGradients(model, model.conv3).attribute(x, neuron_selector=(5, 1, 0), n_steps=16)
    assert maxdiff(ua, ref) <= TOL
    h = layer_activations(model, x, layer="conv3")
    h0 = layer_activations(model, torch.zeros_like(x), layer="conv3")
    ua = unit_attribution(model, x, (5, 1, 0), layer="conv3", n_steps=128)
    assert maxdiff(ua.flatten(1).sum(1), h[:, 5, 1, 0] - h0[:, 5, 1, 0]) <= 0.05 * (h - h0).abs().max()


def test_bad_input(digits):
    model, x, t = digits
    with pytest.raises(ValueError, match="layer 'conv9'"):
        internal_influence(model, x, t, layer="conv9")
    with pytest.raises(ValueError, match="distribution must be one of"):
        internal_influence(model, x, t, layer="fc1", distribution="class")
    with pytest.raises(ValueError, match="n_steps"):
        layer_conductance(model, x, t, layer="fc1", n_steps=0)
    with pytest.raises(ValueError, match="unit"):
        unit_attribution(model, x, 500, layer="fc1")
    with pytest.raises(ValueError, match="target out of range"):
        internal_influence(model, x, t, layer="fc1", contrast=12)
