"""Internal influence (lecture 04, Leino et al. 2018): how much does each *internal* unit matter?

Slice the network at a layer, f = g ∘ h (h: input → layer activations, g: the rest). Pick
* a distribution of interest P over inputs — a point x, the straight line from a baseline x′
  to x (α uniform on [0, 1]), or a set of inputs (the batch: e.g. one class);
* a quantity of interest q(f(x)) — a class logit f_A, or a comparison f_A − f_B ("why A rather
  than B?").
The influence of unit j is the expected gradient of the quantity at the slice:

    χ_j = E_{z ~ P} [ ∂(q ∘ g)/∂h_j (h(z)) ].

``internal_influence`` computes χ (captum ``InternalInfluence`` is the "line" case);
``layer_conductance`` is the IG-style instance Σ_k ∂q/∂h(z_k) · (h(z_{k+1}) − h(z_k)), how much of
f(x) − f(x′) flows through each unit (captum ``LayerConductance``); ``unit_attribution`` goes the
other way, the input attribution (IG) of one internal unit's activation.

The slice is made with ``_torch.capture(model, layer, replace={layer: h})``: the forward pass is
run with the layer's output replaced by a leaf tensor h, so autograd gives ∂(q ∘ g)/∂h directly.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .._torch import (check_inputs, eval_on, interpolation_path, layer_activations as _layer_activations,
                      layer_keyword, quadrature, resolve_baselines, resolve_layer, resolve_target, target_gradient,
                      target_index)
from .._validate import check_choice, check_int

__all__ = ["internal_influence", "layer_conductance", "unit_attribution", "layer_activations"]

DISTRIBUTIONS = ("point", "line", "set")


def layer_activations(model: nn.Module, inputs: torch.Tensor, *args, layer=None, batch_size=None) -> torch.Tensor:
    """h(x): the output of ``layer`` for ``inputs`` (N, ...) → (N, *layer shape), detached —
    ``_torch.layer_activations`` (the old positional ``layer`` still works, with a warning)."""
    if args:
        if len(args) > 1 or layer is not None:
            raise TypeError("layer_activations(model, inputs, *, layer=..., batch_size=None)")
        warnings.warn("layer_activations: pass the layer as a keyword, layer_activations(model, inputs, layer=...)",
                      DeprecationWarning, stacklevel=2)
        layer = args[0]
    if layer is None:
        raise TypeError("layer_activations needs layer= (a module of the model or its dotted name)")
    return _layer_activations(model, inputs, layer=layer, batch_size=batch_size)


def _contrast(model, x, contrast, t):
    if contrast is None:
        return None
    k = _n_out(model, x)
    return target_index(contrast, len(x), k)


def _n_out(model, x):
    with torch.no_grad():
        return model(x[:1]).shape[1]


def _layer_grads(model, layer, z, t, c):
    """h(z) and ∂(q∘g)/∂h(z) for a batch z: the rest of the network g is differentiated at the
    layer's activations h(z) (an in-place op after the layer is harmless: see ``_torch``)."""
    g, _, _, h = target_gradient(model, z, t, layer=layer, contrast=c, return_outputs=True)
    return h.detach(), g


@layer_keyword(("inputs", "target", "layer", "distribution", "baselines", "n_steps", "method", "contrast"))
def internal_influence(model: nn.Module, inputs: torch.Tensor, target=None, *, layer, distribution: str = "line",
                       baselines=None, n_steps: int = 50, method: str = "gausslegendre", contrast=None) -> torch.Tensor:
    """Influence χ_j of every unit of ``layer`` on the quantity of interest.

    inputs: (N, ...). target: class A (int, one per sample, or None = the predicted class);
    contrast: class B or None — the quantity is f_A (contrast=None) or f_A − f_B. layer (keyword):
    a module of the model or its name.
    distribution: "point" (∂q/∂h at h(x)), "line" (mean over the quadrature points α_k of
    ``method`` with weights w_k of the gradient at h(x′ + α_k(x − x′)); baselines as for
    ``integrated_gradients``), or "set" (the mean over the whole batch ``inputs`` — one influence
    for the set, returned with batch size 1).
    Returns (N, *layer shape) ((1, *layer shape) for "set").

    "line" equals ``captum.attr.InternalInfluence(model, layer).attribute(inputs, baselines,
    target, n_steps=n_steps, method=method)`` for contrast=None.
    """
    x = check_inputs(model, inputs).detach()
    check_choice("distribution", distribution, DISTRIBUTIONS)
    resolve_layer(model, layer)
    with eval_on(model, freeze=True):
        t = resolve_target(model, x, target)
        c = _contrast(model, x, contrast, t)
        if distribution in ("point", "set"):
            _, g = _layer_grads(model, layer, x, t, c)
            g = g.mean(0, keepdim=True) if distribution == "set" else g
            return g.to(inputs.device)
        alphas, weights = quadrature(n_steps, method, dtype=x.dtype, device=x.device)
        b = resolve_baselines(x, baselines)
        z = interpolation_path(x, b, alphas)
        n = len(alphas)
        _, g = _layer_grads(model, layer, z, t.repeat(n), None if c is None else c.repeat(n))
        w = weights.to(g.dtype).view(n, 1, *([1] * (g.dim() - 1)))
        return (g.reshape(n, len(x), *g.shape[1:]) * w).sum(0).to(inputs.device)


