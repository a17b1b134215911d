"""Vanilla gradient saliency: R(x) = ∂f_t/∂x (signed) or |∂f_t/∂x| (captum ``Saliency``).

f_t is the model's output ``target`` (usually a logit). The gradient is the best linear
approximation of f_t around x: f_t(x + ε) ≈ f_t(x) + ε·∇f_t(x). It measures *sensitivity*
(how much the output would move per unit change of x_d), not *contribution* (how much x_d
is responsible for the output) — the two differ, e.g. where the model saturates.
"""
from __future__ import annotations

import torch

from ._utils import check_batched
from ._utils import select, target_index


def gradient(model, inputs: torch.Tensor, target, create_graph: bool = False) -> torch.Tensor:
    """∂f_t/∂x for each sample of ``inputs`` (N, ...) → tensor of the same shape.

    Computes the gradient of Σ_n f_{t_n}(x_n); samples do not interact in eval mode, so
    row n of the result is ∂f_{t_n}(x_n)/∂x_n. ``target``: int or one int per sample.
    """
    check_batched(model, inputs)
    x = inputs.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if out.dim() != 2:
            raise ValueError(f"model must return (N, n_outputs) scores, got shape {tuple(out.shape)}")
        t = target_index(target, len(x), out.shape[1])
        (g,) = torch.autograd.grad(select(out, t).sum(), x, create_graph=create_graph)
    return g


def saliency(model, inputs: torch.Tensor, target, abs: bool = True) -> torch.Tensor:
    """Saliency map |∂f_t/∂x| (``abs=True``, captum's default) or the signed gradient.

    inputs: (N, C, H, W) or (N, D); returns the same shape.
    """
    g = gradient(model, inputs, target)
    return g.abs() if abs else g
