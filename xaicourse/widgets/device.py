"""The notebook's device switch (lecture set-up cells): toggle buttons over ``device.set_device``."""
from __future__ import annotations

from ..device import set_device

__all__ = ["device_toggle"]


def device_toggle(value: str = "auto", on_change=None):
    """An ipywidget (ToggleButtons auto/cpu/cuda) that sets the notebook's device.

    Choosing an unavailable device shows the error message in the widget and keeps the
    previous device. ``on_change(device)`` is called after every successful switch.
    Returns a ``VBox``; its ``.toggle`` and ``.status`` attributes are the parts.
    """
    import ipywidgets as w

    from .._validate import check_choice

    check_choice("value", value, ("auto", "cpu", "cuda"))
    if on_change is not None and not callable(on_change):
        raise TypeError(f"on_change must be a function device -> None, got {type(on_change).__name__}")
    toggle = w.ToggleButtons(options=["auto", "cpu", "cuda"], value=value,
                             description="Device:", tooltips=["best available", "CPU", "NVIDIA GPU"])
    status = w.HTML()

    def _apply(pref):
        try:
            dev = set_device(pref)
        except RuntimeError as err:
            status.value = f"<span style='color:#b00'>⚠ {err}</span>"
            return None
        status.value = f"using <b>{dev}</b>"
        if on_change is not None:
            on_change(dev)
        return dev

    def _cb(change):
        if _apply(change["new"]) is None:  # revert to a working choice
            toggle.unobserve(_cb, names="value")
            toggle.value = change["old"]
            toggle.observe(_cb, names="value")

    _apply(value)
    toggle.observe(_cb, names="value")
    box = w.VBox([toggle, status])
    box.toggle, box.status = toggle, status
    return box
