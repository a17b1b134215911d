"""Extra input checks for the lecture-03 methods (on top of ``_utils.check_inputs``)."""
from __future__ import annotations

import torch
from torch import nn

from ._utils import check_inputs

_CONV = {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}


def check_batched(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """``check_inputs`` plus: if the model's first layer is a convolution, ``inputs`` must
    have its batched rank ((N, C, H, W) for Conv2d) — torch would otherwise silently treat
    one (C, H, W) image as an unbatched call."""
    check_inputs(inputs)
    if isinstance(model, nn.Module):
        for m in model.modules():
            for cls, rank in _CONV.items():
                if isinstance(m, cls):
                    if inputs.dim() != rank:
                        raise ValueError(
                            f"inputs must be batched with {rank} dims (N, C, ...) for this model's "
                            f"{cls.__name__}, got shape {tuple(inputs.shape)}; add a batch dim with inputs[None]")
                    return inputs
            if isinstance(m, nn.Linear):
                break
    return inputs
