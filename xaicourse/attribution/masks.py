"""Optimisation-based explanations: meaningful perturbation masks (Fong & Vedaldi 2017).

Instead of reading relevance off gradients, *learn* which region matters: a mask M ∈ [0, 1]^{H×W}
blends the image with a reference x₀ (a blurred copy, a constant or noise),

    φ(x; M) = x ⊙ M + x₀ ⊙ (1 − M),

and is optimised so that deleting the smallest, smoothest region kills the target's score:

    "delete":   min_M  p_t(φ(x; M)) + λ₁ ‖1 − M‖₁ / |Λ| + λ₂ TV_β(M)
    "preserve": min_M −p_t(φ(x; M)) + λ₁ ‖M‖₁ / |Λ| + λ₂ TV_β(M)

with p_t the softmax probability and TV_β(M) = mean over pixels of |∂_u M|^β + |∂_v M|^β
(``maps.total_variation(M, beta=β, reduction="mean")``).
M = upsample(σ(θ)) from a coarse grid (``mask_size``), optimised with Adam. The attribution is the
deleted region 1 − M ("delete") or the kept region M ("preserve"), shaped like ``inputs``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from .. import maps
from .._torch import (check_inputs, eval_on, resolve_baselines, resolve_target, scores, select, threads_for,
                      torch_threads)
from .._validate import check_bool, check_choice, check_int, check_real

__all__ = ["meaningful_perturbation", "total_variation"]


def total_variation(mask: torch.Tensor, beta: float = 3.0) -> torch.Tensor:
    """TV_β of masks (N, 1, H, W) → (N,): mean |M[i+1,j] − M[i,j]|^β + mean |M[i,j+1] − M[i,j]|^β
    — ``maps.total_variation(mask, beta=beta, reduction="mean")``."""
    return maps.total_variation(mask, beta=beta, reduction="mean")


def _old_baseline(baselines, old: dict):
    """The deprecated baseline= ("blur" | "constant" | "noise") and value= → baselines."""
    if not old:
        return baselines
    unknown = set(old) - {"baseline", "value"}
    if unknown:
        raise TypeError(f"meaningful_perturbation got unexpected keyword arguments {sorted(unknown)}")
    warnings.warn("meaningful_perturbation(baseline=..., value=...) is deprecated; use baselines= "
                  "(\"blur\", \"noise\", a number, a tensor)", DeprecationWarning, stacklevel=3)
    kind = old.get("baseline", "constant" if "value" in old else "blur")
    check_choice("baseline", kind, ("blur", "constant", "noise"))
    return float(check_real("value", old.get("value", 0.0))) if kind == "constant" else kind


def meaningful_perturbation(model: nn.Module, inputs: torch.Tensor, target=None, *, mode: str = "delete",
                            baselines="blur", l1: float = 0.05, tv: float = 0.2, tv_beta: float = 3.0,
                            n_steps: int = 150, lr: float = 0.1, mask_size: int | None = None,
                            sigma: float = 4.0, seed: int = 0, return_mask: bool = False, **old) -> torch.Tensor:
    """Meaningful-perturbation mask for images (N, C, H, W), returned shaped like ``inputs``.

    mode: "delete" (find the region whose removal destroys p_t; attribution 1 − M) or "preserve"
        (the smallest region that alone keeps p_t; attribution M).
    baselines: x₀ — "blur" (Gaussian, std ``sigma`` px), "noise" (U(0, 1) from ``seed``), "zero",
        "mean", a number (a constant image) or a tensor (``_torch.resolve_baselines``; the old
        ``baseline="constant"`` + ``value=v`` is ``baselines=v``).
    target: int, one per sample, or None (the predicted class).
    l1 / tv: λ₁ (area) and λ₂ (smoothness) weights; tv_beta: β. n_steps / lr: Adam on θ.
    mask_size: side of the coarse mask grid (default ⌈H/4⌉), upsampled bilinearly.
    return_mask: return M (N, 1, H, W) itself instead of the attribution.

    The samples are optimised together (their losses are independent). Deterministic; the model's
    parameters are frozen and its state left as found. Different λ (and different x₀) give
    different masks: the explanation is the optimum of a chosen objective, not a property of the model.
    """
    baselines = _old_baseline(baselines, old)
    x = check_inputs(model, inputs).detach()
    if x.dim() != 4:
        raise ValueError(f"inputs must be images (N, C, H, W) for a spatial mask, got shape {tuple(x.shape)}")
    check_choice("mode", mode, ("delete", "preserve"))
    return_mask = check_bool("return_mask", return_mask)
    l1 = check_real("l1", l1, min=0.0)
    tv = check_real("tv", tv, min=0.0)
    tv_beta = check_real("tv_beta", tv_beta, min=1.0)
    n_steps = check_int("n_steps", n_steps, min=1)
    lr = check_real("lr", lr, min=0.0, min_inclusive=False)
    H, W = x.shape[2:]
    mask_size = -(-max(H, W) // 4) if mask_size is None else check_int("mask_size", mask_size, min=1, max=max(H, W))
    seed = check_int("seed", seed, min=0)
    x0 = resolve_baselines(x, baselines, sigma=sigma, seed=seed)
    with eval_on(model, freeze=True), torch_threads(threads_for(x.device, x.numel())):
        t = resolve_target(model, x, target)
        theta = torch.full((len(x), 1, min(mask_size, H), min(mask_size, W)), 2.0, dtype=x.dtype, device=x.device,
                           requires_grad=True)
        opt = torch.optim.Adam([theta], lr=lr)

        def mask_of(th):
            return nn.functional.interpolate(torch.sigmoid(th), size=(H, W), mode="bilinear", align_corners=False)

        for _ in range(n_steps):
            m = mask_of(theta)
            p = select(torch.softmax(scores(model, x * m + x0 * (1 - m)), 1), t)
            area = (1 - m).flatten(1).mean(1) if mode == "delete" else m.flatten(1).mean(1)
            loss = (p if mode == "delete" else -p) + l1 * area + tv * total_variation(m, tv_beta)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
        m = mask_of(theta).detach()
    if return_mask:
        return m.to(inputs.device)
    attr = (1 - m) if mode == "delete" else m
    return attr.expand_as(x).contiguous().to(inputs.device)
