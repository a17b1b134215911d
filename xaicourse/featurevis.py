"""Feature visualisation: activation maximisation and top-activating dataset examples.

The problem (lecture 01). For a unit ``a(x)`` of a trained network — a class logit, the
activation map ``z[:, c, :, :]`` of a layer reduced over positions, or one element
``z[:, c, i, j]`` — find

    x̂ = argmax_{x : ‖x − x₀‖_p ≤ r}  a(x) − λ_TV·TV(x) − λ₂·‖x − x₀‖₂²

by projected gradient ascent. ``x₀`` is the ball's centre (``center``; the lecture notes use
0, the course models see inputs in [0, 1] and subtract 0.5 themselves, so 0.5 is their
natural centre). Each step moves along the steepest-ascent direction of the p-norm
(g/‖g‖₂ for p = 2, sign(g) for p = ∞), then projects back onto the ball (and, optionally,
onto a box of valid pixel values) — the Lp-ball machinery lives in ``xaicourse.constraints``.
Extra regularisers: random jitter (the image is rolled by a random offset before each
forward pass) and a Gaussian blur applied every few steps.

Public API
    Objective, class_logit, channel, neuron      — which unit to maximise
    evaluate_objective(model, objective, inputs) — its value, shape (N,)
    layer_sizes(model, example)                  — channels per layer (for pickers)
    total_variation(x, kind)                     — anisotropic / isotropic TV, shape (N,) (``maps``' one)
    gaussian_blur(x, sigma)                      — ``maps.gaussian_blur`` with truncate=2.0
    activation_maximization(model, objective, shape, n_steps, ...) → FeatureVisResult
    top_activating_examples(model, objective, inputs, k) → (indices, activations)
    tv_sweep(model, objective, shape, tv_weights, ...)  — the TV-weight ablation
    data_radius(inputs, p, center), course_settings(dataset)
Deprecated keyword names (they warn and forward): ``steps=`` (→ ``n_steps``), ``x=`` / ``dataset=`` /
``X=`` (→ ``inputs``).
Elsewhere: ``constraints.lp_norm / project_lp / ascent_step`` (the constraint),
``models.load_pretrained`` (opt-in ImageNet weights).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import _torch, maps
from ._validate import as_tensor, check_bool, check_choice, check_int, check_real, renamed
from .constraints import _check_center, _check_clamp, _check_p, _check_radius, ascent_step, lp_norm, project_lp
from .device import current_device, get_device
from .maps import TV_KINDS, total_variation

__all__ = ["Objective", "class_logit", "channel", "neuron", "evaluate_objective", "layer_sizes", "total_variation",
           "gaussian_blur", "FeatureVisResult", "activation_maximization", "top_activating_examples",
           "data_radius", "COURSE_SETTINGS", "course_settings", "tv_sweep", "TV_KINDS"]


def _index(name: str, value, *, optional: bool = False):
    """A non-negative int index (numpy ints accepted), or None when ``optional``."""
    if value is None and optional:
        return None
    return check_int(name, value, min=0)


# ------------------------------------------------------------------ objectives
@dataclass(frozen=True)
class Objective:
    """A unit of a network whose activation we maximise.

    layer: name of a module in ``model.named_modules()`` (its output z is read with a forward
        hook), or ``None`` for the model's output (the logits).
    channel: index c along dim 1 of z (for a linear layer, the neuron; for the output, the class).
    position: ``None`` → reduce z[:, c, ...] over all positions with ``reduce``;
        ``(i, j)`` → the single neuron z[:, c, i, j].
    reduce: "mean" (default; scale-free in the map size) or "sum" (Σ_{h,w} z[:, c, h, w], as
        written in the lecture notes).
    squared: maximise z² instead of z (before the reduction), i.e. ‖z[:, c]‖₂² for
        reduce="sum" — for units whose sign we do not care about.
    """
    layer: str | None = None
    channel: int = 0
    position: tuple | None = None
    reduce: str = "mean"
    squared: bool = False

    def __post_init__(self):
        if self.layer is not None and not isinstance(self.layer, str):
            raise TypeError(f"layer must be a module name (str) or None, got {type(self.layer).__name__}")
        object.__setattr__(self, "channel", check_int("channel", self.channel, min=0))
        check_choice("reduce", self.reduce, ("mean", "sum"))
        check_bool("squared", self.squared)
        if self.position is not None:
            if isinstance(self.position, (str, bytes)) or not hasattr(self.position, "__iter__"):
                raise TypeError(f"position must be None or a tuple of non-negative ints, got {self.position!r}")
            pos = tuple(check_int(f"position[{i}]", v, min=0) for i, v in enumerate(self.position))
            object.__setattr__(self, "position", pos)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """The objective from the layer output ``z`` (N, C, ...) → (N,)."""
        if z.dim() < 2:
            raise ValueError(f"layer {self.layer or 'output'!r} gives shape {tuple(z.shape)}; need (N, C, ...)")
        if self.channel >= z.shape[1]:
            raise ValueError(f"objective {self.label()}: channel {self.channel} out of range: "
                             f"{self.layer or 'the output'!r} has {z.shape[1]} channels (0..{z.shape[1] - 1})")
        zc = z[:, self.channel]
        if self.position is not None:
            spatial = tuple(zc.shape[1:])
            if len(self.position) != len(spatial) or any(p >= s for p, s in zip(self.position, spatial)):
                raise ValueError(f"objective {self.label()}: position {self.position} out of range for a map "
                                 f"of shape {spatial}")
            zc = zc[(slice(None),) + self.position]
        if self.squared:
            zc = zc ** 2
        if zc.dim() == 1:
            return zc
        return zc.flatten(1).mean(1) if self.reduce == "mean" else zc.flatten(1).sum(1)

    def label(self) -> str:
        where = "logit" if self.layer is None else self.layer
        pos = "" if self.position is None else f"@{self.position}"
        sq = "²" if self.squared else ""
        red = "" if self.position is not None or self.layer is None else f" ({self.reduce})"
        return f"{where}[{self.channel}]{pos}{sq}{red}"


def class_logit(k: int, squared: bool = False) -> Objective:
    """The logit of class ``k`` (the model's output, column k)."""
    return Objective(None, _index("k", k), squared=squared)


def channel(layer: str, c: int, reduce: str = "mean", squared: bool = False) -> Objective:
    """Channel ``c`` of layer ``layer``, reduced over positions: mean or Σ_{h,w} z[:, c, h, w]."""
    return Objective(layer, _index("c", c), reduce=reduce, squared=squared)


def neuron(layer: str, c: int, i: int | None = None, j: int | None = None, squared: bool = False) -> Objective:
    """One neuron: z[:, c, i, j] of a conv layer, or z[:, c] of a linear layer (i, j = None)."""
    c, i, j = _index("c", c), _index("i", i, optional=True), _index("j", j, optional=True)
    pos = None if i is None and j is None else (i, j)
    if pos is not None and None in pos:
        raise ValueError("neuron: give both i and j (conv layer) or neither (linear layer)")
    return Objective(layer, c, position=pos, squared=squared)


def _as_objective(obj) -> Objective:
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, bool):
        raise TypeError("objective must be an int (class), an Objective or a list of them, got a bool")
    if isinstance(obj, (int, np.integer)):
        return class_logit(obj)
    raise TypeError(f"objective must be an int (class), an Objective or a list of them, got {type(obj).__name__}")


