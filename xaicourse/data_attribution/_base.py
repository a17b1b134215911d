"""What every training-data attribution object shares (captum's ``influence/_core`` and dattri's
``algorithm/base.py`` shape): model + loss + training data held once, the training side cached,
then ``attribute(inputs, labels)``, ``self_influence()`` and ``top_k(...)``.

**One sign convention.** ``attribute(...)[j, i] > 0`` means training point i *helped* test point j:
training on it lowered the test loss (or, for representer points, raised the explained logit).
The papers' own quantities stay available by name (``InfluenceFunction.i_up_loss`` — Koh & Liang's
I_up,loss, positive = harmful; TracIn's score is already a proponent score; representer α and
k(x_i, x_t) as ``alpha_`` and ``kernel``).
"""
from __future__ import annotations

import torch
from torch import nn

from .._validate import check_bool, check_int

__all__ = ["TrainingDataAttribution", "default_loss"]


def default_loss(loss_fn):
    """``loss_fn`` or, when None, ``nn.CrossEntropyLoss()``; refuses non-callables."""
    if loss_fn is None:
        return nn.CrossEntropyLoss()
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()), got {type(loss_fn).__name__}")
    return loss_fn


class TrainingDataAttribution:
    """Base class. Subclasses implement ``attribute`` and ``self_influence`` and set ``n_train``."""

    n_train: int

    def attribute(self, inputs, labels) -> torch.Tensor:  # pragma: no cover - abstract
        """Scores (n_test, n_train); positive = the training point helped the test prediction."""
        raise NotImplementedError

    def self_influence(self) -> torch.Tensor:  # pragma: no cover - abstract
        """Each training point's score on itself → (n_train,)."""
        raise NotImplementedError

    def top_k(self, inputs, labels, k: int, *, proponents: bool = True):
        """The ``k`` strongest proponents (largest scores; ``proponents=False``: the strongest
        opponents, most negative scores) of each test point → ``(indices (n_test, k), scores
        (n_test, k))``, strongest first (captum's ``influence(..., k=, proponents=)`` order)."""
        k = check_int("k", k, min=1, max=self.n_train)
        proponents = check_bool("proponents", proponents)
        S = self.attribute(inputs, labels)
        scores, idx = torch.topk(S, k, dim=1, largest=proponents)
        return idx, scores

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_train={getattr(self, 'n_train', '?')})"
