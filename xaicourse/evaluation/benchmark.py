"""Lecture 08 · one table for every method: ``evaluate_methods`` and ``format_evaluation_table``."""
from __future__ import annotations

import time

import torch
from torch import nn

from .._torch import check_inputs, check_model, resolve_target
from .._validate import check_bool, check_int
from ._common import explain, legacy
from .faithfulness import aopc, curve_auc, deletion_curve, insertion_curve
from .localisation import mask_iou, pointing_game
from .sanity import cascading_randomization, randomized_layers

__all__ = ["evaluate_methods", "format_evaluation_table", "EVALUATION_COLUMNS"]

EVALUATION_COLUMNS = ("deletion_auc", "insertion_auc", "aopc", "pointing_game", "mask_iou", "sanity_rho",
                      "seconds_per_image")


def evaluate_methods(model: nn.Module, inputs: torch.Tensor, target, masks, methods: dict, *, n_steps: int = 20,
                     baselines=0.5, sigma: float = 5.0, sanity_n: int = 10, sanity_layers: int = 3,
                     progress: bool = False, **deprecated) -> list[dict]:
    """Lecture 08's benchmark table: one row per method, the columns of ``EVALUATION_COLUMNS``.

    methods: {row name: (method, options)} with method a name in ``attribution.METHODS`` or a function.
    deletion AUC, insertion AUC and AOPC (MoRF) of the signed map with x₀ = ``baselines``/``sigma``
    (default: grey 0.5, the course CNN's "zero", which centres its input at 0.5; on these 32×32
    images a blurred start is often classified already, which compresses insertion AUCs), the
    pointing game and mask IoU (k = |mask|) of |map| against ``masks`` (each a mean over the inputs);
    sanity_rho: mean Spearman ρ between the trained model's signed map and the map after the top
    ``sanity_layers`` layers are re-initialised (cascading randomisation, first ``sanity_n`` inputs);
    seconds_per_image: wall time of the attribution / N. Values are floats; row["maps"] keeps the maps.
    target: int, one per sample, or None (the predicted class). Deprecated: ``steps=``,
    ``fill=``/``value=``.
    """
    from tqdm.auto import tqdm

    baselines, n_steps = legacy("evaluate_methods", deprecated, baselines=baselines, n_steps=n_steps)
    check_model(model)
    x = check_inputs(model, inputs).detach()
    if not isinstance(methods, dict) or not methods:
        raise TypeError(f"methods must be a non-empty dict {{row name: (method, options)}}, got {type(methods).__name__}")
    for name, spec in methods.items():
        if not (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict)):
            raise TypeError(f"methods[{name!r}] must be a pair (method, options dict), got {spec!r}")
    sanity_n = check_int("sanity_n", sanity_n, min=1)
    sanity_layers = check_int("sanity_layers", sanity_layers, min=1)
    progress = check_bool("progress", progress)
    t = resolve_target(model, x, target)
    top = randomized_layers(model)[:sanity_layers]
    curve = dict(n_steps=n_steps, baselines=baselines, sigma=sigma)
    rows = []
    for name, (method, options) in tqdm(list(methods.items()), desc="methods", disable=not progress):
        t0 = time.perf_counter()
        a = explain(method, model, x, t, **options).detach()
        sec = (time.perf_counter() - t0) / len(x)
        d = curve_auc(*deletion_curve(model, x, t, a, **curve))
        i = curve_auc(*insertion_curve(model, x, t, a, **curve))
        ao = aopc(model, x, t, a, **curve)
        pg = pointing_game(a, masks, absolute=True)
        iou = mask_iou(a, masks, absolute=True)
        rho = cascading_randomization(model, x[:sanity_n], t[:sanity_n], method, layers=top, absolute=False,
                                      **dict(options))["rho"][-1]
        rows.append(dict(method=name, deletion_auc=float(d.mean()), insertion_auc=float(i.mean()),
                         aopc=float(ao.mean()), pointing_game=float(pg.mean()), mask_iou=float(iou.mean()),
                         sanity_rho=float(rho.mean()), seconds_per_image=sec, maps=a))
    return rows


def format_evaluation_table(rows: list[dict]) -> str:
    """The table as text, one line per method (↓ lower is better, ↑ higher is better)."""
    heads = ("deletion↓", "insertion↑", "AOPC↑", "pointing↑", "IoU↑", "rand ρ↓", "s/image")
    lines = [f"{'method':24s}" + "".join(f"{h:>11s}" for h in heads)]
    for r in rows:
        lines.append(f"{r['method']:24s}" + "".join(f"{r[c]:>11.3f}" for c in EVALUATION_COLUMNS[:-1])
                     + f"{r['seconds_per_image']:>11.4f}")
    return "\n".join(lines)
