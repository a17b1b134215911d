"""Lecture 00 (introduction): the perturbation score next to the gradient."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from .._torch import eval_on
from ..device import current_device
from ._panel import Panel

__all__ = ["perturbation_panel"]


def perturbation_panel(model, x: torch.Tensor, target: int, delta: float = 0.5) -> Panel:
    """δ slider + pixel picker: R_i = f_t(x) − f_t(x + δ e_i) next to the gradient ∂f_t/∂x_i.

    x: one image (C, H, W); target: the explained logit t. Shows the perturbation map for the
    chosen δ (``attribution.perturbation_scores``), the gradient map (``attribution.gradient``)
    — both summed over channels — and, for the picked pixel (summed over its channels),
    R_i/δ against −∂f_t/∂x_i: they agree as δ → 0 (first-order Taylor expansion).

    Controls: "delta", "row", "col" (also attributes ``panel.delta`` …). ``panel.state``:
    delta, row, col, R (C, H, W), grad (C, H, W), R_over_delta, minus_grad, readout.
    The model is used on ``current_device()`` and left on its device, in its mode.
    """
    from ..attribution import gradient, perturbation_scores
    from ..viz import seismic_heatmap, to_numpy_image

    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be one image tensor (C, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    C, H, W = x.shape
    x = x.detach().cpu()
    cache = {}

    def grad_map(dev):  # depends only on (model, x, target, device): computed once per device
        if dev not in cache:
            with eval_on(model, to=dev):
                cache[dev] = gradient(model, x[None].to(dev), target)[0].cpu()
        return cache[dev]

    controls = dict(
        delta=w.FloatLogSlider(value=delta, base=10, min=-3, max=0.5, step=0.1, description="δ",
                               continuous_update=False),
        row=w.IntSlider(value=H // 2, min=0, max=H - 1, description="row"),
        col=w.IntSlider(value=W // 2, min=0, max=W - 1, description="col"),
    )

    def draw(delta, row, col):
        dev = current_device()
        g = grad_map(dev)
        with eval_on(model, to=dev):
            R = perturbation_scores(model, x[None].to(dev), target, delta=delta)[0].cpu()
        r_over_d = (R[:, row, col].sum() / delta).item()
        minus_g = (-g[:, row, col].sum()).item()
        fig, ax = plt.subplots(1, 3, figsize=(8.4, 3))
        ax[0].imshow(to_numpy_image(x), cmap="gray")
        ax[0].plot(col, row, "r+", ms=12)
        ax[0].set_title("input, picked pixel", fontsize=9)
        ax[1].imshow(seismic_heatmap(R, reduce="sum"))
        ax[1].set_title(f"R_i, δ={delta:.3g}\n(sum over channels)", fontsize=9)
        ax[2].imshow(seismic_heatmap(-g, reduce="sum"))
        ax[2].set_title("−∂f/∂x (gradient)\n(sum over channels)", fontsize=9)
        for a in ax:
            a.axis("off")
        fig.tight_layout()
        return dict(delta=delta, row=row, col=col, R=R, grad=g, R_over_delta=r_over_d, minus_grad=minus_g,
                    readout=f"pixel ({row},{col}):  R_i/δ = {r_over_d:+.4f}   −∂f/∂x_i = {minus_g:+.4f}")

    return Panel(controls, draw, rows=[["delta"], ["row", "col"]], readout=True)
