"""Lecture 06 (representer points) panels, built on ``Panel``.

* ``representer_gallery_panel`` — test-image picker → the k training images with the largest
  positive (excitatory) and most negative (inhibitory) contributions α_{i,c} Φ_iᵀΦ_t to the
  chosen class logit, with those contributions and the check Σ_i (terms) = logit.
* ``mislabel_panel`` — fraction of flipped labels found against the fraction of the training set
  inspected, ranking by |α_{i,y_i}|, by the training loss, or at random.

Tests drive them via ``panel.controls[...]`` and compare ``panel.state`` with ``RepresenterPoints``.
"""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from ._panel import Panel

__all__ = ["representer_gallery_panel", "mislabel_panel"]


def _img(t: torch.Tensor):
    a = t.detach().cpu().float()
    return a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).clamp(0, 1).numpy()


def representer_gallery_panel(rp, test_features: torch.Tensor, train_images: torch.Tensor, test_images: torch.Tensor,
                              test_labels=None, k: int = 5, class_names=None) -> Panel:
    """Picker over test images → the k top positive and k top negative representers.

    rp: a fitted ``data_attribution.RepresenterPoints`` (its training labels are ``rp.targets_``).
    test_features: Φ(x_t) of the test images (n_test, d), e.g. ``rp.features_of(model, X_test)``.
    train_images (n_train, C, H, W), test_images (n_test, C, H, W): for display.
    Controls: "test" (index), "k", "class" ("predicted" or "true" label of the test image).

    ``panel.state`` = {"test", "target", "positive", "negative" (training indices, strongest
    first), "positive_values", "negative_values" (their contributions α_{i,c}Φ_iᵀΦ_t), "logit"
    (W Φ_t for the class), "total" (Σ_i of all n_train contributions), "message" (non-empty when
    "true" is asked of a correctly classified image, which explains the same logit as "predicted"; it
    lists misclassified test images), "misclassified" (their indices), "readout"}. The figure is
    ``viz.gallery`` (rows of at most 5 images, readable titles, a histogram with ticks).
    """
    if not hasattr(rp, "alpha_"):
        raise ValueError("rp must be a fitted RepresenterPoints: call fit or from_model first")
    F = torch.as_tensor(test_features).detach()
    if F.dim() != 2 or len(F) != len(test_images):
        raise ValueError(f"test_features must have shape (n_test, d) with n_test = len(test_images) = "
                         f"{len(test_images)}, got {tuple(F.shape)}")
    if len(train_images) != len(rp.alpha_):
        raise ValueError(f"train_images has {len(train_images)} images but rp was fitted on {len(rp.alpha_)} points")
    logits = rp.logits(F)
    pred = logits.argmax(1)
    name = (lambda c: class_names[int(c)]) if class_names is not None else (lambda c: str(int(c)))
    labels = rp.targets_.cpu()
    options = ["predicted"] + (["true"] if test_labels is not None else [])
    controls = {"test": w.IntSlider(value=0, min=0, max=len(F) - 1, description="test image"),
                "k": w.IntSlider(value=k, min=1, max=min(10, len(labels)), description="k"),
                "cls": w.Dropdown(options=options, value="predicted", description="explain class")}

    wrong = [] if test_labels is None else \
        [j for j in range(len(F)) if int(pred[j]) != int(test_labels[j])]

    def draw(test, k, cls):
        from ..viz import gallery

        t = int(pred[test]) if cls == "predicted" else int(test_labels[test])
        message = ""
        if cls == "true" and int(test_labels[test]) == int(pred[test]):
            # nothing changes on a correct prediction: say so instead of redrawing the same figure
            some = ", ".join(f"#{j}" for j in wrong[:8]) or "none"
            message = (f"test #{test} is classified correctly (true = predicted = {name(t)}), so "
                       f"\"true\" explains the same logit as \"predicted\". Misclassified test images: {some}.")
        c = rp.contributions(F[test:test + 1], target=t)[0]
        pv, pi = torch.topk(c, k)
        nv, ni = torch.topk(c, k, largest=False)
        total, logit = float(c.sum()), float(logits[test, t])
        true = f"label {name(test_labels[test])}, " if test_labels is not None else ""
        groups = [(f"positive (+)", [_img(train_images[i]) for i in pi.tolist()],
                   [f"#{i} y={name(labels[i])}\n{v:+.3g}" for v, i in zip(pv.tolist(), pi.tolist())], "tab:green"),
                  (f"negative (−)", [_img(train_images[i]) for i in ni.tolist()],
                   [f"#{i} y={name(labels[i])}\n{v:+.3g}" for v, i in zip(nv.tolist(), ni.tolist())], "tab:red")]
        gallery(_img(test_images[test]), groups, query_title=f"test #{test}\n{true}pred {name(pred[test])}",
                hist=c, hist_title=f"all {len(c)} terms, class {name(t)}", hist_xlabel="α_ic Φ_iᵀΦ_t",
                suptitle=f"logit of class {name(t)} = {logit:.3f} = sum of {len(c)} terms ({total:.3f}); "
                         "green pull it up, red push it down")
        readout = f"logit {logit:.4f}, sum of representer terms {total:.4f}"
        if message:
            readout = f"<b>{message}</b><br>{readout}"
        return {"test": test, "target": t, "positive": pi.tolist(), "negative": ni.tolist(),
                "positive_values": pv.tolist(), "negative_values": nv.tolist(), "logit": logit, "total": total,
                "message": message, "misclassified": wrong, "readout": readout}

    return Panel(controls, draw, readout=True)


