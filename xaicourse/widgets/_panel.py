"""The shared panel helper: controls + a draw function + an output area.

Every lecture panel is a ``Panel``: a dict of named ipywidget controls, and a ``draw(**values)``
function that reads the control values, calls the tested package functions and draws with
matplotlib. Any control change redraws (once). Tests drive every panel the same way:

    panel = some_panel(...)
    panel.controls["method"].value = "grad_cam"   # redraws
    state = panel.redraw()                        # or redraw by hand; returns what draw returned
    panel.state                                   # the last draw's return value (numbers to check)

``enable(name, flag)`` greys out a control that does not apply to the current choice.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import display

DESCRIPTION_STYLE = {"description_width": "initial"}  # labels are never cut off ("σ (Smoot…")


class Panel(w.VBox):
    """A VBox of control rows, an optional readout line and an output area.

    controls: {name: widget} (order = display order unless ``rows`` is given).
    draw: called as ``draw(**{name: control.value})`` inside the output area; it should create
        its figure(s) with matplotlib — they are shown and closed — and may return a value,
        kept as ``self.state``. rows: list of lists of control names, one HBox per row.
    readout: show an ``ipywidgets.HTML`` line under the controls (``self.readout``) that draw can
        fill through the ``readout`` attribute. on_change: optional ``fn(name, change)`` called
        before the redraw (e.g. to enable/disable controls).
    """

    def __init__(self, controls: dict, draw, rows=None, readout: bool = False, on_change=None,
                 header: str | None = None):
        self.controls = dict(controls)
        self._draw = draw
        self._on_change = on_change
        self.output = w.Output()
        self.readout = w.HTML() if readout else None
        self.state = None
        for c in self.controls.values():
            if hasattr(c, "style") and hasattr(c.style, "description_width"):
                c.style.description_width = "initial"
        rows = rows or [list(self.controls)]
        children = ([w.HTML(header)] if header else []) + \
            [w.HBox([self.controls[n] for n in row]) for row in rows]
        if self.readout is not None:
            children.append(self.readout)
        children.append(self.output)
        super().__init__(children)
        for name, c in self.controls.items():
            c.observe(lambda change, name=name: self._changed(name, change), names="value")
        self.redraw()

    def values(self) -> dict:
        return {n: c.value for n, c in self.controls.items()}

    def _changed(self, name, change):
        if self._on_change is not None:
            self._on_change(name, change)
        self.redraw()

    def enable(self, name: str, flag: bool) -> None:
        """Grey out (``flag=False``) or re-enable a control that (does not) apply."""
        self.controls[name].disabled = not flag

    def redraw(self):
        """Run ``draw`` with the current control values; show its figures; return its result."""
        with self.output:
            self.output.clear_output(wait=True)
            before = set(plt.get_fignums())
            self.state = self._draw(**self.values())
            for num in plt.get_fignums():
                if num not in before:
                    display(plt.figure(num))
                    plt.close(num)
        return self.state
