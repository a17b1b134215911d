"""Hidden checks of exercise 06 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own features, labels, last layers, λ, α and targets per student, computes
the reference here from the formulas (a few lines of torch in float64) and calls the student's
function through the sandbox (``k.call``), receiving plain arrays only.

* ``representer_alpha`` returns ``(alpha, residual)`` at the *given* W. The checks pass last layers
  that are not minima (a refit, e.g. ``RepresenterPoints.fit``, moves W and changes α) as well as
  a minimum fitted here, and the residual W − Σ_i α_i Φ_iᵀ = ∇L(W)/(2λ) is not returned by any
  library.
* ``representer_contributions`` on α, features and targets drawn here (α need not come from a fit).
* ``refit_last_layer``: a few (10–40) gradient-descent steps from a W₀ drawn here, with a step size
  and λ drawn here: the iterates and the residual norms along them are compared, not the minimum
  (which a library optimiser would return).
* ``flag_mislabels``: the k largest |α_{i,y_i}| at a given W (not a minimum), on random problems
  and on digits with flipped labels; the set must match and the order must be by |α|.
"""
import torch

from xaicourse.checking import close, task

FORBIDDEN = {
    "alpha_answer": ["xaicourse.data_attribution", "torch.autograd", "torch.func", "functorch", "torch._functorch",
                     "jax"],
    "contributions_answer": ["xaicourse.data_attribution"],
    "refit_answer": ["xaicourse.data_attribution", "torch.autograd", "torch.func", "functorch", "torch._functorch",
                     "jax", "torch.optim", "sklearn", "scipy.optimize"],
    "mislabel_answer": ["xaicourse.data_attribution", "xaicourse.widgets"],
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


def _refit(phi, y, W0, l2, lr, n_steps):
    """Gradient descent on mean CE + λ‖W‖², float64: (W_n, residual norms at W_0 … W_n)."""
    phi, W = phi.double(), W0.double().clone()
    n = len(phi)
    norms = []
    for step in range(n_steps + 1):
        g = torch.softmax(phi @ W.T, 1)
        g[torch.arange(n), y] -= 1
        alpha = -g / (2 * l2 * n)
        norms.append(float((W - alpha.T @ phi).norm()))
        if step < n_steps:
            W = W - lr * (g.T @ phi / n + 2 * l2 * W)
    return W, torch.tensor(norms, dtype=torch.float64)


def _safe_lr(phi, l2, u):
    return u / (0.5 * float(torch.linalg.matrix_norm(phi.double(), 2)) ** 2 / len(phi) + 2 * l2)


@task("refit_tests")
def refit(k):
    rng = k.rng("refit")
    for dtype, rtol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
        phi, y, W0, l2 = _random_problem(rng, dtype)
        lr, n_steps = _safe_lr(phi, l2, float(rng.uniform(0.3, 0.9))), int(rng.integers(10, 41))
        want_W, want_norms = _refit(phi, y, W0, l2, lr, n_steps)
        out = k.call("refit_last_layer", phi, y, W0, l2, lr, n_steps)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise AssertionError("refit_last_layer must return a tuple (W, residual_norms)")
        W, norms = out
        what = f"n={len(phi)}, K={len(W0)}, λ={l2:.3g}, lr={lr:.3g}, {n_steps} steps, {dtype}"
        close(W, want_W, atol=rtol * float(want_W.abs().max()), what=f"W after the last step ({what})")
        close(norms, want_norms, atol=rtol * float(want_norms.max()), what=f"residual norms W_0 … W_n ({what})")
    # digits pixels, W0 = 0: the residual at W0 is −Σ α_i Φ_iᵀ, not 0
    split = _digits()
    idx = torch.as_tensor(rng.choice(len(split.X_train), int(rng.integers(60, 121)), replace=False))
    phi, y = split.X_train[idx].flatten(1).double(), split.y_train[idx]
    l2 = float(rng.uniform(0.01, 0.05))
    lr, n_steps = _safe_lr(phi, l2, float(rng.uniform(0.5, 0.9))), int(rng.integers(15, 31))
    W0 = torch.zeros(10, phi.shape[1], dtype=torch.float64)
    want_W, want_norms = _refit(phi, y, W0, l2, lr, n_steps)
    W, norms = k.call("refit_last_layer", phi, y, W0, l2, lr, n_steps)
    close(W, want_W, atol=1e-9 * float(want_W.abs().max()), what="W on digits from W0 = 0")
    close(norms, want_norms, atol=1e-9 * float(want_norms.max()), what="residual norms on digits from W0 = 0")


def _scores(phi, y, W, l2):
    p = torch.softmax(phi.double() @ W.double().T, 1)[torch.arange(len(phi)), y]
    return (1 - p) / (2 * l2 * len(phi))


def _compare_flags(k, phi, y, W, l2, kk, what):
    import numpy as np

    score = _scores(phi, y, W, l2)
    want = torch.argsort(score, descending=True)[:kk]
    got = np.asarray(k.call("flag_mislabels", phi, y, W, l2, kk)).reshape(-1)
    if len(got) != kk or not np.issubdtype(got.dtype, np.integer):
        raise AssertionError(f"flag_mislabels must return {kk} integer indices ({what}), got {len(got)} "
                             f"of type {got.dtype}")
    if set(got.tolist()) != set(want.tolist()):
        raise AssertionError(f"flag_mislabels: not the {kk} largest |α_(i,y_i)| ({what})")
    s = score[torch.as_tensor(got)]
    if bool((s[1:] > s[:-1] * (1 + 1e-9) + 1e-300).any()):
        raise AssertionError(f"flag_mislabels: not ordered by |α_(i,y_i)|, largest first ({what})")


@task("mislabel_tests")
def mislabels(k):
    rng = k.rng("mislabels")
    phi, y, W, l2 = _random_problem(rng, torch.float64)
    _compare_flags(k, phi, y, W, l2, int(rng.integers(3, len(phi) // 3)), "random W (not a minimum)")
    from xaicourse.data_attribution import RepresenterPoints, flip_labels

    split = _digits()
    idx = torch.as_tensor(rng.choice(len(split.X_train), int(rng.integers(100, 201)), replace=False))
    phi = split.X_train[idx].flatten(1).double()
    y, _ = flip_labels(split.y_train[idx], float(rng.uniform(0.05, 0.2)), 10, seed=int(rng.integers(0, 10_000)))
    l2 = float(rng.uniform(0.01, 0.05))
    W = RepresenterPoints(l2=l2, tol=1e-6, max_iter=200).fit(phi, y, n_classes=10).weight_
    _compare_flags(k, phi, y, W, l2, int(rng.integers(5, len(phi) // 4)), "digits with flipped labels, refitted W")
