"""Lecture 07 (TracIn) panels, built on ``Panel``."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from ._panel import Panel


def proponents_panel(model, checkpoints, loss_fn, train_inputs, train_labels, test_inputs, test_labels,
                     k: int = 5, *, layers=None, class_names=None):
    """Test-image picker + "cosine" toggle → the test image, its k strongest proponents (largest TracInCP
    scores) and k strongest opponents (most negative).

    Scores come from ``data_attribution.TracInCP`` (one object per variant, its training gradients
    cached; the scores of all test images computed once per variant); ``panel.state`` = {"test",
    "normalize", "proponents", "opponents", "scores"} for the shown image.
    """
    from ..data_attribution import TracInCP
    from .._validate import check_int
    from ..viz import gallery

    k = check_int("k", k, min=1, max=len(train_inputs))
    cache = {}

    def scores(normalize):
        if normalize not in cache:
            cache[normalize] = TracInCP(model, train_inputs, train_labels, checkpoints=checkpoints, loss_fn=loss_fn,
                                        params=layers, normalize=normalize).attribute(test_inputs, test_labels).cpu()
        return cache[normalize]

    name = (lambda c: class_names[int(c)]) if class_names else (lambda c: str(int(c)))

    def draw(test, normalize):
        s = scores(normalize)[test]
        pro = torch.topk(s, k).indices
        opp = torch.topk(-s, k).indices
        # the shared gallery (viz.gallery): one row per kind, titles ≥ 8 pt that never overlap,
        # a width that does not grow with k (so the page does not shrink it), the score histogram
        groups = [(kind, [train_inputs[int(i)] for i in idx],
                   [f"#{int(i)} y={name(train_labels[i])}\n{float(s[i]):+.3g}" for i in idx], colour)
                  for kind, idx, colour in (("proponents (+)", pro, "tab:green"),
                                            ("opponents (−)", opp, "tab:red"))]
        gallery(test_inputs[test], groups, query_title=f"test #{test}, y={name(test_labels[test])}",
                hist=s.numpy(), hist_title="all training scores", hist_xlabel="TracInCP score",
                suptitle=("cosine" if normalize else "dot-product") + " TracInCP: proponents and opponents")
        return {"test": test, "normalize": normalize, "proponents": pro.tolist(), "opponents": opp.tolist(),
                "scores": s}

    controls = {"test": w.IntSlider(value=0, min=0, max=len(test_inputs) - 1, description="test image"),
                "normalize": w.Checkbox(value=False, description="cosine (normalize)")}
    return Panel(controls, draw)


def detection_panel(curves: dict, flagged_name: str = "flipped labels"):
    """Checkboxes over detection curves {name: (fractions, found)} and an "inspect x %" slider.

    The readout line says, for every shown ranking, which fraction of the flagged points lies in the
    top x of the training set ("TracIn self-influence: 62 % found in top 10 %"), as lecture 06's
    mislabel panel does. ``state`` = {"x", "found": {name: fraction found at x} for the shown curves,
    "readout"}; with no curve ticked the readout says so (nothing is plotted).
    """
    boxes = {n: w.Checkbox(value=True, description=n) for n in curves}
    controls = {"x": w.FloatSlider(value=0.1, min=0.01, max=1.0, step=0.01, description="inspect top",
                                   readout_format=".0%"), **boxes}

    def draw(x, **shown):
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        found = {}
        for n, (fr, f) in curves.items():
            if shown[n]:
                ax.plot(fr, f, label=n)
                fr_t, f_t = torch.as_tensor(fr), torch.as_tensor(f)
                found[n] = float(f_t[torch.argmin((fr_t - x).abs())])
        ax.axvline(x, color="gray", ls=":")
        ax.set_xlabel("fraction of training set inspected")
        ax.set_ylabel(f"fraction of {flagged_name} found")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if found:
            ax.legend(fontsize=7)
            readout = "; ".join(f"{n}: {v:.0%}" for n, v in found.items()) + \
                f" of the {flagged_name} found in the top {x:.0%}"
        else:
            readout = "tick at least one ranking to see how many it finds"
        return {"x": x, "found": found, "readout": readout}

    return Panel(controls, draw, rows=[["x"], list(boxes)], readout=True)
