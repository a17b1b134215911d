"""Influence functions (Koh & Liang 2017) and their ground truth, leave-one-out retraining.

Setting. θ̂ minimises the training objective over the chosen parameters θ

    R(θ) = (1/n) Σ_i ℓ(z_i; θ) + (λ/2) ‖θ‖²          (λ = ``l2``).

Upweighting one training point z by ε moves the optimum to θ̂_ε = argmin R(θ) + ε ℓ(z; θ).
Its optimality condition ∇R(θ̂_ε) + ε ∇ℓ(z; θ̂_ε) = 0, differentiated at ε = 0 (implicit
function theorem), gives

    I_up,params(z) = dθ̂_ε/dε = −H⁻¹ ∇ℓ(z; θ̂),      H = (1/n) Σ_i ∇²ℓ(z_i; θ̂) + λ I,

and by the chain rule the effect on the loss at a test point

    I_up,loss(z, z_test) = ∇ℓ(z_test; θ̂)ᵀ I_up,params(z) = −∇ℓ(z_test)ᵀ H⁻¹ ∇ℓ(z).

Removing z is the same as ε = −1/n, so the test loss changes by ΔL_test ≈ −I_up,loss / n.
A positive I_up,loss means the point *hurts* the test point (removing it lowers the loss);
a negative one means it helps.

All methods share the gradients (``per_example_grads``) and only differ in how they apply H⁻¹
to the test gradients (s_test = H⁻¹ ∇ℓ(z_test), one solve per test point):

* ``"exact"``   — the explicit Hessian (P × P), Cholesky solve in float64. Small models only.
* ``"cg"``      — conjugate gradient with Hessian-vector products by double backprop; H is never
  formed. Needs H positive definite (stops with advice when it finds negative curvature).
* ``"lissa"``   — the stochastic Neumann-series recursion of Agarwal et al. (2017) used by Koh &
  Liang: h_0 = v, h_j = v + (I − (H_B + δI)/s) h_{j−1}, s_test ≈ h_depth / s, averaged over
  ``repeats`` runs; H_B is the Hessian on a random mini-batch of ``lissa_batch`` points (all
  points when None: then the recursion is deterministic). Converges when the scale s exceeds the
  largest eigenvalue of H + δI (the default ``scale=None`` estimates it by power iteration and
  takes 1.1× that); the error after ``depth`` steps shrinks like (1 − λ_min/s)^depth.
* ``"arnoldi"`` — Schioppa et al. (2022): an Arnoldi (for symmetric H, Lanczos) iteration with
  full re-orthogonalisation builds an orthonormal Krylov basis Q (P × m); the eigenpairs of the
  small matrix QᵀHQ give the top-``rank`` eigenvalues λ_k and eigenvectors u_k of H, and
  H⁻¹ ≈ Σ_k u_k u_kᵀ / λ_k. With ``arnoldi_dim = P`` (the default for P ≤ 2,000) the Krylov space
  is the whole parameter space and the result equals the exact one up to round-off; with fewer
  iterations it keeps only the dominant curvature directions (gradients projected on them).
"""
from __future__ import annotations

import copy
import math
import warnings

import torch
from torch import nn
from tqdm.auto import tqdm

from .._torch import eval_on
from .._validate import check_bool, check_choice, check_int, check_real
from .curvature import TrainingObjective, check_data, mean_loss
from .gradients import per_example_grads

__all__ = ["influence", "inverse_hvp", "leave_one_out", "fit", "METHODS"]

METHODS = ("exact", "cg", "lissa", "arnoldi")
_EXACT_MAX = 10_000


def _damping_hint(lam_min: float, damping: float) -> str:
    """lam_min: smallest eigenvalue (or curvature) found for H + damping·I."""
    need = max(damping + 1.5 * abs(lam_min), 2 * damping, 1e-3)
    return (f"the Hessian of the training objective is not positive definite (H + damping·I has "
            f"curvature ≈ {lam_min:.3g} in some direction, with damping={damping}): the model is not at a strict minimum "
            f"(non-convex model, or not trained to the optimum). Add damping, e.g. damping={need:.2g} "
            f"(influence then uses H + damping·I), or a larger l2")


