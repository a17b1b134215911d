"""captum's own attribution tests, ported to our API with captum's numbers kept (issue #25).

Sources (pytorch/captum, tests/attr/): layer/test_internal_influence.py,
layer/test_layer_conductance.py, test_integrated_gradients_basic.py, test_deeplift_basic.py,
test_lrp.py, test_shapley.py; models from ``captum.testing.helpers.basic_models`` (installed with
captum). Our API takes one input tensor: captum's multi-input models are wrapped in a module whose
forward *splits* the batch — exactly the kind of model the old input check refused.
Where our API has no counterpart, the test is a skip that says why.
"""
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from xaicourse import attribution as A
from xaicourse._torch import quadrature

captum_attr = pytest.importorskip("captum.attr")
bm = pytest.importorskip("captum.testing.helpers.basic_models")
warnings.filterwarnings("ignore", category=UserWarning)


def close(a, b, delta):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert (a - b).abs().max().item() <= delta, (a, b)


class Split(nn.Module):
    """A captum multi-input model as a one-tensor model: forward splits the columns."""

    def __init__(self, model, sizes, **extra):
        super().__init__()
        self.model, self.sizes, self.extra = model, sizes, extra

    def forward(self, x):
        parts = torch.split(x, self.sizes, dim=1)
        out = self.model(*parts, **self.extra)
        return out if out.dim() == 2 else out.reshape(len(x), -1)


# ------------------------------------------------------------------ layer methods
# test_internal_influence.py: target=0, n_steps=500, riemann_trapezoid, delta=0.01
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("layer, inp, base, expected", [
    ("linear0", [[0.0, 100.0, 0.0]], None, [[3.9, 3.9, 3.9]]),
    ("linear1", [[0.0, 100.0, 0.0]], None, [[0.9, 1.0, 1.0, 1.0]]),
    ("relu", [[3.0, 4.0, 0.0]], None, [[1.0, 1.0, 1.0, 1.0]]),
    ("linear2", [[0.0, 100.0, 0.0]], None, [[1.0, 0.0]]),
    ("linear1", [[0.0, 80.0, 0.0]], [[0.0, -20.0, 0.0]], [[0.7, 0.8, 0.8, 0.8]]),
])
def test_internal_influence_captum_numbers_also_with_an_inplace_relu(inplace, layer, inp, base, expected):
    """The issue's bug: an in-place ReLU after the layer made internal_influence crash."""
    net = bm.BasicModel_MultiLayer(inplace=inplace)
    got = A.internal_influence(net, torch.tensor(inp), 0, layer=layer, baselines=None if base is None else
                               torch.tensor(base), n_steps=500, method="riemann_trapezoid")
    close(got, expected, 0.01)


# test_layer_conductance.py: target=0, n_steps=500, gausslegendre, delta=0.1, Σ = endpoint gap to 0.01
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("layer, baselines, expected", [
    ("linear0", None, [[0.0, 390.0, 0.0]]),
    ("linear0", 0.0, [[0.0, 390.0, 0.0]]),
    ("linear1", None, [[90.0, 100.0, 100.0, 100.0]]),
    ("relu", None, [[90.0, 100.0, 100.0, 100.0]]),
    ("linear2", None, [[390.0, 0.0]]),
])
def test_layer_conductance_captum_numbers_also_with_an_inplace_relu(inplace, layer, baselines, expected):
    net = bm.BasicModel_MultiLayer(inplace=inplace)
    x = torch.tensor([[0.0, 100.0, 0.0]])
    got = A.layer_conductance(net, x, 0, layer=layer, baselines=baselines, n_steps=500, method="gausslegendre")
    close(got, expected, 0.1)
    with torch.no_grad():
        gap = net(x)[0, 0] - net(torch.zeros_like(x))[0, 0]
    assert abs(got.sum().item() - gap.item()) < 0.01


