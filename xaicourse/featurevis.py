"""Feature visualisation: activation maximisation and top-activating dataset examples.

The problem (lecture 01). For a unit ``a(x)`` of a trained network — a class logit, the
activation map ``z[:, c, :, :]`` of a layer reduced over positions, or one element
``z[:, c, i, j]`` — find

    x̂ = argmax_{x : ‖x − x₀‖_p ≤ r}  a(x) − λ_TV·TV(x) − λ₂·‖x − x₀‖₂²

by projected gradient ascent. ``x₀`` is the ball's centre (``center``; the lecture notes use
0, the course models see inputs in [0, 1] and subtract 0.5 themselves, so 0.5 is their
natural centre). Each step moves along the steepest-ascent direction of the p-norm
(g/‖g‖₂ for p = 2, sign(g) for p = ∞), then projects back onto the ball (and, optionally,
onto a box of valid pixel values). Extra regularisers: random jitter (the image is rolled by
a random offset before each forward pass) and a Gaussian blur applied every few steps.

Public API
    Objective, class_logit, channel, neuron      — which unit to maximise
    evaluate_objective(model, objective, x)      — its value, shape (N,)
    layer_sizes(model, example)                  — channels per layer (for pickers)
    total_variation(x, kind)                     — anisotropic / isotropic TV, shape (N,)
    project_lp(x, radius, p, center, clamp)      — Euclidean projection onto the constraint set
    ascent_step(x, grad, step_size, ...)         — one projected steepest-ascent step
    gaussian_blur(x, sigma)
    activation_maximization(model, objective, shape, ...) → FeatureVisResult
    top_activating_examples(model, objective, dataset, k) → (indices, activations)
    tv_sweep(model, objective, shape, tv_weights, ...)  — the TV-weight ablation
    data_radius(X, p, center), course_settings(dataset)
    load_pretrained(name, source, allow_download)  — opt-in ImageNet weights (needs network)
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .device import get_device

SUPPORTED_P = (2, math.inf)
TV_KINDS = ("anisotropic", "isotropic")


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
        if isinstance(self.channel, bool) or not isinstance(self.channel, int) or self.channel < 0:
            raise ValueError(f"channel must be a non-negative int, got {self.channel!r}")
        if self.reduce not in ("mean", "sum"):
            raise ValueError(f"reduce must be 'mean' or 'sum', got {self.reduce!r}")
        if self.position is not None:
            pos = tuple(self.position)
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pos):
                raise ValueError(f"position must be a tuple of non-negative ints, got {self.position!r}")
            object.__setattr__(self, "position", pos)

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """The objective from the layer output ``z`` (N, C, ...) → (N,)."""
        if z.dim() < 2:
            raise ValueError(f"layer {self.layer or 'output'!r} gives shape {tuple(z.shape)}; need (N, C, ...)")
        if self.channel >= z.shape[1]:
            raise ValueError(f"channel {self.channel} out of range: {self.layer or 'the output'!r} "
                             f"has {z.shape[1]} channels (0..{z.shape[1] - 1})")
        zc = z[:, self.channel]
        if self.position is not None:
            spatial = tuple(zc.shape[1:])
            if len(self.position) != len(spatial) or any(p >= s for p, s in zip(self.position, spatial)):
                raise ValueError(f"position {self.position} out of range for a map of shape {spatial}")
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



def _eval_on(model: nn.Module, dev: torch.device):
    """Put ``model`` in eval mode on ``dev``; return a function that restores mode and device."""
    was_training = model.training
    first = next(model.parameters(), None)
    old_dev = first.device if first is not None else None
    model.eval().to(dev)

    def restore():
        model.train(was_training)
        if old_dev is not None:
            model.to(old_dev)
    return restore

def class_logit(k: int, squared: bool = False) -> Objective:
    """The logit of class ``k`` (the model's output, column k)."""
    return Objective(None, k, squared=squared)


def channel(layer: str, c: int, reduce: str = "mean", squared: bool = False) -> Objective:
    """Channel ``c`` of layer ``layer``, reduced over positions: mean or Σ_{h,w} z[:, c, h, w]."""
    return Objective(layer, c, reduce=reduce, squared=squared)


def neuron(layer: str, c: int, i: int | None = None, j: int | None = None, squared: bool = False) -> Objective:
    """One neuron: z[:, c, i, j] of a conv layer, or z[:, c] of a linear layer (i, j = None)."""
    pos = None if i is None and j is None else (i, j)
    if pos is not None and None in pos:
        raise ValueError("neuron: give both i and j (conv layer) or neither (linear layer)")
    return Objective(layer, c, position=pos, squared=squared)


def _as_objective(obj) -> Objective:
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, bool):
        raise TypeError("objective must be an int (class), an Objective or a list of them, got a bool")
    if isinstance(obj, int):
        return class_logit(obj)
    raise TypeError(f"objective must be an int (class), an Objective or a list of them, got {type(obj).__name__}")


