"""The perturbation family: change part of the input, watch the score move.

* ``perturbation_scores`` (lecture 00) — R_i = f_t(x) − f_t(x + δ e_i), one feature (or patch) at
  a time. As δ → 0, −R_i/δ tends to ∂f_t/∂x_i; for a linear model R_i = −δ w_i exactly.
* ``occlusion`` (lecture 03; Zeiler & Fergus 2014; captum ``Occlusion``) — slide a window over
  the input, replace it by a baseline value and record the drop d = f_t(x) − f_t(x occluded).
  Each feature's attribution is the average drop over the windows that covered it:
  R_d = Σ_{W ∋ d} d_W / #{W ∋ d}. Window positions along an axis of length L with window w and
  stride s are 0, s, 2s, …, ⌈(L − w)/s⌉·s (the last may hang over the edge and is cut), as in captum.

Both score a stack of masked copies of one input in chunks (``mask_scores``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._torch import (check_inputs, deprecated_kwargs, maybe_eval, resolve_baselines, scores, select,
                      target_scores)
from .._validate import check_int, check_real

__all__ = ["perturbation_scores", "occlusion", "occlusion_masks", "mask_scores"]


def mask_scores(model, x: torch.Tensor, f0: torch.Tensor, target: torch.Tensor, masks: torch.Tensor,
                perturb, batch_size: int) -> torch.Tensor:
    """f0 − f_target(perturb(x, m)) for every mask m in ``masks`` (K, *x.shape), in chunks.

    ``perturb(x[None], m)`` builds a chunk of perturbed inputs from a chunk of masks.
    Returns a (K,) tensor of output drops.
    """
    out = []
    for s in range(0, len(masks), batch_size):
        m = masks[s:s + batch_size]
        out.append(f0 - select(scores(model, perturb(x[None], m)), target.expand(len(m))))
    return torch.cat(out)


def _float_dtype(x: torch.Tensor) -> torch.dtype:
    return x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()


@torch.no_grad()
def perturbation_scores(model: nn.Module, inputs: torch.Tensor, target=None, *, delta: float = 1.0, patch: int = 1,
                        batch_size: int = 256) -> torch.Tensor:
    """R_i = f_t(x) − f_t(x + δ e_i) for every input feature i, shaped like ``inputs``.

    inputs: (N, C, H, W) or (N, D). target: int or one per sample; f_t is logit ``target``.
    delta: the perturbation size δ (non-zero). patch: for images, perturb p×p patches of all
    channels at once (the score is written to every feature of the patch).
    batch_size: perturbed copies per model call. model: an nn.Module or any callable returning
    (N, n_outputs) scores; target None = the predicted class.
    """
    x_all = check_inputs(model, inputs)
    delta = check_real("delta", delta)
    if delta == 0:
        raise ValueError("delta must be non-zero")
    patch = check_int("patch", patch, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    with maybe_eval(model):
        f0, t = target_scores(model, x_all, target)
        out = torch.zeros_like(x_all)
        for n in range(len(x_all)):
            x = x_all[n]
            if x.dim() == 3 and patch > 1:
                _, H, W = x.shape
                cells = [(i, j) for i in range(0, H, patch) for j in range(0, W, patch)]
                masks = torch.zeros(len(cells), *x.shape, dtype=x.dtype, device=x.device)
                for k, (i, j) in enumerate(cells):
                    masks[k, :, i:i + patch, j:j + patch] = 1
            else:
                d = x.numel()
                masks = torch.eye(d, dtype=x.dtype, device=x.device).reshape(d, *x.shape)
            drops = mask_scores(model, x, f0[n], t[n], masks, lambda xb, m: xb + delta * m, batch_size)
            out[n] = (drops[:, None] * masks.reshape(len(masks), -1)).sum(0).reshape(x.shape)
    return out.to(inputs.device)


def _as_tuple(v, shape, name, fill_first=None):
    if not isinstance(v, (tuple, list)):
        v = check_int(name, v, min=1)                     # floats, None, bools refused by name
        if len(shape) == 1:
            return (v,)
        return (shape[0] if fill_first is None else fill_first,) + (v,) * (len(shape) - 1)
    v = tuple(check_int(name, a, min=1) for a in v)
    if len(v) == len(shape) - 1 and len(shape) > 1:
        v = (shape[0] if fill_first is None else fill_first,) + v
    if len(v) != len(shape):
        raise ValueError(f"{name} must be an int or have {len(shape)} (or {len(shape) - 1}) entries for inputs "
                         f"of per-sample shape {tuple(shape)}, got {v}")
    return v


def occlusion_masks(shape, window, stride) -> torch.Tensor:
    """All window masks for one sample of ``shape``: bool tensor (n_windows, *shape)."""
    starts = []
    for L, w, s in zip(shape, window, stride):
        n = math.ceil((L - w) / s) + 1
        starts.append([k * s for k in range(n)])
    grids = torch.meshgrid(*[torch.tensor(s) for s in starts], indexing="ij")
    corners = torch.stack([g.reshape(-1) for g in grids], 1)  # (n_windows, ndim)
    masks = torch.zeros((len(corners),) + tuple(shape), dtype=torch.bool)
    for k, c in enumerate(corners.tolist()):
        masks[(k,) + tuple(slice(a, a + w) for a, w in zip(c, window))] = True
    return masks


@torch.no_grad()
def occlusion(model: nn.Module, inputs: torch.Tensor, target=None, *, window=3, stride=1, baselines=0.0,
              batch_size: int = 64, sigma: float = 2.0, seed: int = 0, **old) -> torch.Tensor:
    """Occlusion map shaped like ``inputs`` (N, C, H, W) or (N, D).

    window / stride: int (images: a k×k spatial window over all channels) or a tuple over the
    per-sample dims (C, h, w) or spatial dims (h, w). stride ≤ window where the window is
    smaller than the input. baselines: what an occluded window shows — a number (0 = black,
    0.5 = grey), a tensor broadcastable to the inputs, or "zero" / "blur" / "noise" / "mean"
    (``_torch.resolve_baselines`` with ``sigma`` / ``seed``; ``baseline=`` is the deprecated name).
    batch_size: occluded copies per model call. model: an nn.Module or any callable returning
    (N, n_outputs) scores (no gradients needed, so integer inputs are fine too); target None =
    the predicted class. Results are in the inputs' float dtype (the default dtype for integer
    inputs).
    """
    deprecated_kwargs("occlusion", old, {"baseline": "baselines"})
    if old:
        if set(old) != {"baselines"}:
            raise TypeError(f"occlusion got unexpected keyword arguments {sorted(set(old) - {'baselines'})}")
        baselines = old["baselines"]
    x_all = check_inputs(model, inputs, allow_int=True)
    shape = tuple(x_all.shape[1:])
    win = _as_tuple(window, shape, "window")
    st = _as_tuple(stride, shape, "stride", fill_first=1)
    for L, w, s in zip(shape, win, st):
        if not w <= L:
            raise ValueError(f"window {win} must fit the input's per-sample shape {shape}")
        if w < L and s > w:
            raise ValueError(f"stride {st} must be ≤ window {win} (else features are skipped)")
    base = resolve_baselines(x_all, baselines, sigma=sigma, seed=seed)
    batch_size = check_int("batch_size", batch_size, min=1)
    masks = occlusion_masks(shape, win, st).to(x_all.device)
    fdt = _float_dtype(x_all)
    counts = masks.sum(0).to(fdt)
    mf = masks.to(fdt)
    with maybe_eval(model):
        f0, t = target_scores(model, x_all, target)
        out = torch.zeros(x_all.shape, dtype=fdt, device=x_all.device)
        for n in range(len(x_all)):
            b = base[n]
            d = mask_scores(model, x_all[n], f0[n], t[n], masks,
                            lambda xb, m, b=b: torch.where(m, b[None], xb), batch_size)
            out[n] = (d.to(fdt).reshape(-1, *([1] * len(shape))) * mf).sum(0) / counts
    return out.to(inputs.device if isinstance(inputs, torch.Tensor) else out.device)
