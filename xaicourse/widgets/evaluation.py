"""Lecture 08 (evaluating explanations) panels, built on ``Panel``."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from ._panel import Panel

METRICS = ("deletion", "insertion", "pointing game", "mask IoU")


def evaluation_panel(model, images, labels, masks, methods: dict, *, n_steps: int = 20, baselines=0.5, **deprecated):
    """Method picker × metric picker × image slider → the image with its object mask, the method's map,
    and the metric drawn (deletion / insertion curve with its AUC, or the map's maximum / top-|mask|
    pixels against the mask).

    methods: {name: (method, options)} as for ``evaluation.evaluate_methods``. Deletion fills with
    x₀ = ``baselines`` (default grey 0.5, as lecture 08; any ``_torch.resolve_baselines`` spec);
    insertion starts from it. ``n_steps``: points on a curve. Deprecated: ``steps=``, ``value=``.
    ``panel.state`` = {"method", "metric", "image", "value", "clim", "legend"} — value is the metric
    for that image (AUC, hit in [0, 1] or IoU), computed by the ``evaluation`` functions; clim the
    colour limits of the map (symmetric about 0 for a signed map, so that zero is white); legend
    the curve labels (the dashed random control is left out when the method is the random control).
    """
    from .. import evaluation as M
    from .._validate import check_int
    from ..evaluation._common import legacy
    from ..viz import to_numpy_image

    baselines, n_steps = legacy("evaluation_panel", deprecated, baselines=baselines, n_steps=n_steps)
    n_steps = check_int("n_steps", n_steps, min=1)
    if not isinstance(methods, dict) or not methods:
        raise TypeError(f"methods must be a non-empty dict {{name: (method, options)}}, got {type(methods).__name__}")

    cache = {}

    def is_random(name):
        return methods[name][0] is M.random_attribution or str(name).strip().lower().startswith("random")

    def attribution(name):
        if name not in cache:
            method, opts = methods[name]
            cache[name] = M.explain(method, model, images, labels, **dict(opts)).detach()
        return cache[name]

    def draw(method, metric, image):
        a = attribution(method)[image:image + 1]
        x, t, m = images[image:image + 1], labels[image:image + 1], masks[image:image + 1]
        r = M.feature_map(a, x.shape, absolute=metric in ("pointing game", "mask IoU"))[0].cpu()
        fig, ax = plt.subplots(1, 3, figsize=(10, 3.0), gridspec_kw=dict(width_ratios=[1, 1, 1.6]))
        ax[0].imshow(to_numpy_image(x[0]))
        ax[0].contour(m[0].float().cpu().numpy(), levels=[0.5], colors="white", linewidths=1)
        ax[0].set_title("image + object mask", fontsize=8)
        if r.min() < 0:    # a signed map: symmetric limits, so that zero is white
            lim = float(r.abs().max()) or 1.0
            clim = (-lim, lim)
            ax[1].imshow(r.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            clim = (float(r.min()), float(r.max()))
            ax[1].imshow(r.numpy(), cmap="hot")
        ax[1].set_title(method, fontsize=8)
        legend = []
        if metric in ("deletion", "insertion"):
            fn = M.deletion_curve if metric == "deletion" else M.insertion_curve
            kw = dict(baselines=baselines, n_steps=n_steps)
            fr, s = fn(model, x, t, a, **kw)
            val = float(M.curve_auc(fr, s)[0])
            ax[2].plot(fr.cpu().numpy(), s[0].cpu().numpy(), "o-", ms=3, label=f"{method}: AUC {val:.3f}")
            if not is_random(method):    # the random control, unless the method is that control itself
                rnd = fn(model, x, t, M.random_attribution(model, x, t), **kw)[1]
                ax[2].plot(fr.cpu().numpy(), rnd[0].cpu().numpy(), "--", color="gray",
                           label=f"random control: AUC {float(M.curve_auc(fr, rnd)[0]):.3f}")
            legend = [h.get_label() for h in ax[2].get_lines()]
            ax[2].set_xlabel(f"fraction of pixels {'removed' if metric == 'deletion' else 'inserted'}")
            ax[2].set_ylabel("p(target)")
            ax[2].legend(fontsize=7)
        else:
            if metric == "pointing game":
                val = float(M.pointing_game(a, m, absolute=True)[0])
                yx = (r == r.max()).nonzero()[0]
                ax[2].imshow(m[0].cpu().numpy(), cmap="gray")
                ax[2].plot(int(yx[1]), int(yx[0]), "r*", ms=14)
                ax[2].set_title(f"maximum {'on' if val == 1 else 'off'} the object: hit = {val:.2f}", fontsize=8)
            else:
                val = float(M.mask_iou(a, m, absolute=True)[0])
                k = int(m[0].sum())
                top = torch.zeros(r.numel(), dtype=torch.bool)
                top[torch.sort(-r.flatten(), stable=True).indices[:k]] = True
                top = top.reshape(r.shape)
                ax[2].imshow((top.float() * 2 + m[0].float().cpu()).numpy(), cmap="viridis")
                ax[2].set_title(f"top-{k} pixels vs mask: IoU = {val:.2f}", fontsize=8)
            ax[2].axis("off")
        ax[0].axis("off")
        ax[1].axis("off")
        fig.tight_layout()
        return {"method": method, "metric": metric, "image": image, "value": val, "clim": clim, "legend": legend,
                "readout": f"<b>{metric}</b> of {method} on image {image}: {val:.3f}"}

    controls = {"method": w.Dropdown(options=list(methods), description="method"),
                "metric": w.Dropdown(options=list(METRICS), description="metric"),
                "image": w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")}
    return Panel(controls, draw, readout=True)


def mask_panel(model, image, target, *, n_steps: int = 100, baselines="blur", l1: float = 10 ** -2.5,
               tv: float = 0.2, **deprecated):
    """λ₁ (area) and λ₂ (smoothness) sliders and a delete/preserve switch → the meaningful-perturbation
    mask M of one image, the perturbed image φ(x; M) and the target's probability on it.

    ``panel.state`` = {"l1", "tv", "mode", "mask" (H, W), "area" (mean of the deleted/kept region),
    "p_target" (softmax probability on φ)}. baselines: x₀ as ``meaningful_perturbation`` takes it
    (deprecated: ``baseline=``). The default λ₁ = 10^−2.5 (on the slider's grid) deletes a visible
    region of the course CNN's test images; ``meaningful_perturbation``'s own λ₁ = 0.05 makes any
    deletion cost more than it gains there, and the optimum is an empty mask.
    """
    from .._torch import deprecated_kwargs, resolve_baselines
    from .._validate import as_tensor
    from ..attribution.masks import meaningful_perturbation
    from ..viz import to_numpy_image

    deprecated = deprecated_kwargs("mask_panel", deprecated, {"baseline": "baselines"})
    baselines = deprecated.pop("baselines", baselines)
    if deprecated:
        raise TypeError(f"mask_panel() got an unexpected keyword argument {next(iter(deprecated))!r}")
    if isinstance(baselines, str) and baselines == "constant":  # the old baseline="constant" meant a zero image
        baselines = 0.0
    image = as_tensor("image", image, ndim=(3, 4))
    x = image[None] if image.dim() == 3 else image[:1]
    x0 = resolve_baselines(x, baselines, sigma=4.0)

    def draw(l1, tv, mode):
        m = meaningful_perturbation(model, x, int(target), mode=mode, baselines=baselines, l1=l1, tv=tv,
                                    n_steps=n_steps, return_mask=True)
        phi = x * m + x0 * (1 - m)
        with torch.no_grad():
            was = model.training
            model.eval()
            p = float(torch.softmax(model(phi), 1)[0, int(target)])
            p0 = float(torch.softmax(model(x), 1)[0, int(target)])
            model.train(was)
        region = (1 - m) if mode == "delete" else m
        fig, ax = plt.subplots(1, 3, figsize=(8, 2.8))
        ax[0].imshow(to_numpy_image(x[0]))
        ax[0].set_title(f"x: p = {p0:.2f}", fontsize=8)
        ax[1].imshow(region[0, 0].detach().cpu().numpy(), cmap="hot", vmin=0, vmax=1)
        ax[1].set_title(f"{'deleted' if mode == 'delete' else 'kept'} region (area {float(region.mean()):.2f})", fontsize=8)
        ax[2].imshow(to_numpy_image(phi[0]))
        ax[2].set_title(f"φ(x; M): p = {p:.2f}", fontsize=8)
        for a in ax:
            a.axis("off")
        fig.tight_layout()
        return {"l1": l1, "tv": tv, "mode": mode, "mask": m[0, 0], "area": float(region.mean()), "p_target": p,
                "readout": f"λ₁ = {l1:.3g}, λ₂ = {tv:.3g}: region area {float(region.mean()):.2f}, p(target) {p:.2f}"}

    controls = {"l1": w.FloatLogSlider(value=l1, base=10, min=-3, max=0, step=0.25, description="λ₁ (area)"),
                "tv": w.FloatLogSlider(value=tv, base=10, min=-3, max=1, step=0.25, description="λ₂ (TV)"),
                "mode": w.Dropdown(options=["delete", "preserve"], description="mode")}
    return Panel(controls, draw, readout=True)
