"""Hidden checks of exercise 02 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own inputs per student (the student's own digits and perplexity from
``student_rng("02_tsne", student)``, plus new digits, perplexities, tolerances, step limits, scales
and maps from ``k.rng``), computes the reference here from scratch and calls the student's
function through the sandbox, receiving plain arrays only.

Why a library cannot pass: the perplexity search must also return ``steps``, the number of
bisection updates of every β_i, which neither scikit-learn nor ``xaicourse.tsne`` returns (and
both are ruled out by ``FORBIDDEN``); the gradient is called with autograd switched off in the
kernel (``torch.set_grad_enabled(False)``), on an exaggerated αP where autograd of KL(αP‖Q) gives
another answer, and ``torch.autograd`` / ``torch.func`` / ``xaicourse.tsne`` are ruled out.
"""
import math

import numpy as np
import torch

from xaicourse.checking import Failed, close, task

TSNE_LIBS = ["xaicourse.tsne", "sklearn.manifold", "openTSNE", "tsnecuda", "MulticoreTSNE"]
FORBIDDEN = {
    "perplexity_answer": TSNE_LIBS,
    "gradient_answer": TSNE_LIBS + ["torch.autograd", "torch.func", "functorch", "torch.enable_grad",
                                    "torch.set_grad_enabled", "torch._C", "torch.Tensor.backward"],
}
EXERCISE = "02_tsne"


def _digits():
    from xaicourse import data
    split = data.load_digits_tensors()
    return split


def prepare():
    _digits()


def _sq_dists(X):
    X = X.double()
    sq = (X * X).sum(1)
    D = (sq[:, None] + sq[None, :] - 2 * X @ X.T).clamp_min(0)
    D.fill_diagonal_(0)
    return D


# ----------------------------------------------------------------------------- task 1
def _search(D, perplexity, tol=1e-5, max_steps=100):
    """The reference bisection in NumPy float64, row by row as the task text states it."""
    D = np.asarray(D, dtype=np.float64)
    n = len(D)
    off = ~np.eye(n, dtype=bool)
    target = math.log(perplexity)
    P = np.zeros((n, n))
    betas, steps = np.ones(n), np.zeros(n, dtype=np.int64)
    for i in range(n):
        d = D[i][off[i]]
        d = d - d.min()
        beta, lo, hi = 1.0, 0.0, math.inf

        def entropy(beta):
            e = np.exp(-beta * d)
            s = e.sum()
            return math.log(s) + beta * float((e / s) @ d)

        for _ in range(max_steps):
            h = entropy(beta)
            if abs(h - target) <= tol:
                break
            if h > target:
                lo = beta
                beta = beta * 2 if math.isinf(hi) else (beta + hi) / 2
            else:
                hi = beta
                beta = beta / 2 if lo == 0 else (beta + lo) / 2
            steps[i] += 1
        e = np.exp(-beta * d)
        P[i, off[i]] = e / e.sum()
        betas[i] = beta
    return P, betas, steps


def _check_search(k, D, perplexity, what, **kw):
    got = k.call("perplexity_search", torch.as_tensor(D, dtype=torch.float64), perplexity, **kw)
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        raise Failed(f"perplexity_search must return a tuple (P, beta, steps), got {type(got).__name__}")
    P, beta, steps = got
    P_ref, beta_ref, steps_ref = _search(D, perplexity, **kw)
    n = len(P_ref)
    # steps: integers, exactly the reference counts (the rule is deterministic in float64)
    s = np.asarray(steps.numpy() if isinstance(steps, torch.Tensor) else steps, dtype=np.float64)
    if s.shape != (n,):
        raise Failed(f"{what}: steps has shape {tuple(s.shape)}, expected ({n},)")
    if not np.array_equal(s, steps_ref):
        i = int(np.argmax(s != steps_ref))
        raise Failed(f"{what}: row {i} changed beta {s[i]:g} times, expected {steps_ref[i]} "
                     f"(rows differing: {int((s != steps_ref).sum())} of {n}) — follow the bisection rule "
                     f"of the task exactly")
    # the same decisions give the same doublings, halvings and midpoints: beta to rounding
    close(beta, beta_ref, atol=0, rtol=1e-9, what=f"{what}: beta")
    # P from the same beta: rounding only (values ≤ 1, float64 → 1e-10 leaves 10^5 ulps of margin)
    close(P, P_ref, atol=1e-10, what=f"{what}: P")


@task("perplexity_tests")
def perplexity(k):
    split = _digits()
    # the student's own data, recomputed from the id (as the locked cell draws it)
    r = __import__("xaicourse.grading", fromlist=["student_rng"]).student_rng(EXERCISE, k.student)
    my_p = float(r.choice([5.0, 8.0, 12.0, 20.0]))
    rows = np.sort(r.choice(len(split.X_train), 60, replace=False))
    _check_search(k, _sq_dists(split.X_train[rows].flatten(1)).numpy(), my_p, f"your own data (perplexity {my_p:g})")
    # new digits and a perplexity that is not a round number
    rng = k.rng("search")
    X = torch.cat([split.X_train, split.X_test]).flatten(1)
    D = _sq_dists(X[np.sort(rng.choice(len(X), 80, replace=False))]).numpy()
    p = float(np.round(rng.uniform(4.0, 25.0), 2))
    _check_search(k, D, p, f"80 new digits, perplexity {p:g}")
    # another tolerance and a small step limit: the counts and the unfinished betas must agree
    D2 = _sq_dists(X[np.sort(rng.choice(len(X), 50, replace=False))]).numpy()
    tol, m = float(k.choice([1e-3, 3e-4, 1e-2], "tol")), int(k.choice([3, 4, 6], "steps"))
    _check_search(k, D2, p, f"tol={tol:g}, max_steps={m}", tol=tol, max_steps=m)
    # far from beta = 1 in both directions (needs the shift against underflow)
    for sign in (1, -1):
        s = float(10 ** (sign * rng.uniform(3.5, 4.5)))
        _check_search(k, D2 * s, p, f"distances scaled by {s:.3g}")


