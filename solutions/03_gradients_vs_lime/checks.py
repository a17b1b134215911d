"""Hidden checks of exercise 03 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own inputs per student (``k.rng`` / ``k.generator``: networks and their
weights, test images, layers, classes, masks, kernel widths, penalties, seeds), computes the
reference here (from scratch, in this process) and calls the student's function through the
sandbox, receiving plain arrays only.

Why a library cannot pass: every reference library of the exercise (captum, the ``lime`` package,
scikit-learn, ``xaicourse.attribution``) is ruled out by ``FORBIDDEN``; beyond that, Grad-CAM must
also return its channel weights α (N, K), which captum's ``LayerGradCam`` and
``xaicourse.attribution.grad_cam`` do not return, and ``lime_fit`` must return its own masks and
weights, on which its fit is checked.
"""
import numpy as np
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn

from xaicourse.checking import Failed, close, task

GRAD_LIBS = ["captum", "xaicourse.attribution", "xaicourse._torch", "torch.func", "torch.autograd.functional", "functorch",
             "zennit", "pytorch_grad_cam", "torchcam"]
LIME_LIBS = ["captum", "lime", "xaicourse.attribution", "sklearn", "statsmodels"]
FORBIDDEN = {
    "gradient_answer": GRAD_LIBS,
    "gradcam_answer": GRAD_LIBS,
    "kernel_answer": LIME_LIBS + ["scipy.spatial"],
    "ridge_answer": LIME_LIBS,
    "pipeline_answer": LIME_LIBS,
}


def _cnn():
    from xaicourse import models
    cnn, split, _ = models.course_model("digits", progress=False)
    return cnn.eval(), split


def prepare():
    _cnn()


