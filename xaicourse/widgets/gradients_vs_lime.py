"""Lecture 03 (gradients vs LIME): a method picker over the attribution registry, and LIME's knobs."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch

from .._torch import eval_on
from ..device import current_device
from ._panel import Panel

__all__ = ["attribution_panel", "lime_panel", "REDUCTIONS", "method_options"]

REDUCTIONS = {"sum": "sum over channels", "sum_squares": "sum of squares"}
"""heatmap reduction (``viz.seismic_heatmap``'s ``reduce``) → the words in the figure title."""


def method_options(method: str, image_shape, *, layer="relu3", sigma: float = 0.15, n: int = 20) -> dict:
    """The options ``attribution_panel`` passes to ``attribute(method, ...)`` for one image shape.

    smoothgrad: sigma, n_samples=n, seed=0; occlusion: a window of 1/8 and a stride of 1/16 of the
    width; grad_cam: layer (the only method that gets ``layer=``); lime: 300 samples on a grid of
    2×2 cells for images ≤ 8 px wide, else ~40 SLIC superpixels; integrated_gradients: 32
    Gauss–Legendre steps; shapley_sampling: 8 permutations of 4×4-pixel patches; shapley_exact: a
    3×3 grid of patches (9 players, 512 coalitions); the others: none.
    """
    width = int(image_shape[-1])
    if method == "smoothgrad":
        return dict(sigma=float(sigma), n_samples=int(n), seed=0)
    if method == "occlusion":
        return dict(window=max(1, width // 8), stride=max(1, width // 16))
    if method == "grad_cam":
        return dict(layer=layer)
    if method == "lime":
        return dict(n_samples=300, segmentation="grid" if width <= 8 else "slic", cell=2, n_segments=40)
    if method == "integrated_gradients":
        return dict(n_steps=32)
    if method in ("shapley_sampling", "shapley_exact"):
        from ..attribution.shapley import patch_mask

        height = int(image_shape[-2])
        side = -(-max(height, width) // 3) if method == "shapley_exact" else max(1, width // 8)
        return dict(feature_mask=patch_mask(height, width, side), **({"n_samples": 8} if method == "shapley_sampling" else {}))
    return {}


def attribution_panel(model, images: torch.Tensor, labels, layer: str = "relu3", names=None) -> Panel:
    """Method picker + image picker (+ SmoothGrad σ and n): one map next to its image.

    images: (N, C, H, W); labels: (N,) the targets explained; layer: Grad-CAM's layer; names:
    optional class names for the title. Every redraw calls ``attribution.attribute(method, model,
    x, t, **method_options(...))`` — the tested dispatcher over ``attribution.METHODS``.

    Controls: "method", "image", "heatmap" ("sum": Σ_c a_c, signed; "sum_squares": Σ_c a_c²),
    "sigma" and "n" (enabled only for "smoothgrad"). ``panel.state``: method, index, target,
    options, attribution (C, H, W) on the CPU, heatmap (the reduction's name).
    """
    from ..attribution import METHODS, attribute
    from ..viz import seismic_heatmap, to_numpy_image

    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor (N, C, H, W)")
    if len(labels) != len(images):
        raise ValueError(f"labels must hold one target per image ({len(images)}), got {len(labels)}")
    images = images.detach().cpu()
    controls = dict(
        method=w.Dropdown(options=list(METHODS), value="gradient", description="method"),
        image=w.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        heatmap=w.ToggleButtons(options=[(v, k) for k, v in REDUCTIONS.items()], value="sum",
                                description="heatmap"),
        sigma=w.FloatSlider(value=0.15, min=0.0, max=0.5, step=0.025, description="σ",
                            continuous_update=False),
        n=w.IntSlider(value=20, min=1, max=100, description="n", continuous_update=False),
    )

    def draw(method, image, heatmap, sigma, n):
        dev = current_device()
        t = int(labels[image])
        opts = method_options(method, images.shape, layer=layer, sigma=sigma, n=n)
        with eval_on(model, to=dev):
            a = attribute(method, model, images[image:image + 1].to(dev), t, **opts)[0].cpu()
        fig, ax = plt.subplots(1, 2, figsize=(5.6, 3.1))
        ax[0].imshow(to_numpy_image(images[image]), cmap="gray")
        ax[0].set_title(f"input, target {names[t] if names is not None else t}", fontsize=9)
        ax[1].imshow(seismic_heatmap(a, reduce=heatmap))
        extra = f", σ={sigma:.3g}, n={n}" if method == "smoothgrad" else ""
        ax[1].set_title(f"{method}{extra}\n({REDUCTIONS[heatmap]})", fontsize=9)
        for a_ in ax:
            a_.axis("off")
        fig.tight_layout()
        return dict(method=method, index=image, target=t, options=opts, attribution=a, heatmap=heatmap)

    return Panel(controls, draw, rows=[["method", "image", "heatmap"], ["sigma", "n"]],
                 enabled_when={"sigma": lambda v: v["method"] == "smoothgrad",
                               "n": lambda v: v["method"] == "smoothgrad"})


def lime_panel(model, x: torch.Tensor, target: int, segments=None, n_seeds: int = 4, k: int = 5,
               num_samples: int = 200, kernel_width: float = 0.25, **lime_options) -> Panel:
    """LIME kernel width, number of samples and a stability meter for one image x (C, H, W).

    Shows the LIME map (``lime_explain``, seed 0; coefficients painted on the superpixels), the
    histogram of the sample weights π_i = exp(−d_i²/σ²) for the chosen kernel width σ, and the
    top-k agreement across ``n_seeds`` sampling seeds (``lime_stability``). ``lime_options``
    (e.g. output="logit", hide=0.0) go to ``lime_explain``; segments: (H, W) superpixel ids
    (default: 2×2 grid cells for images ≤ 8 px wide, else ~40 SLIC superpixels);
    num_samples, kernel_width: the sliders' start values.

    Controls: "kernel_width", "samples"; extras: "meter" (the agreement). ``panel.state``:
    kernel_width, num_samples, explanation (``LimeExplanation``), agreement, tops, score,
    effective_samples = (Σπ)²/Σπ², readout.
    """
    from ..attribution.lime import lime_explain, lime_stability, segment_image
    from ..viz import seismic_heatmap, to_numpy_image

    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError("x must be one image tensor (C, H, W)")
    x = x.detach().cpu()
    if segments is None:
        segments = (segment_image(x, "grid", cell=2) if x.shape[-1] <= 8
                    else segment_image(x, "slic", n_segments=40))
    controls = dict(
        kernel_width=w.FloatLogSlider(value=kernel_width, base=10, min=-1.5, max=1, step=0.1, description="kernel width",
                                      continuous_update=False),
        samples=w.IntSlider(value=num_samples, min=20, max=1000, step=20, description="samples",
                            continuous_update=False),
    )
    meter = w.FloatProgress(value=0, min=0, max=1, description=f"top-{k} agree")
    meter.style.description_width = "initial"

    def draw(kernel_width, samples):
        dev = current_device()
        opts = dict(lime_options, n_samples=samples, kernel_width=kernel_width, segments=segments)
        with eval_on(model, to=dev):
            e = lime_explain(model, x[None].to(dev), target, seed=0, **opts)[0]
            agree, tops = lime_stability(model, x.to(dev), target, seeds=range(n_seeds), k=k, **opts)
        meter.value = agree
        eff = float(e.weights.sum() ** 2 / (e.weights ** 2).sum())
        fig, ax = plt.subplots(1, 3, figsize=(9, 2.9))
        ax[0].imshow(to_numpy_image(x), cmap="gray"); ax[0].set_title("input", fontsize=9); ax[0].axis("off")
        ax[1].imshow(seismic_heatmap(e.to_map(x.shape), reduce="sum")); ax[1].axis("off")
        ax[1].set_title(f"LIME, width {kernel_width:.2g}\n(sum over channels)", fontsize=9)
        ax[2].hist(e.weights, bins=30, color="tab:blue")
        ax[2].set_xlabel("sample weight π_i"); ax[2].set_ylabel("count")
        ax[2].set_title("kernel weights", fontsize=9)
        fig.tight_layout()
        return dict(kernel_width=kernel_width, num_samples=samples, explanation=e, agreement=agree,
                    tops=[np.asarray(t) for t in tops], score=e.score, effective_samples=eff,
                    readout=f"agreement {agree:.2f} over {n_seeds} seeds · weighted R² {e.score:.2f} · "
                            f"effective samples {eff:.0f}")

    return Panel(controls, draw, readout=True, extras={"meter": meter})
