"""Hidden checks of exercise 04b (trusted: run by the grader, never inside the student's sandbox).

Each check draws a network, inputs and baselines for this student (``k.rng`` / ``k.generator``),
computes the reference here, and calls the student's function through the sandbox (``k.call``),
receiving plain arrays only. The references: the secant written out, the package's DeepLIFT on
the same network as a torch model, and Shapley values enumerated here coalition by coalition.
"""
from itertools import combinations
from math import factorial

import numpy as np
import torch
from torch import nn

from xaicourse.checking import close, task

RULED_OUT = ["captum", "shap", "xaicourse.attribution", "xaicourse._torch", "torch.func", "torch.autograd.functional"]
FORBIDDEN = {"multiplier_answer": RULED_OUT, "deeplift_answer": RULED_OUT, "shapley_answer": RULED_OUT}


def prepare():
    pass


def _mlp_layers(g, sizes):
    """Random (W, b) float64 layers for the given sizes, e.g. (d, h1, h2, c)."""
    return [(torch.randn(o, i, generator=g, dtype=torch.float64) / i ** 0.5,
             0.5 * torch.randn(o, generator=g, dtype=torch.float64)) for i, o in zip(sizes[:-1], sizes[1:])]


def _as_model(layers):
    mods = []
    for l, (W, b) in enumerate(layers):
        lin = nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(W)
            lin.bias.copy_(b)
        mods += [lin] + ([nn.ReLU()] if l < len(layers) - 1 else [])
    return nn.Sequential(*mods)


@task("multiplier_tests")
def multiplier(k):
    g = k.generator("mult")
    z = torch.randn(6, 7, generator=g, dtype=torch.float64) * 2
    z_ref = torch.randn(6, 7, generator=g, dtype=torch.float64) * 2
    z_ref[0] = z[0]                                   # Δz = 0: the gradient, on both sides of 0
    z[1, :3], z_ref[1, :3] = -torch.rand(3, generator=g, dtype=torch.float64), -torch.rand(3, generator=g, dtype=torch.float64)
    dz = z - z_ref
    small = dz.abs() < 1e-10
    want = torch.where(small, (z > 0).double(),
                       (torch.relu(z) - torch.relu(z_ref)) / torch.where(small, torch.ones_like(dz), dz))
    got = k.call("rescale_multiplier", z, z_ref)
    close(got, want, atol=1e-10, what="rescale_multiplier on this student's pre-activations")
    got = k.call("rescale_multiplier", z.float(), z_ref.float())
    close(got, want, atol=1e-5, what="rescale_multiplier in float32")


@task("deeplift_tests")
def deeplift(k):
    from xaicourse.attribution import deeplift as reference

    rng = k.rng("deeplift")
    d, h1, h2, c = (int(v) for v in (rng.integers(4, 8), rng.integers(5, 9), rng.integers(4, 8), rng.integers(2, 5)))
    g = k.generator("deeplift")
    for depth, sizes in (("two hidden layers", (d, h1, h2, c)), ("one hidden layer", (d, h1, c)),
                         ("three hidden layers", (d, h1, h2, h1, c))):
        layers = _mlp_layers(g, sizes)
        x = torch.randn(5, d, generator=g, dtype=torch.float64)
        base = torch.randn(5, d, generator=g, dtype=torch.float64) * 0.5
        base[0] = x[0]                                # a row with x = x′: attributions 0
        target = int(rng.integers(0, c))
        model = _as_model(layers)
        want = reference(model, x, target, baselines=base)
        got = k.call("deeplift_mlp", [tuple(p) for p in layers], x, base, target)
        close(got, want, atol=1e-8, what=f"deeplift_mlp on a network with {depth}, target {target}")
        with torch.no_grad():
            delta = model(x)[:, target] - model(base)[:, target]
        close(np.asarray(got, dtype=np.float64).reshape(5, -1).sum(1), delta, atol=1e-8,
              what=f"summation-to-delta of deeplift_mlp ({depth})")


def _shapley(model, x, base, target):
    d = len(x)

    def v(S):
        z = base.clone()
        z[list(S)] = x[list(S)]
        with torch.no_grad():
            return float(model(z[None])[0, target])
    phi = torch.zeros(d, dtype=torch.float64)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            for S in combinations(others, size):
                phi[i] += factorial(size) * factorial(d - size - 1) / factorial(d) * (v(S + (i,)) - v(S))
    return phi


@task("shapley_tests")
def shapley(k):
    from xaicourse.models import MLP

    rng = k.rng("shapley")
    g = k.generator("shapley")
    for d in (int(rng.integers(4, 7)), 3):
        net = MLP(in_features=d, n_classes=3, hidden=8).double()
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
            net.fc1.weight[:, d - 1] = 0.0            # feature d − 1 is a dummy: φ must be 0
        net.eval()
        x = torch.randn(d, generator=g, dtype=torch.float64)
        base = torch.randn(d, generator=g, dtype=torch.float64) * 0.3
        target = int(rng.integers(0, 3))
        want = _shapley(net, x, base, target)
        got = k.call("exact_shapley", k.module(net), x, base, target)
        close(got, want, atol=1e-8, what=f"exact_shapley with d = {d} features, target {target}")
        got = np.asarray(got, dtype=np.float64)      # a list of floats is plain data too
        close(got[d - 1], 0.0, atol=1e-8, shape=False, what="the dummy feature's Shapley value")
        with torch.no_grad():
            gap = net(x[None])[0, target] - net(base[None])[0, target]
        close(got.sum(), gap, atol=1e-8, shape=False, what="efficiency (Σ φ = f(x) − f(x′))")
    k.raises(ValueError, "exact_shapley", k.module(net), x, base[:-1], 0)
