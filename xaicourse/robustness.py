"""Attacks on explanations: small input changes that keep the prediction but move the attribution map.

The three attacks are Ghorbani, Abid & Zou's (2019, "Interpretation of neural networks is
fragile"). Given an image x with prediction k and an attribution map S(x) ≥ 0 (N, H, W) — here
|attribution| summed over channels, normalised to sum 1 — we look for δ with ‖δ‖∞ ≤ ε (and x + δ a
valid image, values in [0, 1]) such that argmax f(x + δ) = k but S(x + δ) differs from S(x) as much
as possible:

* ``random_sign``: δ = ε·sign(z), z ~ N(0, I) — the baseline: no optimisation at all.
* ``topk``: minimise Σ_{i ∈ B} S(x + δ)_i, B = the k most important pixels of S(x), by projected
  sign-gradient steps in the ε-ball (``constraints.ascent_step`` with p = ∞), Ghorbani et al.'s
  iterative attack.
* ``center``: maximise ‖c(S(x + δ)) − c(S(x))‖₂, c(S) = Σ_i S_i·(row_i, col_i) the map's centre
  of mass, the same way.

**Keeping the output, not only the label** is Dombrowski et al.'s (2019, "Explanations can be
manipulated and geometry is to blame") requirement: they add γ‖g(x + δ) − g(x)‖² to the attack's
loss, g the network's output. Here ``keep_weight`` adds its one-class version, −λ·(log p_k(x + δ) −
log p_k(x))², and ``confidence_tol`` keeps only iterates whose softmax confidence p_k moved by at
most a relative tolerance. Removing from each step its component along ∇_x log p_k
(``orthogonal=True``, the default) is this package's own first-order way to the same end; it is in
neither paper. Each iterate is checked on the *real* model; the returned input is the iterate with
the best objective among the feasible ones (δ = 0 — ``moved`` False — if none was feasible).
Images that were not moved tell nothing about the map's robustness: summarise with
``AttackResult.summary()``, which averages over the moved images only and reports how many were
not moved.

**Why a smooth surrogate.** For a network built from ReLUs, max-pooling and linear layers, f is
piecewise linear in x: inside each linear region ∇_x f is constant. So

* the gradient map |∇_x f| and SmoothGrad's map (the mean of ∇f at x + fixed noise) are piecewise
  *constant* in x: their derivative with respect to x is 0 almost everywhere;
* the integrated-gradients map (black baseline) is x ⊙ ḡ(x), ḡ the mean of ∇f at the path points
  α_j·x: ḡ is piecewise constant, so the map is piecewise *linear*, with derivative ḡ — not 0,
  but blind to how the path's gradients change (measured in lecture 09 on the course CNN:
  non-zero, while the gradient map's is exactly 0);
* Grad-CAM's channel weights are piecewise constant, its activations piecewise linear: the map
  is piecewise linear too.

For the gradient and SmoothGrad maps the attack's gradient ∇_x D(S(x)) is then 0 and the steps do
not move; for IG and Grad-CAM it is only the first-order part. Following Dombrowski et al., the
attack's gradients come from a copy of the model with every ``nn.ReLU`` replaced by softplus_β(z) =
log(1 + e^{βz})/β (→ ReLU as β → ∞), whose maps are close to the real ones but have informative
derivatives; every iterate is judged on the real model and the real map. (Dombrowski et al. also
use a small β as a *defence*: the map of the softplus_β copy is far less manipulable.)

Measures of change (per sample): ``topk_intersection(a, b, k)`` = |top-k(a) ∩ top-k(b)| / k and
``rank_correlation(a, b)`` = Spearman's ρ (ties get average ranks, like scipy).

Public API
    ATTACK_METHODS, ATTACK_KINDS
    attribution_map(method, model, x, target, create_graph=False, **options)   — (N, H, W) ≥ 0
    smooth_surrogate(model, beta=10.0)            — a copy with softplus_β in place of nn.ReLU
    random_sign(inputs, eps, seed=0, clamp=(0, 1)) — inputs + ε·sign(z), z from torch.randn(generator)
    topk_intersection(a, b, k)                    — (N,)
    rank_correlation(a, b)                        — (N,)
    center_of_mass(maps)                          — (N, 2) (row, col)
    attack_attribution(model, attribution_fn, inputs, target, kind="topk", eps=..., n_iter=..., k=...) → AttackResult
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from ._torch import check_inputs, check_model, eval_on, resolve_target, scores
from ._validate import check_choice, check_int, check_real, renamed
from .constraints import ascent_step, project_lp
from .maps import rank_correlation  # the one Spearman ρ (constant maps: 1 if both, else 0)

__all__ = ["ATTACK_METHODS", "ATTACK_KINDS", "AttackResult", "attribution_map", "smooth_surrogate", "random_sign",
           "topk_intersection", "rank_correlation", "center_of_mass", "attack_attribution"]

ATTACK_METHODS = ("gradient", "smoothgrad", "integrated_gradients", "grad_cam")
ATTACK_KINDS = ("random_sign", "topk", "center")


# ------------------------------------------------------------------ differentiable maps
def _check_x(model, x, name="x"):
    x = check_inputs(model, x, name)
    if x.dim() != 4:
        raise ValueError(f"{name} must be a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
    return x


def attribution_map(method: str, model, inputs=None, target=None, create_graph: bool = False, *, n_samples: int = 16,
                    sigma: float = 0.15, seed: int = 0, n_steps: int = 16, layer=None, noise=None, **old) -> torch.Tensor:
    """|attribution| summed over channels, (N, C, H, W) → (N, H, W), differentiable in the inputs
    when ``create_graph=True`` (for the attacks). It calls the package's methods (which all take
    ``create_graph=``):

    * "gradient": ``attribution.gradient``;
    * "smoothgrad": ``attribution.smoothgrad(sigma=σ, n_samples, seed, input_range=(0, 1))``
      (``noise`` (N·n_samples, C, H, W) replaces the seeded draw, to hold it fixed in an attack);
    * "integrated_gradients": ``attribution.integrated_gradients`` (black baseline, n_steps,
      Gauss–Legendre);
    * "grad_cam": ``attribution.grad_cam(layer=...)[:, 0]`` (one channel of the map, which the
      package repeats over C; last conv layer by default).
    target: int, one per sample, or None (the predicted class). (``x=`` is the deprecated name of
    ``inputs``.)
    """
    from . import attribution as A
    from ._torch import deprecated_kwargs, resolve_target, target_gradient

    if old:
        deprecated_kwargs("attribution_map", old, {"x": "inputs"})
        if set(old) != {"inputs"} or inputs is not None:
            raise TypeError("attribution_map(method, model, inputs, target=None, create_graph=False, **options)")
        inputs = old["inputs"]
    check_choice("method", method, ATTACK_METHODS)
    x = _check_x(model, inputs, "inputs")
    if create_graph and inputs.requires_grad:
        x = inputs
    n_samples = check_int("n_samples", n_samples, min=1)
    n_steps = check_int("n_steps", n_steps, min=1)
    sigma = check_real("sigma", sigma, min=0.0)
    if method == "gradient":
        a = A.gradient(model, x, target, create_graph=create_graph)
    elif method == "smoothgrad" and noise is None:
        a = A.smoothgrad(model, x, target, sigma=sigma, n_samples=n_samples, seed=seed, input_range=(0, 1),
                         create_graph=create_graph)
    elif method == "smoothgrad":
        N = len(x)
        if not isinstance(noise, torch.Tensor) or noise.shape != (N * n_samples,) + tuple(x.shape[1:]):
            raise ValueError(f"noise must be a tensor of shape {(N * n_samples,) + tuple(x.shape[1:])}, got "
                             f"{getattr(noise, 'shape', type(noise).__name__)}")
        t = resolve_target(model, x, target)
        noisy = x.repeat_interleave(n_samples, dim=0) + sigma * noise.to(x)
        gn = target_gradient(model, noisy, t.repeat_interleave(n_samples), create_graph=create_graph)
        a = gn.reshape(N, n_samples, *x.shape[1:]).mean(1)
    elif method == "integrated_gradients":
        a = A.integrated_gradients(model, x, target, n_steps=n_steps, create_graph=create_graph)
    else:
        return A.grad_cam(model, x, target, layer=layer, create_graph=create_graph)[:, 0].abs() if create_graph \
            else A.grad_cam(model, x, target, layer=layer)[:, 0].abs().detach()
    m = a.abs().sum(1)
    return m if create_graph else m.detach()


def smooth_surrogate(model: nn.Module, beta: float = 10.0) -> nn.Module:
    """A deep copy of ``model`` with every ``nn.ReLU`` module replaced by ``nn.Softplus(beta)``
    (softplus_β(z) = log(1 + e^{βz})/β, within log(2)/β of ReLU). Only ReLU *modules* are
    replaced; a model calling ``F.relu`` in ``forward`` keeps it (and its attack gradients may
    vanish)."""
    check_model(model)
    beta = check_real("beta", beta, min=0.0, min_inclusive=False)
    sur = copy.deepcopy(model)
    for m in list(sur.modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, nn.ReLU):
                setattr(m, child_name, nn.Softplus(beta=beta))
    return sur.eval()


# ------------------------------------------------------------------ measures of change
def _maps_pair(a, b):
    from ._validate import as_tensor

    a, b = as_tensor("a", a, floating=False), as_tensor("b", b, floating=False)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"maps must be batched (N, ...), got shape {tuple(a.shape)}")
    return a.detach().flatten(1).double(), b.detach().flatten(1).double()


def topk_intersection(a, b, k: int) -> torch.Tensor:
    """|T_k(a_n) ∩ T_k(b_n)| / k for each sample, T_k = indices of the k largest entries.

    a, b: (N, ...) maps of the same shape (flattened per sample); k: 1 ≤ k ≤ entries per sample.
    Returns (N,) float64 in [0, 1] (1 = same top-k set). Ties are broken by ``torch.topk``.
    """
    a, b = _maps_pair(a, b)
    k = check_int("k", k, min=1, max=a.shape[1])
    ia, ib = torch.topk(a, k, dim=1).indices, torch.topk(b, k, dim=1).indices
    hit = torch.zeros_like(a, dtype=torch.bool).scatter_(1, ia, True).gather(1, ib)
    return hit.double().sum(1) / k


def center_of_mass(maps) -> torch.Tensor:
    """Centre of mass (row, col) of each non-negative map (N, H, W) → (N, 2), in pixels."""
    from ._validate import as_tensor

    m = as_tensor("maps", maps)
    if m.dim() != 3:
        raise ValueError(f"maps must be (N, H, W), got shape {tuple(m.shape)}")
    H, W = m.shape[1:]
    rows = torch.arange(H, dtype=m.dtype, device=m.device)
    cols = torch.arange(W, dtype=m.dtype, device=m.device)
    tot = m.sum((1, 2)).clamp_min(1e-30)
    return torch.stack([(m.sum(2) * rows).sum(1) / tot, (m.sum(1) * cols).sum(1) / tot], 1)


@renamed(x="inputs")
def random_sign(inputs: torch.Tensor, eps: float, seed: int = 0, clamp=(0.0, 1.0)) -> torch.Tensor:
    """inputs + ε·sign(z), z = ``torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))``
    (drawn on the CPU, so every device gives the same δ), then clipped to ``clamp`` (None: no
    clipping). inputs: (N, ...) → same shape; ‖result − inputs‖∞ ≤ ε."""
    from ._validate import as_tensor

    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor, got {type(inputs).__name__}")
    x = as_tensor("inputs", inputs, min_ndim=1)
    eps = _check_eps(eps)
    z = torch.randn(x.shape, generator=torch.Generator().manual_seed(check_int("seed", seed, min=0)), dtype=x.dtype)
    out = x.detach() + eps * z.sign().to(x.device)
    return out if clamp is None else out.clamp(*clamp)


def _check_eps(eps) -> float:
    e = check_real("eps", eps)
    if not e > 0:
        raise ValueError(f"eps must be positive (the L∞ radius of the perturbation, e.g. 4/255), got {eps}")
    return e


# ------------------------------------------------------------------ the attack
@dataclass
class AttackResult:
    """Output of ``attack_attribution`` (all per sample, dim 0 = N).

    inputs: x + δ (N, C, H, W); delta_linf: ‖δ‖∞ (N,); original_map, perturbed_map: the real
    model's maps S(x), S(x + δ) (N, H, W); topk_intersection, spearman (N,) between them;
    center_shift (N,): distance of the centres of mass in pixels; moved (N,) bool: a non-zero
    feasible δ was found (False → δ = 0 returned, and the image's topk_intersection is 1 and its
    spearman 1 only because nothing changed); confidence_before/after (N,): softmax probability of
    the predicted class; prediction (N,) the (unchanged) predicted class.

    ``summary()`` averages over the moved images only — an unmoved image counts as neither robust
    nor fragile — and says how many were left out.
    """
    inputs: torch.Tensor
    delta_linf: torch.Tensor
    original_map: torch.Tensor
    perturbed_map: torch.Tensor
    topk_intersection: torch.Tensor
    spearman: torch.Tensor
    center_shift: torch.Tensor
    moved: torch.Tensor
    confidence_before: torch.Tensor
    confidence_after: torch.Tensor
    prediction: torch.Tensor
    kind: str = ""
    eps: float = 0.0

    def summary(self) -> dict:
        """Means over the images the attack moved (a feasible δ ≠ 0), with the counts:
        {"topk_intersection", "spearman", "center_shift": mean over moved images (nan if none),
        "n_moved", "n_unmoved"}. Images with no feasible perturbation are excluded, not counted as
        intersection 1 — that would bias the mean towards "robust"."""
        moved = self.moved.detach().cpu()
        n = int(moved.sum())

        def mean(v):
            return float(v.detach().cpu().double()[moved].mean()) if n else math.nan
        return {"topk_intersection": mean(self.topk_intersection), "spearman": mean(self.spearman),
                "center_shift": mean(self.center_shift), "n_moved": n, "n_unmoved": int(len(moved) - n)}


def _normalised(m: torch.Tensor) -> torch.Tensor:
    return m / m.flatten(1).sum(1).clamp_min(1e-12).view(-1, 1, 1)


@renamed(x="inputs", steps="n_iter")
def attack_attribution(model, attribution_fn, inputs, target=None, kind: str = "topk", eps: float = 8 / 255,
                       n_iter: int = 30, k: int = 50, step_size: float | None = None, beta: float | None = 10.0,
                       confidence_tol: float | None = 0.05, keep_weight: float = 0.0, orthogonal: bool = True, seed: int = 0,
                       clamp=(0.0, 1.0),
                       **map_options) -> AttackResult:
    """Perturb ``inputs`` within ‖δ‖∞ ≤ ``eps`` so that the attribution map changes while the
    prediction does not (Ghorbani et al. 2019's attacks; Dombrowski et al. 2019's output constraint and
    softplus surrogate — see the module docstring). The attack's iterations are ``n_iter``, a name of
    their own: ``n_steps`` among the map options is integrated gradients' path steps.

    attribution_fn: a name in ``ATTACK_METHODS`` ("gradient", "smoothgrad",
        "integrated_gradients", "grad_cam"; options such as n_samples, sigma, n_steps, layer go in
        ``map_options``) or a callable ``fn(model, x, target, create_graph) -> (N, H, W)``
        non-negative maps, differentiable in x when create_graph=True.
    inputs: (N, C, H, W) images; target: the class whose map is explained (None: the prediction).
    kind: "random_sign" (``n_iter`` draws of ε·sign(z), the first feasible one kept), "topk"
        (minimise the normalised map's mass on the original top-k pixels) or "center"
        (maximise the shift of its centre of mass) — sign-gradient steps of ``step_size``
        (default 2.5·ε/n_iter) projected onto the ε-ball ∩ ``clamp`` box.
    beta: softplus β of the smooth surrogate whose maps give the attack's gradients (None: use
        the model itself — for the gradient and SmoothGrad maps of a ReLU network the attack's
        gradient is then 0 and nothing moves; for IG and Grad-CAM only its first-order part is
        left; see the module docstring).
    confidence_tol: also require |p_k(x + δ) − p_k(x)| ≤ tol·p_k(x) for the softmax confidence of
        the predicted class (None: the predicted class alone must not change).
    keep_weight: λ ≥ 0 of the term −λ·(log p_k(x + δ) − log p_k(x))² added to the attack objective
        (on the surrogate) to keep the confidence (the one-class version of Dombrowski et al.'s
        γ‖g(x + δ) − g(x)‖²); an iterate that breaks the constraints is
        replaced by the best feasible one before the next step.
    orthogonal: remove from each step's direction its component along ∇_x log p_k (surrogate), so
        the step leaves the confidence unchanged to first order, then scale it so that the largest
        pixel change is ``step_size`` (False: the plain sign step ``constraints.ascent_step``).
    Returns an ``AttackResult``; every returned input keeps the model's predicted class. Average
    with ``AttackResult.summary()``: images not moved (no feasible δ) are excluded and counted.
    """
    check_model(model)
    x = _check_x(model, inputs, "inputs")
    check_choice("kind", kind, ATTACK_KINDS)
    eps = _check_eps(eps)
    steps = check_int("n_iter", n_iter, min=1)
    seed = check_int("seed", seed, min=0)
    N, _, H, W = x.shape
    k = check_int("k", k, min=1, max=H * W)
    step_size = 2.5 * eps / steps if step_size is None else check_real("step_size", step_size, min=0.0,
                                                                         min_inclusive=False)
    keep_weight = check_real("keep_weight", keep_weight, min=0.0)
    if confidence_tol is not None:
        confidence_tol = check_real("confidence_tol", confidence_tol, min=0.0)
    if clamp is not None and not bool(((x >= clamp[0]) & (x <= clamp[1])).all()):
        raise ValueError(f"inputs must lie inside clamp {clamp} (pass clamp=None for unbounded inputs)")
    if isinstance(attribution_fn, str):
        method = check_choice("attribution_fn", attribution_fn, ATTACK_METHODS)
        if method == "smoothgrad":
            n_s = check_int("n_samples", map_options.get("n_samples", 16), min=1)
            g = torch.Generator(device=x.device).manual_seed(int(map_options.get("seed", seed)))
            map_options = {**map_options, "n_samples": n_s,
                           "noise": torch.randn((N * n_s,) + tuple(x.shape[1:]), generator=g, dtype=x.dtype,
                                                device=x.device)}

        def fn(m, xx, tt, create_graph):
            return attribution_map(method, m, xx, tt, create_graph, **map_options)
    elif callable(attribution_fn):
        fn = attribution_fn
    else:
        raise TypeError(f"attribution_fn must be one of {ATTACK_METHODS} or a callable, got {attribution_fn!r}")

    with eval_on(model, freeze=True):
        sur = model if beta is None else smooth_surrogate(model, beta)
        for p in sur.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            p0 = torch.softmax(scores(model, x), 1)
        pred = p0.argmax(1)
        t = resolve_target(model, x, target, outputs=p0)
        conf0 = p0.gather(1, pred[:, None])[:, 0]
        m0 = fn(model, x, t, False).detach()
        top = torch.topk(m0.flatten(1), k, dim=1).indices
        c0 = center_of_mass(_normalised(m0))
        if keep_weight:
            with torch.no_grad():
                lp0 = torch.log_softmax(scores(sur, x), 1).gather(1, pred[:, None])[:, 0]

        def feasible(xx):
            with torch.no_grad():
                p = torch.softmax(scores(model, xx), 1)
            c = p.gather(1, pred[:, None])[:, 0]
            ok = p.argmax(1) == pred
            if confidence_tol is not None:
                ok &= (c - conf0).abs() <= confidence_tol * conf0
            return ok, c

        def quality(xx):  # lower = better attack, judged on the real model
            m = fn(model, xx, t, False).detach()
            if kind == "center":
                return -(center_of_mass(_normalised(m)) - c0).norm(dim=1)
            return topk_intersection(m0, m, k).to(x.dtype)

        best = x.detach().clone()
        best_q = torch.full((N,), math.inf, dtype=x.dtype, device=x.device)
        moved = torch.zeros(N, dtype=torch.bool, device=x.device)
        xa = x.detach().clone()
        for s in range(steps):
            if kind == "random_sign":
                xa = random_sign(x, eps, seed=seed + s, clamp=clamp)
            else:
                xg = xa.detach().clone().requires_grad_(True)
                S = _normalised(fn(sur, xg, t, True))
                if kind == "topk":
                    obj = -S.flatten(1).gather(1, top).sum(1)                    # ascend = lower top-k mass
                else:
                    obj = ((center_of_mass(S) - c0) ** 2).sum(1).add(1e-12).sqrt() / max(H, W)
                lp = torch.log_softmax(scores(sur, xg), 1).gather(1, pred[:, None])[:, 0]
                if keep_weight:   # stay near the original confidence: − λ·(log p_k(x+δ) − log p_k(x))²
                    obj = obj - keep_weight * (lp - lp0) ** 2
                (grad,) = torch.autograd.grad(obj.sum(), xg, retain_graph=orthogonal)
                (g_lp,) = torch.autograd.grad(lp.sum(), xg) if orthogonal else (None,)
                if orthogonal:    # drop the part of the step that changes log p_k to first order
                    gf, lf = grad.flatten(1), g_lp.flatten(1)
                    gf = gf - (gf * lf).sum(1, keepdim=True) / (lf * lf).sum(1, keepdim=True).clamp_min(1e-30) * lf
                    d = gf / gf.abs().amax(1, keepdim=True).clamp_min(1e-30)     # largest pixel change = 1
                    xa = project_lp(xa.detach() + step_size * d.view_as(xa), eps, math.inf, center=x.detach(),
                                    clamp=clamp)
                else:
                    xa = ascent_step(xa.detach(), grad, step_size, eps, p=math.inf, center=x.detach(), clamp=clamp)
            ok, _ = feasible(xa)
            q = quality(xa)
            ok &= (xa - x).flatten(1).abs().amax(1) > 0        # δ = 0 is no attack: "moved" means δ ≠ 0
            better = (ok & ~moved) if kind == "random_sign" else ok & (q < best_q)
            if kind != "random_sign":   # an infeasible iterate: continue from the best feasible one
                xa = torch.where(ok.view(-1, 1, 1, 1), xa, best)
            best = torch.where(better.view(-1, 1, 1, 1), xa, best)
            best_q = torch.where(better, q, best_q)
            moved |= better
        best = project_lp(best, eps, math.inf, center=x.detach(), clamp=clamp) if moved.any() else best
        _, conf1 = feasible(best)
        m1 = fn(model, best, t, False).detach()
    return AttackResult(best, (best - x).flatten(1).abs().amax(1), m0, m1, topk_intersection(m0, m1, k),
                        rank_correlation(m0, m1), (center_of_mass(_normalised(m1)) - c0).norm(dim=1), moved,
                        conf0, conf1, pred, kind, eps)
