"""Shared input checks and the target-selection helper for attribution methods."""
from __future__ import annotations

import torch
from torch import nn


def check_inputs(inputs: torch.Tensor, min_dim: int = 2) -> torch.Tensor:
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    if inputs.dim() < min_dim:
        raise ValueError(f"inputs must be batched with shape (N, ...) of at least {min_dim} dims, "
                         f"got shape {tuple(inputs.shape)}; add a batch dim with inputs[None]")
    if not torch.isfinite(inputs).all():
        raise ValueError("inputs contains NaN or inf")
    return inputs


def target_index(target, n: int, n_outputs: int) -> torch.Tensor:
    """``target`` (int, sequence or tensor) → LongTensor of shape (n,), range-checked."""
    if isinstance(target, bool):
        raise TypeError("target must be an int or one int per sample, got a bool")
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be an int or have one entry per sample ({n}), got {t.numel()}")
    if (t < 0).any() or (t >= n_outputs).any():
        raise ValueError(f"target out of range: model has {n_outputs} outputs, got {t.tolist()}")
    return t


def select(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """outputs[i, target[i]] for each i."""
    return outputs.gather(1, target.to(outputs.device)[:, None])[:, 0]


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


def mask_scores(model, x: torch.Tensor, f0: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                perturb, batch_size: int) -> torch.Tensor:
    """f0 − f_target(perturb(x, m)) for every mask m in ``masks`` (K, *x.shape), in chunks.

    The shared loop of the perturbation-style methods (perturbation scores, occlusion):
    ``perturb(x[None], m)`` builds a chunk of perturbed inputs from a chunk of masks.
    Returns a (K,) tensor of output drops.
    """
    out = []
    for s in range(0, len(masks), batch_size):
        m = masks[s:s + batch_size]
        out.append(f0 - select(model(perturb(x[None], m)), target.expand(len(m))))
    return torch.cat(out)
