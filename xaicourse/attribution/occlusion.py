"""Occlusion (Zeiler & Fergus 2014; captum ``Occlusion``).

Slide a window over the input; at each position replace the window by a baseline value
and record the drop of the target score, d = f_t(x) − f_t(x with window occluded). Each
feature's attribution is the average drop over all windows that covered it:

    R_d = Σ_{windows W ∋ d} d_W / #{windows W ∋ d}

Window positions along an axis of length L with window w and stride s are 0, s, 2s, …,
⌈(L − w)/s⌉·s (the last window may hang over the edge and is cut), as in captum.
"""
from __future__ import annotations

import math

import torch

from ._utils import check_batched, mask_scores, select, target_index


def _as_tuple(v, shape, name, fill_first=None):
    if isinstance(v, int):
        if len(shape) == 1:
            return (v,)
        return (shape[0] if fill_first is None else fill_first,) + (v,) * (len(shape) - 1)
    v = tuple(int(a) for a in v)
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
def occlusion(model, inputs: torch.Tensor, target, window=3, stride=1, baseline: float = 0.0,
              batch_size: int = 64) -> torch.Tensor:
    """Occlusion map shaped like ``inputs`` (N, C, H, W) or (N, D).

    window / stride: int (images: a k×k spatial window over all channels) or a tuple over
    the per-sample dims (C, h, w) or spatial dims (h, w). stride ≤ window where the window
    is smaller than the input. baseline: the fill value (e.g. 0 = black, 0.5 = grey).
    batch_size: occluded copies per model call.
    """
    check_batched(model, inputs)
    shape = tuple(inputs.shape[1:])
    win = _as_tuple(window, shape, "window")
    st = _as_tuple(stride, shape, "stride", fill_first=1)
    for L, w, s in zip(shape, win, st):
        if not 1 <= w <= L:
            raise ValueError(f"window {win} must fit the input's per-sample shape {shape}")
        if s < 1 or (w < L and s > w):
            raise ValueError(f"stride {st} must be ≥ 1 and ≤ window {win} (else features are skipped)")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    masks = occlusion_masks(shape, win, st).to(inputs.device)
    counts = masks.sum(0).to(inputs.dtype)
    mf = masks.to(inputs.dtype)
    base_out = model(inputs)
    t = target_index(target, len(inputs), base_out.shape[1])
    f0 = select(base_out, t)
    out = torch.zeros_like(inputs)
    for n in range(len(inputs)):
        d = mask_scores(model, inputs[n], f0[n], t[n], mf,
                        lambda xb, m: xb * (1 - m) + baseline * m, batch_size)
        out[n] = (d.reshape(-1, *([1] * len(shape))) * mf).sum(0) / counts
    return out
