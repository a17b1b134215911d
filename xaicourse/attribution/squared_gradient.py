"""Squared-gradient sensitivity: R_d(x) = (∂f_t/∂x_d)².

This is the lecture notes' "sensitivity" map: summed over the colour channels of a pixel
p it gives h(p) = Σ_c (∂f_t/∂x_{p,c})² = ‖∇_{x_p} f_t‖², the squared length of the local
slope at that pixel. It is never negative, so it cannot say *for* or *against* a class.
"""
from __future__ import annotations

import torch

from .saliency import gradient


def squared_gradient(model, inputs: torch.Tensor, target) -> torch.Tensor:
    """(∂f_t/∂x)² element-wise; inputs (N, ...) → same shape, all entries ≥ 0."""
    return gradient(model, inputs, target) ** 2
