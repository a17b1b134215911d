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

* ``"exact"``   — the explicit Hessian (P × P), eigendecomposition in float64. Small models only.
* ``"cg"``      — conjugate gradient with Hessian-vector products by double backprop; H is never
  formed. Needs H positive definite (stops with advice when it finds negative curvature).
* ``"lissa"``   — the stochastic Neumann-series recursion of Agarwal et al. (2017) used by Koh &
  Liang: h_0 = v, h_j = v + (I − (H_B + δI)/s) h_{j−1}, s_test ≈ h_depth / s, averaged over
  ``repeats`` runs; H_B is the Hessian on a random mini-batch of ``lissa_batch`` points (all
  points when None: then the recursion is deterministic). The error after j steps is
  (I − H/s)^j applied to the error of h_0, so it converges iff every eigenvalue of I − (H + δI)/s
  lies in (−1, 1), i.e. 0 < λ < 2s for every eigenvalue λ of H + δI: the scale must exceed
  **half** the largest eigenvalue, s > λ_max/2 (not λ_max), and H + δI must be positive definite.
  The error shrinks like ρ^depth with ρ = max(|1 − λ_min/s|, |1 − λ_max/s|); ρ is smallest at
  s = (λ_min + λ_max)/2. The default ``scale=None`` estimates λ_max by power iteration and takes
  1.1× that (safe, since the stochastic mini-batch Hessian can have a larger λ_max than the full one).
* ``"arnoldi"`` — Schioppa et al. (2022): an Arnoldi (for symmetric H, Lanczos) iteration with
  full re-orthogonalisation builds an orthonormal Krylov basis Q (P × m); the eigenpairs of the
  small matrix QᵀHQ give the top-``rank`` eigenvalues λ_k and eigenvectors u_k of H, and
  H⁻¹ ≈ Σ_k u_k u_kᵀ / λ_k. With ``arnoldi_dim = P`` (the default for P ≤ 2,000) the Krylov space
  is the whole parameter space and the result equals the exact one up to round-off; with fewer
  iterations it keeps only the dominant curvature directions (gradients projected on them). When
  the iteration breaks down early (an invariant Krylov space, e.g. H = c·I) it restarts from a
  random vector orthogonal to the basis, so the basis still grows to ``arnoldi_dim``.

The solvers live in ``solvers``, ``fit`` and ``leave_one_out`` in ``retraining``.

**Sign.** ``InfluenceFunction.attribute`` follows the package's convention, positive = the training
point *helped* (= −I_up,loss); ``InfluenceFunction.i_up_loss`` and the function ``influence`` return
the paper's I_up,loss (positive = harmful), as lecture 05 derives it.
"""
from __future__ import annotations

import torch
from torch import nn

from .._torch import check_inputs, check_model, resolve_target
from .._validate import as_tensor, check_bool, check_choice, check_int, check_real
from ._base import TrainingDataAttribution, check_loss_fn, default_loss
from .curvature import TrainingObjective, check_data, check_loss
from .gradients import per_example_grads
from .retraining import fit, leave_one_out  # re-exported from their old home
from .solvers import METHODS, SOLVERS, _arnoldi_eigen, _check_seed, _exact_eigen, _solve, _solve_lissa

__all__ = ["InfluenceFunction", "i_up_loss", "influence", "inverse_hvp", "leave_one_out", "fit", "SOLVERS", "METHODS"]


# ----------------------------------------------------------------------------- public API
def _objective(model, loss_fn, train_inputs, train_targets, layers, l2, damping, batch_size,
               names=("train_inputs", "train_labels")):
    x, y = check_data(model, train_inputs, train_targets, *names)
    return TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2, damping=damping,
                             batch_size=batch_size)


def _require_labels(labels, name):
    if labels is None:
        raise TypeError(f"{name} must be the labels of the test points (n_test,) — the functions need them; "
                        f"InfluenceFunction(...).attribute(inputs, None) explains the predicted classes")


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
    obj = _objective(model, check_loss_fn(loss_fn), train_inputs, train_labels, layers, l2, damping, batch_size)
    check_loss(model, loss_fn, obj.x, obj.y, "train_labels")
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


def i_up_loss(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_labels: torch.Tensor,
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
        depth, scale, repeats, lissa_batch: LiSSA recursion depth, scale s (the series converges iff
            s > λ_max/2, half the largest eigenvalue of H + δI; None = 1.1 × a power-iteration
            estimate of λ_max), number of averaged runs, and mini-batch size for the stochastic
            Hessian (None = all points, deterministic).
        arnoldi_dim, rank: Arnoldi iterations (None = P when P ≤ 2,000, else 200) and the number of
            top eigenpairs kept (None = all found).
        seed: (int ≥ 0) for LiSSA's mini-batches and Arnoldi's start vector.
        batch_size: chunk the training set in Hessian-vector products (None = one batch).

    Returns:
        Tensor (n_test, n_train) on the test inputs' device, in their dtype.
    """
    check_choice("method", method, SOLVERS)
    _require_labels(test_labels, "test_labels")
    return InfluenceFunction(model, train_inputs, train_labels, loss_fn=check_loss_fn(loss_fn), solver=method,
                             damping=damping, l2=l2, params=layers, batch_size=batch_size, tol=tol,
                             max_iter=max_iter, depth=depth, scale=scale, repeats=repeats, lissa_batch=lissa_batch,
                             arnoldi_dim=arnoldi_dim, rank=rank, seed=seed,
                             progress=progress)._attribute(test_inputs, test_labels, ("test_inputs", "test_labels")).neg()


def influence(*args, **kwargs) -> torch.Tensor:
    """Deprecated old name of ``i_up_loss`` (Koh & Liang's I_up,loss, positive = harmful). For the
    package's convention (positive = the training point helped) use ``InfluenceFunction.attribute``."""
    import warnings

    warnings.warn("influence() is deprecated: it returns Koh & Liang's I_up,loss (positive = harmful) — call "
                  "i_up_loss() for the same numbers, or InfluenceFunction(...).attribute() for the package's "
                  "sign (positive = helped)", DeprecationWarning, stacklevel=2)
    return i_up_loss(*args, **kwargs)