def _plain(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _not_grad(info, what):
    if any(leaf.get("requires_grad") for leaf in info):
        raise Failed(f"{what} must not require grad (use .detach())")


# ----------------------------------------------------------------------------- task 1
def _gradient(model, x, target):
    x = x.detach().clone().requires_grad_(True)
    out = model(x)
    t = torch.as_tensor(target).reshape(-1).expand(len(x))
    (g,) = torch.autograd.grad(out[torch.arange(len(x)), t].sum(), x)
    return g.detach()


@task("gradient_tests")
def gradient(k):
    g = k.generator("gradient")
    # a smooth float64 network on (N, 1, 3, 4) images, one target per sample (a list of ints)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.rand(4, 1, 3, 4, generator=g, dtype=torch.float64)
    t = [int(v) for v in torch.randint(0, 3, (4,), generator=g)]
    got, info = k.call("vanilla_gradient", k.sequential(*net), x, t, meta=True)
    # float64 end to end: autograd agrees with itself to rounding (1e-12 ≫ the ~1e-16 differences)
    close(got, _gradient(net, x, t), atol=1e-12, what="vanilla_gradient of a float64 net, targets as a list")
    _not_grad(info, "vanilla_gradient's result")
    # the course CNN on this student's test images: a tensor of targets, then one int for all
    cnn, split = _cnn()
    rng = k.rng("gradient")
    idx = torch.as_tensor(rng.choice(len(split.X_test), 6, replace=False))
    xs, ts = split.X_test[idx], split.y_test[idx]
    m = k.module(cnn)
    ref = _gradient(cnn, xs, ts)
    # float32 network: batch vs per-sample order of sums only; 1e-5·(1 + max|ref|) leaves ≥ 10× margin
    close(k.call("vanilla_gradient", m, xs, ts), ref, atol=1e-5 * (1 + float(ref.abs().max())),
          what="vanilla_gradient of the course CNN, targets as a tensor")
    c = int(rng.integers(10))
    ref = _gradient(cnn, xs, c)
    close(k.call("vanilla_gradient", m, xs, c), ref, atol=1e-5 * (1 + float(ref.abs().max())),
          what=f"vanilla_gradient of the course CNN, target = {c} for the whole batch")


# ----------------------------------------------------------------------------- task 2
def _grad_cam(model, layer, x, target):
    """(cam (N, H, W), alpha (N, K)) from hooks and autograd, here in the trusted process."""
    store = {}
    h = model.get_submodule(layer).register_forward_hook(lambda mod, inp, out: store.__setitem__("A", out))
    try:
        with torch.enable_grad():
            out = model(x.detach().clone().requires_grad_(True))
    finally:
        h.remove()
    A = store["A"]
    t = torch.as_tensor(target).reshape(-1).expand(len(x))
    (dA,) = torch.autograd.grad(out[torch.arange(len(x)), t].sum(), A)
    alpha = dA.mean(dim=(2, 3))
    cam = torch.relu((alpha[:, :, None, None] * A).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=tuple(x.shape[2:]), mode="bilinear", align_corners=False)
    return cam[:, 0].detach(), alpha.detach()


def _check_cam(k, m, model, layer, x, t, what, tol):
    got, info = k.call("grad_cam_map", m, layer, x, t, meta=True)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Failed(f"grad_cam_map must return a tuple (cam, alpha), got {type(got).__name__}")
    cam_ref, alpha_ref = _grad_cam(model, layer, x, t)
    close(got[1], alpha_ref, atol=tol * (1 + float(alpha_ref.abs().max())), what=f"{what}: the channel weights α")
    close(got[0], cam_ref, atol=tol * (1 + float(cam_ref.abs().max())), what=f"{what}: the map")
    _not_grad(info, "grad_cam_map's results")


@task("gradcam_tests")
def gradcam(k):
    cnn, split = _cnn()
    rng = k.rng("gradcam")
    idx = torch.as_tensor(rng.choice(len(split.X_test), 8, replace=False))
    xs, ys = split.X_test[idx], split.y_test[idx]
    layers = [str(v) for v in rng.choice(["conv2", "relu2", "conv3", "relu3"], 2, replace=False)]
    shift = int(rng.integers(1, 10))
    # the reference agrees with the package's Grad-CAM (both bilinear, align_corners=False)
    from xaicourse.attribution import grad_cam
    assert torch.allclose(_grad_cam(cnn, layers[0], xs, ys)[0], grad_cam(cnn, xs, ys, layer=layers[0])[:, 0], atol=1e-6)
    m = k.module(cnn)
    # float32 course CNN: the same operations in another order; 1e-5·(1 + max|ref|) as the old tests
    for layer, t in ((layers[0], ys), (layers[1], (ys + shift) % 10), (layers[1], int(rng.integers(10)))):
        _check_cam(k, m, cnn, layer, xs, t, f"the course CNN at {layer!r}", 1e-5)
    # a float64 SmallCNN with this student's weights, a non-square input and non-integer upsampling
    from xaicourse.models import SmallCNN
    g = k.generator("gradcam")
    net = SmallCNN(in_channels=2, n_classes=4, width=3, hidden=5).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.7 * torch.randn(p.shape, generator=g, dtype=torch.float64))
    H, W = int(rng.integers(9, 12)), int(rng.integers(13, 16))
    x64 = torch.rand(3, 2, H, W, generator=g, dtype=torch.float64)
    t64 = torch.randint(0, 4, (3,), generator=g)
    m64 = k.module(net)
    for layer in ("conv2", "conv3"):
        _check_cam(k, m64, net, layer, x64, t64, f"a float64 net at {layer!r} on {H}×{W} inputs", 1e-10)


# ----------------------------------------------------------------------------- task 3
def _kernel(Z, width):
    """π = exp(−d²/(2w²)) with d = 1 − cos(z, 1) = 1 − √(k/K) for k of K on (d = 1 when all are off)."""
    Z = np.asarray(Z, dtype=float)
    d = 1.0 - np.sqrt(Z.sum(1) / Z.shape[1])
    return np.exp(-d ** 2 / (2 * width ** 2))


