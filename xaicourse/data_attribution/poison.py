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

import warnings
from dataclasses import dataclass

import torch

from .._validate import as_tensor, check_choice, check_int, check_labels, check_real

__all__ = ["flip_labels", "detection_curve", "detection_rate", "add_trigger", "plant_backdoor", "recall_at_k",
           "Backdoor", "CORNERS"]


def _labels(name, labels, n=None):
    """Integer class labels (N,) → LongTensor (tensor, list or array accepted)."""
    if not isinstance(labels, torch.Tensor):
        labels = as_tensor(name, labels, floating=False)
    return check_labels(name, labels, len(labels) if n is None else n)


def flip_labels(labels: torch.Tensor, fraction: float, n_classes: int, seed: int = 0):
    """Give ``round(fraction · N)`` random points a different random class.

    labels (N,) integer classes in [0, n_classes); fraction in [0, 1]; seed an int ≥ 0.
    Returns ``(noisy_labels (N,), flipped (N,) bool)``; the original tensor is not changed.
    """
    fraction = check_real("fraction", fraction, min=0.0, max=1.0)
    n_classes = check_int("n_classes", n_classes, min=2)
    seed = check_int("seed", seed, min=0)
    labels = _labels("labels", labels)
    if len(labels) == 0:
        raise ValueError("labels is empty: nothing to flip")
    if int(labels.min()) < 0 or int(labels.max()) >= n_classes:
        raise ValueError(f"labels must lie in [0, n_classes={n_classes}), got values from {int(labels.min())} to "
                         f"{int(labels.max())}; raise n_classes to the number of classes")
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    idx = torch.randperm(n, generator=g)[:round(fraction * n)]
    noisy = labels.clone()
    shift = torch.randint(1, n_classes, (len(idx),), generator=g).to(labels.device)
    noisy[idx.to(labels.device)] = (labels[idx.to(labels.device)] + shift) % n_classes
    flipped = torch.zeros(n, dtype=torch.bool)
    flipped[idx] = True
    return noisy, flipped


def _scores_flags(scores, flagged):
    scores = as_tensor("scores", scores, floating=True, ndim=1).detach().double().cpu()
    if not isinstance(flagged, torch.Tensor):
        flagged = as_tensor("flagged", flagged, floating=False)
    if flagged.dtype != torch.bool:
        if flagged.dtype.is_floating_point or not bool(((flagged == 0) | (flagged == 1)).all()):
            raise TypeError(f"flagged must be a boolean mask (N,), got dtype {flagged.dtype}")
        flagged = flagged.bool()
    if flagged.dim() != 1:
        raise ValueError(f"flagged must be a 1-D boolean mask (N,), got shape {tuple(flagged.shape)}")
    flagged = flagged.cpu()
    if len(scores) != len(flagged):
        raise ValueError(f"scores and flagged must have the same length, got {len(scores)} and {len(flagged)}")
    return scores, flagged


def detection_curve(scores: torch.Tensor, flagged: torch.Tensor, fractions=None):
    """Fraction of the flagged points found after inspecting the top-scoring x % of points.

    scores (N,): higher = inspect first (finite). flagged (N,) bool: the planted points.
    fractions: the x values in [0, 1] (default 0, 0.01, ..., 1). Returns ``(fractions, found)``
    tensors; random inspection gives found = x on average.
    """
    scores, flagged = _scores_flags(scores, flagged)
    if not flagged.any():
        raise ValueError("flagged marks no point: nothing to detect")
    if fractions is None:
        fr = torch.linspace(0, 1, 101, dtype=torch.float64)
    else:
        fr = as_tensor("fractions", fractions, floating=True).double().flatten().cpu()
        if bool((fr < 0).any()) or bool((fr > 1).any()):
            raise ValueError(f"fractions must lie in [0, 1], got values from {float(fr.min())} to {float(fr.max())}")
    order = torch.argsort(scores, descending=True, stable=True)
    hits = torch.cat([torch.zeros(1, dtype=torch.float64), flagged[order].double().cumsum(0)])
    k = torch.round(fr * len(scores)).long().clamp(0, len(scores))
    return fr, hits[k] / flagged.sum()