def _as_objectives(objective) -> list[Objective]:
    if isinstance(objective, (list, tuple)):
        if len(objective) == 0:
            raise ValueError("objective: the list of objectives is empty")
        return [_as_objective(o) for o in objective]
    return [_as_objective(objective)]


def _forward(model: nn.Module, x: torch.Tensor, layers) -> dict:
    """One forward pass recording the outputs of ``layers``: {name: z, None: model output}."""
    layers = list(layers)
    with (_torch.capture(model, layers) if layers else contextlib.nullcontext({})) as acts:
        out = model(x)
    return {**acts, None: out}


def _values(model: nn.Module, objs: list, x: torch.Tensor) -> torch.Tensor:
    acts = _forward(model, x, sorted({o.layer for o in objs if o.layer is not None}))
    if len(objs) == 1:
        return objs[0].value(acts[objs[0].layer])
    return torch.cat([o.value(acts[o.layer][n:n + 1]) for n, o in enumerate(objs)])


def _check_layers(model: nn.Module, objs: list) -> None:
    for o in objs:
        if o.layer is not None:
            try:
                _torch.resolve_layer(model, o.layer)
            except (ValueError, TypeError) as err:
                raise type(err)(f"objective {o.label()}: {err}") from err


@renamed(x="inputs")
def evaluate_objective(model: nn.Module, objective, inputs: torch.Tensor) -> torch.Tensor:
    """Value of the objective(s) for each image of ``inputs`` (N, C, H, W) → (N,), differentiable.

    ``objective``: one objective (applied to every image) or a list of N (image n gets
    objective n). Layers are read with forward hooks (``_torch.capture``) in a single forward
    pass, the model in eval mode (its mode is restored afterwards; a train-mode BatchNorm keeps
    its running statistics); inputs are checked (``_torch.check_inputs``: float, finite, the
    model's channels) and moved to the model's device.
    """
    _torch.check_model(model)
    objs = _as_objectives(objective)
    x = _torch.check_inputs(model, inputs, "inputs")
    if len(objs) not in (1, len(x)):
        raise ValueError(f"objective: give one objective or one per image ({len(x)}), got {len(objs)}")
    _check_layers(model, objs)
    with _torch.eval_on(model):
        return _values(model, objs, x)


