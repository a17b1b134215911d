"""Lecture 08 · sanity checks (Adebayo et al. 2018): does the explanation depend on the model?

* ``cascading_randomization`` — re-initialise the layers from the output side, one more at a time,
  and compare each map with the trained model's;
* ``label_randomization`` — train the same architecture on permuted labels and compare;

both by Spearman's ρ per map (``maps.rank_correlation``: ties averaged; two constant maps give
ρ = 1, one constant map ρ = 0).
"""
from __future__ import annotations

import copy
import inspect
import warnings

import torch
from torch import nn

from .._torch import check_inputs, check_model, resolve_target
from .._validate import check_bool, check_int
from ..maps import rank_correlation
from ._common import explain, feature_map

__all__ = ["randomized_layers", "cascading_randomization", "label_randomization", "rank_correlation"]


def randomized_layers(model: nn.Module) -> list[str]:
    """Names of the model's layers with their own parameters, output side first — the order in
    which the cascading randomisation test re-initialises them."""
    check_model(model)
    return [n for n, m in reversed(list(model.named_modules()))
            if n and any(True for _ in m.parameters(recurse=False)) and hasattr(m, "reset_parameters")]


def cascading_randomization(model: nn.Module, inputs: torch.Tensor, target, method, *, layers=None,
                            seed: int = 0, absolute: bool = True, **options) -> dict:
    """Model-parameter randomisation test, cascading (Adebayo et al. 2018).

    Re-initialise the layers (``layers``: names, output side first; default
    ``randomized_layers(model)``) one more at a time — step j has the first j layers random — on a
    copy of the model, recompute the explanation and compare it with the trained model's by
    Spearman ρ of the feature maps (``feature_map``, |·| if ``absolute``). An explanation that
    depends on what the model learnt must decorrelate (ρ → 0); one that stays high is explaining
    the input, not the model.

    method: a name in ``attribution.METHODS`` or ``f(model, inputs, target, **options)``.
    target: int, one per sample, or None = the trained model's predictions (kept fixed for every step).
    Returns {"layers": ["(trained)", name1, ...], "rho": (S+1, N) tensor (row 0 = 1),
    "maps": list of (N, ...) feature maps}. The model is not modified.
    """
    check_model(model)
    x = check_inputs(model, inputs).detach()
    seed = check_int("seed", seed, min=0)
    absolute = check_bool("absolute", absolute)
    if isinstance(layers, str):
        raise TypeError(f"layers must be a list of layer names, got the string {layers!r}; pass [{layers!r}]")
    if layers is not None and not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of layer names (output side first), got {type(layers).__name__} "
                        f"{layers!r}; choose from {randomized_layers(model)}")
    names = randomized_layers(model) if layers is None else list(layers)
    named = dict(model.named_modules())
    for n in names:
        if not isinstance(n, str) or n not in named or not hasattr(named[n], "reset_parameters"):
            raise ValueError(f"layers: {n!r} is not a layer with parameters of the model; "
                             f"choose from {randomized_layers(model)}")
    target = resolve_target(model, x, target)
    base = feature_map(explain(method, model, x, target, **options), x.shape, absolute)
    m = copy.deepcopy(model)
    maps, rhos = [base], [torch.ones(len(x), dtype=torch.float64)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for n in names:
            dict(m.named_modules())[n].reset_parameters()
            r = feature_map(explain(method, m, x, target, **options), x.shape, absolute)
            maps.append(r)
            rhos.append(rank_correlation(base, r))
    return {"layers": ["(trained)"] + names, "rho": torch.stack(rhos), "maps": maps}


def label_randomization(model: nn.Module, train_inputs=None, train_labels=None, inputs: torch.Tensor | None = None,
                        target=None, method=None, *, seed: int = 0, absolute: bool = True,
                        train_options: dict | None = None, random_model: nn.Module | None = None,
                        **options) -> dict:
    """Data randomisation test (Adebayo et al. 2018): train the same architecture on randomly
    permuted labels (a model that can only memorise) and compare its explanation with the trained
    model's by Spearman ρ. A method whose maps stay similar cannot be telling us what the labels
    taught the model.

    train_inputs, train_labels: the training data (deprecated names ``X_train``, ``y_train``);
    ``train_options`` go to ``models.train`` (epochs, lr, ...). target: int, one per sample, or None
    = the trained model's predictions. Returns {"rho": (N,), "random_model": the model trained on
    permuted labels, "maps": (trained map, random-label map)}.
    """
    from ..models import train
    from ..models.training import _check_training_data

    for old, new in (("X_train", "train_inputs"), ("y_train", "train_labels")):
        if old in options:
            if (train_inputs if new == "train_inputs" else train_labels) is not None:
                raise TypeError(f"label_randomization: give {new}= only ({old}= is its deprecated old name)")
            warnings.warn(f"label_randomization({old}=...) is deprecated; use {new}=", DeprecationWarning,
                          stacklevel=2)
            if new == "train_inputs":
                train_inputs = options.pop(old)
            else:
                train_labels = options.pop(old)
    for name, v in (("train_inputs", train_inputs), ("train_labels", train_labels), ("inputs", inputs),
                    ("method", method)):
        if v is None:
            raise TypeError(f"label_randomization needs {name}=")
    check_model(model)
    x = check_inputs(model, inputs).detach()
    seed = check_int("seed", seed, min=0)
    absolute = check_bool("absolute", absolute)
    if train_options is not None and not isinstance(train_options, dict):
        raise TypeError(f"train_options must be a dict of models.train options, got {type(train_options).__name__}")
    options_ok = [p for p in inspect.signature(train).parameters if p not in ("model", "X", "y")]
    for k in train_options or {}:
        if k not in options_ok:
            raise TypeError(f"train_options: models.train has no option {k!r}; choose from {options_ok}")
    if not isinstance(train_labels, torch.Tensor):
        raise TypeError(f"train_labels must be a torch tensor of class indices, got {type(train_labels).__name__}")
    if not isinstance(train_inputs, torch.Tensor):
        raise TypeError(f"train_inputs must be a torch.Tensor batch (N, ...), got {type(train_inputs).__name__}; "
                        f"convert with torch.as_tensor(train_inputs, dtype=torch.float32)")
    train_inputs, train_labels = _check_training_data(model, train_inputs, train_labels,
                                                      names=("train_inputs", "train_labels"))
    g = torch.Generator().manual_seed(seed)
    y_perm = train_labels[torch.randperm(len(train_labels), generator=g)]
    target = resolve_target(model, x, target)
    base = feature_map(explain(method, model, x, target, **options), x.shape, absolute)
    if random_model is None:
        rnd = copy.deepcopy(model)
    else:
        check_model(random_model)
        rnd = copy.deepcopy(random_model)
    opts = dict(progress=False, seed=seed, device=x.device) | dict(train_options or {})
    res = train(rnd, train_inputs, y_perm, **opts)
    rnd = res.model.eval()
    with torch.no_grad():
        dev = next(rnd.parameters()).device
        pred = torch.cat([rnd(train_inputs[i:i + 512].to(dev)).argmax(1).cpu()
                          for i in range(0, len(train_inputs), 512)])
    acc = float((pred == y_perm.cpu()).float().mean())
    r = feature_map(explain(method, rnd, x, target, **options), x.shape, absolute)
    return {"rho": rank_correlation(base, r), "random_model": rnd, "maps": (base, r), "train_accuracy": acc,
            "history": list(res.history)}
