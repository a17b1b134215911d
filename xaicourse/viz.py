"""Plotting helpers: image grids, attribution heatmaps (the seismic recipe), overlays,
and embedding scatter plots with thumbnails."""
from __future__ import annotations

import numpy as np
import torch

from ._validate import as_tensor, check_choice, check_int, check_real
from .maps import to_numpy_image  # the one image-to-numpy (kept importable from here)

REDUCTIONS = ("sum_squares", "sum")


def _attr_array(name: str, attr) -> np.ndarray:
    """An attribution map (C, H, W) or (H, W), finite and non-empty, as a float64 (C, H, W) array."""
    t = as_tensor(name, attr.detach() if isinstance(attr, torch.Tensor) else attr, ndim=(2, 3))
    a = t.cpu().double().numpy()
    return a[None] if a.ndim == 2 else a


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.4,
               vmin=None, vmax=None, suptitle: str | None = None):
    """Show a batch of images (N, C, H, W) in a grid; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    if images is None or isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a batch of images (N, C, H, W) or a list of them, got {type(images).__name__}")
    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
    ncols = check_int("ncols", ncols, min=1)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.3 if titles else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_numpy_image(images[i]), cmap=cmap, vmin=vmin, vmax=vmax)
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def seismic_values(attr, reduce: str = "sum_squares") -> np.ndarray:
    """The lecture-notes heatmap recipe, returned as values in [0, 1] with 0 ↦ 0.5.

    attr: (C, H, W) or (H, W) attribution (e.g. a gradient). ``reduce``:
      * "sum_squares": h(p) = Σ_c attr[c, p]² (sensitivity; non-negative),
      * "sum": h(p) = Σ_c attr[c, p] (signed contribution).
    h is divided by max|h| (so h ∈ [−1, 1]), then mapped to h/2 + 0.5 ∈ [0, 1].
    """
    check_choice("reduce", reduce, REDUCTIONS)
    a = _attr_array("attr", attr)
    h = (a ** 2).sum(0) if reduce == "sum_squares" else a.sum(0)
    if not np.all(np.isfinite(h)):
        raise ValueError("attr is too large: its channel sum overflows to inf; rescale it")
    m = np.abs(h).max()
    h = h / m if m > 0 else h
    return h / 2.0 + 0.5


def seismic_heatmap(attr, reduce: str = "sum_squares", cmap: str = "seismic") -> np.ndarray:
    """RGB heatmap (H, W, 3) in [0, 1] of ``seismic_values`` through the colormap."""
    import matplotlib

    return matplotlib.colormaps[cmap](seismic_values(attr, reduce))[..., :3]


def overlay(image, attr, alpha: float = 0.5, reduce: str = "sum", cmap: str = "seismic") -> np.ndarray:
    """Blend the heatmap of ``attr`` over ``image`` (grey-scaled); (H, W, 3) in [0, 1].

    image: (C, H, W) or (H, W), finite; attr: (C, H, W) or (H, W) with the same H, W."""
    alpha = check_real("alpha", alpha, min=0.0, max=1.0)
    as_tensor("image", image.detach() if isinstance(image, torch.Tensor) else image, ndim=(2, 3))
    img = to_numpy_image(image)
    grey = img.mean(-1) if img.ndim == 3 else img
    heat = seismic_heatmap(attr, reduce, cmap)
    if grey.shape != heat.shape[:2]:
        raise ValueError(f"image and attr must have the same height and width, got image {grey.shape} "
                         f"and attr {heat.shape[:2]}")
    grey = (grey - grey.min()) / (np.ptp(grey) + 1e-12)
    return (1 - alpha) * np.repeat(grey[..., None], 3, -1) + alpha * heat


def show_attributions(image, maps: dict, reduce: str = "sum", size: float = 2.2, title=None):
    """The image, then one seismic heatmap per named attribution map in a row."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps) + 1, figsize=(size * (len(maps) + 1), size + 0.3))
    axes[0].imshow(to_numpy_image(image), cmap="gray")
    axes[0].set_title("input", fontsize=9)
    for ax, (name, m) in zip(axes[1:], maps.items()):
        ax.imshow(seismic_heatmap(m, reduce), vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def embedding_scatter(Y, labels=None, images=None, n_thumbs: int = 40, zoom: float = 1.0, ax=None,
                      seed: int = 0, title: str | None = None):
    """Scatter a 2-D embedding coloured by label, with image thumbnails at some points."""
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    Y = as_tensor("Y", Y.detach() if isinstance(Y, torch.Tensor) else Y, ndim=2).cpu().numpy()
    if Y.shape[1] != 2:
        raise ValueError(f"Y must be (N, 2), got {Y.shape}")
    n_thumbs = check_int("n_thumbs", n_thumbs, min=0)
    seed = check_int("seed", seed, min=0)
    zoom = check_real("zoom", zoom, min=0.0, min_inclusive=False)
    if labels is not None and len(labels) != len(Y):
        raise ValueError(f"labels must have one entry per point ({len(Y)}), got {len(labels)}")
    if images is not None and len(images) != len(Y):
        raise ValueError(f"images must have one image per point ({len(Y)}), got {len(images)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    lab = None if labels is None else np.asarray(labels)
    # fix the colour range so label k always gets tab10's k-th colour, whatever labels are present
    rng_kw = dict(vmin=0, vmax=9) if lab is not None and lab.min() >= 0 and lab.max() <= 9 else {}
    colour_kw = dict(c=lab, cmap="tab10", **rng_kw) if lab is not None else dict(c="tab:gray")
    sc = ax.scatter(Y[:, 0], Y[:, 1], s=6, **colour_kw)   # cmap only with c: no matplotlib warning
    if lab is not None:
        ax.legend(*sc.legend_elements(), fontsize=7, loc="best", markerscale=0.8)
    if images is not None:
        rng = np.random.default_rng(seed)
        for i in rng.choice(len(Y), size=min(n_thumbs, len(Y)), replace=False):
            ab = AnnotationBbox(OffsetImage(to_numpy_image(images[i]), zoom=zoom, cmap="gray"),
                                Y[i], frameon=False)
            ax.add_artist(ab)
    if title:
        ax.set_title(title)
    ax.set_xticks([]); ax.set_yticks([])
    return ax
