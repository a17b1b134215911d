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

from .._torch import check_inputs, check_model, eval_on, resolve_target
from .._validate import as_tensor, check_bool, check_choice, check_int, check_real
from ._base import TrainingDataAttribution, default_loss
from .curvature import TrainingObjective, check_data, check_loss, mean_loss
from .gradients import per_example_grads

__all__ = ["InfluenceFunction", "influence", "inverse_hvp", "leave_one_out", "fit", "SOLVERS", "METHODS"]

SOLVERS = ("exact", "cg", "lissa", "arnoldi")
"""The inverse-Hessian solvers; ``METHODS`` (end of the module) maps each name to its function."""
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


# ----------------------------------------------------------------------------- public API
def _objective(model, loss_fn, train_inputs, train_targets, layers, l2, damping, batch_size,
               names=("train_inputs", "train_labels")):
    x, y = check_data(model, train_inputs, train_targets, *names)
    return TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2, damping=damping,
                             batch_size=batch_size)


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


def _on_inputs(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A result on the device of the caller's inputs, in their float dtype."""
    dtype = like.dtype if like.dtype.is_floating_point else t.dtype
    return t.to(device=like.device, dtype=dtype)


class InfluenceFunction(TrainingDataAttribution):
    r"""Influence functions (Koh & Liang 2017) with the training side computed once and cached.

    ``attribute(inputs, labels)[j, i] = ∇ℓ(z_test_j)ᵀ (H + δI)⁻¹ ∇ℓ(z_i)`` — **positive = training
    point i helped test point j** (upweighting it lowers the test loss; removing it would raise the
    test loss by about score / n). Koh & Liang's I_up,loss (positive = harmful) is
    ``i_up_loss(inputs, labels) = −attribute(...)``; captum's ``NaiveInfluenceFunction`` returns
    ``attribute / n``.

    Args:
        model: the trained model, at the optimum of the objective below (train it with ``fit``). Its
            parameters are read when the object is made: make a new object after changing them.
        train_inputs (n, ...), train_labels (n,): the training set (integer class labels, or float
            targets for a regression loss).
        loss_fn: per-example loss ℓ(outputs, labels), default ``nn.CrossEntropyLoss()``; any
            reduction ("mean", "sum", "none") — the training term is always the mean.
        solver: how (H + δI)⁻¹ is applied — "exact" (explicit Hessian, eigendecomposition in float64),
            "cg" (conjugate gradient), "lissa" (stochastic Neumann series), "arnoldi" (Krylov
            eigenpairs); see the module docstring.
        damping: δ ≥ 0 added to H's diagonal. l2: λ of the objective (1/n) Σ ℓ + (λ/2)‖θ‖².
        params: the parameters θ: None (all trainable) or layer name(s)/module(s), e.g. ``"fc2"``.
        batch_size: chunk of training points per Hessian-vector product (None = all at once, the
            graph of ∇R is then cached) and per gradient batch (256 when None).
        tol, max_iter (CG); depth, scale, repeats, lissa_batch (LiSSA); arnoldi_dim, rank (Arnoldi);
            seed (LiSSA mini-batches, Arnoldi start vector): as in ``influence``.
        progress: tqdm bars.

    What is cached (on the first call that needs it): the training gradients G (n, P); for "exact"
    and "arnoldi" the eigenpairs (λ_k, u_k) of H + δI and the training gradients in that basis
    G U / λ (n, k), so a later ``attribute`` costs the test gradients and one matrix product; for
    "cg" and "lissa" the graph of ∇R (Hessian-vector products pay one backward pass).
    """

    def __init__(self, model: nn.Module, train_inputs: torch.Tensor, train_labels: torch.Tensor, *,
                 loss_fn=None, solver: str = "exact", damping: float = 0.0, l2: float = 0.0, params=None,
                 batch_size: int | None = None, tol: float | None = None, max_iter: int | None = None,
                 depth: int = 1000, scale: float | None = None, repeats: int = 1,
                 lissa_batch: int | None = None, arnoldi_dim: int | None = None, rank: int | None = None,
                 seed: int = 0, progress: bool = False):
        check_model(model)
        self.model = model
        self.loss_fn = default_loss(loss_fn)
        self.solver = check_choice("solver", solver, SOLVERS)
        self.progress = check_bool("progress", progress)
        self.params = params
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, min=1)
        self.obj = _objective(model, self.loss_fn, train_inputs, train_labels, params, l2, damping,
                              self.batch_size)
        self._train_device = train_inputs.device
        self.n_train = self.obj.n
        check_loss(model, self.loss_fn, self.obj.x, self.obj.y, "train_labels")
        if tol is not None:
            check_real("tol", tol, min=0.0, min_inclusive=False)
        if max_iter is not None:
            check_int("max_iter", max_iter, min=1)
        if scale is not None:
            check_real("scale", scale, min=0.0, min_inclusive=False)
        self.options = dict(tol=tol, max_iter=max_iter, depth=check_int("depth", depth, min=1), scale=scale,
                            repeats=check_int("repeats", repeats, min=1),
                            lissa_batch=None if lissa_batch is None else check_int("lissa_batch", lissa_batch, min=1),
                            arnoldi_dim=None if arnoldi_dim is None else check_int("arnoldi_dim", arnoldi_dim, min=1),
                            rank=None if rank is None else check_int("rank", rank, min=1), seed=_check_seed(seed))
        self._G = None        # (n, P) training gradients
        self._factor = None   # (evals (k,), U (P, k) float64) for exact / arnoldi
        self._proj = None     # G U / evals (n, k) float64
        self._self = None     # (n,) self-influence

    # -- the cached training side
    def _grad_batch(self):
        return self.batch_size or 256

    def train_gradients(self) -> torch.Tensor:
        """∇ℓ(z_i; θ̂) for every training point → (n, P) (cached)."""
        if self._G is None:
            self._G = per_example_grads(self.model, self.loss_fn, self.obj.x, self.obj.y, layers=self.params,
                                        batch_size=self._grad_batch(), progress=self.progress)
        return self._G

    def _factored(self):
        if self.solver not in ("exact", "arnoldi"):
            return None
        if self._factor is None:
            if self.solver == "exact":
                evals, U = _exact_eigen(self.obj)
            else:
                evals, U = _arnoldi_eigen(self.obj, self.options["arnoldi_dim"], self.options["rank"],
                                          self.options["seed"], self.progress)
            self._factor = (evals, U)
            self._proj = (self.train_gradients().double() @ U) / evals
        return self._factor

    def inverse_hvp(self, vectors: torch.Tensor) -> torch.Tensor:
        """(H + δI)⁻¹ v for the rows v of ``vectors`` (k, P) (or one (P,)) with this object's solver."""
        if not isinstance(vectors, torch.Tensor):
            raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
        one = vectors.dim() == 1
        B = vectors[None] if one else vectors
        if B.dim() != 2 or B.shape[1] != self.obj.dim:
            raise ValueError(f"vectors must have shape ({self.obj.dim},) or (k, {self.obj.dim}), got "
                             f"{tuple(vectors.shape)}")
        as_tensor("vectors", B)
        B = B.to(self.obj.theta)
        f = self._factored()
        if f is not None:
            evals, U = f
            X = (((B.double() @ U) / evals) @ U.T).to(B.dtype)
        else:
            X = _solve(self.obj, B, self.solver, progress=self.progress, **self.options)
        return X[0] if one else X

    def test_gradients(self, inputs, labels, *, _names=("inputs", "labels")) -> torch.Tensor:
        """∇ℓ(z_test_j; θ̂) → (n_test, P). labels None = the model's predicted classes."""
        x = check_inputs(self.model, inputs, _names[0])
        if labels is None:
            labels = resolve_target(self.model, x, None)
        _, y = check_data(self.model, x, labels, *_names)
        check_loss(self.model, self.loss_fn, x, y, _names[1])
        return per_example_grads(self.model, self.loss_fn, x, y, layers=self.params, batch_size=self._grad_batch())

    # -- scores
    def attribute(self, inputs, labels) -> torch.Tensor:
        """∇ℓ(z_test_j)ᵀ (H + δI)⁻¹ ∇ℓ(z_i) → (n_test, n_train); positive = point i helped test j.

        inputs (n_test, ...), labels (n_test,) (None = the model's predicted classes). The result
        is on the inputs' device, in their dtype."""
        return self._attribute(inputs, labels)

    def _attribute(self, inputs, labels, names=("inputs", "labels")) -> torch.Tensor:
        G_t = self.test_gradients(inputs, labels, _names=names)
        if self._factored() is not None:
            evals, U = self._factor
            S = (G_t.double() @ U) @ self._proj.T
        else:
            S = self.inverse_hvp(G_t) @ self.train_gradients().T
        return _on_inputs(S, inputs)

    def i_up_loss(self, inputs, labels) -> torch.Tensor:
        """Koh & Liang's I_up,loss(z_i, z_test_j) = −∇ℓ(z_test)ᵀ H⁻¹ ∇ℓ(z_i) → (n_test, n_train):
        the derivative of the test loss when z_i is upweighted (positive = harmful). Removing z_i
        changes the test loss by about −I_up,loss / n."""
        return -self.attribute(inputs, labels)

    def self_influence(self) -> torch.Tensor:
        """∇ℓ(z_i)ᵀ (H + δI)⁻¹ ∇ℓ(z_i) → (n_train,) (cached): large for points the model fits only
        by bending toward them — mislabelled or atypical points."""
        if self._self is None:
            if self._factored() is not None:
                self._self = ((self.train_gradients().double() @ self._factor[1]) ** 2 / self._factor[0]).sum(1)
            else:
                G = self.train_gradients()
                self._self = torch.cat([(self.inverse_hvp(G[s:s + 512]) * G[s:s + 512]).sum(1)
                                        for s in range(0, len(G), 512)])
        return self._self.to(device=self._train_device, dtype=self.obj.theta.dtype)


