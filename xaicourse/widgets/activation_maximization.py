"""Lecture 01 (activation maximisation): a unit picker and the regulariser knobs."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from .._torch import eval_on
from ..device import current_device
from ._panel import Panel

__all__ = ["featurevis_panel", "LOGITS"]

LOGITS = "logits"
"""The layer picker's value for "the model's output" (a string: a None value shows a blank box)."""


def featurevis_panel(model, data: torch.Tensor, settings: dict, n_steps: int = 60, k: int = 5,
                     class_names=None, **deprecated) -> Panel:
    """Unit picker + regulariser sliders → the optimised input, its ascent curves, and the k
    dataset images that excite the same unit most (``featurevis.activation_maximization`` and
    ``featurevis.top_activating_examples``).

    data: images (N, C, H, W) for the dataset-examples view; settings: keyword arguments for
    ``activation_maximization`` (e.g. ``featurevis.course_settings("shapes")``); n_steps: the
    initial number of ascent steps (keep a run under ~2 s; ``steps=`` is its deprecated name);
    class_names: for the title.
    Re-runs when a control changes.

    Controls: "layer" ("logits" = class logit, or a Conv2d/Linear layer name), "unit" (class or
    channel index), "reduce" (mean/sum over positions; channels only), "squared", "tv_on",
    "tv" (TV weight; enabled only with "tv_on"), "steps", "jitter", "blur" (blur every k
    steps; 0 = off), "sigma" (blur σ; enabled only when blurring). ``panel.state``: objective,
    objectives, result, x, history, final_objective, top_indices, top_values, name.
    """
    from .. import featurevis as fv
    from .._torch import deprecated_kwargs
    from .._validate import check_int
    from ..viz import to_numpy_image

    deprecated = deprecated_kwargs("featurevis_panel", deprecated, {"steps": "n_steps"})
    n_steps = deprecated.pop("n_steps", n_steps)
    if deprecated:
        raise TypeError(f"featurevis_panel() got an unexpected keyword argument {next(iter(deprecated))!r}")
    n_steps = check_int("n_steps", n_steps, min=1)
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict of activation_maximization options, got {type(settings).__name__}")
    # the panel's "steps" slider sets the number of steps, whichever key the settings carry it under
    settings = {key: v for key, v in settings.items() if key not in ("steps", "n_steps")}
    if not isinstance(data, torch.Tensor) or data.dim() != 4:
        raise ValueError("data must be an image tensor (N, C, H, W)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(data):
        raise ValueError(f"k must be an int in [1, {len(data)}] (the number of images in data), got {k!r}")
    data = data.detach().cpu()
    with eval_on(model, to=current_device()):
        sizes = fv.layer_sizes(model, data[0])
    n_out = sizes[None]
    sizes = {LOGITS: n_out, **{n: c for n, c in sizes.items() if n is not None}}
    tv0 = float(settings.get("tv_weight", 0.0))
    controls = dict(
        layer=w.Dropdown(options=[("class logit", LOGITS)] + [(n, n) for n in sizes if n != LOGITS],
                         value=LOGITS, description="layer"),
        unit=w.IntSlider(value=0, min=0, max=n_out - 1, description="unit", continuous_update=False),
        reduce=w.ToggleButtons(options=["mean", "sum"], value="mean", description="reduce"),
        squared=w.Checkbox(value=False, description="squared"),
        tv_on=w.Checkbox(value=tv0 > 0, description="use TV"),
        tv=w.FloatLogSlider(value=max(tv0, 1e-4), base=10, min=-4, max=0.5, step=0.25, description="TV weight",
                            continuous_update=False),
        steps=w.IntSlider(value=n_steps, min=10, max=400, step=10, description="steps", continuous_update=False),
        jitter=w.IntSlider(value=0, min=0, max=4, description="jitter (px)", continuous_update=False),
        blur=w.IntSlider(value=0, min=0, max=20, description="blur every", continuous_update=False),
        sigma=w.FloatSlider(value=0.5, min=0.2, max=2.0, step=0.1, description="blur σ", continuous_update=False),
    )

    def on_change(name, change):  # the unit range follows the layer (no extra run: the panel holds)
        if name == "layer":
            unit = controls["unit"]
            unit.max = sizes[change["new"]] - 1
            unit.value = min(unit.value, unit.max)

    def objective(layer, unit, reduce, squared):
        if layer == LOGITS:
            return fv.class_logit(unit, squared=squared)
        return fv.channel(layer, unit, reduce=reduce, squared=squared)

    def draw(layer, unit, reduce, squared, tv_on, tv, steps, jitter, blur, sigma):
        obj = objective(layer, unit, reduce, squared)
        kw = {**settings, "n_steps": steps, "tv_weight": tv if tv_on else 0.0,
              "jitter": jitter, "blur_every": blur, "blur_sigma": sigma}
        with eval_on(model, to=current_device()):  # device=None below: the current device
            res = fv.activation_maximization(model, obj, tuple(data.shape[1:]), **kw)
            idx, vals = fv.top_activating_examples(model, obj, data, k=k)
        if layer == LOGITS:
            name = (f"class {class_names[unit]}" if class_names is not None else f"class logit {unit}") + \
                   (" (squared)" if squared else "")
        else:
            name = f"{layer} channel {unit} ({reduce} over positions)" + (" (squared)" if squared else "")
        fig = plt.figure(figsize=(2.3 * (k + 2), 2.7))
        gs = fig.add_gridspec(1, k + 2)
        ax = fig.add_subplot(gs[0, 0])
        ax.imshow(to_numpy_image(res.x[0].clamp(0, 1)), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"optimised\n{float(res.final_objective[0]):.2f}", fontsize=9)
        ax.axis("off")
        axh = fig.add_subplot(gs[0, 1])
        axh.plot(res.history["objective"][:, 0], label="objective")
        axh.set_xlabel("step")
        axt = axh.twinx()
        axt.plot(res.history["tv"][:, 0], color="tab:orange", label="TV")
        axh.set_title("ascent (blue) / TV (orange)", fontsize=9)
        for i in range(k):
            a = fig.add_subplot(gs[0, 2 + i])
            a.imshow(to_numpy_image(data[idx[i]]), cmap="gray", vmin=0, vmax=1)
            a.set_title(f"data #{int(idx[i])}\n{float(vals[i]):.2f}", fontsize=9)
            a.axis("off")
        fig.suptitle(f"unit: {name} — optimised input vs top-{k} dataset examples", fontsize=10)
        fig.tight_layout()
        return dict(objective=obj, objectives=[obj], result=res, x=res.x, history=res.history,
                    final_objective=res.final_objective, top_indices=idx, top_values=vals, name=name)

    return Panel(controls, draw, rows=[["layer", "unit"], ["reduce", "squared"], ["tv_on", "tv", "steps"],
                                       ["jitter", "blur", "sigma"]],
                 on_change=on_change,
                 enabled_when={"reduce": lambda v: v["layer"] != LOGITS,
                               "tv": lambda v: v["tv_on"],
                               "sigma": lambda v: v["blur"] > 0})
