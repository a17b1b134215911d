"""The propagation family (lecture 04): DeepLIFT and LRP, written from scratch. Both replace the
chain rule's local derivative by a *rule* and walk the network backwards once; every function is
``f(model, inputs, target, **options)`` → a tensor shaped like ``inputs``.

* ``deeplift`` — rescale rule (Shrikumar et al. 2017). Each nonlinearity gets a *multiplier*
  m = Δout / Δin instead of ∂out/∂in, with Δ = value at x minus value at the reference x′:
  linear layers keep their weights (Δ is linear in Δ), a ReLU uses (y − y′)/(z − z′), a max-pool
  routes Δout to the winners of x and of x′. Attribution R = (x − x′) ⊙ m_input, and
  Σ R = f_t(x) − f_t(x′) exactly (summation-to-delta).
* ``lrp`` — layer-wise relevance propagation (Bach et al. 2015). Relevance R_j of a neuron is
  split among its inputs in proportion to their contributions z_ij = a_i w_ij:
  ε rule   R_i = a_i Σ_j w_ij R_j / (z_j + ε·sign(z_j)),  z_j = Σ_i a_i w_ij + b_j;
  z⁺ rule  the same with w⁺ = max(w, 0) (captum's ``Alpha1_Beta0_Rule``, bias kept);
  αβ rule  R_i = Σ_j (α (a_i w_ij)⁺ / Σ_i (a_i w_ij)⁺ − β (a_i w_ij)⁻ / Σ_i (a_i w_ij)⁻) R_j, α − β = 1;
  w² rule  R_i = Σ_j w_ij² / Σ_i' w_i'j² · R_j (Montavon et al. 2017, Deep Taylor for unbounded
           inputs: the input's value plays no part) — ``input_rule="wsquare"``, on the first
           Linear/Conv layer only, the other layers keep ``rule`` (a composite, as in the LRP overview).
  ReLUs pass relevance unchanged; max-pools route it to the winner. Starting from R = f_t(x),
  Σ R = f_t(x) minus what the biases (and ε) absorb; the αβ rule ignores biases, so on a
  bias-free network (every neuron with inputs of both signs) relevance is conserved exactly.

**Any model** built of these modules works, whatever its ``forward`` does between them (a
flatten, an input shift x − 0.5, a residual sum): like captum, the rules are attached to the
modules with forward hooks that swap the backward pass of each module's output for the rule
(``_Rule``), and autograd carries the rest. Supported modules: Linear, Conv1d/2d/3d,
BatchNorm1d/2d/3d (eval mode: an affine map — a linear layer with a bias for both methods),
ReLU (also in-place: switched off for the call), max-pools (also adaptive), average pools,
Flatten, Dropout (eval), Identity; DeepLIFT also LeakyReLU, ELU, Sigmoid, Tanh, Softplus (rescale
rule). Any other module that is called — or a module with parameters of its own — is refused
with its name. Nonlinearities written as functions in ``forward`` (``F.relu``) are invisible to
hooks (as in captum): use modules.

Differences with captum: captum's DeepLift has no rule for ``AdaptiveMaxPool2d`` (plain gradient)
and its max-pool rule misroutes when a ReLU feeds the pool (captum issues #1104, #1276), so on
SmallCNN its attributions break summation-to-delta; ours use the same max-pool rule for every
max-pool and keep it. captum's LRP refuses ``AdaptiveMaxPool2d`` unless given a rule (ours: the ε
rule, like its ``MaxPool2d``). captum's ``EpsilonRule`` defaults to ε = 1e-9, which is LRP-0
(= input × gradient on a ReLU net, with or without biases, where no pre-activation is 0); ours defaults to ε = 0.25 (Montavon et al. 2019,
"LRP-ε" in the layer-wise relevance overview: absorbs weak, contradictory relevance).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from .._torch import check_inputs, eval_on, resolve_baselines, resolve_target, scores, select
from .._validate import check_bool, check_choice, check_real

__all__ = ["deeplift", "lrp", "sequential_layers", "LRP_EPSILON"]

EPS_DEEPLIFT = 1e-10           # |Δin| below this: use the gradient (captum's threshold)
LRP_EPSILON = 0.25             # default ε of the ε rule (captum's 1e-9 is LRP-0)
LINEAR = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
             nn.AdaptiveMaxPool3d)
AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
             nn.AdaptiveAvgPool3d)
POOLS = MAX_POOLS + AVG_POOLS
PASS = (nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh, nn.Softplus)


def sequential_layers(model: nn.Module) -> list[nn.Module]:
    """The leaf modules of ``model`` in registration order (for display; the methods themselves
    follow the forward pass with hooks, so the order need not be the call order)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return [m for m in model.modules() if not list(m.children())]


