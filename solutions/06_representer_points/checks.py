"""Hidden checks of exercise 06 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own features, labels, last layers, λ, α and targets per student, computes
the reference here from the formulas (a few lines of torch in float64) and calls the student's
function through the sandbox (``k.call``), receiving plain arrays only.

* ``representer_alpha`` returns ``(alpha, residual)`` at the *given* W. The checks pass last layers
  that are not minima (a refit, e.g. ``RepresenterPoints.fit``, moves W and changes α) as well as
  a minimum fitted here, and the residual W − Σ_i α_i Φ_iᵀ = ∇L(W)/(2λ) is not returned by any
  library.
* ``representer_contributions`` on α, features and targets drawn here (α need not come from a fit).
"""
import torch

from xaicourse.checking import close, task

FORBIDDEN = {
    "alpha_answer": ["xaicourse.data_attribution", "torch.autograd", "torch.func", "functorch", "torch._functorch",
                     "jax"],
    "contributions_answer": ["xaicourse.data_attribution"],
}


def _digits():
    from xaicourse.data import load_digits_tensors
    return load_digits_tensors()


def prepare():
    _digits()   # the notebook trains its small CNN itself (a few seconds, no cache); digits are bundled


def _alpha(phi, y, W, l2):
    """α_i = −(softmax(WΦ_i) − e_{y_i}) / (2λn) and the residual W − αᵀΦ, float64."""
    phi, W = phi.double(), W.double()
    n = len(phi)
    g = torch.softmax(phi @ W.T, 1)
    g[torch.arange(n), y] -= 1
    alpha = -g / (2 * l2 * n)
    return alpha, W - alpha.T @ phi


def _random_problem(rng, dtype):
    n, d, K = int(rng.integers(30, 81)), int(rng.integers(4, 13)), int(rng.integers(3, 9))
    phi = torch.as_tensor(rng.normal(size=(n, d)), dtype=dtype)
    y = torch.as_tensor(rng.integers(0, K, n))
    W = torch.as_tensor(rng.normal(size=(K, d)) * rng.uniform(0.3, 2.0), dtype=dtype)
    return phi, y, W, float(rng.uniform(0.01, 0.5))


def _compare_alpha(k, phi, y, W, l2, rtol, what):
    want_a, want_r = _alpha(phi, y, W, l2)
    out = k.call("representer_alpha", phi, y, W, l2)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise AssertionError("representer_alpha must return a tuple (alpha, residual)")
    alpha, residual = out
    close(alpha, want_a, atol=rtol * float(want_a.abs().max()), what=f"alpha ({what})")
    close(residual, want_r, atol=rtol * float(W.double().abs().max()), what=f"residual W − Σ α_i Φ_iᵀ ({what})")


@task("alpha_tests")
def alpha(k):
    rng = k.rng("alpha")
    # a last layer that is not a minimum: α at this W, and a residual ∇L(W)/(2λ) ≠ 0
    phi, y, W, l2 = _random_problem(rng, torch.float64)
    _compare_alpha(k, phi, y, W, l2, 1e-10, f"random W, n={len(phi)}, K={len(W)}, λ={l2:.3g}")
    phi, y, W, l2 = _random_problem(rng, torch.float32)
    _compare_alpha(k, phi, y, W, l2, 1e-5, "float32 inputs")
    # the minimum of L on this student's digits (pixels as features), fitted here: residual ≈ 0 (the reference is the formula at this W)
    from xaicourse.data_attribution import RepresenterPoints

    split = _digits()
    idx = torch.as_tensor(rng.choice(len(split.X_train), int(rng.integers(80, 151)), replace=False))
    phi, y = split.X_train[idx].flatten(1).double(), split.y_train[idx]
    l2 = float(rng.uniform(0.01, 0.05))
    W = RepresenterPoints(l2=l2, tol=1e-6, max_iter=200).fit(phi, y, n_classes=10).weight_
    _compare_alpha(k, phi, y, W, l2, 1e-10, f"digits, near the minimum for λ={l2:.3g}")


def _contributions(alpha, phi, phi_t, target):
    return (phi_t.double() @ phi.double().T) * alpha.double()[:, target].T


@task("contributions_tests")
def contributions(k):
    rng = k.rng("contributions")
    for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        n, d, K, m = int(rng.integers(20, 61)), int(rng.integers(3, 10)), int(rng.integers(2, 8)), int(rng.integers(2, 7))
        alpha = torch.as_tensor(rng.normal(size=(n, K)) / n, dtype=dtype)
        phi = torch.as_tensor(rng.normal(size=(n, d)), dtype=dtype)
        phi_t = torch.as_tensor(rng.normal(size=(m, d)), dtype=dtype)
        target = torch.as_tensor(rng.integers(0, K, m))
        want = _contributions(alpha, phi, phi_t, target)
        got = k.call("representer_contributions", alpha, phi, phi_t, target)
        close(got, want, atol=rtol * float(want.abs().max()), what=f"contributions ({dtype}, m={m}, n={n}, K={K})")
    # α of a fitted layer (digits pixels), one test digit per class the layer predicts
    from xaicourse.data_attribution import RepresenterPoints

    split = _digits()
    idx = torch.as_tensor(rng.choice(len(split.X_train), int(rng.integers(60, 121)), replace=False))
    phi, y = split.X_train[idx].flatten(1).double(), split.y_train[idx]
    W = RepresenterPoints(l2=0.02, tol=1e-6, max_iter=200).fit(phi, y, n_classes=10).weight_
    alpha_fit, _ = _alpha(phi, y, W, 0.02)
    t = torch.as_tensor(rng.choice(len(split.X_test), int(rng.integers(3, 8)), replace=False))
    phi_t = split.X_test[t].flatten(1).double()
    target = (phi_t @ W.T).argmax(1)
    want = _contributions(alpha_fit, phi, phi_t, target)
    got = k.call("representer_contributions", alpha_fit, phi, phi_t, target)
    close(got, want, atol=1e-10 * float(want.abs().max()), what="contributions of a fitted layer on digits")