@torch.no_grad()
def layer_sizes(model: nn.Module, example: torch.Tensor, layers=None) -> dict:
    """Number of channels (dim 1) of each named layer's output for one ``example`` (C, H, W).

    layers: names to report (default: every Conv2d/Linear module). Returns {name: channels},
    with the model output under ``None`` (the number of classes) — what a unit picker needs.
    """
    _torch.check_model(model)
    example = as_tensor("example", example, ndim=3)
    if layers is None:
        layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    layers = list(layers)
    for n in layers:
        _torch.resolve_layer(model, n)
    with _torch.eval_on(model):
        acts = _forward(model, _torch.check_inputs(model, example[None], "example[None]"), layers)
    return {None: acts[None].shape[1], **{n: acts[n].shape[1] for n in layers}}


# ------------------------------------------------------------------ regularisers
def gaussian_blur(x: torch.Tensor, sigma: float, *, truncate: float = 2.0) -> torch.Tensor:
    """``maps.gaussian_blur`` with the kernel cut at 2σ (featurevis' historical radius ⌈2σ⌉, kept so
    lecture 01's numbers stay): blur each channel of (N, C, H, W), reflect padding, constants kept."""
    return maps.gaussian_blur(x, sigma, truncate=truncate)


# ------------------------------------------------------------------ the optimiser
@dataclass
class FeatureVisResult:
    """What ``activation_maximization`` returns.

    x: (B, C, H, W) optimised inputs (CPU), one per objective, in the model's input space.
    history: {"objective": (steps, B), "tv": (steps, B)} — the objective (on the jittered input
        when jitter > 0) and TV(x) at the start of each step.
    final_objective, final_tv: (B,) at the returned x (no jitter).
    objectives: the list of ``Objective``; settings: the arguments used.
    """
    x: torch.Tensor
    history: dict
    final_objective: torch.Tensor
    final_tv: torch.Tensor
    objectives: list
    settings: dict = field(default_factory=dict)


