"""The shared panel helper: controls + a draw function + an output area.

Every lecture panel is a ``Panel``: a dict of named ipywidget controls, and a ``draw(**values)``
function that reads the control values, calls the tested package functions and draws with
matplotlib. Any control change redraws (once). Tests drive every panel the same way:

    panel = some_panel(...)
    panel.controls["method"].value = "grad_cam"   # redraws
    state = panel.redraw()                        # or redraw by hand; returns what draw returned
    panel.state                                   # the last draw's return value (numbers to check)
    panel.state["attribution"] == panel.state.attribution   # a State: keys are also attributes

``enable(name, flag)`` greys out a control that does not apply to the current choice;
``enabled_when={name: predicate(values)}`` does it automatically after every change.
Controls are also attributes (``panel.delta is panel.controls["delta"]``), as are ``extras``.
"""
from __future__ import annotations

import contextlib

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import display

DESCRIPTION_STYLE = {"description_width": "initial"}  # labels are never cut off ("σ (Smoot…")


class State(dict):
    """What a panel's draw returns: a dict whose keys can also be read as attributes."""

    def __getattr__(self, key):
        try:
            return self[key]
        except KeyError:
            raise AttributeError(f"panel state has no entry {key!r}; entries: {', '.join(self)}") from None


class Panel(w.VBox):
    """A VBox of control rows, an optional readout line, extra widgets and an output area.

    controls: {name: widget} (order = display order unless ``rows`` is given).
    draw: called as ``draw(**{name: control.value})``; it should create its figure(s) with
        matplotlib — they are shown in the output area and closed — and return the numbers it
        showed (a dict, kept as the ``State`` ``self.state``). If that dict has a "readout"
        entry (a string, HTML allowed) and ``readout=True``, it is shown in the readout line.
    rows: list of lists of control names, one HBox per row (default: one row).
    readout: show an ``ipywidgets.HTML`` line (``self.readout``) under the controls.
    on_change: optional ``fn(name, change)`` called before the redraw, e.g. to adjust another
        control's range; control changes it makes do not trigger extra redraws.
    enabled_when: {control name: predicate(values dict) → bool}; applied at start and after
        every change (``enable``), so a control that does not apply is greyed out.
    header: optional HTML shown above the controls; extras: {name: widget} shown next to the
        readout (e.g. a meter the draw function updates), available as attributes too.

    After a draw: ``state`` (a ``State``), ``figures`` (its matplotlib figures, closed but
    inspectable, e.g. their titles). ``hold()`` batches several control changes into one redraw.
    """

    def __init__(self, controls: dict, draw, rows=None, readout: bool = False, on_change=None,
                 header: str | None = None, enabled_when: dict | None = None, extras: dict | None = None):
        self.controls = dict(controls)
        self._draw = draw
        self._on_change = on_change
        self._enabled_when = dict(enabled_when or {})
        self._holding = False
        self.extras = dict(extras or {})
        unknown = [n for n in self._enabled_when if n not in self.controls]
        if unknown:
            raise ValueError(f"enabled_when names unknown controls {unknown}; controls: {list(self.controls)}")
        self.output = w.Output()
        self.readout = w.HTML() if readout else None
        self.state = None
        self.figures = []  # the last draw's matplotlib figures (closed; kept for inspection)
        for c in self.controls.values():
            if hasattr(c, "style") and hasattr(c.style, "description_width"):
                c.style.description_width = "initial"
            if isinstance(c, w.Checkbox):
                c.indent = False  # no empty label column in front of the box
        rows = rows or [list(self.controls)]
        placed = [n for row in rows for n in row]
        missing = [n for n in self.controls if n not in placed]
        if missing:
            raise ValueError(f"rows leave out controls {missing}")
        children = ([w.HTML(header)] if header else []) + \
            [w.HBox([self.controls[n] for n in row]) for row in rows]
        bottom = ([self.readout] if self.readout is not None else []) + list(self.extras.values())
        if bottom:
            children.append(w.HBox(bottom))
        children.append(self.output)
        super().__init__(children)
        for name, c in self.controls.items():
            c.observe(lambda change, name=name: self._changed(name, change), names="value")
        self._apply_rules()
        self.redraw()

    def __getattr__(self, name):  # controls and extras as attributes (panel.delta, panel.meter)
        d = self.__dict__
        for group in ("controls", "extras"):
            if name in d.get(group, {}):
                return d[group][name]
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def values(self) -> dict:
        return {n: c.value for n, c in self.controls.items()}

    @contextlib.contextmanager
    def hold(self):
        """Change several controls without a redraw per change; call ``redraw()`` after.

        ``on_change`` is not called for changes made while holding; ``enabled_when`` rules
        are applied when the (outermost) block ends.
        """
        old, self._holding = self._holding, True
        try:
            yield self
        finally:
            self._holding = old
            if not old:
                self._apply_rules()

    def _changed(self, name, change):
        if self._holding:
            return
        with self.hold():  # applies the enabled_when rules on exit
            if self._on_change is not None:
                self._on_change(name, change)
        # In a notebook, an error is shown in the output area (Output swallows it there);
        # outside IPython (tests) it propagates.
        with self.output:
            self.redraw()

    def _apply_rules(self):
        vals = self.values()
        for name, rule in self._enabled_when.items():
            self.enable(name, bool(rule(vals)))

    def enable(self, name: str, flag: bool) -> None:
        """Grey out (``flag=False``) or re-enable a control that (does not) apply."""
        self.controls[name].disabled = not flag

    def redraw(self):
        """Run ``draw`` with the current control values; show its figures; return its result."""
        before = set(plt.get_fignums())
        try:
            result = self._draw(**self.values())
        except BaseException:
            for n in plt.get_fignums():
                if n not in before:
                    plt.close(n)
            raise
        figures = [plt.figure(n) for n in plt.get_fignums() if n not in before]
        state = State(result) if isinstance(result, dict) else result
        with self.output:
            self.output.clear_output(wait=True)
            for fig in figures:
                display(fig)
                plt.close(fig)
        self.state, self.figures = state, figures
        if self.readout is not None and isinstance(state, dict) and "readout" in state:
            self.readout.value = str(state["readout"])
        return state
