"""Plotting helpers: image grids, attribution heatmaps (the seismic recipe), overlays,
and embedding scatter plots with thumbnails."""
from __future__ import annotations

import numpy as np
import torch


def to_numpy_image(img) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array → (H, W) or (H, W, 3) float array for imshow."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.ndim not in (2, 3):
        raise ValueError(f"img must be (C,H,W) or (H,W), got shape {a.shape}")
    return a


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.4,
               vmin=None, vmax=None, suptitle: str | None = None):
    """Show a batch of images (N, C, H, W) in a grid; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
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
    a = attr.detach().cpu().double().numpy() if isinstance(attr, torch.Tensor) else np.asarray(attr, float)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"attr must be (C,H,W) or (H,W), got shape {a.shape}")
    if reduce == "sum_squares":
        h = (a ** 2).sum(0)
    elif reduce == "sum":
        h = a.sum(0)
    else:
        raise ValueError(f"reduce must be 'sum_squares' or 'sum', got {reduce!r}")
    if not np.all(np.isfinite(h)):
        raise ValueError("attr contains NaN or inf")
    m = np.abs(h).max()
    h = h / m if m > 0 else h
    return h / 2.0 + 0.5


def seismic_heatmap(attr, reduce: str = "sum_squares", cmap: str = "seismic") -> np.ndarray:
    """RGB heatmap (H, W, 3) in [0, 1] of ``seismic_values`` through the colormap."""
    import matplotlib

    return matplotlib.colormaps[cmap](seismic_values(attr, reduce))[..., :3]


def overlay(image, attr, alpha: float = 0.5, reduce: str = "sum", cmap: str = "seismic") -> np.ndarray:
    """Blend the heatmap of ``attr`` over ``image`` (grey-scaled); (H, W, 3) in [0, 1]."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = to_numpy_image(image)
    grey = img.mean(-1) if img.ndim == 3 else img
    grey = (grey - grey.min()) / (np.ptp(grey) + 1e-12)
    return (1 - alpha) * np.repeat(grey[..., None], 3, -1) + alpha * seismic_heatmap(attr, reduce, cmap)


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

    Y = Y.detach().cpu().numpy() if isinstance(Y, torch.Tensor) else np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] != 2:
        raise ValueError(f"Y must be (N, 2), got {Y.shape}")
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
