"""Class activation maps: Grad-CAM (Selvaraju et al. 2017; captum ``LayerGradCam`` +
``LayerAttribution.interpolate``).

For a convolutional layer with activation maps A_k (k = channel, m × n positions):

    α_k^c = (1 / mn) Σ_{i,j} ∂y_c / ∂A_{k,i,j}          (global-average-pooled gradient)
    L^c   = ReLU( Σ_k α_k^c A_k )                         (m × n class map)

and L^c is upsampled to the input's H × W. α_k^c says how much channel k matters for class c;
the ReLU keeps only regions that speak *for* c.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._torch import check_inputs, check_model, last_layer_of_type, resolve_layer, target_gradient
from .._validate import check_bool, check_choice

__all__ = ["grad_cam", "layer_activation_and_grad"]

INTERPOLATE_MODES = ("nearest", "bilinear", "bicubic", "area")


def layer_activation_and_grad(model: nn.Module, inputs: torch.Tensor, target=None, *, layer,
                              create_graph: bool = False):
    """(A, ∂y_t/∂A) of ``layer``'s output for the batch, both shaped like the layer output
    (``_torch.target_gradient(..., layer=layer)``)."""
    resolve_layer(model, layer)
    x0 = check_inputs(model, inputs)
    if create_graph and inputs.requires_grad:
        x0 = inputs
    g, _, _, A = target_gradient(model, x0, target, layer=layer, create_graph=create_graph, return_outputs=True)
    return (A if create_graph else A.detach()), g


def grad_cam(model: nn.Module, inputs: torch.Tensor, target=None, *legacy, layer=None, relu: bool = True,
             interpolate_mode: str = "bilinear", upsample: bool = True, create_graph: bool = False) -> torch.Tensor:
    """Grad-CAM map for ``target`` at ``layer``, shaped like ``inputs`` (N, C, H, W).

    layer: a module of the model or its dotted name; None picks the last ``nn.Conv2d``.
    The (N, 1, m, n) map is upsampled to (H, W) with ``F.interpolate(mode=interpolate_mode)``
    and repeated over the C channels (every channel holds the same map); ``upsample=False``
    returns the raw (N, 1, m, n) layer map. relu: apply the ReLU (captum's
    ``relu_attributions``; its default is False). target: int, one per sample, or None (the
    predicted class). create_graph: keep the graph (attacks on explanations).
    """
    if legacy or isinstance(inputs, (str, nn.Module)):  # the old grad_cam(model, layer, inputs, target)
        raise TypeError("grad_cam takes the layer as a keyword: grad_cam(model, inputs, target, layer=...)")
    check_model(model)
    check_choice("interpolate_mode", interpolate_mode, INTERPOLATE_MODES)
    relu, upsample = check_bool("relu", relu), check_bool("upsample", upsample)
    check_bool("create_graph", create_graph)
    if layer is None:
        layer = last_layer_of_type(model, nn.Conv2d)
    A, g = layer_activation_and_grad(model, inputs, target, layer=layer, create_graph=create_graph)
    if A.dim() != 4:
        raise ValueError(f"layer output must be (N, K, m, n) feature maps, got shape {tuple(A.shape)}")
    alpha = g.mean(dim=(2, 3), keepdim=True)              # (N, K, 1, 1)
    cam = (alpha * A).sum(dim=1, keepdim=True)            # (N, 1, m, n)
    if relu:
        cam = torch.relu(cam)
    if upsample:
        cam = F.interpolate(cam, size=tuple(inputs.shape[2:]), mode=interpolate_mode)
        cam = cam.expand(-1, inputs.shape[1], -1, -1).contiguous()
    return cam.to(inputs.device)
