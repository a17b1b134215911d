"""Arithmetic on images and attribution maps that several topics share (foundation layer).

One function per idea, so that lecture 01's total variation, lecture 04's blurred baseline,
lecture 08's blur fill and lecture 09's rank correlation are the same code:

* ``gaussian_blur``: separable Gaussian blur of (N, C, H, W);
* ``total_variation``: anisotropic / isotropic TV with an exponent β and a sum or mean reduction;
* ``rank_correlation``: Spearman's ρ per sample of two batches of maps;
* ``to_numpy_image``: a (C, H, W) / (H, W) tensor or array as an array ``imshow`` accepts.

Nothing here imports the rest of the package.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ._validate import as_tensor, check_choice, check_real

__all__ = ["gaussian_blur", "total_variation", "rank_correlation", "to_numpy_image", "TV_KINDS"]

TV_KINDS = ("anisotropic", "isotropic")


def gaussian_blur(x, sigma: float, *, truncate: float = 3.0) -> torch.Tensor:
    """Blur each channel of images (N, C, H, W) with a Gaussian of std ``sigma`` pixels.

    Separable kernel of radius ⌈truncate·σ⌉ (at least 1; scipy's ``gaussian_filter`` calls this
    ``truncate`` too), normalised to sum 1, so constants are preserved; reflect padding, or
    replicate padding when the image is too small to reflect. Same dtype and device as ``x``.
    """
    x = as_tensor("x", x, ndim=4, floating=True, finite=True)
    sigma = check_real("sigma", sigma, min=0.0, min_inclusive=False)
    truncate = check_real("truncate", truncate, min=0.0, min_inclusive=False)
    radius = max(1, int(math.ceil(truncate * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C, (H, W) = x.shape[1], x.shape[-2:]
    mode = "reflect" if radius < min(H, W) else "replicate"
    y = F.pad(x, (radius, radius, radius, radius), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)


def total_variation(x, kind: str = "anisotropic", *, beta: float = 1.0, reduction: str = "sum",
                    eps: float = 1e-12) -> torch.Tensor:
    """Total variation of each image → (N,), differentiable (autograd gives the subgradient).

    x: (N, C, H, W), or (C, H, W) / (H, W) as one image (→ shape (1,)).
    With forward differences d_v = x[.., i+1, j] − x[.., i, j] and d_u = x[.., i, j+1] − x[.., i, j]:

    * ``kind="anisotropic"``: Σ |d_u|^β + Σ |d_v|^β  (β = 1: lecture 01's TV; β = 3 with
      ``reduction="mean"``: Fong & Vedaldi's TV_β for masks, each sum replaced by its mean);
    * ``kind="isotropic"``: Σ (d_u² + d_v² + eps)^{β/2}, the differences zero past the last
      row/column (eps keeps the gradient finite at 0; it adds at most eps^{β/2} per pixel).

    reduction: "sum" over channels and pixels, or "mean" (each of the two sums divided by its
    number of differences).
    """
    check_choice("kind", kind, TV_KINDS)
    check_choice("reduction", reduction, ("sum", "mean"))
    beta = check_real("beta", beta, min=0.0, min_inclusive=False)
    eps = check_real("eps", eps, min=0.0)
    x = as_tensor("x", x, floating=True, finite=True)
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), (C, H, W) or (H, W), got shape {tuple(x.shape)}")
    dv = x[..., 1:, :] - x[..., :-1, :]
    du = x[..., :, 1:] - x[..., :, :-1]
    if kind == "anisotropic":
        parts = [du.abs().pow(beta), dv.abs().pow(beta)]
        agg = (lambda t: t.flatten(1).mean(1)) if reduction == "mean" else (lambda t: t.flatten(1).sum(1))
        return agg(parts[0]) + agg(parts[1])
    per_pixel = (F.pad(du, (0, 1)) ** 2 + F.pad(dv, (0, 0, 0, 1)) ** 2 + eps).pow(beta / 2)
    return per_pixel.flatten(1).mean(1) if reduction == "mean" else per_pixel.flatten(1).sum(1)


def _ranks(a: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties averaged, like scipy.stats.rankdata) along dim 1."""
    out = torch.empty_like(a)
    for n in range(len(a)):
        v, order = torch.sort(a[n])
        _, inv, counts = torch.unique_consecutive(v, return_inverse=True, return_counts=True)
        ends = counts.cumsum(0).double()
        avg = ends - (counts.double() - 1) / 2
        out[n, order] = avg[inv]
    return out


def rank_correlation(a, b) -> torch.Tensor:
    """Spearman's ρ between a[n] and b[n] for each sample → (N,) float64 on the CPU.

    a, b: batches of maps (N, ...) of the same shape, flattened per sample; ties get average ranks
    (as ``scipy.stats.spearmanr``). A constant map has no ranking, where scipy returns NaN: ρ is
    1 when both maps of a pair are constant (they order nothing differently) and 0 when only one
    is (no agreement to measure). A single map is a batch of one: pass ``a[None]``.
    """
    a = as_tensor("a", a, finite=True)
    b = as_tensor("b", b, finite=True)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"a and b must be batches of maps (N, ...), got shape {tuple(a.shape)}; "
                         "for one map pass a[None] and b[None]")
    if a[0].numel() < 2:
        raise ValueError(f"each map needs at least 2 entries to be ranked, got shape {tuple(a.shape)}")
    a, b = a.detach().flatten(1).double().cpu(), b.detach().flatten(1).double().cpu()
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    na, nb = ra.norm(dim=1), rb.norm(dim=1)
    rho = (ra * rb).sum(1) / (na * nb).clamp_min(1e-300)
    return torch.where((na == 0) | (nb == 0), ((na == 0) & (nb == 0)).double(), rho)


def to_numpy_image(img) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array → (H, W) or (H, W, 3) float array for ``imshow``."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"img must be (C, H, W) with C in (1, 3) or (H, W), got shape {a.shape}")
    return a