def _as_objectives(objective) -> list[Objective]:
    if isinstance(objective, (list, tuple)):
        if len(objective) == 0:
            raise ValueError("objective: the list of objectives is empty")
        return [_as_objective(o) for o in objective]
    return [_as_objective(objective)]


def _module(model: nn.Module, name: str) -> nn.Module:
    mods = dict(model.named_modules())
    if name not in mods or name == "":
        valid = [n for n in mods if n]
        raise ValueError(f"unknown layer {name!r}; valid layer names are: {', '.join(valid)}")
    return mods[name]


def evaluate_objective(model: nn.Module, objective, x: torch.Tensor) -> torch.Tensor:
    """Value of the objective(s) for each image of ``x`` (N, ...) → (N,), differentiable.

    ``objective``: one objective (applied to every image) or a list of N (image n gets
    objective n). Layers are read with forward hooks in a single forward pass.
    """
    objs = _as_objectives(objective)
    if len(objs) not in (1, len(x)):
        raise ValueError(f"objective: give one objective or one per image ({len(x)}), got {len(objs)}")
    layers = sorted({o.layer for o in objs if o.layer is not None})
    acts, handles = {}, []
    for name in layers:
        def hook(_m, _inp, out, name=name):
            acts[name] = out
        handles.append(_module(model, name).register_forward_hook(hook))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    acts[None] = out
    if len(objs) == 1:
        return objs[0].value(acts[objs[0].layer])
    vals = [o.value(acts[o.layer][n:n + 1]) for n, o in enumerate(objs)]
    return torch.cat(vals)


