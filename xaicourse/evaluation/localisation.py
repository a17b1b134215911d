"""Lecture 08 · agreement with ground truth: does the map point at the object?

* ``pointing_game`` (Zhang et al. 2018): is the map's maximum on the object?
* ``mask_iou``: IoU of the map's top-k features with the ground-truth mask;
* ``mass_on_mask``: the share of |attribution| inside a mask (relevance mass accuracy, Arras et
  al. 2022; lecture 08 uses it on the Clever-Hans watermark).

All three use |r| by default (``absolute=True``), as lecture 08 teaches: a strongly negative pixel
is also "looked at". Pass ``absolute=False`` for the signed map (e.g. to compare with Quantus's
``PointingGame``, which takes the map as given, or for the token scores of lecture 08 §9).

attributions: (N, C, H, W) for masks (N, H, W) (channels summed: Σ_c |A_c| with ``absolute``), or
any (N, ...) shaped like the masks. masks: (N, ...) bool (or 0/1), none empty.
"""
from __future__ import annotations

import torch

from .._validate import as_tensor, check_int, check_real
from ._common import map_and_mask

__all__ = ["pointing_game", "mask_iou", "mass_on_mask"]


def pointing_game(attributions, masks, *, tolerance: int = 0, absolute: bool = True) -> torch.Tensor:
    """Pointing game (Zhang et al. 2018): is the map's maximum on the object? (N,) in [0, 1].

    hit_n = 1 if argmax r_n lies in mask_n (grown by ``tolerance`` pixels for 2-D masks (N, H, W);
    0 ≤ tolerance ≤ max(H, W), other masks take tolerance=0 only). Ties: the
    fraction of the maximal locations inside the mask (a random tie break's expected hit; a
    constant map scores the mask's area share, not 1).
    """
    tolerance = check_int("tolerance", tolerance, min=0)
    m0 = as_tensor("masks", masks, min_ndim=2, floating=False)
    if m0.dim() == 3:   # grown by max(H, W) pixels a mask already covers the whole image
        tolerance = check_int("tolerance", tolerance, min=0, max=max(m0.shape[1:]))
    a, m = map_and_mask(attributions, masks, absolute)
    if tolerance:
        if m0.dim() != 3:
            raise ValueError(f"tolerance needs 2-D masks (N, H, W), got masks of shape {tuple(m0.shape)}; "
                             "use tolerance=0")
        mm = m.reshape(m0.shape).double()[:, None]
        m = (torch.nn.functional.max_pool2d(mm, 2 * tolerance + 1, 1, tolerance)[:, 0] > 0).flatten(1)
    top = a == a.max(1, keepdim=True).values
    return ((top & m).sum(1).double() / top.sum(1).double()).cpu()


def mask_iou(attributions, masks, top_fraction: float | None = None, *, absolute: bool = True) -> torch.Tensor:
    """IoU of the map's top-k features with the ground-truth mask, (N,).

    k = round(top_fraction · D) (D features per sample, at least 1), or |mask_n| when
    ``top_fraction`` is None (then IoU = 1 iff the top |mask| features are exactly the mask).
    IoU = |T ∩ M| / |T ∪ M|. Ties at the k-th value are broken by index (stable sort).
    """
    a, m = map_and_mask(attributions, masks, absolute)
    N, D = a.shape
    if top_fraction is None:
        k = m.sum(1)
    else:
        top_fraction = check_real("top_fraction", top_fraction, min=0.0, max=1.0, min_inclusive=False)
        k = torch.full((N,), max(1, int(round(top_fraction * D))), device=a.device)
    rank = torch.empty(N, D, dtype=torch.long, device=a.device)
    rank.scatter_(1, torch.sort(-a, dim=1, stable=True).indices, torch.arange(D, device=a.device).expand(N, D).contiguous())
    T = rank < k[:, None]
    return ((T & m).sum(1).double() / (T | m).sum(1).double()).cpu()


def mass_on_mask(attributions, masks, *, absolute: bool = True) -> torch.Tensor:
    """Share of the attribution mass inside a mask, (N,): Σ_{i∈M} |r_i| / Σ_i |r_i| (relevance mass
    accuracy, Arras et al. 2022). With ``absolute=False`` only positive relevance counts:
    Σ_{i∈M} r_i⁺ / Σ_i r_i⁺. A map with no mass raises a ValueError."""
    a, m = map_and_mask(attributions, masks, absolute)
    a = a if absolute else a.clamp_min(0)
    tot = a.sum(1)
    if bool((tot <= 0).any()):
        raise ValueError(f"attributions {(tot <= 0).nonzero().flatten().tolist()[:5]} have no "
                         f"{'mass' if absolute else 'positive mass'}: the share is undefined")
    return ((a * m).sum(1) / tot).cpu()
