"""Argument checks shared by every public function: one helper per kind of mistake.

Rules (scikit-learn's): a value of the wrong *type* raises ``TypeError``, a value of the right
type outside its range raises ``ValueError``; every message names the argument, says what was
expected and what was given. Numbers are never silently truncated (``epochs=2.5`` is an error,
not 2 epochs), NaN and inf are rejected wherever a finite number is meant.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import torch


def check_int(name: str, value, *, min: int | None = None, max: int | None = None) -> int:
    """``value`` as a Python int: an integral number (not a bool, not 2.7), min ≤ value ≤ max."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_floating_point \
                and value.dtype != torch.bool:
            value = int(value)
        else:
            raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if min is not None and value < min:
        raise ValueError(f"{name} must be {'positive (≥ 1)' if min == 1 else f'≥ {min}'}, got {value}")
    if max is not None and value > max:
        raise ValueError(f"{name} must be ≤ {max}, got {value}")
    return value


def check_real(name: str, value, *, min: float | None = None, max: float | None = None,
               min_inclusive: bool = True, max_inclusive: bool = True) -> float:
    """``value`` as a finite Python float in the given range (bool, NaN and inf rejected)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if min is not None and (value < min or (value == min and not min_inclusive)):
        bound = "positive (> 0)" if min == 0 and not min_inclusive else f"{'≥' if min_inclusive else '>'} {min}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    if max is not None and (value > max or (value == max and not max_inclusive)):
        raise ValueError(f"{name} must be {'≤' if max_inclusive else '<'} {max}, got {value}")
    return value


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    choices = tuple(choices)
    try:
        ok = value in choices
    except TypeError:  # unhashable / incomparable
        ok = False
    if not ok:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def as_tensor(name: str, x, *, ndim: int | tuple | None = None, min_ndim: int | None = None,
              floating: bool = True, finite: bool = True, non_empty: bool = True,
              dtype: torch.dtype | None = None) -> torch.Tensor:
    """The one tensor coercer: a tensor or array-like of numbers → checked ``torch.Tensor``.

    floating: require (or, for array-likes, convert to) a floating dtype — integer images are
        rejected with a hint instead of being treated as 0/1 values. dtype: convert to this dtype.
    ndim / min_ndim: the allowed number of dimensions. finite: reject NaN/inf.
    non_empty: reject a tensor with no elements. Torch tensors keep their device.
    """
    if isinstance(x, torch.Tensor):
        t = x
    else:
        if isinstance(x, (str, bytes, dict)) or x is None:
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}")
        try:
            arr = np.asarray(x)
            if arr.dtype == object:
                arr = arr.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from err
        if np.iscomplexobj(arr):
            raise ValueError(f"{name} must hold real numbers, got complex values")
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        t = torch.as_tensor(arr)
        if floating and not t.dtype.is_floating_point:
            t = t.to(torch.get_default_dtype())
    if t.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if floating and not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}; convert with "
                        f"{name}.float() (and divide by 255 if the values are 0–255 pixels)")
    if dtype is not None:
        t = t.to(dtype)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if t.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, "
                             f"got shape {tuple(t.shape)}")
    if min_ndim is not None and t.dim() < min_ndim:
        raise ValueError(f"{name} must be batched with at least {min_ndim} dimensions (N, ...), got shape "
                         f"{tuple(t.shape)}; add a batch dimension with {name}[None]")
    if non_empty and t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)})")
    if finite and (t.dtype.is_floating_point or t.is_complex()) and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf values")
    return t


def check_labels(name: str, y, n: int, n_classes: int | None = None) -> torch.Tensor:
    """Class labels: an integer tensor of shape (n,) with values in [0, n_classes)."""
    if not isinstance(y, torch.Tensor):
        y = as_tensor(name, y, floating=False)
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.is_complex():
        raise TypeError(f"{name} must hold integer class labels (torch.long), got dtype {y.dtype}; "
                        f"convert with {name}.long() if the values are whole numbers")
    if y.dim() != 1:
        hint = f"; flatten it with {name}.reshape(-1)" if y.numel() == n else ""
        raise ValueError(f"{name} must have shape ({n},), got {tuple(y.shape)}{hint}")
    if len(y) != n:
        raise ValueError(f"{name} must have one label per sample ({n}), got {len(y)}")
    if n_classes is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}) for a model with {n_classes} outputs, "
                         f"got values from {int(y.min())} to {int(y.max())}")
    return y.long()


def rename_kwargs(fn_name: str, kwargs: dict, renames: dict) -> dict:
    """Move old keyword names to new ones (``renames = {old: new}``) with a DeprecationWarning
    pointing at the caller of the function that calls this; giving both names is a TypeError."""
    import warnings

    for old, new in renames.items():
        if old in kwargs:
            if new in kwargs:
                raise TypeError(f"{fn_name}: give {new}= only ({old}= is its deprecated old name)")
            warnings.warn(f"{fn_name}({old}=...) is deprecated; use {new}=", DeprecationWarning, stacklevel=3)
            kwargs[new] = kwargs.pop(old)
    return kwargs


def renamed(**old_to_new):
    """Decorator: keep old keyword names as deprecated aliases, ``@renamed(x="inputs")``.

    A call with the old name warns (DeprecationWarning) and forwards to the new one; giving both
    is a TypeError. The signature shown by ``inspect`` is the new one."""
    import functools

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return fn(*args, **rename_kwargs(fn.__name__, kwargs, old_to_new))
        return wrapper
    return deco