# ------------------------------------------------------------------ the hook machinery
class _Rule(torch.autograd.Function):
    """Forward: the module's output as computed. Backward: ``rule(grad_output)`` instead of the
    module's own vector-Jacobian product (the gradient reaches the module's input only here)."""

    @staticmethod
    def forward(ctx, inp, out, rule):
        ctx.rule = rule
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        return ctx.rule(grad), None, None


def _vjp(fn, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """vᵀ ∂fn/∂a at a (for a linear fn: Wᵀ v; for a pool: v routed to the winners)."""
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(fn(a), a, grad_outputs=v)
    return g


def _check_modules(model: nn.Module, supported: tuple, method: str):
    for name, m in model.named_modules():
        if list(m.children()):
            if any(True for _ in m.parameters(recurse=False)):
                raise ValueError(f"{method}: module {name or 'model'!r} ({type(m).__name__}) uses parameters of its "
                                 f"own in forward; no propagation rule for it (supported modules: "
                                 f"{', '.join(sorted({t.__name__ for t in supported}))})")
            continue
        if not isinstance(m, supported):
            raise ValueError(f"{method}: layer {name or 'model'!r} ({type(m).__name__}) has no propagation rule; supported: "
                             f"{', '.join(sorted({t.__name__ for t in supported}))}")


@contextlib.contextmanager
def _rules(model: nn.Module, make_rule):
    """Attach ``make_rule(module, input, output) -> rule or None`` to every leaf module for the
    block; in-place activations are switched to out-of-place for the block (their input is kept)."""
    handles, inplace = [], []
    for m in model.modules():
        if getattr(m, "inplace", False) is True:
            inplace.append(m)
            m.inplace = False

    state = {"off": False}            # a rule that calls its module must not trigger the hooks again

    def hook(module, inputs, output):
        if state["off"] or not isinstance(output, torch.Tensor):
            return None
        rule = make_rule(module, inputs[0], output)
        if rule is None:
            return None

        def guarded(g):
            state["off"] = True
            try:
                return rule(g)
            finally:
                state["off"] = False
        return _Rule.apply(inputs[0], output.detach(), guarded)
    try:
        for m in model.modules():
            if not list(m.children()):
                handles.append(m.register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()
        for m in inplace:
            m.inplace = True


# ------------------------------------------------------------------ DeepLIFT
DEEPLIFT_MODULES = LINEAR + NORMS + POOLS + PASS + ELEMENTWISE


def _deeplift_rule(n: int):
    """Rules for a forward pass on cat([x, x′]) (2N rows): multipliers for the x rows, none for x′."""

    def make(module, a, y):
        if not isinstance(module, ELEMENTWISE + MAX_POOLS):
            return None                                   # linear: the chain rule is DeepLIFT's rule
        a, y = a.detach(), y.detach()
        ax, ab, yx, yb = a[:n], a[n:], y[:n], y[n:]
        d_in = ax - ab
        small = d_in.abs() < EPS_DEEPLIFT
        safe = torch.where(small, torch.ones_like(d_in), d_in)

        def rule(g):
            gx = g[:n]
            grad = _vjp(module, ax, gx)                   # the ordinary gradient, where Δin ≈ 0
            if isinstance(module, ELEMENTWISE):
                m = gx * (yx - yb) / safe
            else:
                top = torch.maximum(yx, yb)
                m = (_vjp(module, ax, gx * (top - yb)) + _vjp(module, ab, gx * (yx - top))) / safe
            return torch.cat([torch.where(small, grad, m), torch.zeros_like(ab)])
        return rule
    return make


def deeplift(model: nn.Module, inputs: torch.Tensor, target=None, baselines=None,
             return_convergence_delta: bool = False, *, sigma: float = 2.0, seed: int = 0):
    """DeepLIFT with the rescale rule, shaped like ``inputs`` (N, ...).

    R = (x − x′) ⊙ m, where the multiplier m = "∂"f_t/"∂"x is back-propagated with
    m_in = Wᵀ m_out through linear maps (Linear, Conv, BatchNorm in eval mode, average pools,
    flatten, whatever linear arithmetic ``forward`` does),
    m_in = m_out · (σ(z) − σ(z′)) / (z − z′) through an elementwise nonlinearity σ (ReLU, …; the
    gradient where |z − z′| < 1e-10), and through a max-pool with outputs y = max over the window
    at x, y′ at x′: m_in = [route_x(m_out·(max(y, y′) − y′)) + route_x′(m_out·(y − max(y, y′)))] / (z − z′),
    route_x sending a value to the winner of its window at x. Then Σ R = f_t(x) − f_t(x′).

    target: int, one per sample, or None (the predicted class).
    baselines: x′ — None / "zero", a number, a tensor broadcastable to the inputs, "blur" /
    "noise" / "mean" (``_torch.resolve_baselines``).
    return_convergence_delta: also return Σ R − (f_t(x) − f_t(x′)) per sample.

    Matches ``captum.attr.DeepLift(model).attribute(inputs, baselines, target)`` on networks
    without a max-pool fed by a ReLU (MLPs, conv + BatchNorm + ReLU nets, max-pools after a
    linear layer). captum 0.9's max-pool hook is wrong when a ReLU feeds the pool (captum issues
    #1104, #1276): on SmallCNN its Σ R misses f(x) − f(x′) by whole logits, ours keeps it to
    float rounding.
    """
    x = check_inputs(model, inputs).detach()
    check_bool("return_convergence_delta", return_convergence_delta)
    b = resolve_baselines(x, baselines, sigma=sigma, seed=seed).contiguous()
    _check_modules(model, DEEPLIFT_MODULES, "deeplift")
    N = len(x)
    with eval_on(model, freeze=True):
        with torch.no_grad():
            out_x, out_b = scores(model, x), scores(model, b)
        t = resolve_target(model, x, target, outputs=out_x)
        z = torch.cat([x, b]).requires_grad_(True)
        with torch.enable_grad(), _rules(model, _deeplift_rule(N)):
            out = scores(model, z)
            (m,) = torch.autograd.grad(select(out[:N], t).sum(), z)
    attr = ((x - b) * m[:N]).to(inputs.device)
    if return_convergence_delta:
        delta = attr.reshape(N, -1).sum(1) - (select(out_x, t) - select(out_b, t)).to(attr.device)
        return attr, delta
    return attr


# ------------------------------------------------------------------ LRP
LRP_RULES = ("epsilon", "zplus", "alphabeta")
INPUT_RULES = ("wsquare",)
LRP_MODULES = LINEAR + NORMS + POOLS + PASS + (nn.ReLU, nn.Tanh)


def _weighted(layer, weight, bias):
    """The layer's function with other weights (same stride/padding)."""
    if isinstance(layer, nn.Linear):
        return lambda a: F.linear(a, weight, bias)
    return lambda a: layer._conv_forward(a, weight, bias)


def _ratio(R, z, eps):
    """R / (z + ε·sign(z)), sign(0) = +1; 0 where that denominator is 0 (ε = 0 and z = 0: nothing flows)."""
    d = _stab(z, eps)
    return torch.where(d == 0, torch.zeros_like(R), R / torch.where(d == 0, torch.ones_like(d), d))


def _stab(z, eps):
    s = torch.sign(z)
    s[s == 0] = 1
    return z + eps * s


def _lrp_rule(rule: str, epsilon: float, alpha: float, beta: float, input_rule=None):
    """Rules on relevance: the 'gradient' carried between modules is the relevance itself (captum's
    scheme), so functional arithmetic in ``forward`` (a shift, a flatten) passes it unchanged.
    ``input_rule="wsquare"``: the first Linear/Conv layer the forward pass meets takes the w² rule."""
    stab = epsilon if rule == "epsilon" else 1e-9
    seen = {"linear": 0}

    def make(module, a, y):
        a = a.detach()
        if isinstance(module, (nn.ReLU, nn.Tanh) + PASS):
            return (lambda R: R) if isinstance(module, (nn.ReLU, nn.Tanh)) else None
        if isinstance(module, LINEAR):
            seen["linear"] += 1
            if input_rule == "wsquare" and seen["linear"] == 1:
                fn = _weighted(module, module.weight ** 2, None)
                ones = torch.ones_like(a)                 # z_j = Σ_i w_ij² (only the inputs j sees)
                return lambda R: _vjp(fn, ones, _ratio(R, fn(ones), 1e-9))
        if isinstance(module, LINEAR) and rule == "zplus":
            fn = _weighted(module, module.weight.clamp(min=0), module.bias)
            return lambda R: a * _vjp(fn, a, _ratio(R, fn(a), stab))
        if isinstance(module, LINEAR) and rule == "alphabeta":
            def ab(R):
                wp, wn = module.weight.clamp(min=0), module.weight.clamp(max=0)
                ap, an = a.clamp(min=0), a.clamp(max=0)
                fp, fn_ = _weighted(module, wp, None), _weighted(module, wn, None)
                zp = fp(ap) + fn_(an)                                  # Σ_i (a_i w_ij)⁺
                zn = fp(an) + fn_(ap)                                  # Σ_i (a_i w_ij)⁻
                sp, sn = _ratio(R, zp, 1e-9), _ratio(R, zn, 1e-9)
                pos = ap * _vjp(fp, ap, sp) + an * _vjp(fn_, an, sp)
                neg = an * _vjp(fp, an, sn) + ap * _vjp(fn_, ap, sn)
                return alpha * pos - beta * neg
            return ab
        # ε rule: Linear, Conv (rule "epsilon"), BatchNorm (an affine layer), pools
        return lambda R: a * _vjp(module, a, _ratio(R, module(a), stab))
    return make


def lrp(model: nn.Module, inputs: torch.Tensor, target=None, rule: str = "epsilon", epsilon: float = LRP_EPSILON,
        alpha: float = 1.0, beta: float = 0.0, return_convergence_delta: bool = False, *, input_rule=None):
    """Layer-wise relevance propagation, shaped like ``inputs`` (N, ...).

    Relevance starts as R = f_t(x) on the target logit and is passed down module by module (see
    the module docstring for the rules). rule: "epsilon" (ε rule with ε = ``epsilon`` ≥ 0, default
    0.25: small contradictory contributions are absorbed; ε → 0 is LRP-0, which for a ReLU network
    equals input × gradient; captum's ``EpsilonRule`` default 1e-9 is that LRP-0), "zplus" (only
    positive weights, captum's ``Alpha1_Beta0_Rule``, bias kept in the denominator) or
    "alphabeta" (α ≥ 1, β = α − 1 ≥ 0; biases ignored: a neuron switched on by its bias alone
    keeps its relevance). input_rule (keyword): None, or "wsquare" — the first Linear/Conv layer
    of the forward pass takes the w² rule R_i = Σ_j w_ij² R_j / Σ_i' w_i'j² (its biases ignored),
    the layers above keep ``rule``. BatchNorm (eval) is an affine layer and takes the ε rule, as in captum.
    ReLU (and Tanh, as in captum) and flatten pass relevance through; pools (also adaptive) use the ε rule, which
    sends a max window's relevance to its maximum. Arithmetic in ``forward`` (SmallCNN's input
    shift x − 0.5) passes relevance through unchanged (as in captum: the map is the relevance of
    the centred input). target: int, one per sample, or None (the predicted class).

    return_convergence_delta: also return f_t(x) − Σ R per sample (what biases and ε absorbed;
    captum's sign convention).

    Matches ``captum.attr.LRP(model).attribute(inputs, target)`` with ``EpsilonRule(epsilon)``
    on every layer ("epsilon") or ``Alpha1_Beta0_Rule()`` on Linear/Conv layers ("zplus").
    """
    x = check_inputs(model, inputs).detach()
    check_choice("rule", rule, LRP_RULES)
    if input_rule is not None:
        check_choice("input_rule", input_rule, INPUT_RULES)
    epsilon = check_real("epsilon", epsilon, min=0.0)
    alpha, beta = check_real("alpha", alpha, min=1.0), check_real("beta", beta, min=0.0)
    if rule == "alphabeta" and abs(alpha - beta - 1) > 1e-12:
        raise ValueError(f"alpha and beta must satisfy alpha - beta = 1 (conservation), got alpha={alpha}, beta={beta}")
    check_bool("return_convergence_delta", return_convergence_delta)
    _check_modules(model, LRP_MODULES, "lrp")
    N = len(x)
    with eval_on(model, freeze=True):
        xg = x.clone().requires_grad_(True)
        with torch.enable_grad(), _rules(model, _lrp_rule(rule, epsilon, alpha, beta, input_rule)):
            out = scores(model, xg)
            t = resolve_target(model, x, target, outputs=out.detach())
            f = select(out, t)
            start = F.one_hot(t, out.shape[1]).to(out.dtype) * f.detach()[:, None]
            (R,) = torch.autograd.grad(out, xg, grad_outputs=start)
    R = R.to(inputs.device)
    if return_convergence_delta:
        return R, (f.detach().to(R.device) - R.reshape(N, -1).sum(1))
    return R
