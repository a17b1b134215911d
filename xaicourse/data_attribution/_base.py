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

from .._torch import check_inputs, eval_on
from .._validate import check_bool, check_int, check_labels

__all__ = ["TrainingDataAttribution", "default_loss", "check_loss_fn", "check_data", "check_loss", "n_outputs"]


def default_loss(loss_fn):
    """``loss_fn`` or, when None, ``nn.CrossEntropyLoss()``; refuses non-callables."""
    if loss_fn is None:
        return nn.CrossEntropyLoss()
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()), got {type(loss_fn).__name__}")
    return loss_fn


def check_loss_fn(loss_fn):
    """A required ``loss_fn`` (the functions' positional argument): a callable, not None."""
    if loss_fn is None or not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable loss ℓ(outputs, labels), e.g. nn.CrossEntropyLoss(), "
                        f"got {type(loss_fn).__name__}")
    return loss_fn


def n_outputs(model: nn.Module, x: torch.Tensor) -> int | None:
    """Number of output columns of ``model`` (one forward pass of one example, eval mode, no
    grad, model left as found); None when the output is not (N, K)."""
    with torch.no_grad(), eval_on(model):
        out = model(x[:1])
    return int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None


def check_data(model: nn.Module, inputs, targets, inputs_name: str, targets_name: str):
    """Inputs checked for ``model`` (tensor, dtype, shape, finite, non-empty) and their labels →
    (x, y) on the model's device.

    Integer labels are class indices: shape (n,), each in [0, K) for a model with K output columns.
    Floating targets (a regression loss such as ``nn.MSELoss``) must be finite with one row per input.
    """
    x = check_inputs(model, inputs, inputs_name)
    if not isinstance(targets, torch.Tensor):
        raise TypeError(f"{targets_name} must be a torch.Tensor of shape ({len(x)},) (class indices), "
                        f"got {type(targets).__name__}; convert with torch.as_tensor({targets_name})")
    if targets.dim() == 0 or len(targets) != len(x):
        raise ValueError(f"{targets_name} must have one entry per row of {inputs_name} ({len(x)}), "
                         f"got shape {tuple(targets.shape)}")
    if targets.dtype.is_floating_point:
        if not torch.isfinite(targets).all():
            raise ValueError(f"{targets_name} contains NaN or inf values")
    else:
        k = n_outputs(model, x)
        check_labels(targets_name, targets, len(x), k if k is not None and k > 1 else None)
    return x, targets.to(x.device)


def check_loss(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor, labels_name: str = "labels"):
    """``loss_fn`` evaluated once on the first example (eval mode, no grad): a loss that cannot take
    the model's outputs and these labels (float labels for a cross-entropy, a wrong shape) is
    reported now, naming the argument, instead of as a raw error deep inside a solve."""
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()), got {type(loss_fn).__name__}")
    try:
        with torch.no_grad(), eval_on(model):
            val = loss_fn(model(x[:1]), y[:1])
    except Exception as err:  # noqa: BLE001 — the loss's own message, with the argument to fix
        kind = "floating" if y.dtype.is_floating_point else "integer"
        raise ValueError(f"loss_fn cannot take the model's outputs and {labels_name} ({kind} values of shape "
                         f"{tuple(y.shape)}): {type(err).__name__}: {err}. Class labels for a cross-entropy must "
                         f"be integers: convert with {labels_name}.long()") from err
    if not isinstance(val, torch.Tensor) or val.numel() != 1:
        raise ValueError(f"loss_fn must return the loss of one example as a scalar (or a 1-element tensor with "
                         f"reduction='none'), got {type(val).__name__} of shape {tuple(getattr(val, 'shape', ()))}")


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
