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

from ..device import current_device


# ------------------------------------------------------------------ 00 introduction
def perturbation_panel(model, x: torch.Tensor, target: int, delta: float = 0.5):
    """δ slider + pixel picker: R_i = f(x) − f(x + δ e_i) next to the gradient ∂f/∂x_i.

    x: one image (C, H, W). Shows the perturbation map for the chosen δ, the gradient map,
    and, for the picked pixel, R_i/δ against −∂f/∂x_i (they agree as δ → 0).
    """
    from ..attribution import perturbation_scores
    from ..viz import seismic_heatmap, to_numpy_image

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


# ------------------------------------------------------------------ 02 t-SNE
def tsne_panel(X, labels, perplexities=(2, 5, 10, 30, 50), perplexity=30, n_iter: int = 500,
               snapshot_every: int = 10, seed: int = 0):
    """Perplexity and iteration sliders over t-SNE maps of X (N, F), coloured by ``labels``.

    Each perplexity is run once with ``xaicourse.tsne.TSNE`` (PCA init, so runs are
    reproducible) keeping a snapshot every ``snapshot_every`` steps; the iteration slider
    replays them. The readout shows KL(P‖Q) at that step and the trustworthiness (k=10).
    Keep X small (a few hundred points): every new perplexity is a full run.
    The returned VBox has ``.perplexity``, ``.step``, ``.readout`` and ``.state`` (a dict
    with the shown perplexity, step, KL and trustworthiness).
    """
    import numpy as np
    from sklearn.manifold import trustworthiness

    from ..tsne import TSNE

    Xn = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    Xn = Xn.reshape(len(Xn), -1)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    options = [p for p in perplexities if p < len(Xn) - 1]
    if not options:
        raise ValueError(f"perplexities must contain a value below n_samples − 1 = {len(Xn) - 1}")
    if perplexity not in options:
        perplexity = options[len(options) // 2]
    runs = {}

    def run(p):
        if p not in runs:
            m = TSNE(perplexity=float(p), n_iter=n_iter, init="pca", random_state=seed,
                     snapshot_every=snapshot_every, device=current_device()).fit(Xn)
            runs[p] = m
        return runs[p]

    per = w.SelectionSlider(options=options, value=perplexity, description="perplexity",
                            continuous_update=False)
    step = w.IntSlider(value=n_iter, min=snapshot_every, max=n_iter, step=snapshot_every,
                       description="iteration", continuous_update=False)
    readout = w.HTML()
    note = w.HTML("<small>Caveats: cluster <i>sizes</i> and the <i>distances between</i> clusters in a "
                  "t-SNE map carry little meaning; the picture changes with perplexity (and seed). "
                  "Early steps (≤ 250) are under early exaggeration.</small>")
    out = w.Output()
    state = {}

    def redraw(*_):
        m = run(per.value)
        snaps = dict(m.snapshots_)
        t = min(snaps, key=lambda s: abs(s - step.value))
        Y = snaps[t]
        kl = dict(m.kl_history_)[t]
        tw = trustworthiness(Xn, Y, n_neighbors=min(10, len(Xn) // 2 - 1))
        state.update(perplexity=per.value, step=t, kl=kl, trustworthiness=tw)
        readout.value = (f"perplexity {per.value}, step {t}: KL(P‖Q) = <b>{kl:.3f}</b>, "
                         f"trustworthiness = <b>{tw:.3f}</b>")
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(5, 5))
            sc = ax.scatter(Y[:, 0], Y[:, 1], c=lab, cmap="tab10", s=8)
            ax.legend(*sc.legend_elements(), fontsize=7, loc="best", markerscale=0.8)
            ax.set_title(f"t-SNE, perplexity {per.value}, step {t}")
            ax.set_xticks([]); ax.set_yticks([])
            plt.show()

    per.observe(redraw, names="value")
    step.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([per, step]), readout, note, out])
    box.perplexity, box.step, box.readout, box.state = per, step, readout, state
    return box


