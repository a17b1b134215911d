"""The ipywidget panels the lectures use.

Each ``*_panel`` function returns a widget; its callbacks call ordinary, tested functions
from the topic modules, so what the widget shows is what the tests check. Sections are
one per lecture; keep each panel small.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch
from IPython.display import display

from .device import current_device


# ------------------------------------------------------------------ 00 introduction
def perturbation_panel(model, x: torch.Tensor, target: int, delta: float = 0.5):
    """δ slider + pixel picker: R_i = f(x) − f(x + δ e_i) next to the gradient ∂f/∂x_i.

    x: one image (C, H, W). Shows the perturbation map for the chosen δ, the gradient map,
    and, for the picked pixel, R_i/δ against −∂f/∂x_i (they agree as δ → 0).
    """
    from .attribution import perturbation_scores
    from .viz import seismic_heatmap, to_numpy_image

    C, H, W = x.shape
    d = w.FloatLogSlider(value=delta, base=10, min=-3, max=0.5, step=0.1, description="δ")
    row = w.IntSlider(value=H // 2, min=0, max=H - 1, description="pixel row")
    col = w.IntSlider(value=W // 2, min=0, max=W - 1, description="pixel col")
    out = w.Output()
    readout = w.HTML()

    def grad_map():
        dev = current_device()
        xi = x[None].to(dev).requires_grad_(True)
        model.to(dev)(xi)[0, target].backward()
        return xi.grad[0].cpu()

    g = grad_map()

    def redraw(*_):
        model.to(current_device())
        R = perturbation_scores(model, x[None].to(current_device()), target, delta=d.value)[0].cpu()
        i, j = row.value, col.value
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(1, 3, figsize=(8, 2.8))
            ax[0].imshow(to_numpy_image(x), cmap="gray"); ax[0].plot(j, i, "r+", ms=12)
            ax[0].set_title("input, picked pixel")
            ax[1].imshow(seismic_heatmap(R, reduce="sum")); ax[1].set_title(f"R_i, δ={d.value:.3g}")
            ax[2].imshow(seismic_heatmap(-g, reduce="sum")); ax[2].set_title("−∂f/∂x (gradient)")
            for a in ax:
                a.axis("off")
            plt.show()
        readout.value = (f"pixel ({i},{j}):  R_i/δ = {R[:, i, j].sum() / d.value:+.4f}   "
                         f"−∂f/∂x_i = {-g[:, i, j].sum():+.4f}")

    for s in (d, row, col):
        s.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([d]), w.HBox([row, col]), readout, out])
    box.delta, box.row, box.col, box.readout = d, row, col, readout
    return box
