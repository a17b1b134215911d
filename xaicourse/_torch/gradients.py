"""The gradient primitive every method uses (``target_gradient``, with ``layer=`` and
``create_graph=``), layer activations, the one baselines spec (``resolve_baselines``), quadrature
in the inputs' dtype and the straight-line path."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .._validate import as_tensor, check_bool, check_choice, check_int, check_real
from .inputs import check_inputs, resolve_target, scores, select, target_index
from .modules import check_model, eval_on, resolve_layer

# ------------------------------------------------------------------ the gradient primitive
@contextlib.contextmanager
def _layer_output(model: nn.Module, layer, replace=None, leaf: bool = False):
    """Record ``layer``'s output in ``store["out"]`` during the block; downstream modules get a
    clone, so an in-place op after the layer (``ReLU(inplace=True)``) cannot modify the recorded
    tensor (captum does the same). ``replace``: a tensor used as the layer's output instead."""
    module = resolve_layer(model, layer)
    store: dict = {}

    def hook(_m, _inp, out):
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; pick a layer with "
                             f"one tensor output")
        if replace is not None:
            if replace.shape != out.shape:
                raise ValueError(f"replacement for layer {layer!r} has shape {tuple(replace.shape)}, the layer "
                                 f"gives {tuple(out.shape)}")
            out = replace
        elif leaf and not out.requires_grad:
            out = out.detach().requires_grad_(True)     # differentiate the rest of the network only
        store["out"] = out
        return out.clone()
    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def target_gradient(model: nn.Module, inputs: torch.Tensor, target, *, layer=None, create_graph: bool = False,
                    contrast=None, layer_value: torch.Tensor | None = None, return_outputs: bool = False):
    """∂ Σ_n f_{t_n}(x_n) / ∂ inputs (shape of ``inputs``), or ∂ / ∂(``layer``'s output) when
    ``layer=`` is given (shape of the layer output) — the one place the package differentiates a
    target score. Samples do not interact in eval mode, so row n is the gradient of sample n's score.

    target: as ``resolve_target`` (None = the predicted class). contrast: a second class per
    sample; the quantity is then f_t − f_contrast. create_graph: keep the graph (gradients of
    gradients, attacks); if ``inputs`` already requires grad it is differentiated as given.
    layer_value: a tensor used as the layer's output instead of the computed one (the gradient
    of the rest of the network g at that activation: internal influence).
    return_outputs: also return (model outputs, resolved targets[, layer output]).
    The model runs in eval mode with frozen parameters; its state is restored afterwards.
    """
    check_model(model)
    check_bool("create_graph", create_graph)
    with eval_on(model, freeze=True), torch.enable_grad():
        if inputs.requires_grad and create_graph:
            x = inputs
        else:
            x = inputs.detach().clone().requires_grad_(layer is None)
        if layer_value is not None and not layer_value.requires_grad:
            layer_value = layer_value.detach().clone().requires_grad_(True)
        ctx = (_layer_output(model, layer, layer_value, leaf=True) if layer is not None
               else contextlib.nullcontext({}))
        with ctx as store:
            out = scores(model, x)
        t = resolve_target(model, x, target, outputs=out)
        q = select(out, t)
        if contrast is not None:
            q = q - select(out, target_index(contrast, len(x), out.shape[1]))
        wrt = store["out"] if layer is not None else x
        (g,) = torch.autograd.grad(q.sum(), wrt, create_graph=create_graph)
    if return_outputs:
        return (g, out, t, store["out"]) if layer is not None else (g, out, t)
    return g


def layer_activations(model: nn.Module, inputs, *, layer, batch_size: int | None = None) -> torch.Tensor:
    """h(x): the output of ``layer`` for ``inputs`` (N, ...) → (N, *layer output shape), detached,
    on the inputs' device. batch_size: samples per forward pass (None: all at once)."""
    check_model(model)
    resolve_layer(model, layer)
    x = check_inputs(model, inputs)
    bs = len(x) if batch_size is None else check_int("batch_size", batch_size, min=1)
    out = []
    with eval_on(model, freeze=True), torch.no_grad():
        for s in range(0, len(x), bs):
            with _layer_output(model, layer) as store:
                model(x[s:s + bs])
            out.append(store["out"].detach())
    dev = inputs.device if isinstance(inputs, torch.Tensor) else torch.device("cpu")
    return torch.cat(out).to(dev)


# ------------------------------------------------------------------ baselines and paths
BASELINE_NAMES = ("zero", "blur", "noise", "mean")


