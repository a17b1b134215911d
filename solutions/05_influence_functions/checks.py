"""Hidden checks of exercise 05 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own inputs per student (functions, points, directions, linear systems,
training subsets, λ, test points), computes the reference here and calls the student's function
through the sandbox (``k.call``), receiving plain arrays only.

* ``hvp``: Hessian-vector products of scalar functions the kernel builds from torch
  (``logsumexp``, a 4-norm, the standard deviation) at this student's θ and v; the reference is
  the explicit Hessian, formed here.
* ``cg_solve``: returns ``(x, residual_norms, n_products)``. The reference is conjugate gradient
  written out here with the task's stopping rule; every tolerance is chosen from the reference
  run so that the stop sits far from the border (every residual before the stop ≥ 1.1·tol·‖b‖,
  the one it stops at ≤ tol·‖b‖/1.1), so rounding cannot move the count by one. A library solver
  (scipy's ``cg``/``minres``) returns neither the residual history nor the number of products.
* ``influence_scores``: exact influence (explicit Hessian, Cholesky/eigh in float64, the
  package's tested ``method="exact"``) on this student's training subset, λ and test point.
* ``loo_check``: returns ``(predicted, actual)`` for three per-student training indices (one of
  the most influential, two others) on a per-student training subset, λ and test point of the
  digits; the reference is −I_up,loss/n from the exact influence and the package's tested
  ``leave_one_out`` (retraining from the same θ̂, the removed point's weight set to 0, the others'
  kept at 1/n). Deleting the row instead (weights 1/(n−1)) changes ``actual`` by far more than
  the tolerance.
"""
import math

import numpy as np
import torch
from torch import nn

from xaicourse.checking import Failed, close, task

_DA = "xaicourse.data_attribution"
# the package's influence / Hessian machinery (per_example_grads and fit stay allowed: the task uses them)
_PACKAGE = [f"{_DA}.{name}" for name in ("influence", "i_up_loss", "influence_functions", "inverse_hvp", "curvature",
                                           "TrainingObjective", "hessian_vector_product", "hessian_matrix",
                                           "leave_one_out", "InfluenceFunction", "METHODS", "solvers",
                                           "retraining.leave_one_out")]
RULED_OUT = ["torch.func", "functorch", "torch._functorch", "torch.autograd.functional", "scipy", "jax"] + _PACKAGE
FORBIDDEN = {"hvp_answer": RULED_OUT, "cg_answer": RULED_OUT, "influence_answer": RULED_OUT, "loo_answer": RULED_OUT}

MARGIN = 1.1
"""Every graded tolerance leaves this factor between tol·‖b‖ and the residuals either side of the stop."""


def _digits():
    from xaicourse.data import load_digits_tensors
    return load_digits_tensors()


def prepare():
    _digits()   # the notebook's data (scikit-learn's digits, bundled: nothing is trained or downloaded)


# ----------------------------------------------------------------------------- task 1
def _hessian(fn, theta):
    return torch.autograd.functional.hessian(fn, theta.double())


@task("hvp_tests")
def hvp(k):
    rng = k.rng("hvp")
    cases = [("torch:logsumexp", dict(dim=0), lambda t: torch.logsumexp(t, 0), torch.float64, 1e-11),
             ("torch.linalg:vector_norm", dict(ord=4), lambda t: torch.linalg.vector_norm(t, ord=4), torch.float64, 1e-11),
             ("torch:std", {}, torch.std, torch.float32, 2e-4)]
    for spec, kwargs, fn, dtype, rtol in cases:
        P = int(rng.integers(5, 40))
        theta = torch.as_tensor(rng.normal(size=P) * rng.uniform(0.5, 2.0), dtype=dtype)
        v = torch.as_tensor(rng.normal(size=P), dtype=dtype)
        want = _hessian(fn, theta) @ v.double()
        got, info = k.call("hvp", k.library(spec, **kwargs), theta, v, meta=True)
        name = spec.split(":")[1]
        close(got, want, atol=rtol * float(want.abs().max()), what=f"hvp of {name} ({dtype}, P={P})")
        if info and info[0]["requires_grad"]:
            raise Failed("hvp must return a tensor that does not require grad (use .detach())")


# ----------------------------------------------------------------------------- task 2
def _cg(H, b, tol, max_iter):
    """The task's algorithm and stopping rule, float64: (x, residual norms, products)."""
    x, r = torch.zeros_like(b), b.clone()
    p, rr = r.clone(), r @ r
    hist, n, bnorm = [float(rr.sqrt())], 0, float(b.norm())
    for _ in range(max_iter):
        if hist[-1] <= tol * bnorm:
            break
        Hp = H @ p
        n += 1
        alpha = rr / (p @ Hp)
        x = x + alpha * p
        r = r - alpha * Hp
        rr_new = r @ r
        p = r + (rr_new / rr) * p
        rr = rr_new
        hist.append(float(rr.sqrt()))
    return x, hist, n


def _spd(rng, evals):
    Q, _ = np.linalg.qr(rng.normal(size=(len(evals), len(evals))))
    H = (Q * evals) @ Q.T
    return torch.as_tensor(0.5 * (H + H.T))


