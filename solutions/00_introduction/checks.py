"""Hidden checks of exercise 00 (trusted: run by the grader, never inside the student's sandbox).

The functions ``f`` handed to the student's code are torch reductions with their arguments bound
(``k.library("torch.linalg:vector_norm", ord=p, dim=1)``: the kernel builds
``functools.partial(torch.linalg.vector_norm, ord=p, dim=1)``), i.e. non-linear maps
(n, d) → (n,) whose parameters (the order p, the point, the pixel, δ, the steps) are drawn per
student. Every reference is computed here, from the definitions, and never leaves this process.
"""
import functools

import numpy as np
import torch

from xaicourse.checking import Failed, close, task

RULED_OUT = ["captum", "xaicourse.attribution", "xaicourse.widgets", "quantus"]
FORBIDDEN = {"perturbation_answer": RULED_OUT, "topweights_answer": RULED_OUT}

EPS = {torch.float32: float(torch.finfo(torch.float32).eps), torch.float64: float(torch.finfo(torch.float64).eps)}


def _digits():
    from xaicourse import data
    return data.load_digits_tensors()


def prepare():
    """The digits (checks and set-up cell) and the logistic regression of the notebook's plot cell."""
    from xaicourse import models

    split = _digits()
    models.train(models.LogisticRegression(64, 10), split.X_train, split.y_train, epochs=10, lr=0.05, seed=0,
                 progress=False)


def _function(rng, family: str):
    """(the spec the kernel builds, the same function here) for one family of scores f: (n, d) → (n,)."""
    if family == "norm":
        p = round(float(rng.uniform(1.5, 4.0)), 3)
        return dict(spec="torch.linalg:vector_norm", kwargs=dict(ord=p, dim=1),
                    fn=functools.partial(torch.linalg.vector_norm, ord=p, dim=1))
    if family == "lse":
        return dict(spec="torch:logsumexp", kwargs=dict(dim=1), fn=functools.partial(torch.logsumexp, dim=1))
    if family == "std":
        return dict(spec="torch:std", kwargs=dict(dim=1, correction=0),
                    fn=functools.partial(torch.std, dim=1, correction=0))
    raise ValueError(family)


def _point(rng, d: int) -> np.ndarray:
    """d values of magnitude 0.2 … 2 with random signs (no coordinate near 0, where |·|^p is not smooth)."""
    return rng.choice([-1.0, 1.0], d) * rng.uniform(0.2, 2.0, d)


def _digit(rng):
    split = _digits()
    return split.X_test[int(rng.integers(len(split.X_test)))].flatten().double().numpy()


# ----------------------------------------------------------------------------- task 1
def _scores(f, x: torch.Tensor, delta: float) -> torch.Tensor:
    """R_i = f(x) − f(x + δ e_i), one perturbed input at a time, in float64."""
    x = x.double()
    with torch.no_grad():
        f0 = f(x[None])[0]
        out = []
        for i in range(len(x)):
            xp = x.clone()
            xp[i] += delta
            out.append(f0 - f(xp[None])[0])
    return torch.stack(out)


