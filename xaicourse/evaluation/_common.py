"""What every metric shares: one relevance value per feature, maps checked against masks, running a
method given by name or as a function, and the deprecated ``fill=`` / ``value=`` / ``steps=`` names."""
from __future__ import annotations

import warnings

import torch

from .._torch import resolve_baselines
from .._validate import as_tensor, check_bool, check_choice, check_int, check_real

FILLS = ("constant", "blur", "noise")
"""The old ``fill=`` names (deprecated): ``fill="constant", value=v`` is ``baselines=v``."""


def feature_map(attributions, inputs_shape=None, absolute: bool = False, name: str = "attributions") -> torch.Tensor:
    """An attribution as one relevance value per feature, (N, ...) float64.

    Images: (N, C, H, W) → Σ_c A_c (or Σ_c |A_c| with ``absolute``), shape (N, H, W); a map
    already (N, H, W) (or (N, 1, H, W)) is taken as is. Anything else is used element-wise.
    ``inputs_shape``: the inputs' shape, to check that the attribution belongs to them.
    """
    absolute = check_bool("absolute", absolute)
    a = as_tensor(name, attributions, min_ndim=2).detach()
    if inputs_shape is not None:
        shape = tuple(inputs_shape)
        ok = tuple(a.shape) == shape or (len(shape) == 4 and tuple(a.shape) in
                                          ((shape[0], shape[2], shape[3]), (shape[0], 1, shape[2], shape[3])))
        if not ok:
            raise ValueError(f"{name} has shape {tuple(a.shape)} but the inputs have shape {shape}; give one "
                             f"attribution per input (same shape, or (N, H, W) for images)")
    if a.dim() == 4:
        a = a.abs().sum(1) if absolute else a.sum(1)
    return (a.abs() if absolute else a).double()


def map_and_mask(attributions, masks, absolute):
    """(relevance (N, D), masks (N, D) bool), checked to match; masks (N, ...) bool or 0/1."""
    absolute = check_bool("absolute", absolute)
    m = as_tensor("masks", masks, min_ndim=2, floating=False).detach()
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("masks must be boolean (or 0/1) ground-truth masks")
        m = m.bool()
    a = as_tensor("attributions", attributions, min_ndim=2).detach()
    if a.dim() == m.dim() + 1:  # (N, C, H, W) attributions for (N, H, W) masks
        a = a.abs().sum(1) if absolute else a.sum(1)
    if tuple(a.shape) != tuple(m.shape):
        raise ValueError(f"attributions (shape {tuple(attributions.shape)}) do not match masks (shape "
                         f"{tuple(m.shape)}): give one map per mask, (N, H, W) or (N, C, H, W) for (N, H, W) masks")
    a = a.double().flatten(1)
    m = m.to(a.device).flatten(1)
    empty = (m.sum(1) == 0).nonzero().flatten()
    if len(empty):
        raise ValueError(f"masks {empty.tolist()[:5]} are empty (no True pixel): the metric is undefined there; "
                         "drop those samples")
    return (a.abs() if absolute else a), m


def explain(method, model, inputs, target, **options) -> torch.Tensor:
    """The attribution of ``method`` for ``inputs``: a name in ``attribution.METHODS`` (run by
    ``attribution.attribute``, which refuses options the method does not take) or a function
    ``f(model, inputs, target, **options)``."""
    if callable(method):
        return method(model, inputs, target, **options)
    from ..attribution import METHODS, attribute

    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be a callable or one of {tuple(METHODS)}, got {method!r}")
    return attribute(method, model, inputs, target, **options)


def method_name(method) -> str:
    """A method's name for tables (checked as ``explain`` does)."""
    if callable(method):
        return getattr(method, "__name__", "method")
    from ..attribution import METHODS

    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be a callable or one of {tuple(METHODS)}, got {method!r}")
    return method


def legacy(fn_name: str, old: dict, *, baselines, n_steps=None, fill_default: str = "constant"):
    """The deprecated ``fill=`` / ``value=`` (→ ``baselines=``) and ``steps=`` (→ ``n_steps=``) of the
    metric functions, with a DeprecationWarning each; any other unknown keyword is a TypeError.
    ``fill_default``: the old default fill of the function (what ``value=`` alone meant)."""
    old = dict(old)
    if "steps" in old:
        warnings.warn(f"{fn_name}(steps=...) is deprecated; use n_steps=", DeprecationWarning, stacklevel=3)
        n_steps = old.pop("steps")
    if "fill" in old or "value" in old:
        fill = old.pop("fill", None)
        value = old.pop("value", None)
        warnings.warn(f"{fn_name}(fill=..., value=...) is deprecated; use baselines= (a number for a constant, "
                      f"'blur', 'noise', 'zero' or 'mean')", DeprecationWarning, stacklevel=3)
        if fill is None:
            fill = "constant" if value is not None else fill_default
        check_choice("fill", fill, FILLS)
        baselines = (0.0 if value is None else value) if fill == "constant" else fill
    if old:
        raise TypeError(f"{fn_name}() got an unexpected keyword argument {next(iter(old))!r}")
    return baselines, n_steps


def reference(inputs, baselines, sigma, seed) -> torch.Tensor:
    """x₀ for the metric fills (``_torch.resolve_baselines``), on the inputs' device; ``sigma`` and
    ``seed`` are checked even when the chosen baselines do not use them."""
    sigma = check_real("sigma", sigma, min=0.0, min_inclusive=False)
    seed = check_int("seed", seed, min=0)
    return resolve_baselines(inputs, baselines, sigma=sigma, seed=seed).to(inputs.device)