# ----------------------------------------------------------------------------- task 2
def _gradient(P, Y):
    """4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j), pair by pair (no matrix trick), float64."""
    P, Y = P.double(), Y.double()
    diff = Y[:, None, :] - Y[None, :, :]                      # (N, N, d)
    W = 1.0 / (1.0 + (diff ** 2).sum(-1))
    W.fill_diagonal_(0)
    Q = W / W.sum()
    return 4 * (((P - Q) * W)[:, :, None] * diff).sum(1)


def _kl(P, Y):
    sq = (Y * Y).sum(1)
    W = 1 / (1 + (sq[:, None] + sq[None, :] - 2 * Y @ Y.T))
    W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))
    m = P > 0
    return (P[m] * torch.log(P[m] * W.sum() / W[m])).sum()


def _grad_mode(k, on: bool):
    """Switch autograd on/off in the student's kernel (Remote has no public call for this: the
    private ``k._run`` executes one line there; the kernel is not trusted, but an answer that
    switches grad back on must name torch.enable_grad / set_grad_enabled / torch._C: FORBIDDEN)."""
    k._run(f"__import__('torch').set_grad_enabled({bool(on)})", 30)


def _rel(got, want, what):
    g = torch.as_tensor(np.asarray(got.numpy() if isinstance(got, torch.Tensor) else got, dtype=np.float64))
    if tuple(g.shape) != tuple(want.shape):
        raise Failed(f"{what}: shape {tuple(g.shape)}, expected {tuple(want.shape)}")
    if not torch.isfinite(g).all():
        raise Failed(f"{what}: contains NaN or inf")
    return float((g - want).norm() / want.norm())


@task("gradient_tests")
def gradient(k):
    split = _digits()
    rng = k.rng("gradient")
    gen = k.generator("gradient")
    X = torch.cat([split.X_train, split.X_test]).flatten(1)
    N = int(rng.integers(30, 46))
    D = _sq_dists(X[np.sort(rng.choice(len(X), N, replace=False))]).numpy()
    Pc, _, _ = _search(D, float(rng.uniform(5.0, 12.0)))
    P = torch.as_tensor((Pc + Pc.T) / (2 * N))
    d = int(k.choice([2, 3], "d"))
    Y = 3 * torch.randn(N, d, generator=gen, dtype=torch.float64)
    Yr = Y.clone().requires_grad_(True)
    (g_auto,) = torch.autograd.grad(_kl(P, Yr), Yr)          # autograd here, in the trusted process
    assert float((g_auto - _gradient(P, Y)).norm() / g_auto.norm()) < 1e-12
    _grad_mode(k, False)
    try:
        got = k.call("tsne_gradient", P, Y)
        rel = _rel(got, g_auto, "tsne_gradient")
        # float64 throughout: the two formulas agree to ~1e-15; 1e-9 is a wide margin
        if not rel <= 1e-9:
            raise Failed(f"tsne_gradient on {N} points in {d}-D: relative difference to autograd {rel:.2e} "
                         f"(tolerance 1e-9)")
        # early exaggeration: α P, the formula as written (not the gradient of KL(αP‖Q))
        a = float(k.choice([4.0, 12.0], "alpha"))
        Y2 = torch.randn(N, d, generator=gen, dtype=torch.float64) * 1e-2
        rel = _rel(k.call("tsne_gradient", a * P, Y2), _gradient(a * P, Y2), "tsne_gradient")
        if not rel <= 1e-9:
            raise Failed(f"tsne_gradient(α·P, Y) with α = {a:g}: relative difference {rel:.2e} to the formula "
                         f"4 Σ_j (α p_ij − q_ij) w_ij (y_i − y_j) (tolerance 1e-9)")
        # two points whose q equals p: no force
        Y3 = torch.randn(2, d, generator=gen, dtype=torch.float64) * 3
        P2 = torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=torch.float64)
        close(k.call("tsne_gradient", P2, Y3), torch.zeros(2, d), atol=1e-12,
              what="two points (q = p): the gradient must be 0")
        # float32 inputs: the same gradient to float32 precision
        rel = _rel(k.call("tsne_gradient", P.float(), Y.float()), g_auto, "tsne_gradient in float32")
        if not rel <= 1e-4:
            raise Failed(f"tsne_gradient with float32 inputs: relative difference to autograd {rel:.2e} "
                         f"(tolerance 1e-4)")
    finally:
        _grad_mode(k, True)
