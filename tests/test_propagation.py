"""DeepLIFT and LRP from scratch (lecture 04): parity with captum, summation-to-delta, errors."""
import copy
import warnings

import pytest
import torch
from torch import nn

from xaicourse import attribution as A
from xaicourse.attribution.propagation import sequential_layers
from xaicourse.models import course_model

captum_attr = pytest.importorskip("captum.attr")
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule  # noqa: E402

warnings.filterwarnings("ignore", category=UserWarning)
TOL = 1e-5


@pytest.fixture(scope="module")
def digits():
    out = {}
    for kind in ("cnn", "mlp", "logreg"):
        model, split, _ = course_model("digits", kind=kind, progress=False)
        out[kind] = model.eval()
    return out, split.X_test[:12], split.y_test[:12], split.X_train[:1]


def maxdiff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("kind", ["mlp", "logreg"])
def test_deeplift_matches_captum_on_course_models(digits, kind):
    models, x, t, base = digits
    model = models[kind]
    for b in (None, base):
        ours = A.deeplift(model, x, t, baselines=b)
        ref = captum_attr.DeepLift(model).attribute(x, baselines=None if b is None else b.expand_as(x), target=t)
        assert maxdiff(ours, ref) <= TOL


def test_deeplift_matches_captum_on_a_conv_net_with_linear_fed_max_pool():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 3))
    x, ref = torch.rand(8, 1, 8, 8), torch.rand(1, 1, 8, 8)
    ours = A.deeplift(net, x, 1, baselines=ref)
    assert maxdiff(ours, captum_attr.DeepLift(net).attribute(x, baselines=ref.expand_as(x), target=1)) <= TOL


def test_deeplift_summation_to_delta_on_the_course_cnn(digits):
    models, x, t, base = digits
    for b in (None, base):
        attr, delta = A.deeplift(models["cnn"], x, t, baselines=b, return_convergence_delta=True)
        assert delta.abs().max() <= 1e-4
        with torch.no_grad():
            bb = torch.zeros_like(x) if b is None else b.expand_as(x)
            gap = models["cnn"](x)[torch.arange(len(x)), t] - models["cnn"](bb)[torch.arange(len(x)), t]
        assert maxdiff(attr.flatten(1).sum(1), gap) <= 1e-4
    # captum 0.9 misroutes max-pools fed by a ReLU (issues #1104, #1276): its delta is far off
    _, d_captum = captum_attr.DeepLift(models["cnn"]).attribute(x, target=t, return_convergence_delta=True)
    assert d_captum.abs().max() > 0.1


def test_deeplift_max_pool_rule_on_a_hand_computed_example():
    # ReLU → MaxPool1d(2) → sum; x = [1, 3, −1, 2], x′ = [2, .5, 4, 1]: windows Δ = 3 − 2 and 2 − 4
    net = nn.Sequential(nn.Conv1d(1, 1, 1), nn.ReLU(), nn.MaxPool1d(2), nn.Flatten(), nn.Linear(2, 1))
    with torch.no_grad():
        net[0].weight.fill_(1), net[0].bias.zero_(), net[4].weight.fill_(1), net[4].bias.zero_()
    x, ref = torch.tensor([[[1.0, 3.0, -1.0, 2.0]]]), torch.tensor([[[2.0, 0.5, 4.0, 1.0]]])
    attr = A.deeplift(net, x, 0, baselines=ref)
    assert maxdiff(attr, torch.tensor([[[0.0, 1.0, -2.0, 0.0]]])) <= 1e-6


@pytest.mark.parametrize("kind", ["cnn", "mlp", "logreg"])
def test_lrp_epsilon_matches_captum(digits, kind):
    models, x, t, _ = digits
    model = copy.deepcopy(models[kind])
    for eps in (1e-9, 0.1):
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
                m.rule = EpsilonRule(epsilon=eps)     # captum has no default rule for AdaptiveMaxPool2d
        ref, d_ref = captum_attr.LRP(model).attribute(x, target=t, return_convergence_delta=True)
        ours, d_ours = A.lrp(model, x, t, epsilon=eps, return_convergence_delta=True)
        assert maxdiff(ours, ref) <= TOL * max(1.0, ref.abs().max().item())
        assert maxdiff(d_ours, d_ref) <= 1e-4


def test_lrp_zplus_matches_captum_alpha1_beta0(digits):
    models, x, t, _ = digits
    model = copy.deepcopy(models["cnn"])
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            m.rule = Alpha1_Beta0_Rule()
        elif isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            m.rule = EpsilonRule()
    ref = captum_attr.LRP(model).attribute(x, target=t)
    assert maxdiff(A.lrp(model, x, t, rule="zplus"), ref) <= TOL * max(1.0, ref.abs().max().item())


