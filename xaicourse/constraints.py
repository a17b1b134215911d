"""Lp-ball constraints: norms, Euclidean projections and the projected steepest-ascent step.

Several lectures optimise an input under a size constraint,

    max_x  J(x)   s.t.  ‖x − x₀‖_p ≤ r   [and  low ≤ x ≤ high],

lecture 01 to find the input that excites a unit most (activation maximisation), lecture 09 to
find a small perturbation of an image that changes its explanation (attacks on attributions).
Both use projected steepest ascent, x ← Π(x + η·d), built from two pieces.

**Steepest-ascent direction.** To first order J(x + η·d) ≈ J(x) + η·⟨g, d⟩ with g = ∇J(x). The
best direction of unit size in the constraint's own norm is d* = argmax_{‖d‖_p ≤ 1} ⟨g, d⟩, and by
Hölder's inequality ⟨g, d⟩ ≤ ‖g‖_q·‖d‖_p (1/p + 1/q = 1), with equality at

    p = 2:  d* = g / ‖g‖₂          (d* = 0 where g = 0)
    p = ∞:  d* = sign(g)           (the fast-gradient-sign step of adversarial attacks)

**Projection.** Π(y) = argmin_{x ∈ C} ‖x − y‖₂ maps a step that left the set C back to its
nearest feasible point:

    p = 2:  Π(y) = x₀ + δ·min(1, r/‖δ‖₂),  δ = y − x₀  (shrink along the ray through x₀)
    p = ∞:  Π(y) = x₀ + clip(δ, −r, r)                  (clip every pixel)

With a box [low, high] as well (valid pixel values), the p = ∞ projection is one more clip (the
intersection of two boxes); for p = 2 the KKT conditions give x(s) = clip(x₀ + s·δ, low, high)
for the largest s ∈ [0, 1] with ‖x(s) − x₀‖₂ ≤ r, solved exactly by ``project_lp``.

Every function treats dim 0 as the batch: each sample n has its own ball around x₀ (a scalar,
or a tensor broadcastable to the batch, e.g. the original images of an attack).

Public API
    SUPPORTED_P                                       — (2, inf)
    lp_norm(inputs, p, center)                        — ‖x_n − x₀‖_p, shape (N,)
    project_lp(inputs, radius, p, center, clamp)      — Euclidean projection onto the constraint set
    steepest_direction(grad, p)                       — d* above, shaped like grad
    ascent_step(inputs, grad, step_size, radius, p, center, clamp)  — Π(x + η·d*)
(``x=`` is the deprecated keyword name of ``inputs``.)
"""
from __future__ import annotations

import math

import torch

from ._validate import as_tensor, check_real, renamed

__all__ = ["SUPPORTED_P", "lp_norm", "project_lp", "steepest_direction", "ascent_step"]

SUPPORTED_P = (2, math.inf)


# ------------------------------------------------------------------ argument checks
def _check_p(p):
    """2 or math.inf (also accepts the strings "inf" / "infinity")."""
    if isinstance(p, str) and p.lower() in ("inf", "infinity"):
        return math.inf
    if isinstance(p, bool) or not isinstance(p, (int, float)) or isinstance(p, float) and math.isnan(p) \
            or p not in SUPPORTED_P:
        raise ValueError(f"p must be 2 or inf (float('inf') / 'inf'), got {p!r}")
    return math.inf if p == math.inf else 2


def _check_radius(radius) -> float:
    """A positive finite radius (TypeError for a non-number, ValueError for NaN/inf/≤ 0)."""
    try:
        r = check_real("radius", radius)
    except ValueError:  # NaN / inf: say what is wanted
        r = math.nan
    if not r > 0:
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    return r


def _check_center(center, x: torch.Tensor | None = None):
    """A finite scalar (→ float) or a finite tensor broadcastable to ``x`` (→ on x's device/dtype)."""
    if isinstance(center, torch.Tensor) and center.numel() > 1:
        c = as_tensor("center", center)
        if x is not None:
            try:
                shape = torch.broadcast_shapes(c.shape, x.shape)
            except RuntimeError:
                shape = None
            if shape != x.shape:
                raise ValueError(f"center must be a scalar or broadcastable to inputs {tuple(x.shape)} "
                                 f"without changing its shape, got shape {tuple(c.shape)}")
            c = c.to(device=x.device, dtype=x.dtype)
        return c
    return check_real("center", center)


def _check_clamp(clamp, center):
    """``None`` or (low, high) with low < high and the centre inside the box (else the set may be empty)."""
    if clamp is None:
        return None
    if isinstance(clamp, (str, bytes)) or not hasattr(clamp, "__len__") or len(clamp) != 2:
        raise TypeError(f"clamp must be None or a pair (low, high), got {clamp!r}")
    lo, hi = (check_real(f"clamp[{i}]", v) for i, v in enumerate(clamp))
    if not lo < hi:
        raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
    if isinstance(center, torch.Tensor):
        inside = bool(((center >= lo) & (center <= hi)).all())
        shown = f"(values in [{center.min().item():g}, {center.max().item():g}])"
    else:
        inside, shown = lo <= center <= hi, center
    if not inside:
        raise ValueError(f"center {shown} must lie inside clamp {clamp} (else the constraint set may be empty)")
    return lo, hi