@task("perturbation_tests")
def perturbation(k):
    rng = k.rng("perturbation")
    # a non-linear score of a float64 point (a p-norm or a standard deviation): R to 1e-5, which
    # also passes an answer computed or returned in float32 (f ≈ 0.1 … 5: rounding ≲ 1e-6), while
    # a wrong R (sign, index, δ) is off by ≳ 1e-2 in some coordinate
    family = k.choice(["norm", "std"], "perturbation-family")
    fam = _function(rng, family)
    x = torch.tensor(_point(rng, int(rng.integers(4, 10))), dtype=torch.float64)
    delta = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.05, 0.8))
    got = k.call("perturbation_score_vector", k.library(fam["spec"], **fam["kwargs"]), x, delta)
    close(got, _scores(fam["fn"], x, delta), atol=1e-5,
          what=f"perturbation_score_vector(f, x, delta={delta:.3f}) for f = {family} of a float64 point")
    # logsumexp of one of this student's digits (64 float32 pixels) with a negative δ. The scores
    # are ≈ 4–5: float32 rounding of f is ≈ 5e-7 per evaluation, the tolerance 2e-5 is 20× that;
    # a wrong R (sign, index, δ) is off by |δ|·softmax_i ≥ 1e-3.
    lse = _function(rng, "lse")
    img = torch.tensor(_digit(rng), dtype=torch.float32)
    delta = -float(rng.uniform(0.2, 0.8))
    got = k.call("perturbation_score_vector", k.library(lse["spec"], **lse["kwargs"]), img, delta)
    close(got, _scores(lse["fn"], img, delta), atol=2e-5,
          what=f"perturbation_score_vector on a digit (float32, 64 pixels, delta={delta:.3f})")
    k.raises(ValueError, "perturbation_score_vector", k.library(fam["spec"], **fam["kwargs"]), x, 0.0)


# ----------------------------------------------------------------------------- task 2
def _steps(rng):
    """Log-spaced steps 10^a, 10^(a−0.25), …: down to ≈1e-7 for float32, ≈1e-12 for float64 (the
    float32 steps are the first ones of the float64 steps)."""
    a = float(rng.uniform(-0.9, -0.2))
    ex = a - 0.25 * np.arange(60)
    d64 = torch.tensor(10.0 ** ex[ex >= -12.2], dtype=torch.float64)
    return d64[: int((ex >= -7.2).sum())], d64


def _exact(f, x: np.ndarray, i: int) -> float:
    z = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(f(z[None])[0], z)
    return float(g[i])


def _limit_reference(f, x: torch.Tensor, i: int, deltas: torch.Tensor, exact: float) -> torch.Tensor:
    """|R_i(δ)/δ + ∂f/∂x_i| for every step, f evaluated in x's dtype (x + δ e_i rounded to it)."""
    errs = []
    with torch.no_grad():
        f0 = f(x[None])[0]
        for dl in deltas.tolist():
            xp = x.clone()
            xp[i] = xp[i] + torch.tensor(dl, dtype=x.dtype)
            errs.append(abs(float((f0 - f(xp[None])[0]).double()) / dl + exact))
    return torch.tensor(errs, dtype=torch.float64)


def _errors_and_best(got, n: int, what: str):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Failed(f"{what}: return the pair (errors, best_delta)")
    errors, best = got
    if not isinstance(errors, (torch.Tensor, np.ndarray)):
        raise Failed(f"{what}: errors must be a tensor, got {type(errors).__name__}")
    errors = torch.as_tensor(errors)
    if errors.dtype != torch.float64:
        raise Failed(f"{what}: errors must be float64, got {errors.dtype}")
    if tuple(errors.shape) != (n,):
        raise Failed(f"{what}: errors has shape {tuple(errors.shape)}, expected ({n},) like deltas")
    if not bool(torch.isfinite(errors).all()):
        raise Failed(f"{what}: errors contains NaN or inf")
    if isinstance(best, (torch.Tensor, np.ndarray)) and int(np.prod(best.shape)) == 1:
        best = float(best.reshape(-1)[0])           # a one-number tensor is accepted as the float
    if isinstance(best, bool) or not isinstance(best, (int, float)):
        raise Failed(f"{what}: best_delta must be a float, got {type(best).__name__}")
    return errors, float(best)


