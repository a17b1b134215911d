"""The propagation family (lecture 04): DeepLIFT and LRP, written from scratch for the course's
sequential ReLU networks. Both replace the chain rule's local derivative by a *rule* and walk the
layers backwards once; every function is ``f(model, inputs, target, **options)`` → a tensor
shaped like ``inputs``.

* ``deeplift`` — rescale rule (Shrikumar et al. 2017). Each layer gets a *multiplier*
  m = Δout / Δin instead of ∂out/∂in, with Δ = value at x minus value at the reference x′:
  linear layers keep their weights (Δ is linear in Δ), a ReLU uses (y − y′)/(z − z′), a max-pool
  routes Δout to the winners of x and of x′. Attribution R = (x − x′) ⊙ m_input, and
  Σ R = f_t(x) − f_t(x′) exactly (summation-to-delta).
* ``lrp`` — layer-wise relevance propagation (Bach et al. 2015). Relevance R_j of a neuron is
  split among its inputs in proportion to their contributions z_ij = a_i w_ij:
  ε rule   R_i = a_i Σ_j w_ij R_j / (z_j + ε·sign(z_j)),  z_j = Σ_i a_i w_ij + b_j;
  z⁺ rule  the same with w⁺ = max(w, 0) (captum's ``Alpha1_Beta0_Rule``, bias kept);
  αβ rule  R_i = Σ_j (α (a_i w_ij)⁺ / Σ_i (a_i w_ij)⁺ − β (a_i w_ij)⁻ / Σ_i (a_i w_ij)⁻) R_j, α − β = 1.
  ReLUs pass relevance unchanged; max-pools route it to the winner. Starting from R = f_t(x),
  Σ R = f_t(x) minus what the biases (and ε) absorb; the αβ rule ignores biases, so on a
  bias-free network (every neuron with inputs of both signs) relevance is conserved exactly.

The model is read as a list of layers (``sequential_layers``): ``nn.Sequential`` (Linear, Conv2d,
ReLU, MaxPool2d, AdaptiveMaxPool2d, Flatten) and the course's SmallCNN, MLP and
LogisticRegression (whose ``forward`` is that list with a flatten and, for SmallCNN, the input
shift x − 0.5). The list is checked against ``model(x)`` before use.

Differences with captum: captum's DeepLift has no rule for ``AdaptiveMaxPool2d`` (plain gradient)
and its max-pool rule misroutes when a ReLU feeds the pool (captum issues #1104, #1276), so on
SmallCNN its attributions break summation-to-delta; ours use the same max-pool rule for every
max-pool and keep it. captum's LRP refuses ``AdaptiveMaxPool2d`` unless given a rule (ours: the ε
rule, like its ``MaxPool2d``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._torch import check_inputs, eval_on, scores, select, target_index
from .._validate import check_bool, check_choice, check_real
from .gradients import _as_baseline

__all__ = ["deeplift", "lrp", "sequential_layers"]

EPS_DEEPLIFT = 1e-10           # |Δin| below this: use the gradient (captum's threshold)
LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
PASS = (nn.Flatten, nn.Identity, nn.Dropout)


class Shift(nn.Module):
    """x ↦ x + c (SmallCNN's input centring x − 0.5 as a layer)."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x):
        return x + self.c


def sequential_layers(model: nn.Module) -> list[nn.Module]:
    """The model as the list of layers its forward pass applies in order.

    nn.Sequential (nested ones flattened), SmallCNN, MLP, LogisticRegression; anything else →
    ValueError (DeepLIFT/LRP here need to know the order of the layers).
    """
    from ..models import MLP, LogisticRegression, SmallCNN

    if isinstance(model, nn.Sequential):
        out = []
        for m in model:
            out.extend(sequential_layers(m) if isinstance(m, nn.Sequential) else [m])
        return out
    if type(model) is SmallCNN:
        m = model
        return [Shift(-0.5), m.conv1, m.relu1, m.pool1, m.conv2, m.relu2, m.pool2, m.conv3, m.relu3, m.gmp,
                nn.Flatten(), m.fc1, m.relu4, m.fc2]
    if type(model) is MLP:
        return [nn.Flatten(), model.fc1, model.relu1, model.fc2, model.relu2, model.fc3]
    if type(model) is LogisticRegression:
        return [nn.Flatten(), model.linear]
    if isinstance(model, (*LINEAR, nn.ReLU, *POOLS, *PASS)):
        return [model]
    raise ValueError(f"model must be an nn.Sequential of Linear/Conv/ReLU/MaxPool/Flatten layers or a course "
                     f"model (SmallCNN, MLP, LogisticRegression), got {type(model).__name__}")


def _checked_layers(model, x):
    layers = sequential_layers(model)
    for layer in layers:
        if not isinstance(layer, (*LINEAR, nn.ReLU, *POOLS, *PASS, Shift)):
            raise ValueError(f"layer {layer.__class__.__name__} has no propagation rule; supported: Linear, "
                             f"Conv, ReLU, MaxPool, AdaptiveMaxPool, Flatten, Dropout (eval), Identity")
        if isinstance(layer, nn.ReLU) and layer.inplace:
            raise ValueError("DeepLIFT/LRP need ReLU(inplace=False) layers (the input of each ReLU is kept)")
    acts = [x]
    for layer in layers:
        acts.append(layer(acts[-1]))
    ref = scores(model, x)
    if acts[-1].shape != ref.shape or not torch.allclose(acts[-1], ref, atol=1e-5, rtol=1e-4):
        raise ValueError(f"{type(model).__name__}.forward is not the sequence of its layers "
                         f"{[type(m).__name__ for m in layers]}; DeepLIFT/LRP need a plain sequential model")
    return layers, acts


def _vjp(fn, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀ ∂fn/∂a at a (for a linear fn: Wᵀ v; for a pool: v routed to the winners)."""
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(a), a, grad_outputs=v)
    return g


# ------------------------------------------------------------------ DeepLIFT
def deeplift(model: nn.Module, inputs: torch.Tensor, target, baselines=None, return_convergence_delta: bool = False):
    """DeepLIFT with the rescale rule, shaped like ``inputs`` (N, ...).

    R = (x − x′) ⊙ m, where the multiplier m = "∂"f_t/"∂"x is back-propagated with
    m_in = Wᵀ m_out through linear layers (Linear, Conv, flatten, shift),
    m_in = m_out · (relu(z) − relu(z′)) / (z − z′) through a ReLU (the gradient where |z − z′| < 1e-10),
    and through a max-pool with outputs y = max over the window at x, y′ at x′ (captum's rule):
    m_in = [route_x(m_out·(max(y, y′) − y′)) + route_x′(m_out·(y − max(y, y′)))] / (z − z′),
    route_x sending a value to the winner of its window at x. Then Σ R = f_t(x) − f_t(x′).

    baselines: x′ — None (zeros), a number, or a tensor of shape (C, H, W), (1, ...) or (N, ...).
    return_convergence_delta: also return Σ R − (f_t(x) − f_t(x′)) per sample.

    Matches ``captum.attr.DeepLift(model).attribute(inputs, baselines, target)`` on networks
    without a max-pool (MLP, logistic regression) or whose max-pools follow a linear layer.
    captum 0.9's max-pool hook is wrong when a ReLU feeds the pool (captum issues #1104, #1276):
    on SmallCNN its Σ R misses f(x) − f(x′) by whole logits, ours keeps it to float rounding.
    """
    x = check_inputs(model, inputs).detach()
    check_bool("return_convergence_delta", return_convergence_delta)
    b = _as_baseline(baselines, x).contiguous()
    with eval_on(model, freeze=True), torch.no_grad():
        layers, acts = _checked_layers(model, x)
        refs = [b]
        for layer in layers:
            refs.append(layer(refs[-1]))
        t = target_index(target, len(x), acts[-1].shape[1])
        m = F.one_hot(t, acts[-1].shape[1]).to(x.dtype)
        for i in range(len(layers) - 1, -1, -1):
            layer, a, a_ref, y, y_ref = layers[i], acts[i], refs[i], acts[i + 1], refs[i + 1]
            grad = _vjp(layer, a, m)                               # the ordinary chain-rule step
            if isinstance(layer, nn.ReLU):
                d_in = a - a_ref
                m = torch.where(d_in.abs() < EPS_DEEPLIFT, grad, m * (y - y_ref) / d_in)
            elif isinstance(layer, POOLS):
                d_in = a - a_ref
                top = torch.maximum(y, y_ref)
                routed = _vjp(layer, a, m * (top - y_ref)) + _vjp(layer, a_ref, m * (y - top))
                m = torch.where(d_in.abs() < EPS_DEEPLIFT, grad, routed / d_in)
            else:
                m = grad
        attr = (x - b) * m
        if return_convergence_delta:
            delta = attr.reshape(len(x), -1).sum(1) - (select(acts[-1], t) - select(refs[-1], t))
            return attr.to(inputs.device), delta.to(inputs.device)
    return attr.to(inputs.device)


# ------------------------------------------------------------------ LRP
LRP_RULES = ("epsilon", "zplus", "alphabeta")


def _weighted(layer, weight, bias):
    """The layer's function with other weights (same stride/padding)."""
    if isinstance(layer, nn.Linear):
        return lambda a: F.linear(a, weight, bias)
    return lambda a: layer._conv_forward(a, weight, bias)


def _stab(z, eps):
    s = torch.sign(z)
    s[s == 0] = 1
    return z + eps * s


def lrp(model: nn.Module, inputs: torch.Tensor, target, rule: str = "epsilon", epsilon: float = 1e-9,
        alpha: float = 1.0, beta: float = 0.0, return_convergence_delta: bool = False):
    """Layer-wise relevance propagation, shaped like ``inputs`` (N, ...).

    Relevance starts as R = f_t(x) on the target logit and is passed down layer by layer (see
    the module docstring for the rules). rule: "epsilon" (ε rule, ε = ``epsilon`` ≥ 0; with the
    default 1e-9 it is LRP-0, which for a ReLU network equals input × gradient), "zplus" (only
    positive weights, captum's ``Alpha1_Beta0_Rule``, bias kept in the denominator) or
    "alphabeta" (α ≥ 1, β = α − 1 ≥ 0; biases ignored: a neuron switched on by its bias alone
    keeps its relevance).
    ReLU and flatten pass relevance through; max-pools (also adaptive) use the ε rule, which
    sends a window's relevance to its maximum. SmallCNN's input shift x − 0.5 passes relevance
    through unchanged (as in captum: the map is the relevance of the centred input).

    return_convergence_delta: also return f_t(x) − Σ R per sample (what biases and ε absorbed;
    captum's sign convention).

    Matches ``captum.attr.LRP(model).attribute(inputs, target)`` with ``EpsilonRule(epsilon)``
    on every layer ("epsilon") or ``Alpha1_Beta0_Rule()`` on Linear/Conv layers ("zplus").
    """
    x = check_inputs(model, inputs).detach()
    check_choice("rule", rule, LRP_RULES)
    epsilon = check_real("epsilon", epsilon, min=0.0)
    alpha, beta = check_real("alpha", alpha, min=1.0), check_real("beta", beta, min=0.0)
    if rule == "alphabeta" and abs(alpha - beta - 1) > 1e-12:
        raise ValueError(f"alpha and beta must satisfy alpha - beta = 1 (conservation), got alpha={alpha}, beta={beta}")
    check_bool("return_convergence_delta", return_convergence_delta)
    stab = epsilon if rule == "epsilon" else 1e-9
    with eval_on(model, freeze=True), torch.no_grad():
        layers, acts = _checked_layers(model, x)
        t = target_index(target, len(x), acts[-1].shape[1])
        out = select(acts[-1], t)
        R = F.one_hot(t, acts[-1].shape[1]).to(x.dtype) * out[:, None]
        for i in range(len(layers) - 1, -1, -1):
            layer, a = layers[i], acts[i]
            if isinstance(layer, (nn.ReLU, Shift)):
                continue                                              # relevance passes unchanged
            if isinstance(layer, PASS):
                R = R.reshape(a.shape)
            elif isinstance(layer, LINEAR) and rule == "zplus":
                fn = _weighted(layer, layer.weight.clamp(min=0), layer.bias)
                R = a * _vjp(fn, a, R / _stab(fn(a), stab))
            elif isinstance(layer, LINEAR) and rule == "alphabeta":
                wp, wn = layer.weight.clamp(min=0), layer.weight.clamp(max=0)
                ap, an = a.clamp(min=0), a.clamp(max=0)
                fp, fn_ = _weighted(layer, wp, None), _weighted(layer, wn, None)
                zp = fp(ap) + fn_(an)                                  # Σ_i (a_i w_ij)⁺
                zn = fp(an) + fn_(ap)                                  # Σ_i (a_i w_ij)⁻
                sp, sn = R / _stab(zp, 1e-9), R / _stab(zn, 1e-9)
                pos = ap * _vjp(fp, ap, sp) + an * _vjp(fn_, an, sp)
                neg = an * _vjp(fp, an, sn) + ap * _vjp(fn_, ap, sn)
                R = alpha * pos - beta * neg
            else:                                                     # ε rule: Linear, Conv, pools
                R = a * _vjp(layer, a, R / _stab(layer(a), stab))
        if return_convergence_delta:
            return R.to(inputs.device), (out - R.reshape(len(x), -1).sum(1)).to(inputs.device)
    return R.to(inputs.device)
