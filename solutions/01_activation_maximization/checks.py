"""Hidden checks of exercise 01 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own batches per student (shapes, values, step sizes, radii, centres) and
computes the reference here from the definitions in the task text; the student's functions are
called through the sandbox and answer with plain arrays only.
"""
import math

import numpy as np
import torch

from xaicourse.checking import Failed, close, task

_PACKAGE = ["xaicourse.maps", "xaicourse._torch", "xaicourse.featurevis", "xaicourse.constraints", "xaicourse.attribution", "xaicourse.robustness",
            "xaicourse.widgets"]
FORBIDDEN = {
    "tv_answer": _PACKAGE + ["kornia", "torchmetrics", "skimage", "quantus"],
    "pga_answer": _PACKAGE + ["torchattacks", "advertorch", "foolbox", "art", "quantus"],
}


def prepare():
    """The digits CNN of the notebook's set-up cell."""
    from xaicourse.models import course_model
    course_model("digits", progress=False)


# ----------------------------------------------------------------------------- task 1
def _tv(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic TV of each image (N, C, H, W) → (N,), in float64."""
    x = x.double()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(dim=(1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(dim=(1, 2, 3))
    return dx + dy


def _shape(rng, n=(2, 6), c=(1, 4), h=(2, 9), w=(2, 10)):
    N, C, H, W = (int(rng.integers(*n)), int(rng.integers(*c)), int(rng.integers(*h)), int(rng.integers(*w)))
    return N, C, H, W + 1 if W == H else W          # never square: rows and columns are told apart


@task("tv_tests")
def tv(k):
    rng = k.rng("tv")
    # a float64 batch of non-square images. TV is a sum of ≤ 300 terms of order 0.5: rtol 1e-5
    # accepts a float32 computation (≈ 1e-6 relative), a wrong formula (isotropic, one direction,
    # a mean, a wrapped-around edge) is off by > 1 %
    x = torch.tensor(rng.normal(0.5, 0.4, _shape(rng)), dtype=torch.float64)
    close(k.call("total_variation", x), _tv(x), atol=1e-8, rtol=1e-5,
          what=f"total_variation of a float64 batch of shape {tuple(x.shape)}")
    # float32 images in [0, 1] of the digits' size, one of them constant (TV 0)
    x32 = torch.tensor(rng.uniform(0.0, 1.0, (4, 1, 8, 8)), dtype=torch.float32)
    x32[int(rng.integers(4))] = float(rng.uniform(0.0, 1.0))
    close(k.call("total_variation", x32), _tv(x32), atol=1e-4, rtol=1e-5,
          what="total_variation of a float32 batch (4, 1, 8, 8) with a constant image")
    # differentiable: for an x that requires grad, the TV must require grad too (the kernel builds
    # x with torch.tensor(data, requires_grad=True), float32)
    shape = _shape(rng, n=(1, 4), c=(1, 3), h=(3, 7), w=(3, 8))
    data = np.round(rng.uniform(0.0, 1.0, shape), 4)
    got, info = k.call("total_variation", k.instance("torch:tensor", data=data.tolist(), requires_grad=True),
                       meta=True)
    close(got, _tv(torch.tensor(data)), atol=1e-4, rtol=1e-5, what=f"total_variation of a batch of shape {shape}")
    if not info or not info[0]["requires_grad"]:
        raise Failed("total_variation must be differentiable with autograd: for an x that requires grad, its "
                     "result must require grad too (build it from torch operations on x)")


# ----------------------------------------------------------------------------- task 2
def _pga(x, g, eta, r, p, c):
    """One projected steepest-ascent step and the distance of the unprojected step (float64)."""
    x, g = x.double(), g.double()
    shape = (-1,) + (1,) * (x.dim() - 1)
    if p == math.inf:
        d = g.sign()
    else:
        n = g.flatten(1).norm(dim=1).view(shape)
        d = torch.where(n > 0, g / torch.where(n > 0, n, torch.ones_like(n)), torch.zeros_like(g))
    dev = x + eta * d - c
    if p == math.inf:
        return c + dev.clamp(-r, r), dev.flatten(1).abs().amax(1)
    reach = dev.flatten(1).norm(dim=1)
    scale = torch.where(reach > r, r / torch.where(reach > 0, reach, torch.ones_like(reach)),
                        torch.ones_like(reach))
    return c + dev * scale.view(shape), reach


def _pair(got, what):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise Failed(f"{what}: return the pair (x_new, reach)")
    return got


@task("pga_tests")
def pga(k):
    rng = k.rng("pga")
    N, C, H, W = _shape(rng, n=(3, 6), c=(1, 4), h=(3, 8), w=(3, 8))
    zero = int(rng.integers(N))                    # one image with a zero gradient
    g = torch.tensor(rng.normal(size=(N, C, H, W)))
    g[zero] = 0.0
    # (step size η, p, centre x0): ℓ∞ and ℓ2 balls around the course's centre 0.5, 0 and a random
    # one; x = x0 + N(0, 0.3²) pixels. The radius lies halfway between two of the batch's own
    # reaches (reach does not depend on r): some images are projected, the others are not.
    c_rand = round(float(rng.uniform(0.2, 0.8)), 3)
    cases = [(float(rng.uniform(0.02, 0.2)), math.inf, 0.5), (float(rng.uniform(0.1, 0.6)), math.inf, 0.0),
             (float(rng.uniform(0.2, 1.5)), 2, 0.5), (float(rng.uniform(0.2, 1.5)), 2, c_rand)]
    for eta, p, c in cases:
        x = torch.tensor(c + rng.normal(0.0, 0.3, (N, C, H, W)))
        reaches = torch.sort(_pga(x, g, eta, 1.0, p, c)[1]).values
        j = int(rng.integers(N - 1))
        r = float(reaches[j] + reaches[j + 1]) / 2
        want_x, want_reach = _pga(x, g, eta, r, p, c)
        what = f"pga_step(eta={eta:.3f}, radius={r:.3f}, p={p}, center={c})"
        x_new, reach = _pair(k.call("pga_step", x, g, eta, r, p, c), what)
        # values of order 1 in float64: 1e-6 accepts a float32 computation (≈ 1e-7), a wrong step or
        # projection is off by > 1e-3
        close(x_new, want_x, atol=1e-6, what=f"{what}: x_new")
        close(reach, want_reach, atol=1e-6, what=f"{what}: reach")
    # float32, inside a large ℓ2 ball with a tiny step: no projection, x + η·g/‖g‖ exactly
    x = torch.tensor(0.5 + 0.01 * rng.normal(size=(2, 1, 4, 5)), dtype=torch.float32)
    g32 = torch.tensor(rng.normal(size=(2, 1, 4, 5)), dtype=torch.float32)
    want_x, want_reach = _pga(x, g32, 1e-3, 1.0, 2, 0.5)
    x_new, reach = _pair(k.call("pga_step", x, g32, 1e-3, 1.0, 2), "pga_step on float32 images inside the ball")
    close(x_new, want_x, atol=1e-6, what="pga_step inside the ball (float32, default center 0.5): x_new")
    close(reach, want_reach, atol=1e-6, what="pga_step inside the ball (float32, default center 0.5): reach")
    # the ℓ∞ step of the digits' setting (float32): a sign step, clipped to the box [0, 1]
    x = torch.tensor(rng.uniform(0.0, 1.0, (3, 1, 8, 8)), dtype=torch.float32)
    g32 = torch.tensor(rng.normal(size=(3, 1, 8, 8)), dtype=torch.float32)
    eta = float(rng.uniform(0.05, 0.2))
    want_x, want_reach = _pga(x, g32, eta, 0.5, math.inf, 0.5)
    x_new, reach = _pair(k.call("pga_step", x, g32, eta, 0.5, math.inf), "pga_step on digits")
    close(x_new, want_x, atol=1e-6, what=f"pga_step on digit-size images (p=inf, radius 0.5, eta={eta:.3f}): x_new")
    close(reach, want_reach, atol=1e-6, what="pga_step on digit-size images: reach")