def mislabel_panel(rp, flipped: torch.Tensor, losses: torch.Tensor | None = None, seed: int = 0) -> Panel:
    """Mislabel detection: inspect the training points in order of a score and count the flipped ones.

    rp: a ``RepresenterPoints`` fitted on the noisy labels; flipped (n_train,) bool marks the planted
    flips (``data_attribution.flip_labels``); losses (n_train,) optional training losses (a baseline);
    "random" is a fixed random order (seed). Controls: "x" (fraction inspected) and one checkbox per
    ranking. ``panel.state`` = {"x", "found": {ranking: fraction of flips found at x} for the shown
    rankings, "curves": {ranking: (fractions, found)}}; the curves are ``poison.detection_curve``.
    """
    from ..data_attribution.poison import detection_curve

    flipped = torch.as_tensor(flipped, dtype=torch.bool).cpu()
    if len(flipped) != len(rp.alpha_):
        raise ValueError(f"flipped must have one entry per training point ({len(rp.alpha_)}), got {len(flipped)}")
    scores = {"|α|": rp.importance().cpu()}
    if losses is not None:
        losses = torch.as_tensor(losses).detach().cpu().flatten()
        if len(losses) != len(flipped):
            raise ValueError(f"losses must have one entry per training point ({len(flipped)}), got {len(losses)}")
        scores["loss"] = losses
    scores["random"] = torch.rand(len(flipped), generator=torch.Generator().manual_seed(int(seed)))
    curves = {n: detection_curve(s, flipped) for n, s in scores.items()}
    boxes = {n: w.Checkbox(value=True, description=n) for n in curves}
    controls = {"x": w.FloatSlider(value=0.1, min=0.01, max=1.0, step=0.01, description="inspect top"), **boxes}

    def draw(x, **shown):
        fig, ax = plt.subplots(figsize=(4.6, 3.2))
        found = {}
        for n, (fr, f) in curves.items():
            if shown[n]:
                ax.plot(fr, f, label=n)
                found[n] = float(detection_curve(scores[n], flipped, [x])[1][0])
        ax.axvline(x, color="gray", ls=":")
        ax.set_xlabel("fraction of training set inspected")
        ax.set_ylabel("fraction of flipped labels found")
        ax.set_title(f"{int(flipped.sum())} flipped of {len(flipped)}", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return {"x": x, "found": found, "curves": curves,
                "readout": ", ".join(f"{n}: {v:.0%}" for n, v in found.items()) + f" found in top {x:.0%}"}

    return Panel(controls, draw, rows=[["x"], list(boxes)], readout=True)
