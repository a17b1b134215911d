"""Inputs and targets: what a method checks before it runs the model (``check_inputs``), the
one rule for ``target`` (``resolve_target``) and the scores it explains."""
from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from .._validate import as_tensor
from .modules import eval_on, model_device, model_dtype

# ------------------------------------------------------------------ inputs and targets
def is_module(model) -> bool:
    return isinstance(model, nn.Module)


def check_forward(model, name: str = "model"):
    """A model for a method that only *evaluates* it: an nn.Module or any callable
    (a plain function, ``lambda x: torch.as_tensor(clf.predict_proba(x.numpy()))``)."""
    if not callable(model):
        raise TypeError(f"{name} must be a torch.nn.Module or a callable inputs -> (N, n_outputs) scores, "
                        f"got {type(model).__name__}")
    return model


def maybe_eval(model, freeze: bool = False):
    """``eval_on(model)`` for a module, nothing for a plain callable."""
    return eval_on(model, freeze=freeze) if isinstance(model, nn.Module) else contextlib.nullcontext()


def _as_scores(out, n: int, what: str = "model") -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        if isinstance(out, np.ndarray):
            out = torch.as_tensor(out)
        else:
            raise TypeError(f"{what} must return a tensor of scores (N, n_outputs), got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(f"{what} must return (N, n_outputs) scores for a batch of N = {n}, got shape "
                         f"{tuple(out.shape)} (inputs with an extra or missing dimension?)")
    return out


def _first_layer_hint(model) -> str:
    """A hint for an error message only (never used to refuse inputs: a forward may reorder layers)."""
    if not isinstance(model, nn.Module):
        return ""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return f" (the first Linear layer in module order takes {m.in_features} features per sample)"
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return f" (the first {type(m).__name__} layer in module order takes {m.in_channels} channels)"
    return ""


def check_inputs(model, inputs, name: str = "inputs", *, allow_int: bool = False, probe: bool = True
                 ) -> torch.Tensor:
    """Check a batch for ``model`` at the door; return it on the model's device.

    Raises TypeError for a non-tensor, an integer tensor (int images would be scored as garbage;
    ``allow_int=True`` for methods that only evaluate the model: then integer inputs pass for a
    plain callable, as bool features, or for a module with an Embedding — token ids) or a dtype different from the
    model's (float64 inputs for a float32 model), and ValueError for an empty batch, NaN/inf or a
    missing batch dimension. Then (``probe=True``) the model is run once on the first sample, in
    eval mode without gradients: a shape it cannot take is reported with the model's own error,
    and its output must be (1, n_outputs) — so an extra leading dimension cannot slip through.
    ``model`` may be any callable (no dtype check, inputs stay where they are).
    """
    check_forward(model)
    if not isinstance(model, nn.Module) and isinstance(inputs, (np.ndarray, list, tuple)):
        inputs = as_tensor(name, inputs, floating=not allow_int)   # a plain callable: array-likes are fine
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor batch (N, ...), got {type(inputs).__name__}; "
                        f"convert with torch.as_tensor(x, dtype=torch.float32)")
    if allow_int and not inputs.dtype.is_floating_point and inputs.dtype != torch.bool \
            and isinstance(model, nn.Module) and not any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()):
        allow_int = False      # integer *images* for a float network would be scored as garbage
    if allow_int and not inputs.dtype.is_floating_point:
        if inputs.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {inputs.dtype}")
        x = as_tensor(name, inputs, min_ndim=2, floating=False)     # integer or bool: evaluated as given
    else:
        x = as_tensor(name, inputs, min_ndim=2)
    if len(x) == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if isinstance(model, nn.Module):
        want = model_dtype(model)
        if want is not None and x.dtype.is_floating_point and x.dtype != want:
            raise TypeError(f"{name} has dtype {x.dtype} but the model's parameters are {want}; convert with "
                            f"{name}.to({want}) (or the model with model.to({x.dtype}))")
        x = x.to(model_device(model))
    if probe:
        with maybe_eval(model), torch.no_grad():
            try:
                out = model(x[:1])
            except Exception as err:  # noqa: BLE001 — the model's own message, with the shape it got
                raise ValueError(f"the model cannot take {name} of shape {tuple(x.shape)} (per sample "
                                 f"{tuple(x.shape[1:])}): {type(err).__name__}: {err} — {name} must be batched "
                                 f"(N, ...); for a single sample add the batch dimension with {name}[None]"
                                 f"{_first_layer_hint(model)}") from err
        _as_scores(out, 1, f"the model (given {name}[:1] of shape {tuple(x[:1].shape)})")
    return x


def target_index(target, n: int, n_outputs: int) -> torch.Tensor:
    """``target`` (int, sequence or tensor of ints) → LongTensor of shape (n,), range-checked.

    A float such as 3.7 is refused (TypeError), never rounded to a class. (``None`` is resolved
    by ``resolve_target``, which needs the model's prediction.)
    """
    if isinstance(target, bool) or target is None:
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}")
    if isinstance(target, (str, bytes)):
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}")
    try:
        t = target if isinstance(target, torch.Tensor) else torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r} "
                        f"(dtype {t.dtype})")
    if t.dim() > 1:
        raise ValueError(f"target must be an int or a 1-D sequence of ints, got shape {tuple(t.shape)}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be an int or have one entry per sample ({n}), got {t.numel()}")
    if (t < 0).any() or (t >= n_outputs).any():
        raise ValueError(f"target out of range: the model has {n_outputs} outputs (classes 0 … {n_outputs - 1}), "
                         f"got {t.unique().tolist()[:10]}")
    return t


def scores(model, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, checked to be (N, n_outputs) scores (numpy output of a callable converted)."""
    return _as_scores(model(x), len(x))


def resolve_target(model, inputs: torch.Tensor, target, *, outputs: torch.Tensor | None = None) -> torch.Tensor:
    """The one rule for ``target``: → LongTensor (N,) of class indices on the inputs' device.

    target: an int, a sequence/tensor of N ints, or None = the model's predicted class (argmax of
    ``model(inputs)``, computed once, model in eval mode, no gradients; a model with one output
    column: class 0). Out-of-range classes and floats are refused. ``outputs`` (N, K): scores
    already computed for ``inputs`` (saves the forward pass).
    """
    if outputs is None:
        inputs = check_inputs(model, inputs, allow_int=True)   # a public entry point: checked like a method
    n = len(inputs)
    if outputs is None:
        with maybe_eval(model), torch.no_grad():
            outputs = scores(model, inputs if target is None else inputs[:1])
    k = outputs.shape[1]
    if target is None:
        if len(outputs) != n:
            with maybe_eval(model), torch.no_grad():
                outputs = scores(model, inputs)
        t = outputs.detach().argmax(1) if k > 1 else torch.zeros(n, dtype=torch.long, device=outputs.device)
        return t.to(inputs.device if isinstance(inputs, torch.Tensor) else t.device)
    return target_index(target, n, k).to(inputs.device if isinstance(inputs, torch.Tensor) else "cpu")


def select(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """outputs[i, target[i]] for each i."""
    return outputs.gather(1, target.to(outputs.device)[:, None])[:, 0]


def target_scores(model, x: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """(f_t(x) of shape (N,), t of shape (N,)): the scores being explained and their classes."""
    out = scores(model, x)
    t = resolve_target(model, x, target, outputs=out)
    return select(out, t), t