@pytest.mark.parametrize("layer", ["conv1", "pool1", "conv2", "relu3", "fc1"])
def test_layer_conductance_matches_captum_on_its_conv_net(layer):
    """test_matching_*_conductance: captum's BasicModel_ConvNet (float64 here: 1e-9)."""
    torch.manual_seed(0)
    net = bm.BasicModel_ConvNet().double()
    x = 100 * torch.randn(3, 1, 10, 10, dtype=torch.float64)
    b = 100 * torch.randn(3, 1, 10, 10, dtype=torch.float64)
    ours = A.layer_conductance(net, x, 1, layer=layer, baselines=b, n_steps=100)
    ref = captum_attr.LayerConductance(net, dict(net.named_modules())[layer]).attribute(
        x, b, target=1, n_steps=100)
    close(ours, ref, 1e-9 * max(1.0, ref.abs().max().item()))


# ------------------------------------------------------------------ integrated gradients
def test_ig_multivariable_captum_numbers_through_a_splitting_forward():
    """test_integrated_gradients_basic.py (BasicModel2: relu(x1) − relu(x1 − 1 − x2)), inputs 3, 1:
    completeness and captum's result; the model splits its one input tensor in forward."""
    net = Split(bm.BasicModel2(), [1, 1])
    x = torch.tensor([[3.0, 1.0]])
    ours, delta = A.integrated_gradients(net, x, 0, n_steps=500, method="gausslegendre",
                                         return_convergence_delta=True)
    ref = captum_attr.IntegratedGradients(net).attribute(x, target=0, n_steps=500, method="gausslegendre")
    close(ours, ref, 1e-5)
    assert abs(delta.item()) < 1e-3
    with torch.no_grad():
        assert abs(ours.sum().item() - (net(x) - net(torch.zeros_like(x))).item()) < 1e-3


def test_ig_in_float64_agrees_with_captum_up_to_captums_float32_weights():
    """captum rounds the quadrature weights to float32 (``torch.tensor(step_sizes).float()``) even
    for float64 inputs: the two agree to float32 rounding (measured 4.7e-7 on scores of 200), and
    ours, in the inputs' dtype, is the more accurate: on a linear model it is exact to 1e-13."""
    net = bm.BasicModel_MultiLayer().double()
    x = torch.tensor([[20.0, 50.0, 30.0], [1.0, -2.0, 3.0]], dtype=torch.float64)
    for method in ("gausslegendre", "riemann_left", "riemann_middle"):
        ours = A.integrated_gradients(net, x, 0, n_steps=64, method=method)
        ref = captum_attr.IntegratedGradients(net).attribute(x, target=0, n_steps=64, method=method)
        close(ours, ref, 1e-8 * ref.abs().max().item())
    assert quadrature(64, "gausslegendre", dtype=torch.float64)[1].dtype == torch.float64
    lin = nn.Linear(3, 2).double()
    ours = A.integrated_gradients(lin, x, 1, n_steps=64)
    close(ours, lin.weight[1].detach() * x, 1e-13 * x.abs().max().item())


# ------------------------------------------------------------------ DeepLIFT
def test_relu_deeplift_exact_match():
    """test_relu_deeplift_exact_match: ReLUDeepLiftModel, x = (1, 2), x′ = 0 → (2, 1), δ = 0."""
    net = Split(bm.ReLUDeepLiftModel(), [1, 1])
    attr, delta = A.deeplift(net, torch.tensor([[1.0, 2.0]]), return_convergence_delta=True)
    assert attr.tolist() == [[2.0, 1.0]] and delta.tolist() == [0.0]