def resolve_baselines(inputs: torch.Tensor, baselines, *, sigma: float = 2.0, seed: int = 0,
                      name: str = "baselines") -> torch.Tensor:
    """The reference input x′ for ``inputs`` (N, ...) → a tensor shaped like ``inputs``.

    baselines: None or "zero" (zeros); a number (a constant input); a tensor / array broadcastable
    to ``inputs`` (one input (C, H, W), a batch of one (1, ...), one per sample (N, ...), per channel
    (C, 1, 1), …); "blur" (``maps.gaussian_blur`` of std ``sigma`` px, images (N, C, H, W)); "noise"
    (U(0, 1), ``seed``ed, drawn on the CPU so every device gives the same numbers); "mean" (each
    sample's mean per channel for images, each sample's mean for other inputs).
    Same dtype and device as ``inputs``; integer inputs take integral baselines only.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor batch (N, ...), got {type(inputs).__name__}")
    x = as_tensor("inputs", inputs, min_ndim=2, floating=False)
    integer = not x.dtype.is_floating_point
    seed = check_int("seed", seed, min=0)
    if baselines is None:
        baselines = "zero"
    if isinstance(baselines, str):
        check_choice(name, baselines, BASELINE_NAMES)
        if baselines == "zero":
            return torch.zeros_like(x)
        if integer:
            raise TypeError(f"{name}={baselines!r} needs floating-point inputs, got dtype {x.dtype}; pass an "
                            f"integer constant or tensor")
        if baselines == "blur":
            from ..maps import gaussian_blur
            if x.dim() != 4:
                raise ValueError(f"{name}='blur' needs images (N, C, H, W), got inputs of shape {tuple(x.shape)}")
            return gaussian_blur(x.detach(), check_real("sigma", sigma, min=0.0, min_inclusive=False))
        if baselines == "noise":
            g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, min=0))
            return torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
        dims = tuple(range(2, x.dim())) if x.dim() >= 3 else tuple(range(1, x.dim()))
        return x.detach().mean(dims, keepdim=True).expand_as(x).clone()
    if isinstance(baselines, bool):
        if x.dtype == torch.bool:
            return torch.full_like(x, baselines)
        raise TypeError(f"{name} must be a number, a tensor or one of {BASELINE_NAMES}, got {baselines!r}")
    if isinstance(baselines, (int, float, np.integer, np.floating)):
        v = check_real(name, baselines)
        if integer and v != int(v):
            raise ValueError(f"{name}={v} is not an integer but inputs are {x.dtype}")
        return torch.full_like(x, int(v) if integer else v)
    if isinstance(baselines, (list, tuple)):
        raise TypeError(f"{name} must be one number, tensor or name here, got a {type(baselines).__name__} "
                        f"(a list of baselines — expected gradients — is for integrated_gradients)")
    b = as_tensor(name, baselines, floating=not integer, non_empty=True)
    if b.dim() == x.dim() - 1 and b.shape == x.shape[1:]:
        b = b[None]
    if b.dim() > x.dim() or (b.dim() == x.dim() and len(b) not in (1, len(x))):
        raise ValueError(f"{name} of shape {tuple(b.shape)} does not fit inputs {tuple(x.shape)}: give one input "
                         f"{tuple(x.shape[1:])}, a batch of one, one per sample or a number")
    try:
        b = torch.broadcast_to(b.to(device=x.device), x.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(b.shape)} does not broadcast to inputs {tuple(x.shape)}; give one "
                         f"input {tuple(x.shape[1:])}, a batch of one, one per sample or a number") from None
    if integer:
        if b.dtype.is_floating_point and not torch.equal(b, b.round()):
            raise ValueError(f"{name} holds non-integer values but inputs are {x.dtype}")
    return b.to(x.dtype).contiguous()


QUADRATURE_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(n_steps: int, method: str = "gausslegendre", *, dtype: torch.dtype = torch.float64,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points α_k ∈ [0, 1] and weights w_k for ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k), as tensors of ``dtype``
    (pass the inputs' dtype: float64 inputs get float64 weights, so a 64-point Gauss–Legendre rule
    is exact to ~1e-16, not to float32's 1e-9).

    The same numbers as captum's ``approximation_methods``: ``riemann_left`` α_k = k/n,
    ``riemann_right`` (k+1)/n, ``riemann_middle`` (k+½)/n, all w_k = 1/n; ``riemann_trapezoid``
    α_k = k/(n−1) (n ≥ 2) with w = 1/n, the two end weights halved (captum's weights, which sum to
    (n−1)/n); ``gausslegendre`` the n-point Gauss–Legendre rule mapped to [0, 1].
    """
    check_choice("method", method, QUADRATURE_RULES)
    n = check_int("n_steps", n_steps, min=2 if method == "riemann_trapezoid" else 1)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        a = torch.as_tensor(0.5 * (1 + nodes), dtype=torch.float64)
        w = torch.as_tensor(0.5 * weights, dtype=torch.float64)
    elif method == "riemann_trapezoid":
        w = torch.full((n,), 1 / n, dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
        a = torch.linspace(0, 1, n, dtype=dtype if dtype == torch.float32 else torch.float64)
    else:
        start, stop = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
                       "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
        a = torch.linspace(start, stop, n, dtype=dtype if dtype == torch.float32 else torch.float64)
        w = torch.full((n,), 1 / n, dtype=torch.float64)
    return a.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device)


def interpolation_path(inputs: torch.Tensor, baselines: torch.Tensor, alphas) -> torch.Tensor:
    """x′ + α_k (x − x′) for every α_k, stacked step-major: (K·N, ...) (captum's layout).

    baselines: a tensor shaped like ``inputs`` (``resolve_baselines``). Built with ``cat`` of
    copies so the batch keeps the inputs' memory layout: conv kernels then round alike, and so do
    ties in max-pooling (on digits, with many equal zero pixels, a tie decides a gradient).
    """
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.tolist()
    diff = inputs - baselines
    return torch.cat([torch.empty_like(inputs).copy_(baselines + a * diff) for a in alphas])
