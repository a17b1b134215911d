"""Perturbation scores: R_i = f(x) − f(x + δ e_i), one feature (or patch) at a time."""
from __future__ import annotations

import torch

from ._utils import check_batched, mask_scores, select, target_index


@torch.no_grad()
def perturbation_scores(model, inputs: torch.Tensor, target, delta: float = 1.0, patch: int = 1,
                        batch_size: int = 256) -> torch.Tensor:
    """R_i = f_t(x) − f_t(x + δ e_i) for every input feature i (captum-style signature).

    inputs: (N, C, H, W) or (N, D). target: int or one per sample; f_t is logit ``target``.
    delta: the perturbation size δ (non-zero). patch: for images, perturb p×p patches of
    all channels at once (the score is written to every feature of the patch).
    As δ → 0, −R_i/δ tends to ∂f/∂x_i; for a linear model R_i = −δ w_i exactly.
    """
    check_batched(model, inputs)
    if delta == 0:
        raise ValueError("delta must be non-zero")
    if int(patch) < 1:
        raise ValueError(f"patch must be ≥ 1, got {patch}")
    base = model(inputs)
    t = target_index(target, len(inputs), base.shape[1])
    f0 = select(base, t)
    out = torch.zeros_like(inputs)
    for n in range(len(inputs)):
        x = inputs[n]
        if x.dim() == 3 and patch > 1:
            _, H, W = x.shape
            cells = [(i, j) for i in range(0, H, patch) for j in range(0, W, patch)]
            masks = torch.zeros(len(cells), *x.shape, dtype=x.dtype, device=x.device)
            for k, (i, j) in enumerate(cells):
                masks[k, :, i:i + patch, j:j + patch] = 1
        else:
            d = x.numel()
            masks = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, *x.shape)
        scores = mask_scores(model, x, f0[n], t[n], masks, lambda xb, m: xb + delta * m, batch_size)
        out[n] = (scores[:, None] * masks.reshape(len(masks), -1)).sum(0).reshape(x.shape)
    return out
