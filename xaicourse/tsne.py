"""t-SNE from scratch in torch: the exact O(N²) algorithm (van der Maaten & Hinton, 2008).

The pieces, in the order the lecture derives them (N points, F input features, d map dims):

1. ``squared_distances(X)``: D_ij = ‖x_i − x_j‖², computed from the Gram matrix
   ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j. X: (N, F) → D: (N, N), zero diagonal.
2. ``conditional_probabilities(D, perplexity)``: for every point i a Gaussian over its
   neighbours, p_{j|i} = exp(−β_i D_ij) / Σ_{k≠i} exp(−β_i D_ik) with β_i = 1/(2σ_i²).
   Each β_i is found by a binary search (vectorised over all points at once) until the
   entropy H_i = −Σ_j p_{j|i} log p_{j|i} (nats) equals log(perplexity) to ``tol``.
   D: (N, N) → P_cond: (N, N), rows sum to 1, zero diagonal.
3. ``joint_probabilities(P_cond)``: p_ij = (p_{j|i} + p_{i|j}) / 2N, so every point keeps a
   total weight Σ_j p_ij > 1/2N, outliers included. (N, N) → (N, N), sums to 1.
4. ``student_t_probabilities(Y)``: in the map a heavy-tailed kernel
   w_ij = (1 + ‖y_i − y_j‖²)⁻¹ and q_ij = w_ij / Σ_{k≠l} w_kl. Y: (N, d) → Q: (N, N).
5. ``kl_divergence(P, Y)`` = Σ_ij p_ij log(p_ij / q_ij), and its gradient
   ``kl_gradient(P, Y)``: ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j). In matrix form
   with M = (P − Q) ∘ W: grad = 4 (diag(M 1) − M) Y. (N, N), (N, d) → (N, d).

``TSNE`` runs gradient descent on the KL with the paper's tricks: early exaggeration (P is
multiplied by ``early_exaggeration`` for the first ``exaggeration_iter`` steps), momentum
(0.5, then 0.8) and per-coordinate gains (+0.2 when the gradient changes sign against the
last update, ×0.8 otherwise, floored at 0.01); the schedule is scikit-learn's, so the two
are directly comparable. The step runs in float32 on pre-allocated N×N buffers: one matmul
gives 1 + D from the Gram matrix of an augmented Y, the rest is in place.

Memory: the optimisation keeps three float32 N×N matrices (P, W and one work buffer), about
12·N² bytes (0.3 GB for N = 5,000). Above ``MAX_SAMPLES`` points ``TSNE`` refuses and points
to the approximate Barnes–Hut / FFT methods (scikit-learn, openTSNE).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from tqdm.auto import tqdm

from ._torch import torch_threads
from ._validate import as_tensor, check_bool, check_int, check_real

__all__ = ["MAX_SAMPLES", "squared_distances", "conditional_probabilities", "joint_probabilities",
           "student_t_probabilities", "kl_divergence", "kl_gradient", "pca_init", "TSNE"]

MAX_SAMPLES = 10_000
"""Largest N that ``TSNE`` accepts (three float32 N×N matrices ≈ 1.2 GB at 10,000)."""

_ROW_BLOCK_ELEMENTS = 1 << 22  # the perplexity search works on row blocks of ≤ 4M entries


# ----------------------------------------------------------------------------- helpers
def _matrix(name: str, X) -> torch.Tensor:
    """X as a 2-D real floating tensor: ``xaicourse._validate.as_tensor`` plus scikit-learn's rules.

    Integer and boolean data are accepted and converted to float64 (as scikit-learn does);
    object arrays of numbers are converted (anything else in them: TypeError), complex data
    and NaN/inf raise ValueError, sparse matrices TypeError. The dimension check comes with a
    hint for image batches. Tensors that require grad are kept as they are (so the pieces
    stay differentiable). An empty X passes: the caller says what is missing.
    """
    if sp.issparse(X) or (isinstance(X, torch.Tensor) and X.layout != torch.strided):
        raise TypeError(f"{name} is a sparse matrix: sparse input is not supported by exact t-SNE; "
                        f"convert it with {name}.toarray() (scipy) or {name}.to_dense() (torch)")
    if isinstance(X, np.ndarray) and X.dtype == object:  # numbers stored as objects: convert here
        if any(isinstance(v, complex) for v in X.flat):
            raise ValueError(f"{name} must hold real numbers. Complex data not supported")
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must hold numbers: {err}") from err
    if isinstance(X, np.ndarray) and not X.flags.writeable:
        X = np.array(X)  # read-only (e.g. a memmap): torch warns on views of such arrays; X is small
    if (isinstance(X, torch.Tensor) and X.is_complex()) or (isinstance(X, np.ndarray) and np.iscomplexobj(X)):
        raise ValueError(f"{name} must hold real numbers. Complex data not supported")
    t = as_tensor(name, X, floating=False, non_empty=False)
    if not t.dtype.is_floating_point:
        t = t.to(torch.float64)
    if t.ndim != 2:
        hint = " (flatten images first: X.reshape(len(X), -1))" if name == "X" and t.ndim > 2 else ""
        raise ValueError(f"{name} must be 2-D, got shape {tuple(t.shape)}{hint}")
    return t


def _wide_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device supports it (Apple MPS does not)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def squared_distances(X) -> torch.Tensor:
    """Pairwise squared Euclidean distances from the Gram matrix.

    X: (N, F) → D: (N, N) with D_ij = ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j, clamped at 0 (rounding)
    and an exact zero diagonal. Same dtype/device as X. X is centred first (this changes
    no distance but keeps the Gram matrix well conditioned).
    """
    X = _matrix("X", X)
    if X.shape[0] == 0:
        raise ValueError(f"X is empty (shape {tuple(X.shape)}): give at least one point")
    X = X - X.mean(0, keepdim=True)
    sq = (X * X).sum(1)
    D = torch.addmm(sq[:, None] + sq[None, :], X, X.T, alpha=-2.0).clamp_min_(0.0)
    D.fill_diagonal_(0.0)
    return D


# ----------------------------------------------------------------------------- input affinities
def _search_block(D: torch.Tensor, diag: torch.Tensor | None, log_perp: float, tol: float,
                  max_steps: int):
    """Binary search for β on a block of rows, all rows at once.

    D: (B, N) squared distances in a wide dtype (it is modified in place); ``diag``: the
    column of each row's own point (excluded), or None. Returns P (B, N), rows summing to
    1, and β (B,).
    """
    B = D.shape[0]
    rows = torch.arange(B, device=D.device)
    if diag is not None:
        D[rows, diag] = math.inf
    # Shift each row by its smallest distance: p_{j|i} and H_i do not change, but exp() can
    # then never underflow to an all-zero row (the nearest neighbour always gets exp(0) = 1).
    D.sub_(D.min(1, keepdim=True).values)
    if diag is not None:  # huge but finite: exp(−β·big) = 0 and 0·big = 0 (inf would give NaN)
        D[rows, diag] = torch.finfo(D.dtype).max / 4
    beta = torch.ones(B, dtype=D.dtype, device=D.device)
    lo = torch.zeros_like(beta)                   # 0 = "no lower bracket yet"
    hi = torch.full_like(beta, math.inf)          # inf = "no upper bracket yet"
    done = torch.zeros(B, dtype=torch.bool, device=D.device)
    E = torch.empty_like(D)
    for _ in range(max_steps):
        torch.mul(D, -beta[:, None], out=E).exp_()           # unnormalised p_{j|i}
        S = E.sum(1)
        ED = torch.bmm(E[:, None, :], D[:, :, None]).view(B)  # Σ_j E_ij D_ij, no temporary
        H = torch.log(S) + beta * ED / S                      # entropy in nats
        diff = H - log_perp
        done |= diff.abs() <= tol
        if done.all():
            break
        # entropy too high → Gaussian too wide → raise β; too low → lower β
        up = (diff > 0) & ~done
        down = (diff <= 0) & ~done
        lo = torch.where(up, beta, lo)
        hi = torch.where(down, beta, hi)
        beta = torch.where(up, torch.where(torch.isinf(hi), beta * 2.0, (beta + hi) / 2.0), beta)
        beta = torch.where(down, torch.where(lo == 0, beta / 2.0, (beta + lo) / 2.0), beta)
    torch.mul(D, -beta[:, None], out=E).exp_()
    E.div_(E.sum(1, keepdim=True))
    return E, beta


def conditional_probabilities(D, perplexity: float = 30.0, tol: float = 1e-5, max_steps: int = 100,
                              return_beta: bool = False):
    """Gaussian conditional affinities p_{j|i} whose perplexity exp(H_i) is ``perplexity``.

    D: (N, N) squared distances (diagonal ignored). For each row a precision β_i = 1/(2σ_i²)
    is found by bisection (doubling/halving until bracketed), all rows at once, until
    |H_i − log(perplexity)| ≤ ``tol`` (nats) or ``max_steps`` steps. Works in float64
    (float32 on MPS). Returns P_cond (N, N) with zero diagonal and rows summing to 1 in
    D's dtype, and, if ``return_beta``, β (N,).
    """
    D = _matrix("D", D)
    n = D.shape[0]
    if D.shape[1] != n:
        raise ValueError(f"D must be square (N, N), got shape {tuple(D.shape)}")
    if n < 2:
        raise ValueError(f"D must describe at least 2 points, got {n}")
    perplexity = _check_perplexity(perplexity, n)
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    max_steps = check_int("max_steps", max_steps, min=1)
    return_beta = check_bool("return_beta", return_beta)
    if (D < 0).any():
        raise ValueError("D must hold squared distances (non-negative values)")
    wide = _wide_dtype(D.device)
    out = torch.empty_like(D)
    betas = torch.empty(n, dtype=wide, device=D.device)
    step = max(1, _ROW_BLOCK_ELEMENTS // n)
    for s in range(0, n, step):  # row blocks bound the memory of the float64 work arrays
        e = min(n, s + step)
        P, b = _search_block(D[s:e].to(wide, copy=True), torch.arange(s, e, device=D.device), math.log(perplexity),
                             tol, max_steps)
        out[s:e], betas[s:e] = P.to(out.dtype), b
    return (out, betas) if return_beta else out


def _check_perplexity(perplexity, n: int) -> float:
    """``perplexity`` as a float in [1, n − 1) (TypeError for a non-number)."""
    perplexity = check_real("perplexity", perplexity, min=1.0)
    if perplexity >= n - 1:
        raise ValueError(f"perplexity must be smaller than n_samples − 1 = {n - 1} (a point has only "
                         f"{n - 1} neighbours), got {perplexity}; lower perplexity or use more points")
    return perplexity


def joint_probabilities(P_cond) -> torch.Tensor:
    """Symmetrise: p_ij = (p_{j|i} + p_{i|j}) / 2N. P_cond: (N, N), rows summing to 1.

    Returns P (N, N), symmetric, zero diagonal, summing to 1.
    """
    P_cond = _matrix("P_cond", P_cond)
    n = P_cond.shape[0]
    if P_cond.shape[1] != n or n == 0:
        raise ValueError(f"P_cond must be square (N, N) with N ≥ 1, got shape {tuple(P_cond.shape)}")
    if (P_cond < 0).any():
        raise ValueError("P_cond must hold probabilities (non-negative values)")
    rows = P_cond.detach().sum(1)
    if not torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
        raise ValueError(f"P_cond's rows must each sum to 1 (conditional distributions p_(j|i)), got row sums "
                         f"from {rows.min().item():.4g} to {rows.max().item():.4g}; "
                         f"use conditional_probabilities(D, perplexity)")
    P = (P_cond + P_cond.T) / (2.0 * n)
    P.fill_diagonal_(0.0)
    return P


# ----------------------------------------------------------------------------- map affinities, KL
def student_t_probabilities(Y, return_kernel: bool = False):
    """q_ij = w_ij / Σ_{k≠l} w_kl with the Student-t (Cauchy) kernel w_ij = (1 + ‖y_i − y_j‖²)⁻¹.

    Y: (N, d) → Q: (N, N), zero diagonal (and W (N, N) if ``return_kernel``).
    Differentiable in Y.
    """
    Y = _matrix("Y", Y)
    sq = (Y * Y).sum(1)
    D = (sq[:, None] + sq[None, :] - 2.0 * Y @ Y.T).clamp_min(0.0)
    W = 1.0 / (1.0 + D)
    W = W * (1.0 - torch.eye(len(Y), dtype=W.dtype, device=W.device))
    Q = W / W.sum()
    return (Q, W) if return_kernel else Q


def _check_pair(P, Y):
    P = _matrix("P", P)
    Y = _matrix("Y", Y)
    if P.shape[0] != P.shape[1] or P.shape[0] != Y.shape[0]:
        raise ValueError(f"P must be (N, N) and Y (N, d) with the same N, got {tuple(P.shape)} and "
                         f"{tuple(Y.shape)}")
    if P.shape[0] < 2:
        raise ValueError(f"P and Y must describe at least 2 points, got {P.shape[0]}")
    if (P < 0).any():
        raise ValueError("P must hold joint probabilities (non-negative values)")
    return P.to(device=Y.device, dtype=Y.dtype), Y


def kl_divergence(P, Y) -> torch.Tensor:
    """KL(P‖Q) = Σ_{i≠j} p_ij log(p_ij / q_ij) with Q = ``student_t_probabilities(Y)``.

    P: (N, N) joint probabilities, Y: (N, d). A 0-d tensor, differentiable in Y; terms
    with p_ij = 0 count as 0.
    """
    P, Y = _check_pair(P, Y)
    Q = student_t_probabilities(Y)
    mask = P > 0
    return (P[mask] * (torch.log(P[mask]) - torch.log(Q[mask]))).sum()


def kl_gradient(P, Y, exaggeration: float = 1.0) -> torch.Tensor:
    """Analytic gradient of the t-SNE cost w.r.t. Y: 4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j).

    P: (N, N) joint probabilities, Y: (N, d) → (N, d). With α = ``exaggeration`` = 1 this is
    ∂KL(P‖Q)/∂Y. With α > 1 (early exaggeration) it is the gradient of
    −α Σ p_ij log w_ij + log Σ w_kl: the attraction is scaled by α, the repulsion is not.
    Matrix form: with M = (αP − Q) ∘ W, grad = 4 (diag(M·1) − M) Y.
    """
    P, Y = _check_pair(P, Y)
    exaggeration = check_real("exaggeration", exaggeration, min=0.0, min_inclusive=False)
    Q, W = student_t_probabilities(Y, return_kernel=True)
    M = (exaggeration * P - Q) * W
    return 4.0 * (M.sum(1, keepdim=True) * Y - M @ Y)


def pca_init(X, n_components: int = 2, scale: float = 1e-4) -> torch.Tensor:
    """The first ``n_components`` principal-component scores of X, rescaled so the first
    column has standard deviation ``scale`` (scikit-learn's ``init="pca"``; component signs
    follow scikit-learn: the largest-magnitude loading of each component is positive).

    X: (N, F) → (N, n_components) in X's dtype.
    """
    X = _matrix("X", X)
    if X.shape[0] < 2:
        raise ValueError(f"X must hold at least 2 points for PCA, got shape {tuple(X.shape)}")
    Xw = X.to(_wide_dtype(X.device))
    Xc = Xw - Xw.mean(0, keepdim=True)
    n, f = Xc.shape
    n_components = check_int("n_components", n_components, min=1)
    scale = check_real("scale", scale, min=0.0, min_inclusive=False)
    if n_components > min(n, f):
        raise ValueError(f"n_components must be ≤ min(n_samples, n_features) = {min(n, f)} for "
                         f"init='pca', got {n_components}")
    if f <= n:
        evals, evecs = torch.linalg.eigh(Xc.T @ Xc)
        V = evecs[:, torch.argsort(evals, descending=True)[:n_components]]
    else:  # more features than points: go through the N×N Gram matrix
        evals, evecs = torch.linalg.eigh(Xc @ Xc.T)
        order = torch.argsort(evals, descending=True)[:n_components]
        V = Xc.T @ evecs[:, order]
        V = V / V.norm(dim=0, keepdim=True).clamp_min(1e-300)
    pick = V.abs().argmax(0)
    V = V * torch.sign(V[pick, torch.arange(n_components)])[None, :]
    Z = Xc @ V
    sd = Z[:, 0].std(unbiased=False)
    if sd <= 0:
        raise ValueError("X has no variance: every point is the same, t-SNE has nothing to show")
    return (Z / sd * scale).to(X.dtype)


# ----------------------------------------------------------------------------- the fast step
class _Step:
    """Pre-allocated float32 buffers for the KL gradient at N points (the optimisation's
    inner loop). ``grad(Y, alpha)`` returns ∂KL(αP‖Q)/∂Y and leaves W = (1 + D)⁻¹ (zero
    diagonal) in ``self.W`` and Σ W in ``self.Z``."""

    def __init__(self, P: torch.Tensor):
        self.P = P
        self.W = torch.empty_like(P)
        self.B = torch.empty_like(P)
        self.Z = None

    def grad(self, Y: torch.Tensor, alpha: float) -> torch.Tensor:
        d = Y.shape[1]
        sq = (Y * Y).sum(1, keepdim=True)
        one = torch.ones_like(sq)
        # [−2Y, ‖y‖²+1, 1] · [Y, 1, ‖y‖²]ᵀ = 1 + ‖y_i‖² + ‖y_j‖² − 2 y_i·y_j  = 1 + D_ij
        left = torch.cat([-2.0 * Y, sq + 1.0, one], 1)
        right = torch.cat([Y, one, sq], 1)
        W = torch.mm(left, right.T, out=self.W)
        W.reciprocal_()                       # rounding can make 1 + D a hair below 1: harmless
        W.fill_diagonal_(0.0)
        Z = W.sum()
        self.Z = Z
        # B = W∘W − αZ·P∘W = −Z·(αP − Q)∘W   (two passes, no temporaries)
        B = torch.mul(W, W, out=self.B)
        B.addcmul_(self.P, W, value=-(alpha * Z).item())
        # B is symmetric, so [Y, 1]ᵀ B gives both B·Y and its row sums in one pass.
        R = torch.mm(torch.cat([Y, one], 1).T, B).T          # (n, d + 1)
        return (R[:, :d] - R[:, d:] * Y) * (4.0 / Z)

    def kl(self, plogp: float) -> float:
        """KL(P‖Q) for the Y of the last ``grad`` call: Σ p log p − Σ p log w + log Z."""
        L = torch.log(self.W, out=self.B)    # B is free again; diagonal is −inf
        L.fill_diagonal_(0.0)
        return plogp - torch.dot(self.P.view(-1), L.view(-1)).item() + math.log(self.Z.item())


def _exact_kl(P: torch.Tensor, Y: torch.Tensor) -> float:
    """KL(P‖Q) in float64 on the CPU (row blocks, so memory stays O(block·N))."""
    P = P.detach().cpu()
    Y = Y.detach().cpu().double()
    n = len(Y)
    sq = (Y * Y).sum(1)
    step = max(1, _ROW_BLOCK_ELEMENTS // (4 * n))  # several float64 temporaries per block
    Z, cross = 0.0, 0.0  # Σ w,  Σ p (log p − log w)
    for s in range(0, n, step):
        e = min(n, s + step)
        D = (sq[s:e, None] + sq[None, :] - 2.0 * Y[s:e] @ Y.T).clamp_min_(0.0)
        logw = -torch.log1p(D)
        r = torch.arange(e - s)
        logw[r, r + s] = -math.inf
        Z += torch.exp(logw).sum().item()
        p = P[s:e].double()
        m = p > 0
        cross += (p[m] * (torch.log(p[m]) - logw[m])).sum().item()
    return cross + math.log(Z) * P.sum(dtype=torch.float64).item()


def _joint_from_data(Xw: torch.Tensor, perplexity: float, tol: float):
    """(P (N, N) float32, β (N,)) from data X (N, F), never holding a wide N×N matrix."""
    n = Xw.shape[0]
    Xc = Xw - Xw.mean(0, keepdim=True)
    sq = (Xc * Xc).sum(1)
    D = torch.empty(n, n, dtype=torch.float32, device=Xw.device)
    step = max(1, _ROW_BLOCK_ELEMENTS // n)
    for s in range(0, n, step):
        e = min(n, s + step)
        D[s:e] = torch.addmm(sq[s:e, None] + sq[None, :], Xc[s:e], Xc.T, alpha=-2.0).clamp_min_(0.0)
    D.fill_diagonal_(0.0)
    P_cond, betas = conditional_probabilities(D, perplexity, tol=tol, return_beta=True)
    del D
    P = P_cond + P_cond.T
    del P_cond
    P.div_(2.0 * n)
    return P, betas


# ----------------------------------------------------------------------------- estimator
class TSNE(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):  # output: always numpy
    """Exact t-SNE with a scikit-learn interface, written in torch.

    A scikit-learn estimator (``get_params``/``set_params``, ``sklearn.base.clone``, the
    usual repr); parameters are stored as given and checked when ``fit`` runs.

    Parameters mirror ``sklearn.manifold.TSNE(method="exact")``: ``n_components`` (map
    dimension d), ``perplexity``, ``early_exaggeration`` (α applied for the first
    ``exaggeration_iter`` steps, with momentum 0.5; then momentum 0.8), ``learning_rate``
    ("auto" = max(N / α / 4, 50)), ``max_iter`` (total gradient steps; None = 1000),
    ``init`` ("pca", "random" or an (N, d) array), ``random_state`` (seed for
    ``init="random"``: None, an int, or a numpy ``RandomState``/``Generator`` to draw one
    from), ``device`` (None → ``xaicourse.device.current_device()``), ``verbose`` (progress bar
    and summary; a bar is also shown when N ≥ 3000). ``kl_every``: record the exact KL every
    k steps (1 = every step, costs one extra log pass per step). ``snapshot_every``: keep a
    copy of the map every k steps in ``snapshots_`` (for animations).
    ``n_iter_without_progress`` and ``min_grad_norm`` stop early as in scikit-learn (checked
    after the exaggeration phase). ``tol``: entropy tolerance (nats) of the perplexity search.
    ``n_threads``: torch CPU threads during the fit (None: 1, which makes results identical
    across machines and is fastest on a busy machine; more threads can be faster on an idle
    multi-core one, with results that depend on the thread count). ``n_iter``: deprecated
    name of ``max_iter`` (scikit-learn renamed it in 1.5); it still works, with a
    FutureWarning, and passing both is an error.

    After ``fit_transform(X)``: ``embedding_`` (N, d) float32 numpy, ``kl_divergence_``
    (final KL(P‖Q), float64, exact), ``n_iter_`` (steps run), ``kl_history_`` (list of
    (step, KL) — the un-exaggerated KL even during early exaggeration), ``P_`` (the joint
    probabilities, torch float32), ``betas_`` (the precisions β_i = 1/2σ_i²),
    ``learning_rate_``, ``snapshots_``, ``n_features_in_``.

    Only the Student-t kernel with one degree of freedom (the paper's choice) is
    implemented; scikit-learn uses max(d − 1, 1), so the two differ for d ≥ 3.
    """

    def __init__(self, n_components: int = 2, perplexity: float = 30.0, early_exaggeration: float = 12.0,
                 learning_rate="auto", max_iter: int | None = None, init="pca", random_state=None, device=None,
                 verbose: bool = False, *, exaggeration_iter: int = 250, kl_every: int = 1,
                 snapshot_every: int = 0, n_iter_without_progress: int = 300, min_grad_norm: float = 1e-7,
                 tol: float = 1e-5, n_threads: int | None = None, n_iter="deprecated"):
        self.n_components = n_components
        self.perplexity = perplexity
        self.early_exaggeration = early_exaggeration
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.init = init
        self.random_state = random_state
        self.device = device
        self.verbose = verbose
        self.exaggeration_iter = exaggeration_iter
        self.kl_every = kl_every
        self.snapshot_every = snapshot_every
        self.n_iter_without_progress = n_iter_without_progress
        self.min_grad_norm = min_grad_norm
        self.tol = tol
        self.n_threads = n_threads
        self.n_iter = n_iter

    # -- validation (in fit: the parameters are never changed, the checked values go to _fit)
    def _check_max_iter(self) -> int:
        """max_iter, or the deprecated n_iter (FutureWarning); both given → ValueError."""
        if isinstance(self.n_iter, str) and self.n_iter == "deprecated":
            return 1000 if self.max_iter is None else check_int("max_iter", self.max_iter, min=1)
        if self.max_iter is not None:
            raise ValueError(f"both max_iter={self.max_iter!r} and n_iter={self.n_iter!r} were given; n_iter is "
                             "the deprecated name of max_iter: pass only max_iter")
        warnings.warn("n_iter was renamed max_iter (as in scikit-learn ≥ 1.5) and will be removed: pass "
                      "max_iter instead", FutureWarning, stacklevel=5)  # → the caller of fit
        return check_int("n_iter", self.n_iter, min=1)

    def _validate(self, X):
        """(X as a checked tensor, a dict of checked hyper-parameters)."""
        X = _matrix("X", X)
        n, f = X.shape
        if f == 0:  # before anything else: no init can make up for missing features
            raise ValueError(f"X has 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required: "
                             "t-SNE needs at least one feature (column) per sample")
        if n < 4:
            raise ValueError(f"X must have at least 4 samples (rows), got n_samples = {n} (shape={tuple(X.shape)})")
        if n > MAX_SAMPLES:
            gb = 12 * n * n / 1e9
            raise ValueError(
                f"X has {n} samples; exact t-SNE keeps N×N matrices (~{gb:.1f} GB here) and is limited to "
                f"MAX_SAMPLES = {MAX_SAMPLES}. Use an approximate method: "
                "sklearn.manifold.TSNE(method='barnes_hut') or openTSNE (FFT-accelerated), "
                "or subsample X.")
        cfg = dict(
            max_iter=self._check_max_iter(),
            n_components=check_int("n_components", self.n_components, min=1),
            exaggeration_iter=check_int("exaggeration_iter", self.exaggeration_iter, min=0),
            kl_every=check_int("kl_every", self.kl_every, min=1),
            snapshot_every=check_int("snapshot_every", self.snapshot_every, min=0),
            n_iter_without_progress=check_int("n_iter_without_progress", self.n_iter_without_progress, min=1),
            n_threads=None if self.n_threads is None else check_int("n_threads", self.n_threads, min=1),
            early_exaggeration=check_real("early_exaggeration", self.early_exaggeration, min=1.0),
            min_grad_norm=check_real("min_grad_norm", self.min_grad_norm, min=0.0),
            tol=check_real("tol", self.tol, min=0.0, min_inclusive=False),
            perplexity=_check_perplexity(self.perplexity, n),
        )
        lr = self.learning_rate
        if isinstance(lr, str):
            if lr != "auto":
                raise ValueError(f"learning_rate must be 'auto' or a positive number, got {lr!r}")
        else:
            try:
                lr = check_real("learning_rate", lr, min=0.0, min_inclusive=False)
            except TypeError as err:
                raise TypeError(f"learning_rate must be 'auto' or a positive number, got {lr!r}") from err
        cfg["learning_rate"] = lr
        d = cfg["n_components"]
        if isinstance(self.init, str):
            if self.init not in ("pca", "random"):
                raise ValueError(f"init must be 'pca', 'random' or an (N, n_components) array, got {self.init!r}")
            if self.init == "pca" and d > min(n, f):
                raise ValueError(f"n_components must be ≤ min(n_samples, n_features) = {min(n, f)} for "
                                 f"init='pca', got {d}; use init='random' for a map with more dimensions")
        else:
            Y0 = _matrix("init", self.init)
            if tuple(Y0.shape) != (n, d):
                raise ValueError(f"init must have shape (n_samples, n_components) = {(n, d)}, "
                                 f"got {tuple(Y0.shape)}")
        rs = self.random_state
        if rs is not None and not isinstance(rs, (np.random.RandomState, np.random.Generator)):
            check_int("random_state", rs, min=0)
        return X, cfg

    def _seed(self) -> int | None:
        rs = self.random_state
        if rs is None:
            return None
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(2 ** 31 - 1))
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(2 ** 31 - 1))
        return int(rs)

    def _initial_map(self, X: torch.Tensor, d: int, dev) -> torch.Tensor:
        n = X.shape[0]
        if not isinstance(self.init, str):
            return _matrix("init", self.init).to(dev, torch.float32).clone()
        if self.init == "pca":
            return pca_init(X, d).to(dev, torch.float32)
        g = torch.Generator()
        seed = self._seed()
        if seed is None:
            g.seed()
        else:
            g.manual_seed(seed)
        return (1e-4 * torch.randn(n, d, generator=g)).to(dev, torch.float32)

    # -- the algorithm
    def fit_transform(self, X, y=None) -> np.ndarray:
        """Embed X (N, F) → (N, n_components) float32 numpy array (also ``embedding_``).

        X: a tensor or array-like of real numbers (integers, object arrays of numbers are
        converted); ``y`` is ignored (scikit-learn's signature).
        """
        return self._run(X)

    def fit(self, X, y=None):
        """Fit and return self (the map is in ``embedding_``)."""
        self._run(X)
        return self

    def _run(self, X) -> np.ndarray:
        from .device import current_device, get_device

        X, cfg = self._validate(X)
        dev = current_device() if self.device is None else get_device(self.device)
        # One CPU thread by default: the result is then the same on every machine (the
        # rounding of parallel sums depends on the thread count, and t-SNE amplifies it), and
        # on a busy machine extra threads stall each other (we measured 3-10× slowdowns).
        k = cfg["n_threads"]
        if k is None and dev.type == "cpu":
            k = 1
        with torch_threads(k):
            return self._fit(X, dev, cfg)

    def _fit(self, X: torch.Tensor, dev: torch.device, cfg: dict) -> np.ndarray:
        n = X.shape[0]
        self.n_features_in_ = X.shape[1]
        max_iter = cfg["max_iter"]
        wide = _wide_dtype(dev)
        Xw = X.to(dev, wide)

        # input affinities: P (float32, kept for the whole run). Distances are computed in
        # float64 row blocks and stored in float32 (as scikit-learn does); the perplexity
        # search upcasts each block again. Peak: two float32 N×N matrices at a time.
        P, self.betas_ = _joint_from_data(Xw, cfg["perplexity"], cfg["tol"])
        rows = max(1, _ROW_BLOCK_ELEMENTS // n)
        plogp = sum(torch.special.xlogy(b.double(), b.double()).sum().item() for b in P.split(rows))
        self.P_ = P

        Y = self._initial_map(X, cfg["n_components"], dev)
        ex = cfg["early_exaggeration"]
        self.learning_rate_ = (max(n / ex / 4.0, 50.0) if cfg["learning_rate"] == "auto"
                               else cfg["learning_rate"])
        eta = self.learning_rate_
        step = _Step(P)
        update = torch.zeros_like(Y)
        gains = torch.ones_like(Y)
        self.kl_history_, self.snapshots_ = [], []
        best_kl, best_it = math.inf, 0
        n_ex = min(cfg["exaggeration_iter"], max_iter)
        show = bool(self.verbose) or n >= 3000
        bar = tqdm(range(max_iter), desc=f"t-SNE N={n}", disable=not show, leave=False)
        it = 0
        for it in bar:
            exploring = it < n_ex
            if it == n_ex:  # new phase: as scikit-learn, restart momentum and gains
                update.zero_()
                gains.fill_(1.0)
            alpha = ex if exploring else 1.0
            momentum = 0.5 if exploring else 0.8
            grad = step.grad(Y, alpha)
            record = (it + 1) % cfg["kl_every"] == 0 or it == max_iter - 1
            if record:
                kl = step.kl(plogp)
                if not math.isfinite(kl):
                    raise FloatingPointError(f"t-SNE diverged at step {it + 1} (KL = {kl}); "
                                             "lower learning_rate or early_exaggeration")
                self.kl_history_.append((it + 1, kl))
            inc = (update * grad) < 0
            gains.copy_(torch.where(inc, gains + 0.2, gains * 0.8).clamp_min_(0.01))
            grad.mul_(gains)
            update.mul_(momentum).sub_(eta * grad)
            Y.add_(update)
            if cfg["snapshot_every"] and (it + 1) % cfg["snapshot_every"] == 0:
                self.snapshots_.append((it + 1, Y.detach().cpu().numpy().copy()))
            if record and show and (it + 1) % 50 == 0:
                bar.set_postfix(KL=f"{kl:.4f}", refresh=False)
            if not exploring:
                if record:
                    if kl < best_kl:
                        best_kl, best_it = kl, it
                    elif it - best_it > cfg["n_iter_without_progress"]:
                        break
                if grad.norm().item() <= cfg["min_grad_norm"]:
                    break
        bar.close()
        self.n_iter_ = it + 1
        del step  # free the two work matrices before the exact float64 KL
        self.embedding_ = Y.cpu().numpy()
        self.kl_divergence_ = _exact_kl(P, Y)
        if self.verbose:
            print(f"[t-SNE] N={n}, perplexity={cfg['perplexity']}: KL = {self.kl_divergence_:.4f} after "
                  f"{self.n_iter_} steps (learning rate {eta:.1f}, device {dev})")
        return self.embedding_