# ----------------------------------------------------------------------------- solvers
def _solve_exact(obj: TrainingObjective, B: torch.Tensor) -> torch.Tensor:
    if obj.dim > _EXACT_MAX:
        raise ValueError(f"method='exact' forms the {obj.dim}×{obj.dim} Hessian: too large (more than "
                         f"{_EXACT_MAX} parameters); use method='cg' or restrict layers= (e.g. the "
                         f"last layer)")
    H = obj.hessian().double()
    evals, evecs = torch.linalg.eigh(H)
    lam_min, lam_max = float(evals[0]), float(evals[-1])
    eps = torch.finfo(obj.theta.dtype).eps
    if lam_min <= obj.dim * eps * max(abs(lam_max), 1e-30):
        raise ValueError(_damping_hint(lam_min, obj.damping) if lam_min < 0 else
                         f"the Hessian of the training objective is singular (smallest eigenvalue "
                         f"{lam_min:.3g}, largest {lam_max:.3g}): some parameter directions do not change "
                         f"the loss (e.g. softmax logits shifted together). Use l2 > 0 (the model must then "
                         f"be trained with it) or damping > 0")
    X = evecs @ ((evecs.T @ B.double().T) / evals[:, None])
    return X.T.to(B.dtype)


def _solve_cg(obj: TrainingObjective, B: torch.Tensor, tol: float, max_iter: int, progress: bool):
    """Independent conjugate-gradient solves H x_k = b_k for the rows b_k of B, batched."""
    X = torch.zeros_like(B)
    R = B.clone()
    Pd = R.clone()
    rr = (R * R).sum(1)
    bnorm = B.norm(dim=1).clamp_min(torch.finfo(B.dtype).tiny)
    active = (rr.sqrt() / bnorm) > tol
    bar = tqdm(range(max_iter), desc="conjugate gradient", disable=not progress, leave=False)
    it = 0
    for it in bar:
        if not bool(active.any()):
            break
        HP = obj.hvp(Pd)
        pHp = (Pd * HP).sum(1)
        bad = active & (pHp <= 0)
        if bool(bad.any()):
            k = int(bad.nonzero()[0])
            curv = float(pHp[k] / (Pd[k] * Pd[k]).sum())
            raise ValueError(_damping_hint(curv, obj.damping) + " (conjugate gradient met a direction of "
                             "non-positive curvature)")
        alpha = torch.where(active, rr / pHp.clamp_min(torch.finfo(B.dtype).tiny), torch.zeros_like(rr))
        X += alpha[:, None] * Pd
        R -= alpha[:, None] * HP
        rr_new = (R * R).sum(1)
        beta = torch.where(active, rr_new / rr.clamp_min(torch.finfo(B.dtype).tiny), torch.zeros_like(rr))
        Pd = R + beta[:, None] * Pd
        rr = rr_new
        active = (rr.sqrt() / bnorm) > tol
    else:
        rel = float((rr.sqrt() / bnorm).max())
        warnings.warn(f"conjugate gradient stopped after max_iter={max_iter} iterations with relative "
                      f"residual {rel:.2g} > tol={tol:g}; raise max_iter, or add damping/l2 (H is "
                      f"ill-conditioned)", RuntimeWarning, stacklevel=3)
    return X


