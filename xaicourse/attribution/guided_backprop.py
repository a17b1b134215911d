"""Guided backpropagation (Springenberg et al. 2015; captum ``GuidedBackprop``).

Ordinary backprop through a ReLU y = max(x, 0) passes the gradient where the *input* was
positive: ∂L/∂x = ∂L/∂y · 1[x > 0]. Guided backprop also drops negative gradient signals:

    ∂L/∂x ← max(∂L/∂y · 1[x > 0], 0)

so only paths that both were active and push the output up survive. Implemented with a
backward hook on every ``nn.ReLU`` module (functional ``F.relu`` calls are not seen); the
hooks are removed afterwards, leaving the model exactly as it was.
"""
from __future__ import annotations

import torch
from torch import nn

from .saliency import gradient


def _relu_hook(module, grad_input, grad_output):
    return tuple(None if g is None else torch.relu(g) for g in grad_input)


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """Guided-backprop map shaped like ``inputs`` (N, ...).

    The model must use ``nn.ReLU`` modules (not in-place); raises ValueError if it has none.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no nn.ReLU modules: guided backprop needs ReLUs as modules "
                         "(replace F.relu calls by nn.ReLU layers)")
    if any(m.inplace for m in relus):
        raise ValueError("guided_backprop needs ReLU(inplace=False) modules")
    handles = [m.register_full_backward_hook(_relu_hook) for m in relus]
    try:
        return gradient(model, inputs, target)
    finally:
        for h in handles:
            h.remove()