def _ridge(Z, y, w, alpha):
    """Closed form on the augmented system [Z 1] with the penalty diag(α, …, α, 0)."""
    Z = np.asarray(Z, dtype=float)
    X1 = np.c_[Z, np.ones(len(Z))]
    pen = np.diag(np.r_[np.full(Z.shape[1], alpha), 0.0])
    theta = np.linalg.solve(X1.T @ (w[:, None] * X1) + pen, X1.T @ (w * y))
    return theta[:-1], float(theta[-1])


@task("kernel_tests")
def kernel(k):
    rng = k.rng("kernel")
    K, n = int(rng.integers(8, 21)), 150
    Z = rng.integers(0, 2, (n, K))
    Z[0], Z[1], Z[2] = 1, 0, 0          # the instance, the all-off mask, a single superpixel on
    Z[2, rng.integers(K)] = 1
    widths = [0.25, float(np.round(rng.uniform(0.05, 0.2), 3)), float(np.round(rng.uniform(0.5, 3.0), 3))]
    # weights in (0, 1], float64: 1e-12 leaves 10^4 ulps for another (correct) order of operations
    for w in widths:
        close(k.call("lime_kernel_weights", Z, w), _kernel(Z, w), atol=1e-12, what=f"kernel_width={w:g}")
    close(k.call("lime_kernel_weights", Z.astype(bool), widths[1]), _kernel(Z, widths[1]), atol=1e-12,
          what="boolean masks")
    close(k.call("lime_kernel_weights", Z.astype(float), widths[2]), _kernel(Z, widths[2]), atol=1e-12,
          what="float masks")
    for bad in (0.0, -widths[1]):
        k.raises(ValueError, "lime_kernel_weights", Z, bad)


def _check_ridge(k, Z, y, w, alpha, what):
    got = k.call("lime_ridge", Z, y, w, alpha)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Failed(f"lime_ridge must return a tuple (beta, b), got {type(got).__name__}")
    beta_ref, b_ref = _ridge(Z, y, w, alpha)
    # float64 solves of a well-conditioned K×K system: ~1e-13 apart; 1e-8 (+1e-8 relative) is generous
    close(got[0], beta_ref, atol=1e-8, rtol=1e-8, what=f"{what}: beta")
    close(got[1], b_ref, atol=1e-8, rtol=1e-8, shape=False, what=f"{what}: the intercept b")