def test_relu_linear_deeplift_and_inplace_equals_not_inplace():
    """test_relu_linear_deeplift (baselines 0 and 0.0001) and ..._compare_inplace."""
    x1 = torch.tensor([[-10.0, 1.0, -5.0], [2.0, 3.0, 4.0]])
    x2 = torch.tensor([[3.0, 3.0, 1.0], [2.3, 5.0, 4.0]])
    x = torch.cat([x1, x2], 1)
    net = Split(bm.ReLULinearModel(inplace=False), [3, 3])
    base = torch.cat([torch.zeros(1, 3), torch.full((1, 3), 0.0001)], 1)
    ours, delta = A.deeplift(net, x[:1], 0, baselines=base, return_convergence_delta=True)
    ref = captum_attr.DeepLift(net).attribute(x[:1], base, target=0)
    close(ours, ref, 1e-6)
    assert delta.abs().max() < 1e-5
    inplace = Split(bm.ReLULinearModel(inplace=True), [3, 3])
    close(A.deeplift(inplace, x, 0), A.deeplift(net, x, 0), 0.0)
    assert not any(getattr(m, "inplace", True) is False for m in inplace.modules() if isinstance(m, nn.ReLU))


def test_tanh_deeplift_summation_to_delta():
    """test_tanh_deeplift: the rescale rule on tanh, compared with captum."""
    net = Split(bm.TanhDeepLiftModel(), [1, 1])
    x = torch.tensor([[-1.0, -2.0]])
    ours, delta = A.deeplift(net, x, 0, return_convergence_delta=True)
    close(ours, captum_attr.DeepLift(net).attribute(x, target=0), 1e-6)
    assert abs(delta.item()) < 1e-6


def test_lin_maxpool_lin_classification():
    """test_lin_maxpool_lin_classification: expected [[0, 0, 0, −8], [0, −7, 0, 0]], δ = 0."""
    net = bm.LinearMaxPoolLinearModel()
    x = torch.ones(2, 4)
    b = torch.tensor([[1, 2, 3, 9], [4, 8, 6, 7]]).float()
    attr, delta = A.deeplift(net, x, 0, baselines=b, return_convergence_delta=True)
    close(attr, [[0.0, 0.0, 0.0, -8.0], [0.0, -7.0, 0.0, 0.0]], 1e-4)
    close(delta, [0.0, 0.0], 1e-4)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                      nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2))
        self.head = nn.Sequential(nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.head(self.features(x).flatten(1))     # captum's LRP has no rule for nn.Flatten


def _conv_bn_net():
    torch.manual_seed(3)
    net = ConvBN()
    with torch.no_grad():                                  # non-trivial running statistics and affine
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.double()


def test_deeplift_and_lrp_handle_batchnorm_like_captum():
    """The issue's refusal: BatchNorm2d (every ResNet has it). Eval mode, a conv + BN + ReLU net:
    equal to captum's DeepLift and LRP (ε rule on every layer, BN included) to 1e-6."""
    net = _conv_bn_net().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 2, 6, 6, generator=g, dtype=torch.float64)
    b = torch.rand(1, 2, 6, 6, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    ours, delta = A.deeplift(net, x, t, baselines=b, return_convergence_delta=True)
    ref = captum_attr.DeepLift(net).attribute(x, b.expand_as(x), target=t)
    close(ours, ref, 1e-6)
    assert delta.abs().max() < 1e-9
    from captum.attr._utils.lrp_rules import EpsilonRule
    for eps in (1e-9, 0.25):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.BatchNorm1d, nn.AdaptiveAvgPool2d)):
                m.rule = EpsilonRule(epsilon=eps)
        ref = captum_attr.LRP(net).attribute(x, target=t)
        close(A.lrp(net, x, t, epsilon=eps), ref, 1e-6)


def test_train_mode_batchnorm_model_is_left_as_found():
    net = _conv_bn_net().train()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64)
    for fn in (A.deeplift, A.lrp, A.gradient, A.integrated_gradients, A.occlusion, A.shapley_sampling):
        fn(net, x, 1)
    A.internal_influence(net, x, 1, layer="features.1", n_steps=4)
    A.layer_conductance(net, x, 1, layer="features.2", n_steps=4)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert all(m.training for m in net.modules())