def _batch(name: str, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor batch (N, ...), got {type(x).__name__}")
    return as_tensor(name, x, min_ndim=2)


# ------------------------------------------------------------------ norms and projections
@renamed(x="inputs")
def lp_norm(inputs: torch.Tensor, p=2, center=0.0) -> torch.Tensor:
    """‖x_n − center‖_p for each sample of inputs (N, ...) → (N,).

    p: 2 or inf; center: a scalar or a tensor broadcastable to inputs.
    """
    p = _check_p(p)
    x = _batch("inputs", inputs)
    d = (x - _check_center(center, x)).flatten(1)
    return d.abs().amax(1) if p == math.inf else d.norm(dim=1)


@renamed(x="inputs")
def project_lp(inputs: torch.Tensor, radius: float, p=2, center=0.0, clamp=None) -> torch.Tensor:
    """Euclidean projection of each sample onto {x : ‖x − center‖_p ≤ radius [, low ≤ x ≤ high]}.

    p = 2:  x ↦ center + δ·min(1, r/‖δ‖₂) with δ = x − center.
    p = ∞:  x ↦ center + clip(δ, −r, r).
    With ``clamp=(low, high)`` the projection is onto the intersection with the box. For p = ∞
    that is one more clip; for p = 2 the KKT conditions give x(s) = clip(center + s·δ, low, high)
    with the largest s ∈ [0, 1] such that ‖x(s) − center‖₂ ≤ r (solved exactly by sorting
    the breakpoints where pixels hit the box).

    inputs: (N, ...) finite → same shape. center: a scalar or a tensor broadcastable to inputs
    (inside the box). The result satisfies the constraint exactly (up to rounding).
    """
    p = _check_p(p)
    r = _check_radius(radius)
    x = _batch("inputs", inputs)
    center = _check_center(center, x)
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
    # A_k + s²·B_k = r² on each segment (exact, O(n log n) per sample).
    flat = d.flatten(1)
    lo_b = (box[0] - center) * torch.ones_like(d)              # per-pixel distance to the bounds
    hi_b = (box[1] - center) * torch.ones_like(d)
    lo_b, hi_b = lo_b.flatten(1), hi_b.flatten(1)
    inf = torch.tensor(math.inf, dtype=x.dtype, device=x.device)
    s_i = torch.where(flat > 0, hi_b / flat.where(flat > 0, torch.ones_like(flat)),
                      torch.where(flat < 0, lo_b / flat.where(flat < 0, -torch.ones_like(flat)), inf))
    v2 = torch.where(flat > 0, hi_b ** 2, lo_b ** 2)
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
    full = (((center + d).clamp(*box) - center).flatten(1).norm(dim=1)) <= r   # inside: only clip
    s = torch.where(full, torch.ones_like(s), s)
    out = (center + s.view(shape) * d).clamp(*box)
    # guard against rounding: rescale the (rare) last-ulp overshoot
    n = (out - center).flatten(1).norm(dim=1).clamp_min(1e-30)
    return center + (out - center) * (r / n).clamp(max=1.0).view(shape)


# ------------------------------------------------------------------ the ascent step
def steepest_direction(grad: torch.Tensor, p=2) -> torch.Tensor:
    """argmax_{‖d_n‖_p ≤ 1} ⟨g_n, d_n⟩ for each sample: g_n/‖g_n‖₂ (p = 2; 0 where g_n = 0) or
    sign(g_n) (p = ∞). grad: (N, ...) finite → same shape."""
    p = _check_p(p)
    grad = _batch("grad", grad)
    if p == math.inf:
        return grad.sign()
    n = grad.flatten(1).norm(dim=1).view((-1,) + (1,) * (grad.dim() - 1))
    return torch.where(n > 0, grad / n.clamp_min(1e-30), torch.zeros_like(grad))


@renamed(x="inputs")
def ascent_step(inputs: torch.Tensor, grad: torch.Tensor, step_size: float, radius: float, p=2,
                center=0.0, clamp=None) -> torch.Tensor:
    """One projected steepest-ascent step: x ← Π( x + η·d ).

    d = ``steepest_direction(grad, p)``: g/‖g‖₂ per sample for p = 2 (0 where g = 0), sign(g)
    for p = ∞; Π = ``project_lp(·, radius, p, center, clamp)``.
    inputs, grad: (N, ...) of the same shape, finite (a NaN/inf gradient raises ValueError instead of
    poisoning x); step_size η > 0 finite (in input units). Returns the new x (N, ...); the inputs
    are not modified. For descent (e.g. minimising a loss) pass −grad.
    """
    eta = check_real("step_size", step_size, min=0.0, min_inclusive=False)
    x, grad = _batch("inputs", inputs), _batch("grad", grad)
    if grad.shape != x.shape:
        raise ValueError(f"grad must have the shape of inputs {tuple(x.shape)}, got {tuple(grad.shape)}")
    return project_lp(x + eta * steepest_direction(grad, p), radius, p, center, clamp)