def test_lrp_alphabeta_conserves_and_matches_captum_without_bias(digits):
    models, x, t, _ = digits
    mlp = copy.deepcopy(models["mlp"])          # inputs ≥ 0 everywhere: (a w)⁺ = a w⁺
    for m in mlp.modules():
        if isinstance(m, nn.Linear):
            m.rule = Alpha1_Beta0_Rule(set_bias_to_zero=True)
    ref = captum_attr.LRP(mlp).attribute(x, target=t)
    assert maxdiff(A.lrp(mlp, x, t, rule="alphabeta"), ref) <= TOL
    # on a bias-free net α1β0 conserves relevance layer by layer (αβ with β > 0 only where a neuron
    # has inputs of both signs)
    torch.manual_seed(2)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(64, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    xx = torch.randn(6, 1, 8, 8)
    top = net(xx).argmax(1)                 # a positive logit: its z⁺ > 0, nothing is lost at the top
    attr, delta = A.lrp(net, xx, top, rule="alphabeta", return_convergence_delta=True)
    assert delta.abs().max() <= 1e-4
    # the ε rule with biases does not conserve: biases absorb relevance
    _, delta = A.lrp(models["cnn"], x, t, return_convergence_delta=True)
    assert delta.abs().max() > 0.1


def test_lrp_0_is_input_times_gradient_on_a_bias_free_relu_net():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(6, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    x = torch.rand(4, 6)
    assert maxdiff(A.lrp(net, x, 2, epsilon=1e-9), A.input_x_gradient(net, x, 2)) <= 1e-5
    # the default ε = 0.25 absorbs relevance: it is not LRP-0
    assert maxdiff(A.lrp(net, x, 2), A.input_x_gradient(net, x, 2)) > 1e-3
    # biases do not break LRP-0 = input × gradient (both then miss f(x) by the biases' share)
    biased = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    z = torch.rand(4, 6, dtype=torch.float64)
    assert maxdiff(A.lrp(biased, z, 2, epsilon=0.0), A.input_x_gradient(biased, z, 2)) <= 1e-12


def test_layers_and_errors(digits):
    models, x, t, _ = digits
    assert [type(m).__name__ for m in sequential_layers(models["mlp"])] == [
        "Linear", "ReLU", "Linear", "ReLU", "Linear"]

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1))
    # any forward made of supported modules works (no hard-coded layer order): = the Sequential
    odd = Odd()
    seq = nn.Sequential(nn.Flatten(), odd.fc)
    assert maxdiff(A.deeplift(odd, x, t), A.deeplift(seq, x, t)) == 0
    assert maxdiff(A.lrp(odd, x, t), A.lrp(seq, x, t)) == 0

    class OwnParam(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(64, 3))

        def forward(self, x):
            return x.flatten(1) @ self.w
    with pytest.raises(ValueError, match="OwnParam"):
        A.deeplift(OwnParam(), x, 0)
    with pytest.raises(ValueError, match=r"'2' \(GELU\) has no propagation rule"):
        A.deeplift(nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.GELU()), x, 0)
    with pytest.raises(ValueError, match="no propagation rule"):
        A.lrp(nn.Sequential(nn.Flatten(), nn.Linear(64, 3), nn.Sigmoid()), x, 0)
    with pytest.raises(ValueError, match="rule must be one of"):
        A.lrp(models["mlp"], x, t, rule="gamma")
    with pytest.raises(ValueError, match="alpha - beta = 1"):
        A.lrp(models["mlp"], x, t, rule="alphabeta", alpha=2, beta=0)
    with pytest.raises(ValueError, match="baselines.*shape"):
        A.deeplift(models["cnn"], x, t, baselines=torch.zeros(2, 1, 8, 8))
    assert "deeplift" in A.METHODS and "lrp" in A.METHODS


def _two_neuron_net():
    """Lecture 04b's worked example: x ∈ R², W1 = [[1, 2], [1, −1]], w2 = (1, 2), no biases."""
    net = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [1.0, -1.0]]))
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, 2.0]]))
        net[2].bias.zero_()
    return net, torch.tensor([[2.0, 1.0]], dtype=torch.float64)


def test_the_worked_two_neuron_example_by_hand():
    net, x = _two_neuron_net()
    want = {"lrp0": [6.0, 0.0], "eps1": [108 / 35, 18 / 35], "w2": [9 / 5, 21 / 5], "deeplift": [27 / 5, 3 / 5]}
    got = {"lrp0": A.lrp(net, x, 0, epsilon=0.0), "eps1": A.lrp(net, x, 0, epsilon=1.0),
           "w2": A.lrp(net, x, 0, epsilon=0.0, input_rule="wsquare"),
           "deeplift": A.deeplift(net, x, 0, baselines=torch.tensor([[-1.0, 0.0]], dtype=torch.float64))}
    for k, v in want.items():
        assert maxdiff(got[k], torch.tensor([v], dtype=torch.float64)) < 1e-8, k   # the stabiliser's 1e-9
    # one hidden layer: DeepLIFT's secants are IG's averaged ReLU derivatives, so the two agree
    ig = A.integrated_gradients(net, x, 0, baselines=torch.tensor([[-1.0, 0.0]], dtype=torch.float64), n_steps=2000,
                                method="riemann_middle")
    assert maxdiff(ig, got["deeplift"]) < 1e-3


def test_lrp_wsquare_input_rule(digits):
    models, x, t, _ = digits
    cnn = models["cnn"]
    # on the course CNN: a finite map of the input's shape, not LRP-0's
    r_w2, d_w2 = A.lrp(cnn, x, t, epsilon=0.0, input_rule="wsquare", return_convergence_delta=True)
    r_0, d_0 = A.lrp(cnn, x, t, epsilon=0.0, return_convergence_delta=True)
    assert r_w2.shape == x.shape and torch.isfinite(r_w2).all()
    assert maxdiff(r_w2, r_0) > 1e-3
    # a bias-free linear layer under w² conserves exactly: Σ R (w²) = Σ R (z rule, no bias) = f
    net = nn.Sequential(nn.Linear(5, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)).double()
    z = torch.rand(3, 5, dtype=torch.float64)
    _, d = A.lrp(net, z, 1, epsilon=0.0, input_rule="wsquare", return_convergence_delta=True)
    assert d.abs().max() < 1e-9
    with pytest.raises(ValueError, match="input_rule must be one of"):
        A.lrp(net, z, 1, input_rule="flat")
