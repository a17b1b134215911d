"""Plotting helpers: image grids, galleries (a query image and rows of related images, lectures
05–07), attribution heatmaps (the seismic recipe), overlays, and embedding scatter plots with
thumbnails."""
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


def _wrap(text, width: int) -> str:
    """Wrap each line of ``text`` at ``width`` characters (titles under small images stay inside them)."""
    import textwrap

    return "\n".join(textwrap.fill(line, width, break_long_words=False) or line for line in str(text).split("\n"))


def _title_height(titles, fontsize: float) -> float:
    """Height in inches that the tallest of ``titles`` (already wrapped) needs above its axes."""
    lines = max((str(t).count("\n") + 1 for t in titles), default=0)
    return lines * fontsize * 1.35 / 72 + 0.08 if lines else 0.0


def image_grid(images, titles=None, ncols: int = 8, cmap: str = "gray", size: float = 1.4,
               vmin=None, vmax=None, suptitle: str | None = None, fontsize: float = 9):
    """Show a batch of images (N, C, H, W) in a grid; returns the matplotlib Figure.

    Long titles are wrapped to the image width and every row gets the height its titles need, so a
    row's titles never overlap the row above (the figure grows with the number of rows)."""
    import matplotlib.pyplot as plt

    if images is None or isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a batch of images (N, C, H, W) or a list of them, got {type(images).__name__}")
    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
    ncols = check_int("ncols", ncols, min=1)
    fontsize = check_real("fontsize", fontsize, min=1.0)
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    chars = max(6, int(size * 72 / (0.6 * fontsize)))        # characters that fit across one image
    wrapped = [_wrap(t, chars) for t in titles] if titles is not None else None
    th = _title_height(wrapped, fontsize) if wrapped else 0.0
    sup = _title_height([_wrap(suptitle, int(size * ncols * 72 / (0.6 * 12)))], 12) if suptitle else 0.0
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + th) * nrows + sup + 0.1),
                             squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_numpy_image(images[i]), cmap=cmap, vmin=vmin, vmax=vmax)
            if wrapped is not None:
                ax.set_title(wrapped[i], fontsize=fontsize)
    if suptitle:
        fig.suptitle(_wrap(suptitle, int(size * ncols * 72 / (0.6 * 12))), fontsize=12)
    return fig


def gallery(query, groups, *, query_title: str = "", hist=None, hist_title: str = "", hist_xlabel: str = "",
            ncols: int = 5, size: float = 1.6, fontsize: float = 9, suptitle: str | None = None,
            cmap: str = "gray"):
    """A query image and rows of related images, e.g. a test image and its most helpful / harmful
    training images (lectures 05, 06, 07). Returns the matplotlib Figure.

    query: one image (C, H, W) or (H, W), drawn top left with ``query_title``.
    groups: a list of ``(name, images, titles, colour)``; each group starts a new row, is wrapped
    into rows of at most ``ncols`` images, carries ``name`` as a row label and draws its titles in
    ``colour``. hist: optional 1-D values (e.g. all n_train scores) drawn as a histogram with tick
    labels under the query image. The figure's width is fixed by ``ncols`` (not by the number of
    images, so it is not shrunk on a web page) and its height grows with the rows; titles are
    wrapped to the image width and set in ``fontsize`` points (≥ 8).
    """
    import matplotlib.pyplot as plt

    ncols = check_int("ncols", ncols, min=1)
    size = check_real("size", size, min=0.3)
    fontsize = check_real("fontsize", fontsize, min=8.0)
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__iter__"):
        raise TypeError("groups must be a list of (name, images, titles, colour)")
    groups = list(groups)
    rows = []   # (group index, images, wrapped titles) per grid row
    chars = max(6, int(size * 72 / (0.6 * fontsize)))
    for g, grp in enumerate(groups):
        if len(grp) != 4:
            raise ValueError(f"groups[{g}] must be (name, images, titles, colour), got {len(grp)} entries")
        name, imgs, titles, _ = grp
        if titles is not None and len(titles) != len(imgs):
            raise ValueError(f"groups[{g}] ({name}): titles must have one entry per image ({len(imgs)}), "
                             f"got {len(titles)}")
        ts = [_wrap(t, chars) for t in titles] if titles is not None else [""] * len(imgs)
        for r0 in range(0, max(len(imgs), 1), ncols):
            rows.append((g, list(imgs[r0:r0 + ncols]), ts[r0:r0 + ncols]))
    qt = _wrap(query_title, max(6, int(1.5 * size * 72 / (0.6 * fontsize))))
    nrows = max(len(rows), 2 if hist is not None else 1)
    heights = [size + max(_title_height(r[2], fontsize), _title_height([qt] if i == 0 else [], fontsize))
               for i, r in enumerate(rows)]
    heights += [size + 0.5] * (nrows - len(heights))
    left = 1.5 * size
    sup_chars = int((left + size * ncols) * 72 / (0.6 * (fontsize + 1)))
    sup = _wrap(suptitle, sup_chars) if suptitle else None
    sup_h = _title_height([sup], fontsize + 1) if sup else 0.0
    fig = plt.figure(figsize=(left + size * ncols + 0.3, sum(heights) + sup_h + 0.2), layout="constrained")
    gs = fig.add_gridspec(nrows, ncols + 1, width_ratios=[1.5] + [1] * ncols, height_ratios=heights)
    axq = fig.add_subplot(gs[0, 0])
    axq.imshow(to_numpy_image(query), cmap=cmap)
    axq.set_title(qt, fontsize=fontsize)
    axq.axis("off")
    if hist is not None:
        vals = as_tensor("hist", hist.detach() if isinstance(hist, torch.Tensor) else hist).cpu().double().flatten()
        axh = fig.add_subplot(gs[1:, 0])
        axh.hist(vals.numpy(), bins=40, color="grey")
        axh.set_title(_wrap(hist_title, chars + 6), fontsize=fontsize)
        axh.set_xlabel(hist_xlabel, fontsize=fontsize)
        axh.set_ylabel("count", fontsize=fontsize)
        axh.tick_params(labelsize=fontsize - 1)
        axh.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
        axh.xaxis.get_offset_text().set_fontsize(fontsize - 1)
        axh.locator_params(axis="x", nbins=4)
    first = set()
    for r, (g, imgs, ts) in enumerate(rows):
        name, _, _, colour = groups[g]
        for j, (img, t) in enumerate(zip(imgs, ts)):
            a = fig.add_subplot(gs[r, j + 1])
            a.imshow(to_numpy_image(img), cmap=cmap)
            a.set_title(t, fontsize=fontsize, color=colour)
            a.set_xticks([]); a.set_yticks([])
            for sp in a.spines.values():
                sp.set_visible(False)
            if j == 0 and g not in first:
                a.set_ylabel(name, fontsize=fontsize + 1, color=colour)
                first.add(g)
    if sup:
        fig.suptitle(sup, fontsize=fontsize + 1)
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