def detection_rate(scores, flagged, fraction: float = 0.1) -> float:
    """Fraction of flagged points among the top ``fraction`` of ``scores`` (recall at x %)."""
    fraction = check_real("fraction", fraction, min=0.0, max=1.0)
    return float(detection_curve(scores, flagged, [fraction])[1][0])


CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


def add_trigger(images: torch.Tensor, size: int = 2, value: float = 1.0, corner: str = "bottom-right"):
    """A copy of ``images`` (N, C, H, W) with a ``size``×``size`` patch of ``value`` in a corner (one
    of ``CORNERS``). Flat (N, d) data and unbatched images are refused: a patch needs a batch of
    image grids."""
    images = as_tensor("images", images, floating=True)
    if images.dim() != 4:
        raise ValueError(f"images must be a batch of images (N, C, H, W), got shape {tuple(images.shape)}; "
                         f"reshape flat data first (e.g. images.view(-1, 1, 8, 8)), add a batch dim with "
                         f"images[None]")
    size = check_int("size", size, min=1, max=min(images.shape[-2:]))
    value = check_real("value", value)
    corner = check_choice("corner", corner, CORNERS)
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
    labels: torch.Tensor
    poisoned: torch.Tensor  # (N,) bool
    target_class: int
    size: int
    value: float

    @property
    def targets(self) -> torch.Tensor:
        """Deprecated name of ``labels``."""
        warnings.warn("Backdoor.targets is deprecated, use Backdoor.labels", DeprecationWarning, stacklevel=2)
        return self.labels


def plant_backdoor(inputs: torch.Tensor, labels: torch.Tensor, n_poison: int, target_class: int,
                   size: int = 2, value: float = 1.0, seed: int = 0, *, n_classes: int | None = None) -> Backdoor:
    """Stamp the trigger (``add_trigger``) on ``n_poison`` random training images not of
    ``target_class`` and relabel them ``target_class``. inputs: images (N, C, H, W);
    labels (N,); target_class in [0, n_classes) (n_classes default: largest label + 1); seed int ≥ 0.
    Returns a ``Backdoor`` (copies; the originals are not changed)."""
    x0 = as_tensor("inputs", inputs, floating=True)
    if x0.dim() != 4:
        raise ValueError(f"inputs must be a batch of images (N, C, H, W) for a trigger patch, got shape "
                         f"{tuple(x0.shape)}; reshape flat data first, e.g. inputs.view(-1, 1, 8, 8)")
    y0 = _labels("labels", labels, len(x0))
    n_classes = int(y0.max()) + 1 if n_classes is None else check_int("n_classes", n_classes, min=2)
    y0 = check_labels("labels", y0, len(x0), n_classes)
    target_class = check_int("target_class", target_class, min=0, max=n_classes - 1)
    n_poison = check_int("n_poison", n_poison, min=1)
    seed = check_int("seed", seed, min=0)
    g = torch.Generator().manual_seed(seed)
    candidates = torch.nonzero(y0.cpu() != target_class).flatten()
    if n_poison > len(candidates):
        raise ValueError(f"n_poison={n_poison} exceeds the {len(candidates)} images outside the target class")
    idx = candidates[torch.randperm(len(candidates), generator=g)[:n_poison]].to(x0.device)
    x, y = x0.clone(), y0.clone()
    x[idx] = add_trigger(x0[idx], size, value)
    y[idx.to(y.device)] = target_class
    poisoned = torch.zeros(len(x0), dtype=torch.bool)
    poisoned[idx.cpu()] = True
    return Backdoor(x, y, poisoned, target_class, size, value)


def recall_at_k(scores: torch.Tensor, flagged: torch.Tensor, k: int | None = None) -> float:
    """Fraction of the flagged points among the ``k`` highest scores (k = number flagged by default)."""
    scores, flagged = _scores_flags(scores, flagged)
    if not flagged.any():
        raise ValueError("flagged marks no point: nothing to recall")
    k = int(flagged.sum()) if k is None else check_int("k", k, min=1, max=len(scores))
    top = torch.topk(scores, k).indices
    return float(flagged[top].sum()) / float(min(k, int(flagged.sum())))