def _check_limit(k, fam, xv: np.ndarray, i: int, deltas: torch.Tensor, dtype, label: str) -> torch.Tensor:
    """Call gradient_limit on x = xv in ``dtype`` and check its answer; returns the student's errors."""
    f = fam["fn"]
    x = torch.tensor(xv, dtype=dtype)
    exact = _exact(f, xv, i)
    what = f"gradient_limit on {label} ({str(dtype).replace('torch.', '')}, i={i})"
    got = k.call("gradient_limit", k.library(fam["spec"], **fam["kwargs"]), x, i, deltas, exact)
    errors, best = _errors_and_best(got, len(deltas), what)
    want = _limit_reference(f, x, i, deltas, exact)
    # Honest evaluations in x's dtype differ from this one by a few rounding errors of f(x) and
    # of x_i + δ (batched or looped f, δ added in float32 or float64 …): |ΔR| ≲ 4·ε·S with
    # S = |f(x)| + |x_i·∂f/∂x_i|. The tolerance is 32·ε·S/δ (8× that) plus 2 % of the error;
    # where the Taylor remainder dominates (large δ) it is far below a wrong formula's error.
    with torch.no_grad():
        S = abs(float(f(torch.tensor(xv, dtype=torch.float64)[None])[0])) + abs(float(xv[i]) * exact)
    tol = 0.02 * want + 32 * EPS[dtype] * S / deltas
    bad = ((errors - want).abs() > tol).nonzero()
    if len(bad):
        j = int(bad[0])
        raise Failed(f"{what}: errors[{j}] (δ={float(deltas[j]):.2e}) is {float(errors[j]):.4g}, expected "
                     f"{float(want[j]):.4g} (tolerance {float(tol[j]):.1g})")
    # best_delta: a step where the errors are smallest (float32 rounding makes exact ties common)
    j = int(torch.argmin((deltas - best).abs() / deltas))
    if abs(best - float(deltas[j])) > 1e-9 * best:
        raise Failed(f"{what}: best_delta={best:.3g} is not one of the steps")
    if float(errors[j]) > float(errors.min()) * (1 + 1e-9):
        raise Failed(f"{what}: best_delta={best:.3g} does not have the smallest error")
    return errors


@task("topweights_tests")
def limit(k):
    rng = k.rng("limit")
    d32, d64 = _steps(rng)
    # a p-norm of a point of 3–6 coordinates, and logsumexp of a digit: the same values in float32
    # and in float64, differentiated at a coordinate where |∂f/∂x_i| is not small
    norm = _function(rng, "norm")
    p = norm["kwargs"]["ord"]
    xv = _point(rng, int(rng.integers(3, 7)))
    g = np.abs(xv) ** (p - 1)
    i_norm = int(rng.choice(np.flatnonzero(g >= 0.3 * g.max())))
    img = _digit(rng)
    i_img = int(rng.choice(np.flatnonzero(img > 0.3)))
    lse = _function(rng, "lse")
    for fam, v, i, label in ((norm, xv, i_norm, f"the {p}-norm of a point"), (lse, img, i_img, "logsumexp of a digit")):
        e32 = _check_limit(k, fam, v, i, d32, torch.float32, label)
        e64 = _check_limit(k, fam, v, i, d64, torch.float64, label)
        # the rounding of x's own dtype: in float32 the smallest step is far past the best one, and
        # at that step the float64 error is ≥ 10^6 times smaller (only the Taylor remainder is left)
        if not float(e32[-1]) > 10 * float(e32.min()):
            raise Failed(f"gradient_limit on {label}: in float32 the error at δ={float(d32[-1]):.0e} should be "
                         "rounding-dominated (> 10× the smallest error) — evaluate f in x's own dtype")
        if not float(e32[-1]) > 100 * float(e64[len(d32) - 1]):
            raise Failed(f"gradient_limit on {label}: float32 and float64 inputs give the same errors at "
                         f"δ={float(d32[-1]):.0e} — evaluate f in x's own dtype (do not convert x)")
    k.raises(ValueError, "gradient_limit", k.library(norm["spec"], **norm["kwargs"]),
             torch.tensor(xv, dtype=torch.float32), i_norm, torch.tensor([1e-3, 0.0], dtype=torch.float64), 1.0)
    k.raises(ValueError, "gradient_limit", k.library(norm["spec"], **norm["kwargs"]),
             torch.tensor(xv, dtype=torch.float32), i_norm, torch.tensor([1e-2, -1e-3], dtype=torch.float64), 1.0)