def inverse_hvp(model: nn.Module, loss_fn, train_inputs, train_labels, vectors: torch.Tensor, *,
                l2: float = 0.0, method: str = "cg", damping: float = 0.0, layers=None,
                tol: float | None = None, max_iter: int | None = None, depth: int = 1000,
                scale: float | None = None, repeats: int = 1, lissa_batch: int | None = None,
                arnoldi_dim: int | None = None, rank: int | None = None, seed: int = 0,
                batch_size: int | None = None, record_every: int = 0, progress: bool = False):
    """(H + damping·I)⁻¹ v for the rows v of ``vectors`` (k, P) (or one vector (P,)), H the Hessian
    of the training objective at the model's current parameters (see ``influence`` for the
    methods and their options; ``InfluenceFunction(...).inverse_hvp`` caches the factorisation).

    ``record_every=j`` (LiSSA only) returns ``(result, history, scale)`` where ``history`` lists
    ``(repeat, depth, estimate)`` every j steps — the convergence monitor of lecture 05.
    """
    check_choice("method", method, SOLVERS)
    check_bool("progress", progress)
    seed = _check_seed(seed)
    obj = _objective(model, loss_fn, train_inputs, train_labels, layers, l2, damping, batch_size)
    if not isinstance(vectors, torch.Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    one = vectors.dim() == 1
    B = vectors[None] if one else vectors
    if B.dim() != 2 or B.shape[1] != obj.dim:
        raise ValueError(f"vectors must have shape ({obj.dim},) or (k, {obj.dim}), got {tuple(vectors.shape)}")
    as_tensor("vectors", B)
    B = B.to(obj.theta)
    record_every = check_int("record_every", record_every, min=0)
    if record_every:
        if method != "lissa":
            raise ValueError("record_every applies to method='lissa' only")
        if scale is not None:
            scale = check_real("scale", scale, min=0.0, min_inclusive=False)
        X, hist, s = _solve_lissa(obj, B, depth=check_int("depth", depth, min=1), scale=scale,
                                  repeats=check_int("repeats", repeats, min=1),
                                  lissa_batch=None if lissa_batch is None else check_int("lissa_batch", lissa_batch, min=1),
                                  seed=seed, progress=progress, record_every=record_every)
        return (X[0] if one else X), hist, s
    X = _solve(obj, B, method, tol=tol, max_iter=max_iter, depth=depth, scale=scale, repeats=repeats,
               lissa_batch=lissa_batch, arnoldi_dim=arnoldi_dim, rank=rank, seed=seed, progress=progress)
    return X[0] if one else X


def influence(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_labels: torch.Tensor,
              test_inputs: torch.Tensor, test_labels: torch.Tensor, *, l2: float = 0.0,
              method: str = "cg", damping: float = 0.0, layers=None, tol: float | None = None,
              max_iter: int | None = None, depth: int = 1000, scale: float | None = None,
              repeats: int = 1, lissa_batch: int | None = None, arnoldi_dim: int | None = None,
              rank: int | None = None, seed: int = 0, batch_size: int | None = None,
              progress: bool = False) -> torch.Tensor:
    r"""Koh & Liang's I_up,loss(z_i, z_test_k) = −∇ℓ(z_test_k; θ̂)ᵀ (H + δI)⁻¹ ∇ℓ(z_i; θ̂) → (n_test, n_train).

    **Sign: the paper's** — positive = *harmful* point (upweighting it raises the test loss), the
    opposite of ``InfluenceFunction.attribute`` (positive = helpful); this function is
    ``InfluenceFunction(...).i_up_loss(test_inputs, test_labels)`` and keeps the name and sign
    lecture 05 derives. Removing z_i changes the test loss by about −I_up,loss / n. For several
    calls on the same training set use ``InfluenceFunction`` (it caches the training side).

    H is the Hessian of the training objective (1/n) Σ_i ℓ(z_i; θ) + (l2/2)‖θ‖² over the chosen
    parameters (``layers``; all trainable parameters by default) at the model's *current* values,
    which should be the optimum of that same objective (train with ``fit``).

    Args:
        model: the trained model (evaluated in eval mode, left as found).
        loss_fn: per-example loss, e.g. ``nn.CrossEntropyLoss()`` (any reduction, "none" included:
            the training term is always the mean).
        train_inputs (n, ...), train_labels (n,); test_inputs (m, ...), test_labels (m,).
        l2: λ of the training objective (the weight decay the model was trained with, as
            λ/2‖θ‖² on the chosen parameters).
        method: the solver, "exact", "cg", "lissa" or "arnoldi" (module docstring).
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
        seed: (int ≥ 0) for LiSSA's mini-batches and Arnoldi's start vector.
        batch_size: chunk the training set in Hessian-vector products (None = one batch).

    Returns:
        Tensor (n_test, n_train) on the test inputs' device, in their dtype.
    """
    check_choice("method", method, SOLVERS)
    return InfluenceFunction(model, train_inputs, train_labels, loss_fn=default_loss(loss_fn), solver=method,
                             damping=damping, l2=l2, params=layers, batch_size=batch_size, tol=tol,
                             max_iter=max_iter, depth=depth, scale=scale, repeats=repeats, lissa_batch=lissa_batch,
                             arnoldi_dim=arnoldi_dim, rank=rank, seed=seed,
                             progress=progress)._attribute(test_inputs, test_labels, ("test_inputs", "test_labels")).neg()


# ----------------------------------------------------------------------------- ground truth
def fit(model: nn.Module, loss_fn, inputs: torch.Tensor, labels: torch.Tensor, *, l2: float = 0.0,
        layers=None, drop=None, tol: float | None = None, max_iter: int = 1000) -> dict:
    """Minimise (1/n) Σ_{i ∉ drop} ℓ(z_i; θ) + (l2/2)‖θ‖² over the chosen parameters in place,
    full-batch L-BFGS (strong-Wolfe line search) from the current values.

    ``drop``: indices whose weight is set to 0 (the others keep weight 1/n: exactly the ε = −1/n
    perturbation of influence functions). Stops when max |∂R/∂θ| ≤ tol (default 1e-9 in float64,
    1e-5 in float32) or after max_iter iterations. Returns {"grad_max", "objective", "iterations"}.
    """
    x, y = check_data(model, inputs, labels, "inputs", "labels")
    check_loss(model, loss_fn, x, y, "labels")
    obj = TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2)
    if tol is None:
        tol = 1e-9 if obj.theta.dtype == torch.float64 else 1e-5
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    max_iter = check_int("max_iter", max_iter, min=1)
    keep = None
    if drop is not None:
        mask = torch.ones(obj.n, dtype=torch.bool)
        mask[check_indices("drop", drop, obj.n)] = False
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