def _power_max(obj: TrainingObjective, iters: int = 50, seed: int = 0) -> float:
    """Largest eigenvalue of H + δI by power iteration (H symmetric PSD near an optimum)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(obj.dim, generator=g, dtype=obj.theta.dtype).to(obj.theta.device)
    v /= v.norm()
    lam = 0.0
    for _ in range(iters):
        hv = obj.hvp(v)
        lam = float(v @ hv)
        v = hv / hv.norm().clamp_min(1e-30)
    return lam


def _solve_lissa(obj: TrainingObjective, B: torch.Tensor, *, depth: int, scale: float | None,
                 repeats: int, lissa_batch: int | None, seed: int, progress: bool, record_every: int = 0):
    if scale is None:
        scale = 1.1 * _power_max(obj, seed=seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    total = torch.zeros_like(B)
    history = []
    vnorm = B.norm(dim=1).clamp_min(torch.finfo(B.dtype).tiny)
    bar = tqdm(total=repeats * depth, desc="LiSSA", disable=not progress, leave=False)
    for r in range(repeats):
        h = B.clone()
        for j in range(1, depth + 1):
            idx = None
            if lissa_batch is not None and lissa_batch < obj.n:
                idx = torch.randperm(obj.n, generator=gen)[:lissa_batch].to(obj.x.device)
            h = B + h - obj.hvp(h, idx) / scale
            # a convergent series has ‖h_j‖ ≤ (j+1)‖v‖ (every term has norm ≤ ‖v‖): far above → diverging
            ratio = float((h.norm(dim=1) / vnorm).max())
            if not math.isfinite(ratio) or ratio > 10 * (j + 1):
                lam = _power_max(obj, seed=seed)
                hint = (f"try scale={1.1 * lam:.3g} or larger (≈ 1.1 × the largest eigenvalue of H + damping, "
                        f"{lam:.3g}, by power iteration)" if lam > scale else
                        "the scale already exceeds the largest eigenvalue, so H + damping has negative "
                        "eigenvalues: add damping (e.g. damping=0.01) or a larger l2")
                raise ValueError(f"the LiSSA recursion diverges: ‖h_j‖/‖v‖ = {ratio:.3g} after {j} steps with "
                                 f"scale={scale:.3g}; {hint}")
            if record_every and j % record_every == 0:
                history.append((r, j, (h / scale).clone()))
            bar.update(1)
        total += h / scale
    bar.close()
    X = total / repeats
    return (X, history, scale) if record_every else X


def _arnoldi_basis(obj: TrainingObjective, m: int, seed: int, progress: bool):
    """Orthonormal Krylov basis Q (m', P) and T = Q H Qᵀ (m', m'); stops early on breakdown."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    q = torch.randn(obj.dim, generator=g, dtype=obj.theta.dtype).to(obj.theta.device)
    Q = [q / q.norm()]
    HQ = []
    for _ in tqdm(range(m), desc="Arnoldi", disable=not progress, leave=False):
        w = obj.hvp(Q[-1])
        HQ.append(w)
        Qm = torch.stack(Q)
        for _ in range(2):  # classical Gram-Schmidt, twice (full re-orthogonalisation)
            w = w - Qm.T @ (Qm @ w)
        nrm = w.norm()
        if len(Q) == m or nrm <= 1e3 * torch.finfo(w.dtype).eps * HQ[0].norm():
            break
        Q.append(w / nrm)
    Qm = torch.stack(Q[:len(HQ)])
    T = Qm @ torch.stack(HQ).T
    return Qm, 0.5 * (T + T.T)


def _arnoldi_eigen(obj: TrainingObjective, arnoldi_dim: int | None, rank: int | None, seed: int,
                   progress: bool):
    m = arnoldi_dim if arnoldi_dim is not None else (obj.dim if obj.dim <= 2000 else 200)
    m = min(m, obj.dim)
    Q, T = _arnoldi_basis(obj, m, seed, progress)
    evals, evecs = torch.linalg.eigh(T.double())
    order = evals.abs().argsort(descending=True)
    k = min(rank if rank is not None else len(order), len(order))
    evals, evecs = evals[order[:k]], evecs[:, order[:k]]
    if float(evals.min()) <= 0:
        raise ValueError(_damping_hint(float(evals.min()), obj.damping) + " (found by the Arnoldi iteration)")
    U = Q.double().T @ evecs  # (P, k) eigenvectors in parameter space
    return evals, U


def _solve_arnoldi(obj, B, arnoldi_dim, rank, seed, progress):
    evals, U = _arnoldi_eigen(obj, arnoldi_dim, rank, seed, progress)
    return (((B.double() @ U) / evals) @ U.T).to(B.dtype)


# ----------------------------------------------------------------------------- public API
def _objective(model, loss_fn, train_inputs, train_targets, layers, l2, damping, batch_size):
    x, y = check_data(model, train_inputs, train_targets, "train_inputs", "train_targets")
    return TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2, damping=damping,
                             batch_size=batch_size)


