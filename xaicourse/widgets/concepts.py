"""Lecture 09 panels: TCAV (concept, layer, class pickers) and attacks on attribution maps
(method, attack kind and ε → the map before and after), built on ``Panel``."""
from __future__ import annotations

import ipywidgets as w
import matplotlib.pyplot as plt
import numpy as np
import torch

from ._panel import Panel


def tcav_panel(models: dict, concepts: dict, random_sets, inputs, labels, layers, class_names=None,
               n_random: int = 5, seed: int = 0):
    """Model, concept, layer and class pickers → the concept's TCAV scores over the random runs
    next to the random-concept scores, with the t-test's p-value.

    models: {name: model}; concepts: {name: inputs}; random_sets: ≥ n_random + 1 batches;
    layers: layer names, or (readable label, layer name) pairs;
    inputs, labels: the images whose class-k members are scored. Numbers come from
    ``concepts.tcav`` (cached per choice); ``panel.state`` = {"model", "concept", "layer",
    "target", "score", "std", "p_value", "random_score", "scores", "random_scores"}.
    """
    from ..concepts import tcav

    labels = torch.as_tensor(labels)
    names = list(class_names) if class_names else [str(c) for c in sorted(set(labels.tolist()))]
    cache = {}

    def result(model, concept, layer, target):
        key = (model, concept, layer, target)
        if key not in cache:
            xk = inputs[labels == target]
            cache[key] = tcav(models[model], xk, target, layer=layer, concepts={concept: concepts[concept]},
                              random_sets=random_sets, n_random=n_random, seed=seed)[concept]
        return cache[key]

    def draw(model, concept, layer, target):
        r = result(model, concept, layer, target)
        fig, ax = plt.subplots(figsize=(5, 2.8))
        ax.boxplot([r.scores, r.random_scores], widths=0.5)
        ax.set_xticks([1, 2], [f"'{concept}'", "random concept"])
        for j, s in enumerate([r.scores, r.random_scores]):
            ax.scatter(np.full(len(s), j + 1.0) + np.linspace(-0.08, 0.08, len(s)), s, s=12, alpha=0.7)
        ax.set_ylim(-0.05, 1.05)
        ax.axhline(0.5, color="gray", ls=":", lw=1)
        ax.set_ylabel(f"TCAV score for '{names[target]}'")
        verdict = "significant" if r.p_value < 0.01 else "not significant"
        ax.set_title(f"{model}, {layer}: TCAV {r.score:.2f} ± {r.std:.2f}, p = {r.p_value:.2g} ({verdict})",
                     fontsize=9)
        fig.tight_layout()
        return {"model": model, "concept": concept, "layer": layer, "target": target, "score": r.score,
                "std": r.std, "p_value": r.p_value, "random_score": float(r.random_scores.mean()),
                "scores": r.scores, "random_scores": r.random_scores}

    controls = {"model": w.Dropdown(options=list(models), description="model"),
                "concept": w.Dropdown(options=list(concepts), description="concept"),
                "layer": w.Dropdown(options=[lv if isinstance(lv, tuple) else (lv, lv) for lv in layers],
                                    description="layer"),
                "target": w.Dropdown(options=[(n, i) for i, n in enumerate(names)], description="class")}
    return Panel(controls, draw, rows=[["model", "concept"], ["layer", "target"]])


METHOD_LABELS = {"gradient": "gradient", "smoothgrad": "SmoothGrad", "integrated_gradients": "integrated gradients",
                 "grad_cam": "Grad-CAM"}
KIND_LABELS = {"random_sign": "random sign (baseline)", "topk": "top-k", "center": "center of mass"}


def _labelled(values, labels):
    """Dropdown options: (readable label, code name) pairs — the widget's value stays the code name."""
    return [(labels.get(v, str(v).replace("_", " ")), v) for v in values]


