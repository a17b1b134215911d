"""The inverse-Hessian solvers of influence functions: (H + δI)⁻¹ applied to the rows of B.

* ``"exact"``   — the explicit Hessian (P × P), eigendecomposition in float64. Small models only.
* ``"cg"``      — conjugate gradient with Hessian-vector products; H is never formed.
* ``"lissa"``   — the stochastic Neumann-series recursion of Agarwal et al. (2017).
* ``"arnoldi"`` — Schioppa et al. (2022): Krylov basis → top eigenpairs of H, restarted orthogonally
  when the iteration breaks down early (an invariant subspace, e.g. H = c·I).

(See ``influence_functions``' docstring for the maths and the options.) ``METHODS`` maps each
name to its function.
"""
from __future__ import annotations

import math
import warnings

import torch
from tqdm.auto import tqdm

from .._validate import check_int, check_real
from .curvature import TrainingObjective

__all__ = ["SOLVERS", "METHODS"]

SOLVERS = ("exact", "cg", "lissa", "arnoldi")
_EXACT_MAX = 10_000


def _damping_hint(lam_min: float, damping: float) -> str:
    """lam_min: smallest eigenvalue (or curvature) found for H + damping·I."""
    need = max(damping + 1.5 * abs(lam_min), 2 * damping, 1e-3)
    return (f"the Hessian of the training objective is not positive definite (H + damping·I has "
            f"curvature ≈ {lam_min:.3g} in some direction, with damping={damping}): the model is not at a strict minimum "
            f"(non-convex model, or not trained to the optimum). Add damping, e.g. damping={need:.2g} "
            f"(influence then uses H + damping·I), or a larger l2")


# ----------------------------------------------------------------------------- solvers
def _exact_eigen(obj: TrainingObjective):
    """Eigen-decomposition (evals (P,), U (P, P)) of H + damping·I in float64, checked positive definite."""
    if obj.dim > _EXACT_MAX:
        raise ValueError(f"solver 'exact' forms the {obj.dim}×{obj.dim} Hessian: too large (more than "
                         f"{_EXACT_MAX} parameters); use solver='cg' or restrict the parameters (layers= / "
                         f"params=, e.g. the last layer)")
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
    return evals, evecs


def _solve_exact(obj: TrainingObjective, B: torch.Tensor) -> torch.Tensor:
    evals, evecs = _exact_eigen(obj)
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
            # a convergent series has ‖h_j‖ ≤ (j+1)‖v‖ (every term has norm ≤ ‖v‖): far above → diverging.
            # h_j = Σ_{k≤j} (I − H/s)^k v converges iff every eigenvalue λ of H + δI has |1 − λ/s| < 1,
            # i.e. 0 < λ < 2s: the scale must exceed half the largest eigenvalue.
            ratio = float((h.norm(dim=1) / vnorm).max())
            if not math.isfinite(ratio) or ratio > 10 * (j + 1):
                lam = _power_max(obj, seed=seed)
                hint = (f"the series converges only for scale > λ_max/2 = {lam / 2:.3g} (λ_max = {lam:.3g}, the "
                        f"largest eigenvalue of H + damping by power iteration); try scale={1.1 * lam:.3g}"
                        if lam >= 2 * scale else
                        "the scale already exceeds half the largest eigenvalue, so H + damping has negative "
                        "eigenvalues (or the mini-batch Hessian's are larger): add damping (e.g. damping=0.01), "
                        "a larger l2, or a larger scale")
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
    """Orthonormal basis Q (m', P) of Krylov spaces of H and T = Q H Qᵀ (m', m').

    When the iteration breaks down early (the Krylov space of the start vector is invariant under
    H, e.g. H = c·I after one step) it restarts from a random vector orthogonal to the basis found
    so far, until it has m vectors (or the basis spans all P dimensions): a broken-down basis would
    otherwise apply H⁻¹ only inside that small subspace and drop every other direction."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rand():
        return torch.randn(obj.dim, generator=g, dtype=obj.theta.dtype).to(obj.theta.device)

    eps = torch.finfo(obj.theta.dtype).eps
    q = rand()
    Q = [q / q.norm()]
    HQ = []
    hnorm = 0.0
    for _ in tqdm(range(m), desc="Arnoldi", disable=not progress, leave=False):
        w = obj.hvp(Q[-1])
        HQ.append(w)
        hnorm = max(hnorm, float(w.norm()))
        if len(Q) == m:
            break
        Qm = torch.stack(Q)
        for _ in range(2):  # classical Gram-Schmidt, twice (full re-orthogonalisation)
            w = w - Qm.T @ (Qm @ w)
        nrm = w.norm()
        if nrm <= 1e3 * eps * max(hnorm, 1e-300):  # breakdown: restart orthogonally to the basis
            r = rand()
            w = r
            for _ in range(2):
                w = w - Qm.T @ (Qm @ w)
            nrm = w.norm()
            if nrm <= 1e3 * eps * r.norm():  # the basis already spans the whole space
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



def _check_seed(seed):
    return check_int("seed", seed, min=0)


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
                            seed=_check_seed(seed), progress=progress)
    return _solve_arnoldi(obj, B, None if arnoldi_dim is None else check_int("arnoldi_dim", arnoldi_dim, min=1),
                          None if rank is None else check_int("rank", rank, min=1), _check_seed(seed), progress)


METHODS = {"exact": _solve_exact, "cg": _solve_cg, "lissa": _solve_lissa, "arnoldi": _solve_arnoldi}
"""Solver name → function (obj, B, ...) applying (H + δI)⁻¹ to the rows of B (was a tuple of names)."""