def _solve(obj, B, method, *, tol, max_iter, depth, scale, repeats, lissa_batch, arnoldi_dim, rank, seed,
           progress):
    if method == "exact":
        return _solve_exact(obj, B)
    if method == "cg":
        if tol is None:
            tol = 1e-10 if obj.theta.dtype == torch.float64 else 1e-5
        return _solve_cg(obj, B, check_real("tol", tol, min=0.0, min_inclusive=False),
                         check_int("max_iter", max_iter if max_iter is not None else min(10 * obj.dim, 1000), min=1),
                         progress)
    if method == "lissa":
        if scale is not None:
            scale = check_real("scale", scale, min=0.0, min_inclusive=False)
        return _solve_lissa(obj, B, depth=check_int("depth", depth, min=1), scale=scale,
                            repeats=check_int("repeats", repeats, min=1),
                            lissa_batch=None if lissa_batch is None else check_int("lissa_batch", lissa_batch, min=1),
                            seed=seed, progress=progress)
    return _solve_arnoldi(obj, B, None if arnoldi_dim is None else check_int("arnoldi_dim", arnoldi_dim, min=1),
                          None if rank is None else check_int("rank", rank, min=1), seed, progress)


def inverse_hvp(model: nn.Module, loss_fn, train_inputs, train_targets, vectors: torch.Tensor, *,
                l2: float = 0.0, method: str = "cg", damping: float = 0.0, layers=None,
                tol: float | None = None, max_iter: int | None = None, depth: int = 1000,
                scale: float | None = None, repeats: int = 1, lissa_batch: int | None = None,
                arnoldi_dim: int | None = None, rank: int | None = None, seed: int = 0,
                batch_size: int | None = None, record_every: int = 0, progress: bool = False):
    """(H + damping·I)⁻¹ v for the rows v of ``vectors`` (k, P) (or one vector (P,)), H the Hessian
    of the training objective at the model's current parameters (see ``influence`` for the
    methods and their options).

    ``record_every=j`` (LiSSA only) returns ``(result, history, scale)`` where ``history`` lists
    ``(repeat, depth, estimate)`` every j steps — the convergence monitor of lecture 05.
    """
    check_choice("method", method, METHODS)
    obj = _objective(model, loss_fn, train_inputs, train_targets, layers, l2, damping, batch_size)
    if not isinstance(vectors, torch.Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    one = vectors.dim() == 1
    B = vectors[None] if one else vectors
    if B.dim() != 2 or B.shape[1] != obj.dim:
        raise ValueError(f"vectors must have shape ({obj.dim},) or (k, {obj.dim}), got {tuple(vectors.shape)}")
    B = B.to(obj.theta)
    record_every = check_int("record_every", record_every, min=0)
    if record_every:
        if method != "lissa":
            raise ValueError("record_every applies to method='lissa' only")
        X, hist, s = _solve_lissa(obj, B, depth=check_int("depth", depth, min=1), scale=scale,
                                  repeats=check_int("repeats", repeats, min=1), lissa_batch=lissa_batch,
                                  seed=seed, progress=progress, record_every=record_every)
        return (X[0] if one else X), hist, s
    X = _solve(obj, B, method, tol=tol, max_iter=max_iter, depth=depth, scale=scale, repeats=repeats,
               lissa_batch=lissa_batch, arnoldi_dim=arnoldi_dim, rank=rank, seed=seed, progress=progress)
    return X[0] if one else X


def influence(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_targets: torch.Tensor,
              test_inputs: torch.Tensor, test_targets: torch.Tensor, *, l2: float = 0.0,
              method: str = "cg", damping: float = 0.0, layers=None, tol: float | None = None,
              max_iter: int | None = None, depth: int = 1000, scale: float | None = None,
              repeats: int = 1, lissa_batch: int | None = None, arnoldi_dim: int | None = None,
              rank: int | None = None, seed: int = 0, batch_size: int | None = None,
              progress: bool = False) -> torch.Tensor:
    r"""I_up,loss(z_i, z_test_k) = −∇ℓ(z_test_k; θ̂)ᵀ (H + δI)⁻¹ ∇ℓ(z_i; θ̂) → (n_test, n_train).

    H is the Hessian of the training objective (1/n) Σ_i ℓ(z_i; θ) + (l2/2)‖θ‖² over the chosen
    parameters (``layers``; all trainable parameters by default) at the model's *current* values,
    which should be the optimum of that same objective (train with ``fit``). Removing z_i changes
    the test loss by about −I_up,loss / n (positive score = harmful point).

    Args:
        model: the trained model (evaluated in eval mode, left as found).
        loss_fn: per-example loss, e.g. ``nn.CrossEntropyLoss()`` (any reduction: the training
            term is always the mean).
        train_inputs (n, ...), train_targets (n,); test_inputs (m, ...), test_targets (m,).
        l2: λ of the training objective (the weight decay the model was trained with, as
            λ/2‖θ‖² on the chosen parameters).
        method: "exact", "cg", "lissa" or "arnoldi" (module docstring).
        damping: δ ≥ 0 added to H's diagonal (needed when H is not positive definite).
        layers: restrict θ to these layers' parameters, e.g. ``"fc2"`` (last layer only).
        tol, max_iter: CG stopping rule — relative residual ‖Hx − b‖/‖b‖ ≤ tol (default 1e-5 in
            float32, 1e-10 in float64), at most max_iter (default min(10·P, 1000)) iterations (a
            RuntimeWarning reports a solve that did not reach tol).
        depth, scale, repeats, lissa_batch: LiSSA recursion depth, scale s (> largest eigenvalue of
            H + δI; None = 1.1 × a power-iteration estimate), number of averaged runs, and
            mini-batch size for the stochastic Hessian (None = all points, deterministic).
        arnoldi_dim, rank: Arnoldi iterations (None = P when P ≤ 2,000, else 200) and the number of
            top eigenpairs kept (None = all found).
        seed: for LiSSA's mini-batches and Arnoldi's start vector.
        batch_size: chunk the training set in Hessian-vector products (None = one batch).

    Returns:
        Tensor (n_test, n_train) in the model's dtype, on its device.
    """
    check_choice("method", method, METHODS)
    check_bool("progress", progress)
    obj = _objective(model, loss_fn, train_inputs, train_targets, layers, l2, damping, batch_size)
    xt, yt = check_data(model, test_inputs, test_targets, "test_inputs", "test_targets")
    G_test = per_example_grads(model, loss_fn, xt, yt, layers=layers)
    S = _solve(obj, G_test, method, tol=tol, max_iter=max_iter, depth=depth, scale=scale, repeats=repeats,
               lissa_batch=lissa_batch, arnoldi_dim=arnoldi_dim, rank=rank, seed=seed, progress=progress)
    obj.release()
    G_train = per_example_grads(model, loss_fn, obj.x, obj.y, layers=layers, progress=progress)
    return -(S @ G_train.T)


# ----------------------------------------------------------------------------- ground truth
def fit(model: nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor, *, l2: float = 0.0,
        layers=None, drop=None, tol: float | None = None, max_iter: int = 1000) -> dict:
    """Minimise (1/n) Σ_{i ∉ drop} ℓ(z_i; θ) + (l2/2)‖θ‖² over the chosen parameters in place,
    full-batch L-BFGS (strong-Wolfe line search) from the current values.

    ``drop``: indices whose weight is set to 0 (the others keep weight 1/n: exactly the ε = −1/n
    perturbation of influence functions). Stops when max |∂R/∂θ| ≤ tol (default 1e-9 in float64,
    1e-5 in float32) or after max_iter iterations. Returns {"grad_max", "objective", "iterations"}.
    """
    x, y = check_data(model, inputs, targets, "inputs", "targets")
    obj = TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2)
    if tol is None:
        tol = 1e-9 if obj.theta.dtype == torch.float64 else 1e-5
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    max_iter = check_int("max_iter", max_iter, min=1)
    keep = None
    if drop is not None:
        mask = torch.ones(obj.n, dtype=torch.bool)
        mask[torch.as_tensor(drop, dtype=torch.long)] = False
        keep = mask.nonzero().squeeze(1).to(x.device)
    theta = obj.theta.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, history_size=50, tolerance_grad=tol,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")

    def objective():
        return obj.data_loss(theta, keep) + 0.5 * obj.l2 * theta.pow(2).sum()

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with eval_on(model):
        opt.step(closure)
        loss = objective()
        g = torch.autograd.grad(loss, theta)[0]
    state = opt.state[opt._params[0]]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in obj.unflatten(theta.detach()).items():
            params[n].copy_(v)
    return {"grad_max": g.abs().max().item(), "objective": loss.detach().item(), "iterations": int(state.get("n_iter", 0))}