@torch.no_grad()
def layer_sizes(model: nn.Module, example: torch.Tensor, layers=None) -> dict:
    """Number of channels (dim 1) of each named layer's output for one ``example`` (C, H, W).

    layers: names to report (default: every Conv2d/Linear module). Returns {name: channels},
    with the model output under ``None`` (the number of classes) — what a unit picker needs.
    """
    mods = dict(model.named_modules())
    if layers is None:
        layers = [n for n, m in mods.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for n in layers:
        _module(model, n)
    dev = next(model.parameters()).device
    shapes, handles = {}, []
    for n in layers:
        handles.append(mods[n].register_forward_hook(lambda _m, _i, o, n=n: shapes.__setitem__(n, o.shape[1])))
    was = model.training
    model.eval()
    try:
        out = model(example[None].to(dev))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {None: out.shape[1], **{n: shapes[n] for n in layers}}


# ------------------------------------------------------------------ regularisers
def _finite_differences(x: torch.Tensor):
    """Forward differences of (N, C, H, W), zero-padded to (N, C, H, W) (Neumann boundary)."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))          # x[i, j+1] − x[i, j]
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))    # x[i+1, j] − x[i, j]
    return dx, dy


def total_variation(x: torch.Tensor, kind: str = "anisotropic", eps: float = 1e-12) -> torch.Tensor:
    """Total variation of each image, shape (N,).

    x: (N, C, H, W) (or (C, H, W) / (H, W), treated as one image → shape (1,)).
    With forward differences dx = x[.., i, j+1] − x[.., i, j] and dy = x[.., i+1, j] − x[.., i, j]
    (zero past the last column/row), summed over channels c and pixels (i, j):

      * "anisotropic":  TV(x) = Σ |dx| + |dy|           (the lecture notes' approximation)
      * "isotropic":    TV(x) = Σ sqrt(dx² + dy² + eps)  (eps keeps the gradient finite at 0;
        it adds at most sqrt(eps) per pixel)

    Both are differentiable almost everywhere; autograd gives their (sub)gradients.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if kind not in TV_KINDS:
        raise ValueError(f"kind must be one of {TV_KINDS}, got {kind!r}")
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"x must be (N, C, H, W), (C, H, W) or (H, W), got shape {tuple(x.shape)}")
    dx, dy = _finite_differences(x)
    if kind == "anisotropic":
        per_pixel = dx.abs() + dy.abs()
    else:
        per_pixel = torch.sqrt(dx ** 2 + dy ** 2 + eps)
    return per_pixel.flatten(1).sum(1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur each channel of (N, C, H, W) with a Gaussian of std ``sigma`` pixels.

    Separable kernel of half-width ceil(2σ), reflect padding (replicate when the image is
    too small to reflect). Preserves constants, so blurring x or x − x₀ is the same.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    half = max(1, int(math.ceil(2 * sigma)))
    t = torch.arange(-half, half + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    C = x.shape[1]
    H, W = x.shape[-2:]
    mode = "reflect" if half < min(H, W) else "replicate"
    y = F.pad(x, (half, half, half, half), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)
    y = F.conv2d(y, k.view(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)
    return y


# ------------------------------------------------------------------ the constraint
def _check_p(p):
    if isinstance(p, str) and p.lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p not in SUPPORTED_P:
        raise ValueError(f"p must be 2 or inf (float('inf') / 'inf'), got {p!r}")
    return math.inf if p == math.inf else 2


def _check_radius(radius):
    if isinstance(radius, bool) or not isinstance(radius, (int, float)) or not math.isfinite(radius) or radius <= 0:
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    return float(radius)


def _check_clamp(clamp, center):
    if clamp is None:
        return None
    lo, hi = (float(v) for v in clamp)
    if not lo < hi:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
    if not lo <= center <= hi:
        raise ValueError(f"center {center} must lie inside clamp {clamp} (else the constraint set may be empty)")
    return lo, hi


def lp_norm(x: torch.Tensor, p=2, center: float = 0.0) -> torch.Tensor:
    """‖x_n − center‖_p for each image of x (N, ...) → (N,)."""
    p = _check_p(p)
    d = (x - center).flatten(1)
    return d.abs().amax(1) if p == math.inf else d.norm(dim=1)


def project_lp(x: torch.Tensor, radius: float, p=2, center: float = 0.0, clamp=None) -> torch.Tensor:
    """Euclidean projection of each image onto {x : ‖x − center‖_p ≤ radius [, low ≤ x ≤ high]}.

    p = 2:  x ↦ center + δ·min(1, r/‖δ‖₂) with δ = x − center.
    p = ∞:  x ↦ center + clip(δ, −r, r).
    With ``clamp=(low, high)`` the projection is onto the intersection with the box. For p = ∞
    that is one more clip; for p = 2 the KKT conditions give x(s) = clip(center + s·δ, low, high)
    with the largest s ∈ [0, 1] such that ‖x(s) − center‖₂ ≤ r (solved exactly by sorting
    the breakpoints where pixels hit the box).
    x: (N, ...) → same shape. The result satisfies the constraint exactly (up to rounding).
    """
    p = _check_p(p)
    r = _check_radius(radius)
    box = _check_clamp(clamp, center)
    d = x - center
    if p == math.inf:
        out = center + d.clamp(-r, r)
        return out if box is None else out.clamp(*box)
    shape = (-1,) + (1,) * (x.dim() - 1)
    if box is None:
        n = d.flatten(1).norm(dim=1).clamp_min(1e-30)
        return center + d * (r / n).clamp(max=1.0).view(shape)

    # x(s) = clip(center + s·δ) is piecewise linear in s: pixel i saturates at s_i, after which it
    # contributes its bound v_i² to the squared norm; before, s²·δ_i². Sort the s_i and solve
    # A_k + s²·B_k = r² on each segment (exact, O(n log n) per image).
    lo_b, hi_b = box[0] - center, box[1] - center
    flat = d.flatten(1)
    inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
    s_i = torch.where(flat > 0, hi_b / flat.where(flat > 0, torch.ones_like(flat)),
                      torch.where(flat < 0, lo_b / flat.where(flat < 0, -torch.ones_like(flat)), inf))
    v2 = torch.where(flat > 0, torch.full_like(flat, hi_b ** 2), torch.full_like(flat, lo_b ** 2))
    s_sorted, order = torch.sort(s_i, dim=1)
    v2s, d2s = v2.gather(1, order), (flat ** 2).gather(1, order)
    zero = torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)
    A = torch.cat([zero, v2s.cumsum(1)], 1)                       # bounds of the first k pixels
    B = (flat ** 2).sum(1, keepdim=True) - torch.cat([zero, d2s.cumsum(1)], 1)
    seg_lo = torch.cat([zero, s_sorted], 1)
    seg_hi = torch.cat([s_sorted, inf.expand(len(x), 1)], 1)
    s_star = torch.sqrt(((r ** 2 - A) / B.clamp_min(1e-30)).clamp_min(0.0))
    valid = (B > 0) & (A <= r ** 2) & (s_star >= seg_lo) & (s_star <= seg_hi)
    k = valid.to(torch.int8).argmax(1, keepdim=True)
    s = s_star.gather(1, k)[:, 0].clamp(max=1.0)
    full = lp_norm((center + d).clamp(*box), 2, center) <= r     # already inside: only clip
    s = torch.where(full, torch.ones_like(s), s)
    out = (center + s.view(shape) * d).clamp(*box)
    # guard against rounding: rescale the (rare) last-ulp overshoot
    n = lp_norm(out, 2, center).clamp_min(1e-30)
    return center + (out - center) * (r / n).clamp(max=1.0).view(shape)


def ascent_step(x: torch.Tensor, grad: torch.Tensor, step_size: float, radius: float, p=2,
                center: float = 0.0, clamp=None) -> torch.Tensor:
    """One projected steepest-ascent step: x ← Π( x + η·d ).

    d is the steepest-ascent direction of the p-norm, argmax_{‖d‖_p ≤ 1} ⟨g, d⟩:
    d = g/‖g‖₂ for p = 2 (per image; d = 0 where g = 0) and d = sign(g) for p = ∞.
    Π is ``project_lp``. x, grad: (N, ...); step_size η > 0 (in input units).
    """
    p = _check_p(p)
    if step_size <= 0:
        raise ValueError(f"step_size must be positive, got {step_size}")
    if grad.shape != x.shape:
        raise ValueError(f"grad must have the shape of x {tuple(x.shape)}, got {tuple(grad.shape)}")
    if p == math.inf:
        d = grad.sign()
    else:
        n = grad.flatten(1).norm(dim=1).view((-1,) + (1,) * (x.dim() - 1))
        d = torch.where(n > 0, grad / n.clamp_min(1e-30), torch.zeros_like(grad))
    return project_lp(x + step_size * d, radius, p, center, clamp)


# ------------------------------------------------------------------ the optimiser
class _single_thread_if_small:
    """Run tiny CPU problems on one thread (restored afterwards). Each op of a small-image
    ascent step is microseconds of work; splitting it over threads only adds synchronisation,
    which gets very slow (10–50×) when other processes compete for the cores."""

    def __init__(self, device: torch.device, numel: int, limit: int = 200_000):
        self.active = device.type == "cpu" and numel <= limit
        self.saved = None

    def __enter__(self):
        if self.active:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        if self.saved is not None:
            torch.set_num_threads(self.saved)


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

    def __iter__(self):  # x, history = activation_maximization(...)
        return iter((self.x, self.history))


def activation_maximization(model: nn.Module, objective, shape, steps: int = 200, lr: float = 0.05,
                            p=2, radius: float = 1.0, center: float = 0.0, clamp=None,
                            tv_weight: float = 0.0, tv_kind: str = "anisotropic", l2_weight: float = 0.0,
                            jitter: int = 0, blur_every: int = 0, blur_sigma: float = 0.5,
                            init_std: float = 0.01, seed: int = 0, device=None,
                            progress: bool = False) -> FeatureVisResult:
    """Find inputs that maximise a unit, by projected steepest ascent on

        J(x) = a(x) − tv_weight·TV(x) − l2_weight·‖x − center‖₂²    s.t. ‖x − center‖_p ≤ radius

    model: a torch module (put in eval mode for the run; its weights are not changed).
    objective: an int (class logit), an ``Objective``, or a list of them — one image each,
        optimised together as one batch (images do not interact).
    shape: (C, H, W) of one input, or (B, C, H, W) with a single objective (B restarts).
    steps: number of ascent steps; lr: step size as a fraction of ``radius``, decayed by a
        cosine schedule to 10 % of its start (η_t = lr·radius·(0.1 + 0.9·(1 + cos(πt/T))/2)).
    p: 2 or inf; radius > 0; center: the ball's centre x₀ (a scalar pixel value);
    clamp: optional (low, high) box for pixel values, intersected with the ball.
    tv_weight, tv_kind: total-variation penalty (``total_variation``). l2_weight: L2 decay.
    jitter: roll the image by a random (dy, dx) ∈ [−jitter, jitter]² before each forward pass.
    blur_every, blur_sigma: every ``blur_every`` steps blur x − x₀ with ``gaussian_blur``.
    init_std: std of the Gaussian start around ``center``; seed: fixes start and jitter.
    Returns a ``FeatureVisResult`` (x on the CPU plus per-step history).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    objs = _as_objectives(objective)
    shape = tuple(int(s) for s in shape)
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
    center = float(center)
    box = _check_clamp(clamp, center)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if tv_weight < 0 or l2_weight < 0:
        raise ValueError(f"tv_weight and l2_weight must be ≥ 0, got {tv_weight}, {l2_weight}")
    if tv_kind not in TV_KINDS:
        raise ValueError(f"tv_kind must be one of {TV_KINDS}, got {tv_kind!r}")
    if isinstance(jitter, bool) or not isinstance(jitter, int) or jitter < 0:
        raise ValueError(f"jitter must be a non-negative int (pixels), got {jitter!r}")
    if isinstance(blur_every, bool) or not isinstance(blur_every, int) or blur_every < 0:
        raise ValueError(f"blur_every must be a non-negative int, got {blur_every!r}")
    if blur_every and blur_sigma <= 0:
        raise ValueError(f"blur_sigma must be positive, got {blur_sigma}")

    dev = get_device(device)
    restore = _eval_on(model, dev)
    gen = torch.Generator().manual_seed(int(seed))
    x = center + init_std * torch.randn(shape, generator=gen)
    x = project_lp(x, radius, p, center, box).to(dev)
    if len(objs) == 1 and B > 1:
        objs = objs * B
    hist_obj, hist_tv = torch.empty(steps, B), torch.empty(steps, B)
    threads = _single_thread_if_small(dev, x.numel())
    try:
        threads.__enter__()
        for t in tqdm(range(steps), desc="activation maximisation", disable=not progress, leave=False):
            x.requires_grad_(True)
            xin = x
            if jitter:
                dy, dx = torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()
                xin = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
            a = evaluate_objective(model, objs, xin)
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
            final = evaluate_objective(model, objs, x).cpu()
            final_tv = total_variation(x, tv_kind).cpu()
    finally:
        threads.__exit__()
        restore()
    settings = dict(steps=steps, lr=lr, p=p, radius=radius, center=center, clamp=box, tv_weight=tv_weight,
                    tv_kind=tv_kind, l2_weight=l2_weight, jitter=jitter, blur_every=blur_every,
                    blur_sigma=blur_sigma, init_std=init_std, seed=seed)
    return FeatureVisResult(x.detach().cpu(), {"objective": hist_obj, "tv": hist_tv}, final, final_tv,
                            objs, settings)


# ------------------------------------------------------------------ dataset examples
def _as_images(dataset) -> torch.Tensor:
    if isinstance(dataset, torch.Tensor):
        return dataset
    if isinstance(dataset, (tuple, list)) and len(dataset) and isinstance(dataset[0], torch.Tensor) \
            and dataset[0].dim() >= 2:
        return dataset[0]  # (X, y)
    if hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__"):
        items = [dataset[i] for i in range(len(dataset))]
        items = [it[0] if isinstance(it, (tuple, list)) else it for it in items]
        return torch.stack([torch.as_tensor(it) for it in items])
    raise TypeError("dataset must be an image tensor (N, C, H, W), a tuple (X, y) or a torch Dataset")


@torch.no_grad()
def top_activating_examples(model: nn.Module, objective, dataset, k: int = 8, batch_size: int = 512,
                            device=None):
    """The k images of ``dataset`` that excite the unit most: argmax_{x ∈ data} a(x).

    objective: as in ``activation_maximization`` (one objective). dataset: a tensor (N, C, H, W),
    a tuple (X, y), or a torch Dataset of (x, y) / x. Returns ``(indices, activations)``, two
    tensors of shape (k,), sorted by decreasing activation (ties keep dataset order).
    """
    objs = _as_objectives(objective)
    if len(objs) != 1:
        raise ValueError("top_activating_examples takes one objective")
    X = _as_images(dataset)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(X):
        raise ValueError(f"k must be an int in [1, {len(X)}] (the dataset size), got {k!r}")
    dev = get_device(device)
    restore = _eval_on(model, dev)
    try:
        vals = torch.cat([evaluate_objective(model, objs, X[i:i + batch_size].to(dev)).cpu()
                          for i in range(0, len(X), batch_size)])
    finally:
        restore()
    order = torch.sort(vals, descending=True, stable=True).indices[:k]
    return order, vals[order]


# ------------------------------------------------------------------ course settings
def data_radius(X: torch.Tensor, p=2, center: float = 0.5, quantile: float = 0.5) -> float:
    """A radius matched to the data: the ``quantile`` of ‖x − center‖_p over the images X.

    With the median, the optimised image gets the "energy" of a typical real image, so its
    activation can be compared fairly with the dataset's best images.
    """
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    return float(torch.quantile(lp_norm(X.float(), p, center), quantile))


# The lecture's settings for the two course CNNs. Their inputs are pixels in [0, 1] (the model
# subtracts 0.5 itself), so the ball is centred at 0.5 and, with p = ∞ and radius 0.5, it is
# exactly the box of valid images [0, 1]^d: every real image is feasible, and the optimum can be
# compared with the best one fairly. (For p = 2, ``data_radius`` gives the median ‖x − 0.5‖₂ of
# the training images — 3.39 for digits, 8.34 for shapes — and clamp=(0, 1) keeps pixels valid.)
# ``tv_weight`` is the recommended total-variation weight from lecture 01's ablation: it at least
# halves TV and keeps ≥ 80 % of the unregularised activation (benchmarks/bench_featurevis.py).
COURSE_SETTINGS = {
    "digits": dict(p=math.inf, radius=0.5, center=0.5, steps=150, lr=0.2, tv_weight=0.4),
    "shapes": dict(p=math.inf, radius=0.5, center=0.5, steps=150, lr=0.2, tv_weight=0.007),
}


def course_settings(dataset: str, **overrides) -> dict:
    """Keyword arguments for ``activation_maximization`` on a course model ("digits"/"shapes")."""
    if dataset not in COURSE_SETTINGS:
        raise ValueError(f"dataset must be one of {tuple(COURSE_SETTINGS)}, got {dataset!r}")
    return {**COURSE_SETTINGS[dataset], **overrides}


def tv_sweep(model, objective, shape, tv_weights, progress: bool = False, **kwargs) -> dict:
    """Run ``activation_maximization`` once per TV weight (same seed, same everything else).

    Returns {"tv_weight": (W,), "activation": (W, B), "tv": (W, B), "x": (W, B, C, H, W)};
    "tv" is always the *anisotropic* TV, so runs with different ``tv_kind`` compare. The
    ablation of lecture 01: how much total variation a weight removes and how much of the
    activation survives (divide by the row of tv_weight = 0).
    """
    ws = [float(w) for w in tv_weights]
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


# ------------------------------------------------------------------ opt-in pretrained models
class Normalized(nn.Module):
    """Wrap an ImageNet model so that it takes inputs in [0, 1]: (x − mean)/std → model."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_pretrained(name: str = "resnet18", source: str = "timm", allow_download: bool = False) -> nn.Module:
    """Opt-in: an ImageNet-pretrained model from timm or torchvision, taking inputs in [0, 1].

    The course runs offline; this path needs the weights, which are downloaded on first use
    (timm: Hugging Face Hub; torchvision: download.pytorch.org) and cached. You must opt in
    with ``allow_download=True`` (or env ``XAICOURSE_ALLOW_DOWNLOAD=1``). When the weights are
    neither cached nor downloadable a ``RuntimeError`` says so and what to do instead.
    Layer names for objectives: ``"model." + name`` from ``model.model.named_modules()``.
    """
    if source not in ("timm", "torchvision"):
        raise ValueError(f"source must be 'timm' or 'torchvision', got {source!r}")
    if not (allow_download or os.environ.get("XAICOURSE_ALLOW_DOWNLOAD", "0") == "1"):
        raise RuntimeError(
            f"load_pretrained({name!r}) needs pretrained weights from the internet, and the course "
            "is offline by default. Opt in with load_pretrained(..., allow_download=True) or set "
            "XAICOURSE_ALLOW_DOWNLOAD=1; otherwise use xaicourse.models.course_model('digits'|'shapes').")
    if source == "timm":
        import timm

        if not timm.is_model(name):
            raise ValueError(f"name {name!r} is not a timm model; see timm.list_models(pretrained=True)")
        where = "the Hugging Face Hub (huggingface.co)"

        def build():
            m = timm.create_model(name, pretrained=True)
            cfg = getattr(m, "pretrained_cfg", {}) or {}
            return m, cfg.get("mean", _IMAGENET_MEAN), cfg.get("std", _IMAGENET_STD)
    else:
        import torchvision

        if name not in torchvision.models.list_models():
            raise ValueError(f"name {name!r} is not a torchvision model; see torchvision.models.list_models()")
        where = "download.pytorch.org"

        def build():
            return torchvision.models.get_model(name, weights="DEFAULT"), _IMAGENET_MEAN, _IMAGENET_STD
    try:
        model, mean, std = build()
    except Exception as err:  # network errors come in many types (URLError, OSError, HF hub errors)
        raise RuntimeError(
            f"could not load pretrained weights for {source} model {name!r}: they are not in the local "
            f"cache and downloading from {where} failed ({type(err).__name__}: {err}). "
            "Connect to the internet once (weights are cached afterwards), or use the offline course "
            "models: xaicourse.models.course_model('digits'|'shapes').") from err
    return Normalized(model, mean, std).eval()