# ------------------------------------------------------------------ LRP
def test_lrp_basic_attributions_epsilon_1e_9():
    """test_lrp_basic_attributions (captum's default ε = 1e-9, given explicitly: ours is 0.25)."""
    net = bm.BasicModel_ConvNet_One_Conv()
    x = torch.arange(16).view(1, 1, 4, 4).float()
    relevance, delta = A.lrp(net, x, None, epsilon=1e-9, return_convergence_delta=True)
    assert delta.item() == 0
    close(relevance, [[[[0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11], [0, 0, 0, 0]]]], 1e-4)


def test_lrp_simple_attributions_batch_inplace_alphabeta_tanh():
    x = torch.tensor([[1.0, 2.0, 3.0]])
    net = bm.SimpleLRPModel(False).eval()
    close(A.lrp(net, x, epsilon=1e-9), [[18.0, 36.0, 54.0]], 1e-4)                 # test_lrp_simple_attributions
    close(A.lrp(net, torch.cat([x, 3 * x]), epsilon=1e-9),
          [[18.0, 36.0, 54.0], [54.0, 108.0, 162.0]], 1e-4)                         # ..._batch
    close(A.lrp(bm.SimpleLRPModel(True).eval(), x, epsilon=1e-9), A.lrp(net, x, epsilon=1e-9), 0.0)  # inplace
    with torch.no_grad():
        net.linear.weight[0][0] = -2
    close(A.lrp(net, x, rule="zplus"), [[12, 33.6, 50.4]], 1e-4)                   # ..._AlphaBeta
    close(A.lrp(net, x, rule="alphabeta", alpha=1, beta=0), [[12, 33.6, 50.4]], 1e-4)

    class TanhModel(nn.Module):                                                     # test_lrp_simple_tanh
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3, bias=False)
            self.linear.weight.data.fill_(0.1)
            self.tanh = nn.Tanh()
            self.linear2 = nn.Linear(3, 1, bias=False)
            self.linear2.weight.data.fill_(0.1)

        def forward(self, x):
            return self.linear2(self.tanh(self.linear(x)))
    close(A.lrp(TanhModel(), x, epsilon=1e-9), [[0.0269, 0.0537, 0.0806]], 1e-4)


def test_lrp_maxpool1d():
    class MaxPoolModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 2, bias=False)
            self.linear.weight.data.fill_(2.0)
            self.maxpool = nn.MaxPool1d(2)

        def forward(self, x):
            return self.maxpool(self.linear(x))[..., 0]   # captum's output (N, C, 1) as (N, C) scores
    x = torch.tensor([[[1.0, 2.0], [5.0, 6.0]]])
    close(A.lrp(MaxPoolModel(), x, 1, epsilon=1e-9), [[[0.0, 0.0], [10, 12]]], 1e-4)


@pytest.mark.skip(reason="out of scope: captum's LRP skip connection needs a user-written Addition module "
                         "with a rule; our LRP refuses unknown modules by name (documented) — relevance "
                         "through functional '+' is carried by autograd unsplit")
def test_lrp_skip_connection():
    pass


def test_unknown_modules_are_refused_by_name():
    """test_lrp_creator_activation: a Sigmoid has no LRP rule (captum: TypeError; ours: ValueError
    naming the module)."""
    net = nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"'1' \(Sigmoid\) has no propagation rule"):
        A.lrp(net, torch.rand(2, 3), 0)
    with pytest.raises(ValueError, match="GELU"):
        A.deeplift(nn.Sequential(nn.Linear(3, 3), nn.GELU(), nn.Linear(3, 2)), torch.rand(2, 3), 0)