def leave_one_out(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_targets: torch.Tensor,
                  test_inputs: torch.Tensor, test_targets: torch.Tensor, indices, *, l2: float = 0.0,
                  layers=None, tol: float | None = 1e-9, max_iter: int = 1000,
                  dtype: torch.dtype | None = torch.float64, progress: bool = True) -> torch.Tensor:
    """The actual change of each test loss when training point i is removed and the model
    retrained: ΔL[k, j] = ℓ(z_test_k; θ̂_{−i_j}) − ℓ(z_test_k; θ̂) → (n_test, len(indices)).

    The ground truth influence functions approximate (ΔL ≈ −I_up,loss / n). A copy of the model
    (cast to ``dtype``, float64 by default: the changes are O(1/n) and need the precision) is first
    refit to the optimum of the full objective, then for each i refit from that optimum (warm start)
    with z_i's weight set to 0 — objective (1/n) Σ_{j≠i} ℓ(z_j) + (l2/2)‖θ‖² — by full-batch L-BFGS
    until max |∂R/∂θ| ≤ ``tol`` (see ``fit``). Only the parameters of ``layers`` are retrained. On a
    non-convex model the retraining finds the nearby local minimum. The model itself is unchanged.
    """
    m = copy.deepcopy(model)
    if dtype is not None:
        m = m.to(dtype)
    wdt = next(m.parameters()).dtype
    x, y = check_data(model, train_inputs, train_targets, "train_inputs", "train_targets")
    xt, yt = check_data(model, test_inputs, test_targets, "test_inputs", "test_targets")
    x, xt = x.to(wdt), xt.to(wdt)
    idx = torch.as_tensor(indices, dtype=torch.long).reshape(-1)
    if len(idx) and (int(idx.min()) < -len(x) or int(idx.max()) >= len(x)):
        raise ValueError(f"indices must lie in [0, {len(x)}) (training points), got values from "
                         f"{int(idx.min())} to {int(idx.max())}")
    idx = idx % len(x)
    loss_none = _per_example_loss(loss_fn)
    info = fit(m, loss_fn, x, y, l2=l2, layers=layers, tol=tol, max_iter=max_iter)
    if info["grad_max"] > 100 * (tol or 1e-9):
        warnings.warn(f"leave_one_out: the full refit reached max|grad| = {info['grad_max']:.2g} only "
                      f"(tol={tol}); raise max_iter", RuntimeWarning, stacklevel=2)
    base_state = copy.deepcopy(m.state_dict())
    with torch.no_grad(), eval_on(m):
        base = loss_none(m(xt), yt)
    out = torch.empty(len(xt), len(idx), dtype=wdt)
    for j, i in enumerate(tqdm(idx.tolist(), desc="leave-one-out retraining", disable=not progress,
                               leave=False)):
        m.load_state_dict(base_state)
        fit(m, loss_fn, x, y, l2=l2, layers=layers, drop=[i], tol=tol, max_iter=max_iter)
        with torch.no_grad(), eval_on(m):
            out[:, j] = (loss_none(m(xt), yt) - base).cpu()
    return out


def _per_example_loss(loss_fn):
    def f(out, y):
        return torch.stack([mean_loss(loss_fn, out[k:k + 1], y[k:k + 1]) for k in range(len(y))])
    return f