@layer_keyword(("inputs", "target", "layer", "baselines", "n_steps", "method", "contrast"))
def layer_conductance(model: nn.Module, inputs: torch.Tensor, target=None, *, layer, baselines=None,
                      n_steps: int = 50, method: str = "gausslegendre", contrast=None) -> torch.Tensor:
    """Conductance of every unit of ``layer`` (Dhamdhere et al. 2018), shape (N, *layer shape).

    cond_j = Σ_{k=0}^{n−1} ∂q/∂h_j(z_k) · (h_j(z_{k+1}) − h_j(z_k)),  z_k = x′ + α_k (x − x′),

    with the n + 1 points α_k of ``method`` (captum's layout): a Riemann–Stieltjes sum of IG
    through the layer, so Σ_j cond_j ≈ q(x) − q(x′) (exactly as n → ∞ for the Riemann rules).
    target: as ``internal_influence``; layer keyword-only.
    Same numbers as ``captum.attr.LayerConductance(model, layer).attribute(inputs, baselines,
    target, n_steps=n_steps, method=method)`` (contrast=None).
    """
    x = check_inputs(model, inputs).detach()
    n_steps = check_int("n_steps", n_steps, min=1)
    resolve_layer(model, layer)
    alphas, _ = quadrature(n_steps + 1, method, dtype=x.dtype, device=x.device)
    b = resolve_baselines(x, baselines)
    N = len(x)
    with eval_on(model, freeze=True):
        t = resolve_target(model, x, target)
        c = _contrast(model, x, contrast, t)
        z = interpolation_path(x, b, alphas)
        h, g = _layer_grads(model, layer, z, t.repeat(n_steps + 1), None if c is None else c.repeat(n_steps + 1))
    dh = h[N:] - h[:-N]
    return (g[:-N] * dh).reshape(n_steps, N, *h.shape[1:]).sum(0).to(inputs.device)


@layer_keyword(("inputs", "layer", "unit", "baselines", "n_steps", "method"))
def unit_attribution(model: nn.Module, inputs: torch.Tensor, unit=None, *, layer, baselines=None,
                     n_steps: int = 50, method: str = "gausslegendre") -> torch.Tensor:
    """Integrated gradients of one internal unit's activation h_unit(x) w.r.t. the input,
    shaped like ``inputs`` — which pixels switched this unit on (relative to x′)?

    unit: an index into the layer's output without the batch dim, e.g. a channel c for a
    conv layer (the channel's activations are summed) or (c, i, j) / j. layer: keyword-only.
    Equals ``captum.attr.NeuronIntegratedGradients(model, layer).attribute(inputs,
    neuron_selector=unit, baselines=..., n_steps=..., method=...)`` for a full index.
    """
    from .._torch import _layer_output

    x = check_inputs(model, inputs).detach()
    resolve_layer(model, layer)
    if unit is None or isinstance(unit, bool):
        raise TypeError(f"unit must be an int or a tuple of ints indexing the layer's output, got {unit!r}")
    idx = (check_int("unit", unit, min=0),) if not isinstance(unit, (tuple, list)) else \
        tuple(check_int(f"unit[{i}]", u, min=0) for i, u in enumerate(unit))
    alphas, weights = quadrature(n_steps, method, dtype=x.dtype, device=x.device)
    b = resolve_baselines(x, baselines)
    n, N = len(alphas), len(x)
    with eval_on(model, freeze=True), torch.enable_grad():
        z = interpolation_path(x, b, alphas).requires_grad_(True)
        with _layer_output(model, layer) as store:
            model(z)
        act = store["out"]
        try:
            sel = act[(slice(None),) + idx]
        except IndexError:
            raise ValueError(f"unit {unit!r} is not an index of the layer's output shape {tuple(act.shape[1:])}") from None
        (g,) = torch.autograd.grad(sel.reshape(len(z), -1).sum(), z)
    w = weights.to(g.dtype).view(n, 1, *([1] * (g.dim() - 1)))
    return ((g.reshape(n, N, *x.shape[1:]) * w).sum(0) * (x - b)).to(inputs.device)