def _tol_for(hist, bnorm, first):
    """(K, tol): the first K ≥ first where CG can stop with the margin on both sides."""
    for K in range(max(first, 1), len(hist)):
        lo = min(hist[:K])
        if lo >= MARGIN ** 2 * hist[K] * 1.0001:
            return K, math.sqrt(lo * hist[K]) / bnorm
    return None


def _as_floats(seq, what):
    if isinstance(seq, (torch.Tensor, np.ndarray)):
        return [float(t) for t in np.asarray(seq, dtype=np.float64).reshape(-1)]
    if isinstance(seq, (list, tuple)):
        out = []
        for t in seq:
            if isinstance(t, (torch.Tensor, np.ndarray)) and np.asarray(t).size == 1:
                out.append(float(np.asarray(t, dtype=np.float64).reshape(-1)[0]))
            elif isinstance(t, (int, float)) and not isinstance(t, bool):
                out.append(float(t))
            else:
                raise Failed(f"{what}: every entry must be a number")
        return out
    raise Failed(f"{what}: expected a 1-D tensor or a list of floats, got {type(seq).__name__}")


def _as_count(n):
    if isinstance(n, (torch.Tensor, np.ndarray)) and np.asarray(n).size == 1:
        n = np.asarray(n).reshape(-1)[0].item()
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != int(n):
        raise Failed(f"n_products must be an int, got {n!r:.40}")
    return int(n)