# ------------------------------------------------------------------ 03 gradients vs LIME
def attribution_panel(model, images: torch.Tensor, labels, layer: str = "relu3", names=None):
    """Method picker + image picker (+ SmoothGrad σ and n): one map next to its image.

    images: (N, C, H, W); labels: the targets explained. Every redraw calls
    ``xaicourse.attribution.attribute(method, ...)`` — the tested dispatcher.
    """
    from ..attribution import METHODS, attribute
    from ..viz import seismic_heatmap, to_numpy_image

    method = w.Dropdown(options=list(METHODS), value="gradient", description="method")
    idx = w.IntSlider(value=0, min=0, max=len(images) - 1, description="image")
    sigma = w.FloatSlider(value=0.15, min=0.0, max=0.5, step=0.025, description="σ (SmoothGrad)")
    n = w.IntSlider(value=20, min=1, max=100, description="n (SmoothGrad)")
    reduce = w.ToggleButtons(options=["sum", "sum_squares"], value="sum", description="heatmap")
    out = w.Output()

    def options(m):
        if m == "smoothgrad":
            return dict(sigma=sigma.value, n_samples=n.value, seed=0)
        if m == "occlusion":
            return dict(window=max(1, images.shape[-1] // 8), stride=max(1, images.shape[-1] // 16))
        if m == "grad_cam":
            return dict(layer=layer)
        if m == "lime":
            return dict(num_samples=300, segmentation="grid" if images.shape[-1] <= 8 else "slic",
                        cell=2, n_segments=40)
        return {}

    def redraw(*_):
        dev = current_device()
        model.to(dev)
        i, m = idx.value, method.value
        x = images[i:i + 1].to(dev)
        t = int(labels[i])
        a = attribute(m, model, x, t, **options(m))[0].cpu()
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(1, 2, figsize=(5.6, 2.9))
            ax[0].imshow(to_numpy_image(images[i]), cmap="gray")
            ax[0].set_title(f"input, target {names[t] if names else t}", fontsize=9)
            ax[1].imshow(seismic_heatmap(a, reduce=reduce.value))
            ax[1].set_title(f"{m}", fontsize=9)
            for a_ in ax:
                a_.axis("off")
            plt.show()

    for c in (method, idx, sigma, n, reduce):
        c.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([method, idx, reduce]), w.HBox([sigma, n]), out])


def lime_panel(model, x: torch.Tensor, target: int, segments=None, n_seeds: int = 4, k: int = 5,
               **lime_options):
    """LIME kernel width, number of samples and a stability meter for one image x (C, H, W).

    Shows the LIME map, the histogram of sample weights π_i for the chosen kernel width, and
    the top-k agreement across ``n_seeds`` sampling seeds (``lime_stability``).
    ``lime_options`` (e.g. output="logit") go to ``lime_explain``.
    """
    from ..attribution.lime import lime_explain, lime_stability, segment_image
    from ..viz import seismic_heatmap, to_numpy_image

    if segments is None:
        segments = segment_image(x, "grid", cell=2) if x.shape[-1] <= 8 else segment_image(x, "slic", n_segments=40)
    kw = w.FloatLogSlider(value=0.25, base=10, min=-1.5, max=1, step=0.1, description="kernel width")
    ns = w.IntSlider(value=200, min=20, max=1000, step=20, description="samples")
    meter = w.FloatProgress(value=0, min=0, max=1, description=f"top-{k} agree")
    readout = w.Label()
    out = w.Output()

    def redraw(*_):
        dev = current_device()
        model.to(dev)
        opts = dict(lime_options, num_samples=ns.value, kernel_width=kw.value, segments=segments)
        e = lime_explain(model, x[None].to(dev), target, seed=0, **opts)[0]
        agree, _ = lime_stability(model, x.to(dev), target, seeds=range(n_seeds), k=k, **opts)
        meter.value = agree
        readout.value = (f"agreement {agree:.2f} over {n_seeds} seeds · weighted R² {e.score:.2f} · "
                         f"effective samples {e.weights.sum() ** 2 / (e.weights ** 2).sum():.0f}")
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(1, 3, figsize=(9, 2.8))
            ax[0].imshow(to_numpy_image(x), cmap="gray"); ax[0].set_title("input"); ax[0].axis("off")
            ax[1].imshow(seismic_heatmap(e.to_map(x.shape), reduce="sum")); ax[1].axis("off")
            ax[1].set_title(f"LIME, width {kw.value:.2g}", fontsize=9)
            ax[2].hist(e.weights, bins=30, color="tab:blue")
            ax[2].set_xlabel("sample weight π_i"); ax[2].set_ylabel("count"); ax[2].set_title("kernel weights")
            fig.tight_layout()
            plt.show()

    for c in (kw, ns):
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([kw, ns]), w.HBox([meter, readout]), out])
    box.kernel_width, box.samples, box.meter = kw, ns, meter
    return box