@renamed(steps="n_steps")
def activation_maximization(model: nn.Module, objective, shape, n_steps: int = 200, lr: float = 0.05,
                            p=2, radius: float = 1.0, center: float = 0.0, clamp=None,
                            tv_weight: float = 0.0, tv_kind: str = "anisotropic", l2_weight: float = 0.0,
                            jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                            init_std: float = 0.01, seed: int = 0, device=None,
                            progress: bool = False) -> FeatureVisResult:
    """Find inputs that maximise a unit, by projected steepest ascent on

        J(x) = a(x) − tv_weight·TV(x) − l2_weight·‖x − center‖₂²    s.t. ‖x − center‖_p ≤ radius

    model: a torch module (put in eval mode for the run; its weights, mode and device are
        left as found).
    objective: an int (class logit), an ``Objective``, or a list of them — one image each,
        optimised together as one batch (images do not interact).
    shape: (C, H, W) of one input, or (B, C, H, W) with a single objective (B restarts).
    n_steps: number of ascent steps (int ≥ 1; ``steps=`` is its deprecated name); lr: step size as a fraction of ``radius``, decayed
        by a cosine schedule to 10 % of its start (η_t = lr·radius·(0.1 + 0.9·(1 + cos(πt/T))/2)).
    p: 2 or inf; radius > 0; center: the ball's centre x₀ (a scalar pixel value);
    clamp: optional (low, high) box for pixel values, intersected with the ball.
    tv_weight, tv_kind: total-variation penalty (``total_variation``). l2_weight: L2 decay.
    jitter: roll the image by a random (dy, dx) ∈ [−jitter, jitter]² before each forward pass.
    blur_every, blur_sigma: every ``blur_every`` steps blur x − x₀ with ``gaussian_blur``.
    init_std: std of the Gaussian start around ``center``; seed: fixes start and jitter.
    device: where to run; None means ``current_device()`` (the notebook's device toggle).
    Returns a ``FeatureVisResult`` (x on the CPU plus per-step history).
    """
    _torch.check_model(model)
    objs = _as_objectives(objective)
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"shape must be a tuple (C, H, W) or (B, C, H, W), got {shape!r}")
    shape = tuple(check_int(f"shape[{i}]", s) for i, s in enumerate(shape))
    if len(shape) == 3:
        B = len(objs)
        shape = (B,) + shape
    elif len(shape) == 4:
        B = shape[0]
        if len(objs) not in (1, B):
            raise ValueError(f"shape has batch {B} but {len(objs)} objectives were given")
    else:
        raise ValueError(f"shape must be (C, H, W) or (B, C, H, W), got {shape}")
    if any(s <= 0 for s in shape):
        raise ValueError(f"shape must be positive, got {shape}")
    p = _check_p(p)
    radius = _check_radius(radius)
    center = _check_center(center)
    if isinstance(center, torch.Tensor):
        raise TypeError("center must be a scalar pixel value here (the start is drawn around it)")
    box = _check_clamp(clamp, center)
    steps = n_steps = check_int("n_steps", n_steps, min=1)
    lr = check_real("lr", lr, min=0.0, min_inclusive=False)
    tv_weight = check_real("tv_weight", tv_weight, min=0.0)
    l2_weight = check_real("l2_weight", l2_weight, min=0.0)
    check_choice("tv_kind", tv_kind, TV_KINDS)
    jitter = check_int("jitter", jitter, min=0)
    blur_every = check_int("blur_every", blur_every, min=0)
    blur_sigma = check_real("blur_sigma", blur_sigma, min=0.0, min_inclusive=False)
    init_std = check_real("init_std", init_std, min=0.0)
    seed = check_int("seed", seed, min=0)
    progress = check_bool("progress", progress)
    _check_layers(model, objs)

    dev = current_device() if device is None else get_device(device)
    gen = torch.Generator().manual_seed(seed)
    x = center + init_std * torch.randn(shape, generator=gen, dtype=_torch.model_dtype(model) or torch.float32)
    x = project_lp(x, radius, p, center, box)
    if len(objs) == 1 and B > 1:
        objs = objs * B
    hist_obj, hist_tv = torch.empty(steps, B), torch.empty(steps, B)
    with _torch.eval_on(model, to=dev, freeze=True), _torch.torch_threads(_torch.threads_for(dev, x.numel())):
        x = _torch.check_inputs(model, x, "an input of this shape")
        for t in tqdm(range(steps), desc="activation maximisation", disable=not progress, leave=False):
            x.requires_grad_(True)
            xin = x
            if jitter:
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                xin = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            a = _values(model, objs, xin)
            if not torch.isfinite(a).all():
                raise FloatingPointError(f"objective became non-finite at step {t}; lower lr or radius")
            tv = total_variation(x, tv_kind)
            J = a - tv_weight * tv
            if l2_weight:
                J = J - l2_weight * ((x - center) ** 2).flatten(1).sum(1)
            (g,) = torch.autograd.grad(J.sum(), x)
            hist_obj[t], hist_tv[t] = a.detach().cpu(), tv.detach().cpu()
            eta = lr * radius * (0.1 + 0.45 * (1 + math.cos(math.pi * t / steps)))
            with torch.no_grad():
                x = ascent_step(x.detach(), g, eta, radius, p, center, box)
                if blur_every and (t + 1) % blur_every == 0 and t + 1 < steps:
                    x = project_lp(gaussian_blur(x, blur_sigma), radius, p, center, box)
        with torch.no_grad():
            final = _values(model, objs, x).cpu()
            final_tv = total_variation(x, tv_kind).cpu()
    settings = dict(n_steps=n_steps, lr=lr, p=p, radius=radius, center=center, clamp=box, tv_weight=tv_weight,
                    tv_kind=tv_kind, l2_weight=l2_weight, jitter=jitter, blur_every=blur_every,
                    blur_sigma=blur_sigma, init_std=init_std, seed=seed)
    return FeatureVisResult(x.detach().cpu(), {"objective": hist_obj, "tv": hist_tv}, final, final_tv,
                            objs, settings)