def leave_one_out(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_labels: torch.Tensor,
                  test_inputs: torch.Tensor, test_labels: torch.Tensor, indices, *, l2: float = 0.0,
                  layers=None, tol: float | None = 1e-9, max_iter: int = 1000,
                  dtype: torch.dtype | None = torch.float64, progress: bool = False) -> torch.Tensor:
    """The actual change of each test loss when training point i is removed and the model
    retrained: ΔL[k, j] = ℓ(z_test_k; θ̂_{−i_j}) − ℓ(z_test_k; θ̂) → (n_test, len(indices)).

    The ground truth influence functions approximate (ΔL ≈ −I_up,loss / n). A copy of the model
    (cast to ``dtype``, float64 by default: the changes are O(1/n) and need the precision) is first
    refit to the optimum of the full objective, then for each i refit from that optimum (warm start)
    with z_i's weight set to 0 — objective (1/n) Σ_{j≠i} ℓ(z_j) + (l2/2)‖θ‖² — by full-batch L-BFGS
    until max |∂R/∂θ| ≤ ``tol`` (see ``fit``). Only the parameters of ``layers`` are retrained. On a
    non-convex model the retraining finds the nearby local minimum. The model itself is unchanged.
    """
    x, y = check_data(model, train_inputs, train_labels, "train_inputs", "train_labels")
    xt, yt = check_data(model, test_inputs, test_labels, "test_inputs", "test_labels")
    check_loss(model, loss_fn, x, y, "train_labels")
    check_loss(model, loss_fn, xt, yt, "test_labels")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
    m = copy.deepcopy(model)
    if dtype is not None:
        m = m.to(dtype)
    wdt = next(m.parameters()).dtype
    x, xt = x.to(wdt), xt.to(wdt)
    idx = check_indices("indices", indices, len(x))
    progress = check_bool("progress", progress)
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


def check_indices(name: str, indices, n: int) -> torch.Tensor:
    """Training-point indices: ints (a list, an int, an integer tensor/array) in [−n, n) → LongTensor
    in [0, n). Floats are refused (1.5 is not point 1), as are booleans and out-of-range values."""
    if isinstance(indices, bool):
        raise TypeError(f"{name} must be integer indices of training points, got {indices!r}")
    t = as_tensor(name, indices, floating=False, non_empty=False) if not isinstance(indices, torch.Tensor) \
        else indices
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be integer indices of training points, got dtype {t.dtype} "
                        f"({indices!r:.60}); a float such as 1.5 names no point")
    t = t.reshape(-1).long().cpu()
    if len(t) and (int(t.min()) < -n or int(t.max()) >= n):
        raise ValueError(f"{name} must lie in [0, {n}) (training points), got values from "
                         f"{int(t.min())} to {int(t.max())}")
    return t % n if n else t


METHODS = {"exact": _solve_exact, "cg": _solve_cg, "lissa": _solve_lissa, "arnoldi": _solve_arnoldi}
"""Solver name → function (obj, B, ...) applying (H + δI)⁻¹ to the rows of B (was a tuple of names)."""
