"""SmoothGrad: average a base attribution over noisy copies of the input.

    R(x) = (1/n) Σ_{k=1..n} A(x + z_k),   z_k ~ N(0, σ_abs² I),   σ_abs = σ · (x_max − x_min)

A is the vanilla gradient by default (the notes' E_z ∇f(x + z)); ``base`` can also be the
absolute value (captum ``NoiseTunnel(Saliency)`` with abs=True), the squared gradient or
input × gradient. σ is relative to the input range (SmoothGrad paper: 10–20 % works well).

Noise layout follows captum's ``NoiseTunnel``: samples are drawn in chunks of ``batch_size``
(default: all n at once) as one ``normal`` call of shape (N·chunk, ...), sample n's copies
are rows n·chunk … n·chunk+chunk−1 (``repeat_interleave``). With the same generator state
and ``input_range`` giving the same absolute σ, the noise — and hence the result — equals
captum's: ``torch.manual_seed(s); NoiseTunnel(Saliency(m)).attribute(x, nt_type="smoothgrad",
nt_samples=n, stdevs=σ_abs, target=t, abs=False)`` ≙ ``smoothgrad(m, x, t, sigma=σ, n_samples=n,
seed=s, input_range=(0, 1))``.
"""
from __future__ import annotations

import torch

from ._utils import check_batched
from .input_x_gradient import input_x_gradient
from .saliency import gradient
from .squared_gradient import squared_gradient

BASES = {
    "gradient": gradient,
    "saliency": lambda m, x, t: gradient(m, x, t).abs(),
    "squared_gradient": squared_gradient,
    "input_x_gradient": input_x_gradient,
}


def smoothgrad(model, inputs: torch.Tensor, target, sigma: float = 0.15, n_samples: int = 50,
               seed: int | None = 0, generator: torch.Generator | None = None, input_range=None,
               base: str = "gradient", batch_size: int | None = None) -> torch.Tensor:
    """SmoothGrad map, shaped like ``inputs`` (N, ...).

    sigma: noise std relative to the input range (≥ 0). input_range: ``(lo, hi)`` to fix the
    range (σ_abs = σ·(hi − lo)) or None to use each sample's own max − min.
    n_samples: number of noisy copies n ≥ 1. seed / generator: the noise source (a
    ``torch.Generator`` wins over ``seed``; ``seed=None`` uses torch's global RNG, like captum).
    base: "gradient" | "saliency" | "squared_gradient" | "input_x_gradient".
    batch_size: noisy copies per model call (None = all n at once).
    """
    check_batched(model, inputs)
    if base not in BASES:
        raise ValueError(f"base must be one of {tuple(BASES)}, got {base!r}")
    if not sigma >= 0:
        raise ValueError(f"sigma must be ≥ 0, got {sigma}")
    if int(n_samples) < 1:
        raise ValueError(f"n_samples must be ≥ 1, got {n_samples}")
    n_samples = int(n_samples)
    bs = n_samples if batch_size is None else min(n_samples, int(batch_size))
    if bs < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    x = inputs.detach()
    N = len(x)
    if input_range is None:
        flat = x.reshape(N, -1)
        rng = (flat.max(1).values - flat.min(1).values)
    else:
        lo, hi = input_range
        if not hi > lo:
            raise ValueError(f"input_range must be (lo, hi) with hi > lo, got {input_range}")
        rng = torch.full((N,), float(hi - lo), dtype=x.dtype, device=x.device)
    std = (sigma * rng).to(x.dtype).reshape(N, *([1] * (x.dim() - 1)))
    if generator is None and seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(int(seed))
    fn = BASES[base]
    total = torch.zeros_like(x)
    done = 0
    while done < n_samples:
        k = min(bs, n_samples - done)
        eps = torch.randn((N * k,) + tuple(x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        noisy = x.repeat_interleave(k, dim=0) + eps * std.repeat_interleave(k, dim=0)
        t = torch.as_tensor(target).reshape(-1)
        t = t.repeat_interleave(k) if t.numel() > 1 else t
        a = fn(model, noisy, t)
        total += a.reshape(N, k, *x.shape[1:]).sum(1)
        done += k
    return total / n_samples