def _solve_and_compare(k, H, b, tol, max_iter, what):
    x_ref, h_ref, n_ref = _cg(H, b, tol, max_iter)
    P = len(b)
    lin = nn.Linear(P, P, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(H)
    matvec = k.module(lin, factory="torch.nn:Linear", in_features=P, out_features=P, bias=False)
    out = k.call("cg_solve", matvec, b, tol=tol, max_iter=max_iter)
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        raise Failed("cg_solve must return a tuple (x, residual_norms, n_products)")
    x, hist, n = out
    hist, n = _as_floats(hist, "residual_norms"), _as_count(n)
    bnorm = float(b.norm())
    if n != n_ref:
        raise Failed(f"{what}: n_products = {n}, but the stopping rule (stop before iteration k when "
                     f"‖r_k‖ ≤ tol·‖b‖, or at k = max_iter; one product per iteration) needs {n_ref}")
    if len(hist) != n_ref + 1:
        raise Failed(f"{what}: residual_norms has {len(hist)} entries; expected {n_ref + 1} "
                     f"(‖r_0‖ = ‖b‖ first, then one per iteration)")
    close(hist, h_ref, atol=1e-9 * bnorm, rtol=1e-6, what=f"{what}: residual_norms")
    close(x, x_ref, atol=1e-8 * float(x_ref.abs().max()), what=f"{what}: x after {n_ref} iterations")


@task("cg_tests")
def cg(k):
    rng = k.rng("cg")
    # (a) a spread spectrum, stopped by the tolerance after a per-student number of iterations
    for first in (int(rng.integers(3, 7)), int(rng.integers(9, 15))):
        for _ in range(20):
            P = int(rng.integers(30, 61))
            H = _spd(rng, np.exp(rng.uniform(0.0, math.log(rng.uniform(20, 200)), P)))
            b = torch.as_tensor(rng.normal(size=P))
            _, hist, _ = _cg(H, b, 0.0, 60)
            found = _tol_for(hist, float(b.norm()), first)
            if found is not None:
                break
        if found is None:  # never seen (20 draws): a bug in the check, reported as a grading error
            raise RuntimeError("check design: no system with a clear stop")
        K, tol = found
        _solve_and_compare(k, H, b, tol, 1000, f"a {P}×{P} system at tol={tol:.3g}")
    # (b) m distinct eigenvalues: CG is exact after m products (tol between ‖r_{m-1}‖ and ‖r_m‖ ≈ 0)
    m, P = int(rng.integers(5, 10)), int(rng.integers(40, 81))
    vals = np.sort(rng.uniform(1.0, 200.0, m))
    H = _spd(rng, np.concatenate([vals, rng.choice(vals, P - m)]))
    b = torch.as_tensor(rng.normal(size=P))
    _, hist, _ = _cg(H, b, 0.0, m)
    bnorm = float(b.norm())
    last = max(hist[m], 1e-12 * bnorm)       # round-off level: ‖r_m‖ is 0 in exact arithmetic
    if min(hist[:m]) < 1e3 * last:  # never seen: the spectrum is drawn well separated
        raise RuntimeError(f"check design: CG residuals {hist} leave no margin")
    tol = math.sqrt(min(hist[:m]) * last) / bnorm
    _solve_and_compare(k, H, b, tol, 1000, f"a {P}×{P} system with {m} distinct eigenvalues")
    # (c) stopped by max_iter
    P = int(rng.integers(30, 61))
    H = _spd(rng, np.exp(rng.uniform(0.0, math.log(100.0), P)))
    b = torch.as_tensor(rng.normal(size=P))
    _solve_and_compare(k, H, b, 1e-12, int(rng.integers(2, 6)), "a system stopped by max_iter")


# ----------------------------------------------------------------------------- task 3
def _influence_case(X, y, Xt, yt, l2, seed, n_classes):
    from xaicourse.data_attribution import fit, i_up_loss
    from xaicourse.models import LogisticRegression

    torch.manual_seed(seed)
    model = LogisticRegression(in_features=X[0].numel(), n_classes=n_classes).double()
    loss_fn = nn.CrossEntropyLoss()
    fit(model, loss_fn, X, y, l2=l2, tol=1e-6, max_iter=300)   # near the optimum (the formula holds at any θ)
    want = i_up_loss(model, loss_fn, X, y, Xt, yt, l2=l2, method="exact")[0]
    return model, want


@task("influence_tests", timeout=120)
def influence_scores(k):
    rng = k.rng("influence")
    split = _digits()
    loss = k.instance("torch.nn:CrossEntropyLoss")
    # this student's training subset of the digits, λ and test digit
    n = int(rng.integers(70, 111))
    idx = torch.as_tensor(rng.choice(len(split.X_train), n, replace=False))
    X, y = split.X_train[idx].double(), split.y_train[idx]
    t = int(rng.integers(len(split.X_test)))
    Xt, yt = split.X_test[t:t + 1].double(), split.y_test[t:t + 1]
    l2 = float(rng.uniform(0.03, 0.2))
    model, want = _influence_case(X, y, Xt, yt, l2, int(rng.integers(2 ** 31)), 10)
    got = k.call("influence_scores", k.module(model), loss, X, y, Xt, yt, l2)
    close(got, want, atol=1e-6 * float(want.abs().max()), what=f"influence scores (digits, n={n}, l2={l2:.3g})")
    # synthetic data: another input size, number of classes and λ
    d, K, n = int(rng.integers(3, 7)), int(rng.integers(3, 6)), int(rng.integers(40, 71))
    X = torch.as_tensor(rng.normal(size=(n, 1, d, d)))
    y = torch.as_tensor(rng.integers(0, K, n))
    Xt = torch.as_tensor(rng.normal(size=(1, 1, d, d)))
    yt = torch.as_tensor(rng.integers(0, K, 1))
    l2 = float(rng.uniform(0.05, 0.5))
    model, want = _influence_case(X, y, Xt, yt, l2, int(rng.integers(2 ** 31)), K)
    got = k.call("influence_scores", k.module(model), loss, X, y, Xt, yt, l2)
    close(got, want, atol=1e-6 * float(want.abs().max()),
          what=f"influence scores (random {d}×{d} inputs, {K} classes, n={n}, l2={l2:.3g})")


# ----------------------------------------------------------------------------- task 4
def _as_vector(v, what):
    try:
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise Failed(f"{what} must be a tensor of 3 numbers, got {type(v).__name__}") from None
    if a.shape != (3,):
        raise Failed(f"{what} must have shape (3,), got {a.size} values")
    return torch.as_tensor(a)


@task("loo_tests", timeout=180)
def loo_check(k):
    from xaicourse.data_attribution import fit, i_up_loss, leave_one_out
    from xaicourse.models import LogisticRegression

    rng = k.rng("loo")
    split = _digits()
    loss = k.instance("torch.nn:CrossEntropyLoss")
    n = int(rng.integers(60, 91))
    idx = torch.as_tensor(rng.choice(len(split.X_train), n, replace=False))
    X, y = split.X_train[idx].double(), split.y_train[idx]
    t = int(rng.integers(len(split.X_test)))
    Xt, yt = split.X_test[t:t + 1].double(), split.y_test[t:t + 1]
    l2 = float(rng.uniform(0.05, 0.2))
    torch.manual_seed(int(rng.integers(2 ** 31)))
    model = LogisticRegression().double()
    fit(model, nn.CrossEntropyLoss(), X, y, l2=l2, tol=1e-10, max_iter=3000)   # θ̂: stationary
    scores = i_up_loss(model, nn.CrossEntropyLoss(), X, y, Xt, yt, l2=l2, method="exact")[0]
    top = scores.abs().argsort(descending=True)[:3].tolist()
    first = top[int(rng.integers(3))]
    others = [int(i) for i in rng.permutation(n) if int(i) != first][:2]
    indices = [first] + others
    order = rng.permutation(3)
    indices = [int(indices[j]) for j in order]
    want_pred = -scores[indices] / n
    want_act = leave_one_out(model, nn.CrossEntropyLoss(), X, y, Xt, yt, indices, l2=l2)[0]
    out = k.call("loo_check", k.module(model), loss, X, y, Xt, yt, l2, indices)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise Failed("loo_check must return a tuple (predicted, actual)")
    pred, act = _as_vector(out[0], "predicted"), _as_vector(out[1], "actual")
    what = f"(n={n}, l2={l2:.3g}, test digit {t}, indices {indices})"
    close(pred, want_pred, atol=1e-6 * float(want_pred.abs().max()), what=f"predicted = −I_up,loss/n {what}")
    close(act, want_act, atol=2e-4 * float(want_act.abs().max()),
          what=f"actual change of the test loss after retraining from θ̂ with the point's weight 0 {what}")
