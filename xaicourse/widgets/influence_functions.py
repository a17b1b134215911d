"""Lecture 05 panels: the most helpful / harmful training images for a test image, and a
LiSSA convergence monitor next to the exact inverse-Hessian-vector product.

Both are ``Panel``s: tests set ``panel.controls[...]`` and read ``panel.state``.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch

from ..viz import gallery
from ._panel import Panel

__all__ = ["influence_gallery_panel", "lissa_panel"]


def _img(t: torch.Tensor):
    a = t.detach().cpu().float()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).clamp(0, 1).numpy()


def influence_gallery_panel(scores: torch.Tensor, train_images: torch.Tensor, train_labels,
                            test_images: torch.Tensor, test_labels, k: int = 5, n: int | None = None,
                            class_names=None, predictions=None) -> Panel:
    """Picker over test images → the k most helpful and k most harmful training images.

    scores: Koh & Liang's I_up,loss of shape (n_test, n_train) (``InfluenceFunction.i_up_loss`` or
    ``xaicourse.data_attribution.i_up_loss``; positive = harmful, i.e. −``attribute``).
    Helpful = most negative I_up,loss (removing the point would *raise* the test loss),
    harmful = most positive. ``n`` (the training-set size, default n_train) turns scores into
    the predicted change of the test loss −I/n shown above each image. ``predictions``: optional
    predicted classes of the test images (shown in the title).

    ``panel.state`` = {"test", "helpful", "harmful", "helpful_delta", "harmful_delta"} (indices into
    the training set, most influential first, and their predicted loss changes).
    """
    S = scores.detach().cpu().double()
    if S.dim() != 2 or S.shape != (len(test_images), len(train_images)):
        raise ValueError(f"scores must have shape (n_test, n_train) = ({len(test_images)}, {len(train_images)}), "
                         f"got {tuple(S.shape)}")
    n = S.shape[1] if n is None else n
    name = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: str(int(c)))
    test = w.IntSlider(value=0, min=0, max=len(test_images) - 1, description="test image")
    kk = w.IntSlider(value=k, min=1, max=10, description="k")

    def draw(test, k):
        s = S[test]
        helpful = torch.argsort(s)[:k]
        harmful = torch.argsort(s, descending=True)[:k]
        # the shared gallery (viz.gallery): one row per kind wrapped at 5, titles ≥ 8 pt that never
        # overlap (at k = 10 they did), a width that does not grow with k, the histogram with ticks
        pred = f", pred {name(predictions[test])}" if predictions is not None else ""
        groups = [(kind, [train_images[i] for i in idx.tolist()],
                   [f"#{i} label {name(train_labels[i])}\nΔL {-float(s[i]) / n:+.1e}" for i in idx.tolist()], col)
                  for idx, kind, col in ((helpful, "helpful", "tab:green"), (harmful, "harmful", "tab:red"))]
        gallery(test_images[test], groups, query_title=f"test #{test}\nlabel {name(test_labels[test])}{pred}",
                hist=s.numpy() / -n, hist_title="all training points", hist_xlabel="−I/n",
                suptitle="removing a green image would raise the test loss, removing a red one lower it")
        return {"test": test, "helpful": helpful.tolist(), "harmful": harmful.tolist(),
                "helpful_delta": (-s[helpful] / n).tolist(), "harmful_delta": (-s[harmful] / n).tolist()}

    return Panel({"test": test, "k": kk}, draw)


def lissa_panel(model, loss_fn, train_inputs, train_labels, vector: torch.Tensor, exact: torch.Tensor, *,
                l2: float = 0.0, layers=None, train_grads: torch.Tensor | None = None, depth: int = 300,
                scale: float | None = None, record_every: int = 10, seed: int = 0) -> Panel:
    """LiSSA monitor: relative error ‖h_j/s − x*‖ / ‖x*‖ against the recursion depth j, where
    x* = ``exact`` = H⁻¹v is the exact (undamped) solve for ``vector`` v (P,).

    Sliders: damping δ (log; its smallest value ≈ 0), scale s (log), depth, and the mini-batch
    size of the stochastic Hessian ("all" = deterministic). With ``train_grads`` (n, P) a second
    plot shows the influence scores −v̂ᵀ∇ℓ_i of the final estimate against the exact ones.
    The curve starts at j = 0 (h_0/s = v/s), so even the smallest depth draws a line. A readout
    line under the controls prints δ, s, λ_max/2 (the recursion converges iff s > λ_max/2) and the
    final error. A diverging recursion is caught and its message shown.

    ``panel.state`` = {"depths", "errors", "final_error", "r", "scale", "lam_max", "error",
    "readout"} ("error" is the divergence message or None).
    """
    from ..data_attribution.curvature import TrainingObjective, check_data
    from ..data_attribution.influence_functions import inverse_hvp
    from ..data_attribution.solvers import _power_max

    exact = exact.detach()
    x, y = check_data(model, train_inputs, train_labels, "train_inputs", "train_labels")
    lam_max = _power_max(TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2), iters=100, seed=seed)
    if scale is None:
        scale = 1.1 * lam_max
    controls = {
        # readout_format: the default ".3g" prints "1e-06"; the readout box is narrow, so keep it short
        # and print the full value in the readout line below
        "damping": w.FloatLogSlider(value=1e-6, base=10, min=-6, max=0, step=0.25, description="damping δ",
                                    readout_format=".0e", continuous_update=False,
                                    layout=w.Layout(width="360px")),
        "scale": w.FloatLogSlider(value=scale, base=10, min=np.log10(scale) - 1.5, max=np.log10(scale) + 1.5,
                                  step=0.05, description="scale s", readout_format=".3g", continuous_update=False,
                                  layout=w.Layout(width="360px")),
        "depth": w.IntSlider(value=depth, min=record_every, max=max(5 * depth, 100), step=record_every,
                             description="depth", continuous_update=False),
        # option values are ints (0 = all points): a None value leaves an ipywidgets Dropdown blank
        "batch": w.Dropdown(options=[("all", 0), ("256", 256), ("64", 64)], value=0,
                            description="Hessian batch"),
    }
    exact_scores = None if train_grads is None else -(train_grads @ exact)

    def draw(damping, scale, depth, batch):
        batch = batch or None
        head = (f"damping δ = {damping:.1e} · scale s = {scale:.3g} (converges iff s > λ_max/2 = "
                f"{lam_max / 2:.3g}) · depth {depth} · Hessian batch {batch or 'all'}")
        try:
            _, hist, s = inverse_hvp(model, loss_fn, train_inputs, train_labels, vector, l2=l2, layers=layers,
                                     method="lissa", damping=damping, scale=scale, depth=depth, lissa_batch=batch,
                                     seed=seed, record_every=record_every)
        except ValueError as e:
            fig, ax = plt.subplots(figsize=(6, 1.2))
            ax.text(0.01, 0.5, "\n".join(str(e)[i:i + 110] for i in range(0, len(str(e)), 110)), fontsize=7,
                    va="center", color="tab:red")
            ax.axis("off")
            return {"depths": [], "errors": [], "final_error": float("inf"), "r": float("nan"), "scale": scale,
                    "lam_max": lam_max, "error": str(e), "readout": head + " · <b>diverges</b>"}
        v0 = vector.detach().reshape(-1).to(exact) / s          # h_0 / s: the j = 0 point of the curve
        depths = [0] + [j for _, j, _ in hist]
        errs = [float((v0 - exact).norm() / exact.norm())] + \
            [float((h[0] - exact).norm() / exact.norm()) for _, _, h in hist]
        est = hist[-1][2][0]
        ncols = 2 if exact_scores is not None else 1
        fig, ax = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.2), squeeze=False)
        ax[0, 0].semilogy(depths, errs, "o-", ms=3)
        ax[0, 0].set_xlabel("depth j"); ax[0, 0].set_ylabel("‖estimate − exact‖ / ‖exact‖")
        ax[0, 0].set_title(f"LiSSA, s={scale:.3g}, δ={damping:.1g}, batch={batch or 'all'}", fontsize=9)
        ax[0, 0].grid(alpha=0.3)
        rr = float("nan")
        if exact_scores is not None:
            est_scores = -(train_grads @ est)
            rr = float(np.corrcoef(est_scores.cpu().double(), exact_scores.cpu().double())[0, 1])
            ax[0, 1].scatter(exact_scores.cpu(), est_scores.cpu(), s=4)
            lo, hi = float(exact_scores.min()), float(exact_scores.max())
            ax[0, 1].plot([lo, hi], [lo, hi], "k--", lw=0.8)
            ax[0, 1].set_xlabel("exact I_up,loss"); ax[0, 1].set_ylabel("LiSSA I_up,loss")
            ax[0, 1].set_title(f"Pearson r = {rr:.4f}", fontsize=9)
        fig.tight_layout()
        return {"depths": depths, "errors": errs, "final_error": errs[-1], "r": rr, "scale": s, "lam_max": lam_max,
                "error": None, "readout": head + f" · final error {errs[-1]:.2e}"}

    return Panel(controls, draw, rows=[["damping", "scale"], ["depth", "batch"]], readout=True)