# ------------------------------------------------------------------ dataset examples
def _as_images(dataset) -> torch.Tensor:
    if isinstance(dataset, torch.Tensor):
        return dataset
    if dataset is None or isinstance(dataset, (str, bytes, dict)):
        raise TypeError(f"inputs must be an image tensor (N, C, H, W), a tuple (X, y) or a torch Dataset, got "
                        f"{type(dataset).__name__}")
    if isinstance(dataset, np.ndarray):
        return as_tensor("inputs", dataset)
    if isinstance(dataset, list) and dataset and isinstance(dataset[0], list):  # nested lists of numbers
        return as_tensor("inputs", dataset, dtype=torch.get_default_dtype())
    if isinstance(dataset, (tuple, list)) and len(dataset) and isinstance(dataset[0], torch.Tensor) \
            and dataset[0].dim() >= 2:
        return dataset[0]  # (X, y)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        items = [dataset[i] for i in range(len(dataset))]
        items = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
        return torch.stack([torch.as_tensor(it) for it in items])
    raise TypeError("inputs must be an image tensor (N, C, H, W), a tuple (X, y) or a torch Dataset")


@renamed(dataset="inputs")
@torch.no_grad()
def top_activating_examples(model: nn.Module, objective, inputs, k: int = 8, batch_size: int = 512,
                            device=None):
    """The k images of ``inputs`` that excite the unit most: argmax_{x ∈ data} a(x).

    objective: as in ``activation_maximization`` (one objective). inputs (``dataset=`` is its
    deprecated name): a float tensor
    (N, C, H, W), a tuple (X, y), or a torch Dataset of (x, y) / x; finite values (NaN/inf raise
    ValueError), floating point (integer images raise TypeError: convert 0–255 pixels with
    ``X.float() / 255``). device: None means ``current_device()``. The model is put in eval mode
    for the pass and left as found. Returns ``(indices, activations)``, two tensors of shape
    (k,), sorted by decreasing activation (ties keep dataset order).
    """
    _torch.check_model(model)
    objs = _as_objectives(objective)
    if len(objs) != 1:
        raise ValueError("top_activating_examples takes one objective")
    X = as_tensor("inputs", _as_images(inputs), min_ndim=2)
    k = check_int("k", k)
    if not 1 <= k <= len(X):
        raise ValueError(f"k must be an int in [1, {len(X)}] (the dataset size), got {k!r}")
    batch_size = check_int("batch_size", batch_size, min=1)
    _check_layers(model, objs)
    dev = current_device() if device is None else get_device(device)
    with _torch.eval_on(model, to=dev):
        vals = torch.cat([_values(model, objs, _torch.check_inputs(model, X[i:i + batch_size], "inputs")).cpu()
                          for i in range(0, len(X), batch_size)])
    if not torch.isfinite(vals).all():
        raise ValueError(f"the objective {objs[0].label()} is NaN/inf for {int((~torch.isfinite(vals)).sum())} "
                         "images (the model's output is not finite)")
    order = torch.sort(vals, descending=True, stable=True).indices[:k]
    return order, vals[order]


