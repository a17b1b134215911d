"""Input × Gradient: R_d(x) = x_d · ∂f_t/∂x_d (captum ``InputXGradient``).

For a linear model f(x) = wᵀx + b this is exactly the contribution w_d x_d of feature d,
and Σ_d R_d = f(x) − b. For a network it is the first-order Taylor term around the zero
input, so it depends on where "zero" is (here: a black pixel).
"""
from __future__ import annotations

import torch

from .saliency import gradient


def input_x_gradient(model, inputs: torch.Tensor, target) -> torch.Tensor:
    """x ⊙ ∂f_t/∂x; inputs (N, ...) → same shape."""
    return inputs.detach() * gradient(model, inputs, target)
