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

import torch
from torch import nn

from .._torch import capture, check_inputs, eval_on, resolve_layer, scores, select, target_index
from .._validate import check_choice, check_int
from .gradients import _as_baseline, ig_points

__all__ = ["internal_influence", "layer_conductance", "unit_attribution", "layer_activations"]

DISTRIBUTIONS = ("point", "line", "set")


def layer_activations(model: nn.Module, inputs: torch.Tensor, layer) -> torch.Tensor:
    """h(x): the output of ``layer`` for ``inputs`` (N, ...) → (N, *layer shape), detached."""
    x = check_inputs(model, inputs).detach()
    resolve_layer(model, layer)
    with eval_on(model, freeze=True), torch.no_grad(), capture(model, layer) as store:
        model(x)
    return store[layer].detach()


def _quantity(out: torch.Tensor, t: torch.Tensor, c: torch.Tensor | None) -> torch.Tensor:
    q = select(out, t)
    return q if c is None else q - select(out, c)


def _slice_gradient(model, layer, z: torch.Tensor, h: torch.Tensor, t, c) -> torch.Tensor:
    """∂(q ∘ g)/∂h at the activations h: the model is run on z with the layer's output replaced
    by a leaf tensor holding h, so only g (the part after the slice) is differentiated."""
    leaf = h.detach().clone().requires_grad_(True)
    with torch.enable_grad(), capture(model, layer, replace={layer: leaf}):
        out = scores(model, z)
        (g,) = torch.autograd.grad(_quantity(out, t, c).sum(), leaf)
    return g


def _grads_at(model, layer, z, t, c):
    """h(z) and ∂(q∘g)/∂h(z) for a batch z."""
    with torch.no_grad(), capture(model, layer) as store:
        model(z)
    h = store[layer].detach()
    return h, _slice_gradient(model, layer, z, h, t, c)


def _targets(model, x, target, contrast):
    with torch.no_grad():
        k = scores(model, x[:1]).shape[1]
    t = target_index(target, len(x), k)
    c = None if contrast is None else target_index(contrast, len(x), k)
    return t, c


def internal_influence(model: nn.Module, inputs: torch.Tensor, target, layer, distribution: str = "line",
                       baselines=None, n_steps: int = 50, method: str = "gausslegendre", contrast=None) -> torch.Tensor:
    """Influence χ_j of every unit of ``layer`` on the quantity of interest.

    inputs: (N, ...). target: class A (int or one per sample); contrast: class B or None — the
    quantity is f_A (contrast=None) or f_A − f_B. layer: a module of the model or its name.
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
        t, c = _targets(model, x, target, contrast)
        if distribution in ("point", "set"):
            _, g = _grads_at(model, layer, x, t, c)
            return g.mean(0, keepdim=True) if distribution == "set" else g
        alphas, weights = ig_points(n_steps, method)
        b = _as_baseline(baselines, x)
        z = torch.cat([torch.empty_like(x).copy_(b + a * (x - b)) for a in alphas])
        n = len(alphas)
        _, g = _grads_at(model, layer, z, t.repeat(n), None if c is None else c.repeat(n))
        w = torch.tensor(weights, dtype=torch.float32).to(g.dtype).view(n, 1, *([1] * (g.dim() - 1)))
        return (g.reshape(n, len(x), *g.shape[1:]) * w).sum(0)


def layer_conductance(model: nn.Module, inputs: torch.Tensor, target, layer, baselines=None, n_steps: int = 50,
                      method: str = "gausslegendre", contrast=None) -> torch.Tensor:
    """Conductance of every unit of ``layer`` (Dhamdhere et al. 2018), shape (N, *layer shape).

    cond_j = Σ_{k=0}^{n−1} ∂q/∂h_j(z_k) · (h_j(z_{k+1}) − h_j(z_k)),  z_k = x′ + α_k (x − x′),

    with the n + 1 points α_k of ``method`` (captum's layout): a Riemann–Stieltjes sum of IG
    through the layer, so Σ_j cond_j ≈ q(x) − q(x′) (exactly as n → ∞ for the Riemann rules).
    Same numbers as ``captum.attr.LayerConductance(model, layer).attribute(inputs, baselines,
    target, n_steps=n_steps, method=method)`` (contrast=None).
    """
    x = check_inputs(model, inputs).detach()
    n_steps = check_int("n_steps", n_steps, min=1)
    resolve_layer(model, layer)
    alphas, _ = ig_points(n_steps + 1, method)
    b = _as_baseline(baselines, x)
    N = len(x)
    with eval_on(model, freeze=True):
        t, c = _targets(model, x, target, contrast)
        z = torch.cat([torch.empty_like(x).copy_(b + a * (x - b)) for a in alphas])
        h, g = _grads_at(model, layer, z, t.repeat(n_steps + 1), None if c is None else c.repeat(n_steps + 1))
    dh = h[N:] - h[:-N]
    return (g[:-N] * dh).reshape(n_steps, N, *h.shape[1:]).sum(0)


def unit_attribution(model: nn.Module, inputs: torch.Tensor, layer, unit, baselines=None, n_steps: int = 50,
                     method: str = "gausslegendre") -> torch.Tensor:
    """Integrated gradients of one internal unit's activation h_unit(x) w.r.t. the input,
    shaped like ``inputs`` — which pixels switched this unit on (relative to x′)?

    unit: an index into the layer's output without the batch dim, e.g. a channel c for a
    conv layer (the channel's activations are summed) or (c, i, j) / j. Equals
    ``captum.attr.NeuronIntegratedGradients(model, layer).attribute(inputs, neuron_selector=unit,
    baselines=..., n_steps=..., method=...)`` for a full index.
    """
    x = check_inputs(model, inputs).detach()
    resolve_layer(model, layer)
    alphas, weights = ig_points(n_steps, method)
    b = _as_baseline(baselines, x)
    idx = (unit,) if isinstance(unit, int) else tuple(unit)
    n, N = len(alphas), len(x)
    with eval_on(model, freeze=True), torch.enable_grad():
        z = torch.cat([torch.empty_like(x).copy_(b + a * (x - b)) for a in alphas]).requires_grad_(True)
        with capture(model, layer) as store:
            model(z)
        act = store[layer]
        try:
            sel = act[(slice(None),) + idx]
        except IndexError:
            raise ValueError(f"unit {unit!r} is not an index of the layer's output shape {tuple(act.shape[1:])}") from None
        (g,) = torch.autograd.grad(sel.reshape(len(z), -1).sum(), z)
    w = torch.tensor(weights, dtype=torch.float32).to(g.dtype).view(n, 1, *([1] * (g.dim() - 1)))
    return (g.reshape(n, N, *x.shape[1:]) * w).sum(0) * (x - b)
