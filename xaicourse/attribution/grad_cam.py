"""Grad-CAM (Selvaraju et al. 2017; captum ``LayerGradCam`` + ``LayerAttribution.interpolate``).

For a convolutional layer with activation maps A_k (k = channel, m × n positions):

    α_k^c = (1 / mn) Σ_{i,j} ∂y_c / ∂A_{k,i,j}          (global-average-pooled gradient)
    L^c   = ReLU( Σ_k α_k^c A_k )                         (m × n class map)

and L^c is upsampled to the input's H × W. α_k^c says how much channel k matters for
class c; the ReLU keeps only regions that speak *for* c.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import check_batched
from ._utils import check_inputs, select, target_index


def resolve_layer(model: nn.Module, layer) -> nn.Module:
    """``layer`` as a module of ``model`` (a module object or its dotted name)."""
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in named or layer == "":
            raise ValueError(f"layer {layer!r} not in the model; named layers: {[n for n in named if n]}")
        return named[layer]
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be an nn.Module of the model or its name, got {type(layer).__name__}")
    if not any(m is layer for m in named.values()):
        raise ValueError(f"layer {layer.__class__.__name__} is not a submodule of the model")
    return layer


def layer_activation_and_grad(model, layer, inputs, target):
    """(A, ∂y_t/∂A) of ``layer``'s output for the batch, both (N, K, m, n)."""
    layer = resolve_layer(model, layer)
    check_inputs(inputs, min_dim=3)
    check_batched(model, inputs)
    store = {}

    def hook(module, inp, out):
        store["A"] = out

    h = layer.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            out = model(x)
            t = target_index(target, len(x), out.shape[1])
            (g,) = torch.autograd.grad(select(out, t).sum(), store["A"])
    finally:
        h.remove()
    return store["A"].detach(), g


def grad_cam(model: nn.Module, layer, inputs: torch.Tensor, target, relu: bool = True,
             interpolate_mode: str = "bilinear", upsample: bool = True) -> torch.Tensor:
    """Grad-CAM map for ``target`` at ``layer`` (module or name), shaped like ``inputs``.

    inputs: (N, C, H, W). The (N, 1, m, n) map is upsampled to (H, W) with
    ``F.interpolate(mode=interpolate_mode)`` and repeated over the C channels (every channel
    holds the same map). ``upsample=False`` returns the raw (N, 1, m, n) layer map.
    relu: apply the ReLU (captum's ``relu_attributions``; its default is False).
    """
    if interpolate_mode not in ("nearest", "bilinear", "bicubic", "area"):
        raise ValueError(f"interpolate_mode must be nearest/bilinear/bicubic/area, got {interpolate_mode!r}")
    A, g = layer_activation_and_grad(model, layer, inputs, target)
    if A.dim() != 4:
        raise ValueError(f"layer output must be (N, K, m, n) feature maps, got shape {tuple(A.shape)}")
    alpha = g.mean(dim=(2, 3), keepdim=True)              # (N, K, 1, 1)
    cam = (alpha * A).sum(dim=1, keepdim=True)            # (N, 1, m, n)
    if relu:
        cam = torch.relu(cam)
    if not upsample:
        return cam
    cam = F.interpolate(cam, size=tuple(inputs.shape[2:]), mode=interpolate_mode)
    return cam.expand(-1, inputs.shape[1], -1, -1).contiguous()
