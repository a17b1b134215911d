"""Planted ground truth for judging data attribution: flipped labels and backdoor triggers.

Attribution scores cannot be checked against a true answer on clean data, so we plant one:

* ``flip_labels`` — relabel a random fraction of the training set; a good method ranks the flipped
  points first (by self-influence, |α|, loss, ...). ``detection_curve`` reports the fraction of
  flipped points found after inspecting the top x % of the ranking (random inspection finds x %).
* ``add_trigger`` / ``plant_backdoor`` — stamp a small patch on a few training images and relabel
  them to a target class; the model learns "patch → target". A triggered test image's strongest
  proponents should be exactly the poisoned points: ``recall_at_k`` with k = number poisoned.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validate import check_int, check_real

__all__ = ["flip_labels", "detection_curve", "detection_rate", "add_trigger", "plant_backdoor", "recall_at_k",
           "Backdoor"]


def flip_labels(labels: torch.Tensor, fraction: float, n_classes: int, seed: int = 0):
    """Give ``round(fraction · N)`` random points a different random class.

    Returns ``(noisy_labels (N,), flipped (N,) bool)``; the original tensor is not changed.
    """
    fraction = check_real("fraction", fraction, min=0.0, max=1.0)
    n_classes = check_int("n_classes", n_classes, min=2)
    g = torch.Generator().manual_seed(int(seed))
    n = len(labels)
    idx = torch.randperm(n, generator=g)[:round(fraction * n)]
    noisy = labels.clone()
    shift = torch.randint(1, n_classes, (len(idx),), generator=g)
    noisy[idx] = (labels[idx] + shift) % n_classes
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[idx] = True
    return noisy, flipped


def detection_curve(scores: torch.Tensor, flagged: torch.Tensor, fractions=None):
    """Fraction of the flagged points found after inspecting the top-scoring x % of points.

    scores (N,): higher = inspect first. flagged (N,) bool: the planted points.
    fractions: the x values (default 0, 0.01, ..., 1). Returns ``(fractions, found)`` tensors;
    random inspection gives found = x on average.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64).flatten()
    flagged = torch.as_tensor(flagged, dtype=torch.bool).flatten()
    if len(scores) != len(flagged):
        raise ValueError(f"scores and flagged must have the same length, got {len(scores)} and {len(flagged)}")
    if not flagged.any():
        raise ValueError("flagged marks no point: nothing to detect")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    fr = torch.linspace(0, 1, 101, dtype=torch.float64) if fractions is None else \
        torch.as_tensor(fractions, dtype=torch.float64)
    order = torch.argsort(scores, descending=True, stable=True)
    hits = torch.cat([torch.zeros(1, dtype=torch.float64), flagged[order].double().cumsum(0)])
    k = torch.round(fr * len(scores)).long().clamp(0, len(scores))
    return fr, hits[k] / flagged.sum()


def detection_rate(scores, flagged, fraction: float = 0.1) -> float:
    """Fraction of flagged points among the top ``fraction`` of ``scores`` (recall at x %)."""
    return float(detection_curve(scores, flagged, [fraction])[1][0])


def add_trigger(images: torch.Tensor, size: int = 2, value: float = 1.0, corner: str = "bottom-right"):
    """A copy of ``images`` (N, C, H, W) with a ``size``×``size`` patch of ``value`` in a corner."""
    size = check_int("size", size, min=1)
    out = images.clone()
    H, W = images.shape[-2:]
    rows = slice(H - size, H) if corner.startswith("bottom") else slice(0, size)
    cols = slice(W - size, W) if corner.endswith("right") else slice(0, size)
    out[..., rows, cols] = value
    return out


@dataclass
class Backdoor:
    """Output of ``plant_backdoor``: the poisoned training set and which points were poisoned."""
    inputs: torch.Tensor
    targets: torch.Tensor
    poisoned: torch.Tensor  # (N,) bool
    target_class: int
    size: int
    value: float


def plant_backdoor(inputs: torch.Tensor, targets: torch.Tensor, n_poison: int, target_class: int,
                   size: int = 2, value: float = 1.0, seed: int = 0) -> Backdoor:
    """Stamp the trigger on ``n_poison`` random training images not of ``target_class`` and relabel
    them ``target_class``. Returns a ``Backdoor`` (copies; the originals are not changed)."""
    n_poison = check_int("n_poison", n_poison, min=1)
    g = torch.Generator().manual_seed(int(seed))
    candidates = torch.nonzero(targets != target_class).flatten()
    if n_poison > len(candidates):
        raise ValueError(f"n_poison={n_poison} exceeds the {len(candidates)} images outside the target class")
    idx = candidates[torch.randperm(len(candidates), generator=g)[:n_poison]]
    x, y = inputs.clone(), targets.clone()
    x[idx] = add_trigger(inputs[idx], size, value)
    y[idx] = target_class
    poisoned = torch.zeros(len(inputs), dtype=torch.bool)
    poisoned[idx] = True
    return Backdoor(x, y, poisoned, int(target_class), size, value)


def recall_at_k(scores: torch.Tensor, flagged: torch.Tensor, k: int | None = None) -> float:
    """Fraction of the flagged points among the ``k`` highest scores (k = number flagged by default)."""
    flagged = torch.as_tensor(flagged, dtype=torch.bool).flatten()
    k = int(flagged.sum()) if k is None else check_int("k", k, min=1)
    top = torch.topk(torch.as_tensor(scores).flatten(), k).indices
    return float(flagged[top].sum()) / float(min(k, int(flagged.sum())))
