"""Lecture 04 panels: integrated gradients' quadrature, baselines, and internal influence.

* ``convergence_panel`` — rule + steps → the IG map and its convergence delta (and δ vs steps
  for every rule, the chosen point marked).
* ``baseline_panel`` — black / blurred / noise / mean / expected-gradients (a set of training images)
  baseline → the baseline, the IG map, f(x) − f(x′) and the completeness delta.
* ``internal_panel`` — layer + quantity (class logit or f_A − f_B) → the influence of each unit
  of the layer (line from the black image), the top units and the input attribution of the top one.
Every panel's ``state`` holds the numbers it drew.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

from ..attribution.gradients import (RULES, blurred_baseline, integrated_gradients as _ig, sample_baselines,
                                     uniform_noise_baseline)
from ..attribution.internal import internal_influence, unit_attribution
from .._torch import resolve_baselines
from ._panel import Panel

__all__ = ["convergence_panel", "baseline_panel", "internal_panel"]


def _show(ax, img, title, signed=False):
    a = img.detach().cpu()
    a = a.sum(0) if a.dim() == 3 and signed else (a.permute(1, 2, 0) if a.shape[0] == 3 else a[0])
    if signed:
        m = float(a.abs().max()) or 1.0
        ax.imshow(a.numpy(), cmap="seismic", vmin=-m, vmax=m)
    else:
        ax.imshow(a.numpy().clip(0, 1), cmap="gray" if a.dim() == 2 else None, vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _gap(model, x, b, target):
    with torch.no_grad():
        return float(model(x[None])[0, target] - model(b[None] if b.dim() == x.dim() else b)[:, target].mean())


def log_axis_labels(ax, steps):
    """One tick label per step count on a log x-axis, decade labels only on a log y-axis.

    Matplotlib labels the *minor* ticks of a log axis that spans less than about a decade, and
    those labels (2×10⁻², 3×10⁻², …) overprint each other; here they are switched off."""
    ax.xaxis.set_major_locator(FixedLocator(list(steps)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())


def convergence_panel(model, x: torch.Tensor, target: int, steps=(2, 4, 8, 16, 32, 64)):
    """Rule and step count → IG map and |δ| (δ = Σ IG − (f(x) − f(0))). x: one image (C, H, W)."""
    curves = {}
    for rule in RULES:
        curves[rule] = [float(_ig(model, x[None], target, n_steps=s, method=rule,
                                                   return_convergence_delta=True)[1].abs()) for s in steps]
    rule = w.Dropdown(options=list(RULES), value="gausslegendre", description="rule")
    n = w.IntSlider(value=16, min=2, max=128, description="steps")

    def draw(rule, n_steps):
        attr, delta = _ig(model, x[None], target, n_steps=n_steps, method=rule,
                                           return_convergence_delta=True)
        gap = _gap(model, x, torch.zeros_like(x), target)
        fig, axes = plt.subplots(1, 3, figsize=(10, 3))
        _show(axes[0], x, f"input (class {target})")
        _show(axes[1], attr[0], f"IG, {rule}, n={n_steps}", signed=True)
        for r, c in curves.items():
            axes[2].loglog(steps, np.maximum(c, 1e-8), "o-", label=r, ms=3)
        axes[2].plot([n_steps], [max(abs(float(delta)), 1e-8)], "k*", ms=12)
        log_axis_labels(axes[2], steps)
        axes[2].set_xlabel("steps")
        axes[2].set_ylabel("|δ|")
        axes[2].set_title(f"|δ| = {abs(float(delta)):.2e} ({abs(float(delta)) / abs(gap):.1%} of f(x) − f(0))",
                          fontsize=9)
        axes[2].legend(fontsize=7)
        fig.tight_layout()
        return {"rule": rule, "n_steps": n_steps, "delta": float(delta), "rel_delta": abs(float(delta)) / abs(gap),
                "curves": curves}
    return Panel({"rule": rule, "n_steps": n}, draw)


BASELINES = ("black", "blurred", "noise", "mean", "expected")


def baseline_for(kind: str, x: torch.Tensor, data: torch.Tensor | None = None, k: int = 8, seed: int = 0):
    """The baseline(s) the panel uses: zeros, a σ=1 blur, uniform noise, the image's own mean grey
    level per channel, or k training images (expected gradients)."""
    if kind == "black":
        return torch.zeros_like(x)[None]
    if kind == "blurred":
        return blurred_baseline(x[None], sigma=1.0)
    if kind == "noise":
        return uniform_noise_baseline(x[None], seed=seed)
    if kind == "mean":
        return resolve_baselines(x[None], "mean")
    if kind == "expected":
        if data is None:
            raise ValueError("the 'expected' baseline needs data (training images)")
        return sample_baselines(data, k=k, seed=seed)
    raise ValueError(f"baseline must be one of {BASELINES}, got {kind!r}")


def baseline_panel(model, x: torch.Tensor, target: int, data: torch.Tensor, n_steps: int = 32):
    """Baseline picker: x′ → IG map, f(x) − f(x′) and δ. x: (C, H, W); data: training images."""
    kind = w.Dropdown(options=list(BASELINES), value="black", description="baseline")

    def draw(baseline):
        b = baseline_for(baseline, x, data)
        attr, delta = _ig(model, x[None], target, baselines=b, n_steps=n_steps,
                                           return_convergence_delta=True)
        shown = b[0][0] if isinstance(b, list) else b[0]
        bb = torch.cat(b) if isinstance(b, list) else b
        gap = _gap(model, x, bb, target)
        fig, axes = plt.subplots(1, 3, figsize=(9, 3))
        _show(axes[0], x, f"input (class {target})")
        _show(axes[1], shown, f"baseline: {baseline}" + (" (1 of the set)" if isinstance(b, list) else ""))
        _show(axes[2], attr[0], f"IG  Σ={float(attr.sum()):.2f}", signed=True)
        fig.tight_layout()
        return {"baseline": baseline, "gap": gap, "attr_sum": float(attr.sum()), "delta": float(delta),
                "attr": attr[0]}
    return Panel({"baseline": kind}, draw)


def internal_panel(model, x: torch.Tensor, target: int, layers=("conv2", "conv3", "fc1"), n_steps: int = 16,
                   top: int = 5):
    """Layer + quantity (f_A or f_A − f_B) → per-unit influence (channels summed over space), the
    top units, and IG of the top unit's activation w.r.t. the input. x: (C, H, W)."""
    with torch.no_grad():
        k = model(x[None]).shape[1]
    layer = w.Dropdown(options=list(layers), value=layers[-1], description="layer")
    quantity = w.Dropdown(options=["class logit", "comparative"], value="class logit", description="quantity")
    other = w.IntSlider(value=(target + 1) % k, min=0, max=k - 1, description="class B")

    def draw(layer, quantity, contrast):
        c = contrast if quantity == "comparative" else None
        infl = internal_influence(model, x[None], target, layer=layer, n_steps=n_steps, contrast=c)[0]
        per_unit = infl.flatten(1).sum(1) if infl.dim() > 1 else infl
        order = per_unit.argsort(descending=True)[:top].tolist()
        ua = unit_attribution(model, x[None], order[0], layer=layer, n_steps=n_steps)[0]
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        axes[0].bar(range(len(per_unit)), per_unit.detach().cpu().numpy(), color="gray")
        axes[0].bar(order, per_unit[order].detach().cpu().numpy(), color="crimson")
        q = f"f_{target}" + (f" − f_{contrast}" if c is not None else "")
        axes[0].set_title(f"influence of {layer} units on {q}", fontsize=9)
        axes[0].set_xlabel("unit")
        _show(axes[1], ua, f"input IG of unit {order[0]}", signed=True)
        fig.tight_layout()
        return {"layer": layer, "quantity": quantity, "contrast": c, "top_units": order,
                "influence": per_unit.detach().cpu()}
    panel = Panel({"layer": layer, "quantity": quantity, "contrast": other}, draw,
                  on_change=lambda name, ch: None)
    panel.enable("contrast", False)

    def toggle(change):
        panel.enable("contrast", change["new"] == "comparative")
    quantity.observe(toggle, names="value")
    return panel