@task("ridge_tests")
def ridge(k):
    rng = k.rng("ridge")
    n, K = 300, int(rng.integers(6, 13))
    Z = rng.integers(0, 2, (n, K)).astype(float)
    y = 0.5 * rng.normal(size=n) + Z @ (2 * rng.normal(size=K)) + rng.normal()
    w = rng.random(n)
    for alpha in np.round(10 ** rng.uniform(-1.5, 1.5, 3), 4):
        _check_ridge(k, Z, y, w, float(alpha), f"alpha={alpha:g}")
    # zero weight on half the samples is dropping them (the reference on all samples says so too)
    w2 = w.copy()
    w2[rng.permutation(n)[: n // 2]] = 0.0
    _check_ridge(k, Z, y, w2, 1.0, "half of the weights zero")
    k.raises(ValueError, "lime_ridge", Z, y, np.zeros(n), 1.0)


def _unpack_fit(got):
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        raise Failed(f"lime_fit must return a tuple (beta, b, Z, weights), got {type(got).__name__}")
    beta, b, Z, w = got
    return beta, b, np.asarray(_plain(Z), dtype=float), np.asarray(_plain(w), dtype=float)


def _check_own_fit(got, f, K, n, width, alpha, what):
    """The masks' shape, values and first row; the weights and the fit on those very masks."""
    beta, b, Z, w = _unpack_fit(got)
    if Z.shape != (n, K) or w.shape != (n,):
        raise Failed(f"{what}: Z has shape {Z.shape} and weights {w.shape}, expected ({n}, {K}) and ({n},)")
    if not set(np.unique(Z)) <= {0.0, 1.0} or not (Z[0] == 1).all():
        raise Failed(f"{what}: the masks must be 0/1 with the first row all ones")
    close(w, _kernel(Z, width), atol=1e-12, what=f"{what}: the weights of your masks")
    beta_ref, b_ref = _ridge(Z, f(Z), _kernel(Z, width), alpha)
    close(beta, beta_ref, atol=1e-8, rtol=1e-8, what=f"{what}: beta on your masks")
    close(b, b_ref, atol=1e-8, rtol=1e-8, shape=False, what=f"{what}: b on your masks")
    return Z


@task("pipeline_tests")
def pipeline(k):
    rng = k.rng("pipeline")
    K = int(rng.integers(8, 13))
    # (1) a model exactly linear in the mask (f(Z) = Z·c through numpy.dot): c is recovered
    c = rng.normal(size=K)
    f_lin = k.library("numpy:dot", b=c.tolist())
    seed = int(rng.integers(10_000))
    beta, b, _, _ = _unpack_fit(k.call("lime_fit", f_lin, K, num_samples=400, kernel_width=0.25, alpha=1e-10,
                                       seed=seed))
    close(beta, c, atol=1e-6, what="a model linear in the mask (alpha = 1e-10): its coefficients")
    close(b, 0.0, atol=1e-6, shape=False, what="a model linear in the mask: its intercept 0")
    # (2) a non-linear model, f(Z) = log Σ_j b_j exp(z_j) (scipy's logsumexp): the fit on the student's masks
    bj = rng.uniform(0.2, 2.0, K)
    f_nl = k.library("scipy.special:logsumexp", axis=1, b=bj.tolist())

    def f_ref(Z):
        return scipy.special.logsumexp(Z, axis=1, b=bj)

    width, alpha, seed = float(np.round(rng.uniform(0.2, 0.6), 3)), float(np.round(rng.uniform(0.3, 3.0), 3)), \
        int(rng.integers(10_000))
    n = 3000
    Z = _check_own_fit(k.call("lime_fit", f_nl, K, num_samples=n, kernel_width=width, alpha=alpha, seed=seed),
                       f_ref, K, n, width, alpha, f"lime_fit(num_samples={n}, kernel_width={width:g}, alpha={alpha:g})")
    # the masks: fair coins (50 % ± 5 % on after the first row), independent (|correlation| ≤ 0.1)
    on = Z[1:].mean(0)
    if np.abs(on - 0.5).max() > 0.05:
        j = int(np.argmax(np.abs(on - 0.5)))
        raise Failed(f"superpixel {j} is on in {100 * on[j]:.1f} % of the masks, expected 50 % ± 5 %")
    with np.errstate(invalid="ignore", divide="ignore"):
        C = np.corrcoef(Z[1:].T)
    if not np.isfinite(C).all() or np.abs(C - np.eye(K)).max() > 0.1:
        raise Failed("the superpixels must be switched independently (a correlation above 0.1 between two of them)")
    again = _unpack_fit(k.call("lime_fit", f_nl, K, num_samples=n, kernel_width=width, alpha=alpha, seed=seed))[2]
    if not np.array_equal(again, Z):
        raise Failed("the same seed must give the same masks")
    other = _unpack_fit(k.call("lime_fit", f_nl, K, num_samples=n, kernel_width=width, alpha=alpha,
                               seed=seed + 1 + int(rng.integers(100))))[2]
    if np.array_equal(other, Z):
        raise Failed("another seed must give other masks")
    # (3) another width and penalty, fewer samples
    width, alpha, n = float(np.round(rng.uniform(0.05, 0.2), 3)), float(np.round(rng.uniform(2.0, 6.0), 3)), 1500
    _check_own_fit(k.call("lime_fit", f_nl, K, num_samples=n, kernel_width=width, alpha=alpha,
                          seed=int(rng.integers(10_000))),
                   f_ref, K, n, width, alpha, f"lime_fit(num_samples={n}, kernel_width={width:g}, alpha={alpha:g})")