# ------------------------------------------------------------------ 01 activation maximization
def featurevis_panel(model, data: torch.Tensor, settings: dict, steps: int = 60, k: int = 5,
                     class_names=None):
    """Unit picker + regulariser sliders → the optimised input, its ascent curves, and the k
    dataset images that excite the same unit most (``featurevis.activation_maximization`` and
    ``featurevis.top_activating_examples``).

    data: images (N, C, H, W) for the dataset-examples view; settings: keyword arguments for
    ``activation_maximization`` (e.g. ``featurevis.course_settings("shapes")``); steps: the
    initial number of ascent steps (keep a run under ~2 s). Re-runs when a control changes.
    """
    from .. import featurevis as fv
    from ..viz import to_numpy_image

    sizes = fv.layer_sizes(model, data[0])
    layer = w.Dropdown(options=[("class logit", None)] + [(n, n) for n in sizes if n is not None],
                       value=None, description="unit")
    unit = w.IntSlider(value=0, min=0, max=sizes[None] - 1, description="class/channel", continuous_update=False)
    reduce = w.ToggleButtons(options=["mean", "sum"], value="mean", description="reduce")
    squared = w.Checkbox(value=False, description="squared")
    tv = w.FloatLogSlider(value=max(settings.get("tv_weight", 0.0), 1e-4), base=10, min=-4, max=0.5, step=0.25,
                          description="TV weight", continuous_update=False)
    tv_on = w.Checkbox(value=settings.get("tv_weight", 0.0) > 0, description="use TV")
    n_steps = w.IntSlider(value=steps, min=10, max=400, step=10, description="steps", continuous_update=False)
    jitter = w.IntSlider(value=0, min=0, max=4, description="jitter (px)", continuous_update=False)
    blur = w.IntSlider(value=0, min=0, max=20, description="blur every", continuous_update=False)
    sigma = w.FloatSlider(value=0.5, min=0.2, max=2.0, step=0.1, description="blur σ", continuous_update=False)
    out = w.Output()

    def objective():
        if layer.value is None:
            return fv.class_logit(unit.value, squared=squared.value)
        return fv.channel(layer.value, unit.value, reduce=reduce.value, squared=squared.value)

    def on_layer(change):  # update the unit slider without triggering a second run
        unit.unobserve(redraw, names="value")
        unit.max = sizes[change["new"]] - 1
        unit.value = min(unit.value, unit.max)
        unit.observe(redraw, names="value")

    def redraw(*_):
        obj = objective()
        kw = {**settings, "steps": n_steps.value, "tv_weight": tv.value if tv_on.value else 0.0,
              "jitter": jitter.value, "blur_every": blur.value, "blur_sigma": sigma.value,
              "device": current_device()}
        res = fv.activation_maximization(model, obj, tuple(data.shape[1:]), **kw)
        idx, vals = fv.top_activating_examples(model, obj, data, k=k, device=current_device())
        name = obj.label() if obj.layer is not None or class_names is None else \
            f"class {class_names[obj.channel]}" + (" (squared)" if obj.squared else "")
        with out:
            out.clear_output(wait=True)
            fig = plt.figure(figsize=(2.3 * (k + 2), 2.6))
            gs = fig.add_gridspec(1, k + 2)
            ax = fig.add_subplot(gs[0, 0])
            ax.imshow(to_numpy_image(res.x[0].clamp(0, 1)), cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"optimised\n{res.final_objective[0]:.2f}", fontsize=9)
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
                a.set_title(f"data #{idx[i].item()}\n{vals[i]:.2f}", fontsize=9)
                a.axis("off")
            fig.suptitle(f"unit: {name} — optimised input vs top-{k} dataset examples", fontsize=10)
            fig.tight_layout()
            plt.show()
        return res

    layer.observe(on_layer, names="value")
    for c in (layer, unit, reduce, squared, tv, tv_on, n_steps, jitter, blur, sigma):
        c.observe(redraw, names="value")
    redraw()
    box = w.VBox([w.HBox([layer, unit]), w.HBox([reduce, squared]), w.HBox([tv_on, tv, n_steps]),
                  w.HBox([jitter, blur, sigma]), out])
    box.controls = dict(layer=layer, unit=unit, reduce=reduce, squared=squared, tv=tv, tv_on=tv_on,
                        steps=n_steps, jitter=jitter, blur=blur, sigma=sigma)
    box.redraw = redraw
    return box
