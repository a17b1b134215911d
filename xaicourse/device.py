"""Device selection and seeding (foundation layer: no widgets here).

``get_device("auto")`` picks CUDA, then Apple MPS, then the CPU; the environment
variable ``XAICOURSE_DEVICE`` overrides the preference. Asking for a device that is
not there raises a ``RuntimeError`` that says how to fall back.

The notebook's device switch is a widget: ``xaicourse.widgets.device_toggle`` (the old
``xaicourse.device.device_toggle`` still works, with a DeprecationWarning).
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

_VALID = ("auto", "cpu", "cuda", "mps")
_current: torch.device | None = None


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def get_device(pref: str | torch.device | None = "auto") -> torch.device:
    """Return the ``torch.device`` to compute on.

    pref: "auto" (cuda → mps → cpu), "cpu", "cuda", "cuda:N", "mps", or a torch.device.
    The env var ``XAICOURSE_DEVICE`` overrides ``pref`` when ``pref`` is "auto" or None.
    """
    if isinstance(pref, torch.device):
        pref = str(pref)
    if pref is None:
        pref = "auto"
    if not isinstance(pref, str):
        raise TypeError(f"pref must be a string or torch.device, got {type(pref).__name__}")
    env = os.environ.get("XAICOURSE_DEVICE", "").strip()
    if pref == "auto" and env:
        pref = env
    kind = pref.split(":")[0].lower()
    if kind not in _VALID:
        raise ValueError(f"pref must be one of {_VALID} (optionally 'cuda:N'), got {pref!r}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {pref!r} was requested but CUDA is not available on this machine. "
            "Fall back with DEVICE = 'cpu' (or 'auto'), or unset XAICOURSE_DEVICE / set it to 'cpu'."
        )
    if kind == "mps" and not _mps_available():
        raise RuntimeError(
            "device 'mps' was requested but Apple MPS is not available. "
            "Fall back with DEVICE = 'cpu' (or 'auto')."
        )
    return torch.device(pref)


def current_device() -> torch.device:
    """The device chosen by the last ``set_device``/toggle, else ``get_device('auto')``."""
    return _current if _current is not None else get_device("auto")


def set_device(pref: str | torch.device = "auto") -> torch.device:
    """Choose the device the notebook uses from now on (what the toggle calls)."""
    global _current
    _current = get_device(pref)
    return _current


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA); make cuDNN deterministic."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    random.seed(int(seed))
    np.random.seed(int(seed) % (2**32))
    torch.manual_seed(int(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(int(seed))
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def __getattr__(name):
    """The deprecated ``xaicourse.device.device_toggle`` (the widget lives in ``xaicourse.widgets``).

    Resolved through importlib on first use, so that this foundation module imports no widget code;
    ``tests/test_layering.py`` lists it in ``DEPRECATED_UPWARD_ALIASES``."""
    if name == "device_toggle":
        import importlib
        import warnings

        warnings.warn("xaicourse.device.device_toggle moved: use `from xaicourse.widgets import device_toggle`",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module("xaicourse.widgets.device").device_toggle
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
