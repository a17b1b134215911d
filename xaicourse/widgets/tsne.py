"""Lecture 02 (t-SNE): perplexity and iteration sliders over t-SNE maps."""
from __future__ import annotations


import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch

from .._validate import check_int
from ._panel import Panel

__all__ = ["tsne_panel"]

CAVEATS = ("<small>Caveats: cluster <i>sizes</i> and the <i>distances between</i> clusters in a t-SNE map "
           "carry little meaning; the picture changes with perplexity (and seed). Early steps (≤ 250) are "
           "under early exaggeration.</small>")


def tsne_panel(X, labels, perplexities=(2, 5, 10, 30, 50), perplexity=30, n_iter: int | None = None,
               snapshot_every: int = 10, seed: int = 0, *, max_iter: int | None = None) -> Panel:
    """Perplexity and iteration sliders over t-SNE maps of X (N, F), coloured by ``labels`` (N,).

    Each perplexity is run once with ``xaicourse.tsne.TSNE`` (PCA init, so runs are reproducible)
    for ``max_iter`` steps (default 500; ``n_iter`` is the older name), keeping a snapshot every
    ``snapshot_every`` steps; the step slider replays them. The map is drawn with
    ``viz.embedding_scatter`` (label k always gets the same colour). The readout shows the exact
    KL(P‖Q) at that step (the run's ``kl_history_``) and the trustworthiness (k = 10).
    Keep X small (a few hundred points): every new perplexity is a full run.

    Controls: "perplexity", "step" (also attributes). ``panel.state``: perplexity, step, kl,
    trustworthiness, embedding (N, 2), readout.
    """
    from sklearn.manifold import trustworthiness

    from ..tsne import TSNE
    from ..viz import embedding_scatter

    if max_iter is not None and n_iter is not None and max_iter != n_iter:
        raise ValueError(f"give max_iter or its old name n_iter, not both ({max_iter} vs {n_iter})")
    iters = max_iter if max_iter is not None else (n_iter if n_iter is not None else 500)
    iters = check_int("max_iter", iters, min=1)
    snapshot_every = check_int("snapshot_every", snapshot_every, min=1, max=iters)
    Xn = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    Xn = Xn.reshape(len(Xn), -1)
    lab = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if len(lab) != len(Xn):
        raise ValueError(f"labels must have one entry per row of X ({len(Xn)}), got {len(lab)}")
    options = [p for p in perplexities if p < len(Xn) - 1]
    if not options:
        raise ValueError(f"perplexities must contain a value below n_samples − 1 = {len(Xn) - 1}")
    if perplexity not in options:
        perplexity = options[len(options) // 2]
    last = iters - iters % snapshot_every  # the last step that has a snapshot
    runs = {}

    def run(p):
        if p not in runs:  # device=None: the notebook's current device
            runs[p] = TSNE(perplexity=float(p), init="pca", random_state=seed, snapshot_every=snapshot_every,
                           max_iter=iters).fit(Xn)
        return runs[p]

    controls = dict(
        perplexity=w.SelectionSlider(options=options, value=perplexity, description="perplexity",
                                     continuous_update=False),
        step=w.IntSlider(value=last, min=snapshot_every, max=last, step=snapshot_every, description="step",
                         continuous_update=False),
    )

    def draw(perplexity, step):
        m = run(perplexity)
        snaps = dict(m.snapshots_)
        t = min(snaps, key=lambda s: abs(s - step))  # a run stopped early has fewer snapshots
        Y = snaps[t]
        kl = dict(m.kl_history_)[t]
        tw = trustworthiness(Xn, Y, n_neighbors=min(10, len(Xn) // 2 - 1))
        _, ax = plt.subplots(figsize=(5, 5))
        embedding_scatter(Y, lab, ax=ax, title=f"t-SNE, perplexity {perplexity}, step {t}")
        return dict(perplexity=perplexity, step=t, kl=kl, trustworthiness=tw, embedding=Y,
                    readout=f"perplexity {perplexity}, step {t}: KL(P‖Q) = <b>{kl:.3f}</b>, "
                            f"trustworthiness = <b>{tw:.3f}</b>")

    return Panel(controls, draw, readout=True, header=CAVEATS)