def attack_panel(model, images, methods=("gradient", "smoothgrad", "integrated_gradients", "grad_cam"),
                 eps_values=(2 / 255, 4 / 255, 8 / 255, 16 / 255), k: int = 50, steps: int = 10,
                 map_options: dict | None = None, confidence_tol: float | None = 0.05):
    """Image, method, attack kind and ε pickers → the image and its map before the attack, the
    perturbed image and its map after, with the top-k intersection, Spearman ρ and the prediction.
    ε starts at the smallest of ``eps_values``; the method and attack pickers show readable
    labels (their values are the code names). When no perturbation keeps the prediction and its
    confidence (``moved`` False), the panel says so instead of showing an "unchanged" map.

    Computed with ``robustness.attack_attribution`` (cached per choice); ``panel.state`` =
    {"image", "method", "kind", "eps", "topk_intersection", "spearman", "center_shift", "delta_linf",
    "prediction_kept", "confidence_before", "confidence_after", "moved", "message"}.
    """
    from ..robustness import ATTACK_KINDS, attack_attribution
    from ..viz import to_numpy_image

    map_options = dict(map_options or {})
    cache = {}

    def draw(image, method, kind, eps):
        key = (image, method, kind, eps)
        if key not in cache:
            cache[key] = attack_attribution(model, method, images[image:image + 1], kind=kind, eps=eps, n_iter=steps,
                                            k=k, confidence_tol=confidence_tol, **map_options.get(method, {}))
        r = cache[key]
        with torch.no_grad():
            kept = bool(model(r.inputs).argmax(1).item() == r.prediction.item())
        fig, ax = plt.subplots(1, 4, figsize=(10, 2.8))
        ax[0].imshow(to_numpy_image(images[image].cpu()))
        ax[0].set_title("original", fontsize=8)
        ax[1].imshow(r.original_map[0].cpu().numpy(), cmap="hot")
        ax[1].set_title(f"{METHOD_LABELS.get(method, method)} map", fontsize=8)
        ax[2].imshow(to_numpy_image(r.inputs[0].cpu()))
        ax[2].set_title(f"+ δ ({kind}, ‖δ‖∞ = {r.delta_linf.item() * 255:.1f}/255)", fontsize=8)
        moved = bool(r.moved.item())
        ax[3].imshow(r.perturbed_map[0].cpu().numpy(), cmap="hot")
        if moved:
            message = f"map after: top-{k} ∩ {r.topk_intersection.item():.2f}, ρ {r.spearman.item():.2f}"
        else:
            tol = "the prediction" if confidence_tol is None else f"the prediction and its confidence (±{confidence_tol:.0%})"
            message = f"no feasible δ: every candidate changed {tol} — nothing to measure"
        ax[3].set_title(message if moved else "no feasible δ (see below)", fontsize=8)
        for a in ax:
            a.axis("off")
        fig.suptitle(f"{METHOD_LABELS.get(method, method)}, {KIND_LABELS.get(kind, kind)} attack, ε = {eps * 255:.0f}/255 — "
                     f"prediction {'kept' if kept else 'CHANGED'}: confidence {r.confidence_before.item():.3f} → "
                     f"{r.confidence_after.item():.3f}" + ("" if moved else f"\n{message}"), fontsize=9)
        fig.tight_layout()
        return {"image": image, "method": method, "kind": kind, "eps": eps,
                "topk_intersection": r.topk_intersection.item(), "spearman": r.spearman.item(),
                "center_shift": r.center_shift.item(), "delta_linf": r.delta_linf.item(), "prediction_kept": kept,
                "confidence_before": r.confidence_before.item(), "confidence_after": r.confidence_after.item(),
                "moved": moved, "message": message}

    controls = {"image": w.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
                "method": w.Dropdown(options=_labelled(methods, METHOD_LABELS), value=list(methods)[0],
                                     description="method"),
                "kind": w.Dropdown(options=_labelled(ATTACK_KINDS, KIND_LABELS), value="topk", description="attack"),
                "eps": w.SelectionSlider(options=[(f"{e * 255:.0f}/255", e) for e in sorted(eps_values)],
                                         value=min(eps_values), description="ε")}   # start small: the mildest attack
    return Panel(controls, draw, rows=[["image", "method"], ["kind", "eps"]])
