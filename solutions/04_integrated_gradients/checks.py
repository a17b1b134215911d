"""Hidden checks of exercise 04 (trusted: run by the grader, never inside the student's sandbox).

Each check draws its own inputs per student, computes the reference here with the package, and
calls the student's function through the sandbox (``k.call``), receiving plain arrays only.
"""
import copy

import torch
from torch import nn

from xaicourse.checking import Failed, close, task

RULED_OUT = ["captum", "xaicourse.attribution", "xaicourse.metrics", "xaicourse.evaluation", "xaicourse._torch", "torch.func", "torch.autograd.functional"]
FORBIDDEN = {"ig_answer": RULED_OUT, "delta_answer": RULED_OUT, "invariance_answer": RULED_OUT}


def _cnn():
    from xaicourse import models
    cnn, split, _ = models.course_model("digits", progress=False)
    return cnn.eval(), split


def prepare():
    _cnn()


def _ig(model, x, target, baseline, n, rule):
    """The Riemann sum, written out here in the input's dtype (the reference stays in this process)."""
    offset = {"left": 0.0, "middle": 0.5, "right": 1.0}[rule]
    t = torch.as_tensor(target).reshape(-1).expand(len(x))
    total = torch.zeros_like(x)
    for j in range(n):
        z = (baseline + (j + offset) / n * (x - baseline)).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(model(z)[torch.arange(len(x)), t].sum(), z)
        total += g
    return ((x - baseline) * total / n).detach()


@task("ig_tests")
def ig(k):
    # a linear model: IG is w ⊙ (x − x′) for every rule (the visible check, on new numbers)
    g = k.generator("lin")
    lin = nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(3, 4, generator=g))
        lin.bias.copy_(torch.randn(3, generator=g))
    x0, b0 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    for r in ("left", "middle", "right"):
        got, info = k.call("riemann_ig", k.module(lin, factory="torch.nn:Linear", in_features=4, out_features=3),
                           x0, 1, b0, n_steps=3, rule=r, meta=True)
        close(got, lin.weight[1].detach() * (x0 - b0), atol=1e-5, what=f"riemann_ig on a linear model, rule={r!r}")
        if info and info[0]["requires_grad"]:
            raise Failed("riemann_ig must return a tensor that does not require grad (use .detach())")
    # the course CNN, this student's images, steps and baseline
    cnn, split = _cnn()
    rng = k.rng("cnn")
    idx = torch.as_tensor(rng.choice(len(split.X_test), 6, replace=False))
    x, t = split.X_test[idx], split.y_test[idx]
    base = torch.full_like(x, float(rng.uniform(0.0, 0.3)))
    m = k.module(cnn)
    for r in ("left", "middle", "right"):
        n = int(rng.integers(4, 17))
        got = k.call("riemann_ig", m, x, t, base, n_steps=n, rule=r)
        close(got, _ig(cnn, x, t, base, n, r), atol=1e-4, what=f"riemann_ig(n_steps={n}, rule={r!r})")
    # float64 inputs stay exact (a float64 answer is right, whatever the dtype)
    cnn64 = copy.deepcopy(cnn).double()
    got = k.call("riemann_ig", k.module(cnn64), x.double(), t, base.double(), n_steps=5, rule="middle")
    close(got, _ig(cnn64, x.double(), t, base.double(), 5, "middle"), atol=1e-9, what="riemann_ig in float64")
    k.raises(ValueError, "riemann_ig", m, x, t, base, rule="simpson")
    k.raises(ValueError, "riemann_ig", m, x, t, base, n_steps=0)


@task("delta_tests")
def delta(k):
    cnn, split = _cnn()
    rng = k.rng("delta")
    idx = torch.as_tensor(rng.choice(len(split.X_test), 8, replace=False))
    x, t = split.X_test[idx], split.y_test[idx]
    base = torch.full_like(x, float(rng.uniform(0.0, 0.3)))
    attributions = torch.as_tensor(rng.normal(size=tuple(x.shape)), dtype=torch.float32)
    with torch.no_grad():
        gap = cnn(x)[torch.arange(len(x)), t] - cnn(base)[torch.arange(len(x)), t]
    want = attributions.flatten(1).sum(1) - gap
    got = k.call("convergence_delta", k.module(cnn), x, t, base, attributions)
    close(got, want, atol=1e-4, what="convergence_delta on this student's attributions")


def _grad_x_input(m, z, t):
    z = z.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(m(z)[:, t].sum(), z)
    return (g * z).detach()


@task("invariance_tests")
def invariance(k):
    g = k.generator("inv")
    lin2 = nn.Linear(3, 2).double()
    with torch.no_grad():
        lin2.weight.copy_(torch.randn(2, 3, generator=g, dtype=torch.float64))
        lin2.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64))
    scale = float(1.5 + torch.rand(1, generator=g))
    lin3 = nn.Linear(3, 2).double()
    with torch.no_grad():
        lin3.weight.copy_(lin2.weight * scale)
        lin3.bias.copy_(lin2.bias)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64)
    want = float((_grad_x_input(lin2, z, 1) - _grad_x_input(lin3, z, 1)).abs().max()
                 / _grad_x_input(lin3, z, 1).abs().max())
    method = k.library("xaicourse.checking:grad_x_input")
    spec = dict(factory="torch.nn:Linear", in_features=3, out_features=2)
    got = k.call("invariance_gap", method, k.module(lin2, **spec), k.module(lin3, **spec), z, 1)
    close(got, want, atol=1e-9, shape=False, what="invariance_gap of two linear nets")
    got = k.call("invariance_gap", method, k.module(lin2, **spec), k.module(lin2, **spec), z, 1)
    close(got, 0.0, atol=0, shape=False, what="invariance_gap of a network with itself")