# ------------------------------------------------------------------ Shapley
# test_shapley.py: target=0, BasicModel_MultiLayer, x = (20, 50, 30); sampling delta 1.0
@pytest.mark.parametrize("mask, baselines, expected, n_samples", [
    (None, None, [[76.66666, 196.66666, 116.66666]], 250),
    (torch.tensor([[0, 0, 1]]), None, [[275.0, 275.0, 115.0]], 100),
    (torch.tensor([[0, 0, 1]]), 4, [[248.0, 248.0, 104.0]], 100),
])
def test_shapley_sampling_and_exact_captum_numbers(mask, baselines, expected, n_samples):
    net = bm.BasicModel_MultiLayer()
    x = torch.tensor([[20.0, 50.0, 30.0]])
    for bs in (1, 2, 3, 4096):
        got = A.shapley_sampling(net, x, 0, baselines=baselines, feature_mask=mask, n_samples=n_samples,
                                 batch_size=bs)
        close(got, expected, 1.0)
    close(A.shapley_exact(net, x, 0, baselines=baselines, feature_mask=mask), expected, 1e-3)


def test_shapley_boolean_inputs_and_a_plain_function():
    """test_simple_shapley_sampling_boolean(_with_baseline): bool inputs, no gradients needed."""
    net = bm.BasicModelBoolInput()
    x = torch.tensor([[True, False, True]])
    mask = torch.tensor([[0, 0, 1]])
    close(A.shapley_sampling(net, x, 0, feature_mask=mask), [[35.0, 35.0, 35.0]], 1.0)
    close(A.shapley_sampling(net, x, 0, feature_mask=mask, baselines=True), [[-40.0, -40.0, 0.0]], 1.0)
    close(A.shapley_exact(net, x, 0, feature_mask=mask), [[35.0, 35.0, 35.0]], 1e-4)
    fn = net.forward                                       # a plain callable, not an nn.Module
    close(A.shapley_exact(fn, x, 0, feature_mask=mask), [[35.0, 35.0, 35.0]], 1e-4)


@pytest.mark.skip(reason="not in our API: KernelShap (captum's weighted-regression estimator); "
                         "shapley_sampling / shapley_exact cover the Shapley values themselves")
def test_kernel_shap():
    pass


# ------------------------------------------------------------------ model-agnostic methods
def test_lime_occlusion_shapley_take_any_callable_and_integer_inputs():
    """LIME is model-agnostic: a scikit-learn model wrapped to return a tensor, or any function."""
    from sklearn.linear_model import LogisticRegression

    g = np.random.default_rng(0)
    X = g.normal(size=(200, 4))
    y = (X[:, 0] - 2 * X[:, 2] > 0).astype(int)
    clf = LogisticRegression().fit(X, y)

    def predict(z):
        return torch.as_tensor(clf.predict_proba(z.detach().cpu().numpy()))
    x = torch.as_tensor(X[:3])
    lime = A.lime_attribution(predict, x, 1, mode="tabular", n_samples=400, seed=0)
    assert lime.shape == x.shape and lime.dtype == x.dtype
    assert (lime[:, 0] > 0).all() and (lime[:, 2] < 0).all()      # the signs of the coefficients
    occ = A.occlusion(predict, x, 1, window=1)
    assert occ.shape == x.shape and torch.isfinite(occ).all()
    shap = A.shapley_exact(predict, x, 1)
    with torch.no_grad():
        gap = predict(x)[:, 1] - predict(torch.zeros_like(x))[:, 1]
    close(shap.sum(1), gap, 1e-9)                                  # efficiency, through a plain function
    # integer inputs where no gradient is needed: a lookup model over token ids
    table = torch.randn(10, 3, dtype=torch.float64)
    ids = torch.tensor([[1, 4, 7], [2, 2, 9]])

    def bag(z):
        return table[z].sum(1)
    occ = A.occlusion(bag, ids, 0, window=1)                       # integer inputs: default float dtype
    assert occ.dtype == torch.get_default_dtype()
    close(occ, table[ids][..., 0] - table[0, 0], 1e-6)             # replacing id by 0 changes the sum so
    close(A.shapley_exact(bag, ids, 0), table[ids][..., 0] - table[0, 0], 1e-6)
    with pytest.raises(ValueError, match="not an integer"):
        A.occlusion(bag, ids, 0, window=1, baselines=0.5)