# ------------------------------------------------------------------ course settings
@renamed(X="inputs")
def data_radius(inputs: torch.Tensor, p=2, center: float = 0.5, quantile: float = 0.5) -> float:
    """A radius matched to the data: the ``quantile`` of ‖x − center‖_p over the images ``inputs``
    (N, ...) (``X=`` is the deprecated name).

    With the median, the optimised image gets the "energy" of a typical real image, so its
    activation can be compared fairly with the dataset's best images.
    """
    X = as_tensor("inputs", inputs, min_ndim=2)
    quantile = check_real("quantile", quantile, min=0.0, max=1.0)
    return float(torch.quantile(lp_norm(X, p, center), quantile))


# The lecture's settings for the two course CNNs. Their inputs are pixels in [0, 1] (the model
# subtracts 0.5 itself), so the ball is centred at 0.5 and, with p = ∞ and radius 0.5, it is
# exactly the box of valid images [0, 1]^d: every real image is feasible, and the optimum can be
# compared with the best one fairly. (For p = 2, ``data_radius`` gives the median ‖x − 0.5‖₂ of
# the training images — 3.39 for digits, 8.34 for shapes — and clamp=(0, 1) keeps pixels valid.)
# ``tv_weight`` is the recommended total-variation weight from lecture 01's ablation: it at least
# halves TV and keeps ≥ 80 % of the unregularised activation (benchmarks/bench_featurevis.py).
# The number of steps is "n_steps"; course_settings(..., steps=k) (the old name) still sets it.
_STEPS_KEY = "n_steps"
COURSE_SETTINGS = {
    "digits": dict(p=math.inf, radius=0.5, center=0.5, lr=0.2, tv_weight=0.4, **{_STEPS_KEY: 150}),
    "shapes": dict(p=math.inf, radius=0.5, center=0.5, lr=0.2, tv_weight=0.007, **{_STEPS_KEY: 150}),
}


def course_settings(dataset: str, **overrides) -> dict:
    """Keyword arguments for ``activation_maximization`` on a course model ("digits"/"shapes").

    The number of steps is ``n_steps``; ``steps=`` (its old name) still sets it, with a DeprecationWarning."""
    check_choice("dataset", dataset, tuple(COURSE_SETTINGS))
    if "steps" in overrides and "n_steps" in overrides:
        raise TypeError("course_settings: give n_steps= only (steps= is its deprecated old name)")
    if "steps" in overrides:
        warnings.warn("course_settings(steps=...) is deprecated; use n_steps=", DeprecationWarning, stacklevel=2)
        overrides[_STEPS_KEY] = overrides.pop("steps")
    return {**COURSE_SETTINGS[dataset], **overrides}


def tv_sweep(model, objective, shape, tv_weights, progress: bool = False, **kwargs) -> dict:
    """Run ``activation_maximization`` once per TV weight (same seed, same everything else).

    Returns {"tv_weight": (W,), "activation": (W, B), "tv": (W, B), "x": (W, B, C, H, W)};
    "tv" is always the *anisotropic* TV, so runs with different ``tv_kind`` compare. The
    ablation of lecture 01: how much total variation a weight removes and how much of the
    activation survives (divide by the row of tv_weight = 0).
    """
    if isinstance(tv_weights, (str, bytes)) or not hasattr(tv_weights, "__iter__"):
        raise TypeError(f"tv_weights must be a sequence of numbers ≥ 0, got {tv_weights!r}")
    progress = check_bool("progress", progress)
    ws = [check_real(f"tv_weights[{i}]", w, min=0.0) for i, w in enumerate(tv_weights)]
    if not ws:
        raise ValueError("tv_weights must not be empty")
    acts, tvs, xs = [], [], []
    for w in tqdm(ws, desc="TV sweep", disable=not progress, leave=False):
        r = activation_maximization(model, objective, shape, **{**kwargs, "tv_weight": w})
        acts.append(r.final_objective)
        tvs.append(total_variation(r.x, "anisotropic"))
        xs.append(r.x)
    return {"tv_weight": torch.tensor(ws), "activation": torch.stack(acts), "tv": torch.stack(tvs),
            "x": torch.stack(xs)}
