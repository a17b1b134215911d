"""The gradient family: methods built from ∂f_t/∂x (lecture 03), in the order the lecture
derives them. Every function is ``f(model, inputs, target, **options)`` → a tensor shaped like
``inputs``; the model is explained in eval mode and left exactly as it was found.

* ``gradient`` / ``saliency`` — R(x) = ∂f_t/∂x (signed) or |∂f_t/∂x| (captum ``Saliency``).
  The gradient is the best linear approximation of f_t around x: f_t(x + ε) ≈ f_t(x) + ε·∇f_t(x).
  It measures *sensitivity* (how much the output moves per unit change of x_d), not
  *contribution* (how much x_d is responsible for the output) — they differ where f saturates.
* ``squared_gradient`` — (∂f_t/∂x_d)², the lecture notes' sensitivity map: summed over the
  colour channels of pixel p it is ‖∇_{x_p} f_t‖², never negative, so it cannot say *for* or
  *against* a class.
* ``input_x_gradient`` — x_d · ∂f_t/∂x_d (captum ``InputXGradient``). For a linear model
  f(x) = wᵀx + b this is exactly the contribution w_d x_d, and Σ_d R_d = f(x) − b. For a network it
  is the first-order Taylor term around the zero input, so it depends on where "zero" is.
* ``smoothgrad`` — (1/n) Σ_k A(x + z_k), z_k ~ N(0, σ_abs² I), σ_abs = σ·(x_max − x_min): the
  base attribution A averaged over noisy copies (Smilkov et al. 2017).
* ``guided_backprop`` — backprop through every ReLU keeps only positive gradient signals:
  ∂L/∂x ← max(∂L/∂y · 1[x > 0], 0) (Springenberg et al. 2015; captum ``GuidedBackprop``).
"""
from __future__ import annotations

import torch
from torch import nn

from .._torch import check_inputs, eval_on, hooks, scores, select, target_index
from .._validate import check_choice, check_int, check_real

__all__ = ["gradient", "saliency", "squared_gradient", "input_x_gradient", "smoothgrad", "guided_backprop"]


# ------------------------------------------------------------------ the vanilla gradient
def gradient(model: nn.Module, inputs: torch.Tensor, target, *, create_graph: bool = False) -> torch.Tensor:
    """∂f_t/∂x for each sample of ``inputs`` (N, ...) → tensor of the same shape.

    Computes the gradient of Σ_n f_{t_n}(x_n); samples do not interact in eval mode, so row n
    of the result is ∂f_{t_n}(x_n)/∂x_n. ``target``: int or one int per sample.
    ``create_graph=True`` keeps the graph (for a gradient of the gradient, e.g. attacks).
    """
    x0 = check_inputs(model, inputs)
    with eval_on(model, freeze=True), torch.enable_grad():
        x = x0.detach().clone().requires_grad_(True)
        out = scores(model, x)
        t = target_index(target, len(x), out.shape[1])
        (g,) = torch.autograd.grad(select(out, t).sum(), x, create_graph=create_graph)
    return g.to(inputs.device)


def saliency(model: nn.Module, inputs: torch.Tensor, target, *, abs: bool = True) -> torch.Tensor:
    """Saliency map |∂f_t/∂x| (``abs=True``, captum's default) or the signed gradient.

    inputs: (N, C, H, W) or (N, D); returns the same shape.
    """
    g = gradient(model, inputs, target)
    return g.abs() if abs else g


def squared_gradient(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """(∂f_t/∂x)² element-wise; inputs (N, ...) → same shape, all entries ≥ 0."""
    return gradient(model, inputs, target) ** 2


def input_x_gradient(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """x ⊙ ∂f_t/∂x; inputs (N, ...) → same shape."""
    g = gradient(model, inputs, target)  # checks inputs first
    return inputs.detach() * g


# ------------------------------------------------------------------ SmoothGrad
BASES = {
    "gradient": gradient,
    "saliency": saliency,
    "squared_gradient": squared_gradient,
    "input_x_gradient": input_x_gradient,
}


def smoothgrad(model: nn.Module, inputs: torch.Tensor, target, *, sigma: float = 0.15, n_samples: int = 50,
               seed: int | None = 0, generator: torch.Generator | None = None, input_range=None,
               base: str = "gradient", batch_size: int | None = None) -> torch.Tensor:
    """SmoothGrad map, shaped like ``inputs`` (N, ...).

    sigma: noise std relative to the input range (≥ 0; the paper finds 10–20 % works well).
    input_range: ``(lo, hi)`` to fix the range (σ_abs = σ·(hi − lo)) or None to use each
    sample's own max − min. n_samples: number of noisy copies n ≥ 1. seed / generator: the
    noise source (a ``torch.Generator`` wins over ``seed``; ``seed=None`` uses torch's global
    RNG, like captum). base: "gradient" | "saliency" | "squared_gradient" | "input_x_gradient".
    batch_size: noisy copies per model call (None = all n at once).

    Noise layout follows captum's ``NoiseTunnel``: chunks of ``batch_size`` copies are drawn as
    one ``normal`` call of shape (N·chunk, ...), sample n's copies being rows n·chunk …
    n·chunk+chunk−1 (``repeat_interleave``). With the same generator state and the same absolute
    σ the noise — hence the result — equals captum's: ``torch.manual_seed(s);
    NoiseTunnel(Saliency(m)).attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=σ_abs,
    target=t, abs=False)`` ≙ ``smoothgrad(m, x, t, sigma=σ, n_samples=n, seed=s, input_range=(0, 1))``.
    """
    x = check_inputs(model, inputs).detach()
    check_choice("base", base, BASES)
    sigma = check_real("sigma", sigma, min=0.0)
    n_samples = check_int("n_samples", n_samples, min=1)
    bs = n_samples if batch_size is None else min(n_samples, check_int("batch_size", batch_size, min=1))
    N = len(x)
    t = target_index(target, N, _n_outputs(model, x))
    if input_range is None:
        flat = x.reshape(N, -1)
        rng = flat.max(1).values - flat.min(1).values
    else:
        lo, hi = (check_real("input_range", v) for v in input_range)
        if not hi > lo:
            raise ValueError(f"input_range must be (lo, hi) with hi > lo, got {input_range}")
        rng = torch.full((N,), hi - lo, dtype=x.dtype, device=x.device)
    std = (sigma * rng).to(x.dtype).reshape(N, *([1] * (x.dim() - 1)))
    if generator is None and seed is not None:
        generator = torch.Generator(device=x.device).manual_seed(check_int("seed", seed))
    fn = BASES[base]
    total = torch.zeros_like(x)
    done = 0
    while done < n_samples:
        k = min(bs, n_samples - done)
        eps = torch.randn((N * k,) + tuple(x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        noisy = x.repeat_interleave(k, dim=0) + eps * std.repeat_interleave(k, dim=0)
        a = fn(model, noisy, t.repeat_interleave(k))
        total += a.reshape(N, k, *x.shape[1:]).sum(1)
        done += k
    return (total / n_samples).to(inputs.device)


def _n_outputs(model, x) -> int:
    with eval_on(model), torch.no_grad():
        return scores(model, x[:1]).shape[1]


# ------------------------------------------------------------------ guided backprop
def _positive_grad(module, grad_input, grad_output):
    # grad_input already carries the ReLU's own 1[x > 0]; guided backprop also drops g < 0
    return tuple(None if g is None else torch.relu(g) for g in grad_input)


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target) -> torch.Tensor:
    """Guided-backprop map shaped like ``inputs`` (N, ...).

    Implemented with a backward hook on every ``nn.ReLU`` module (functional ``F.relu`` calls
    are not seen, so the model must use ``nn.ReLU(inplace=False)`` modules — ValueError
    otherwise); the hooks are removed afterwards.
    """
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no nn.ReLU modules: guided backprop needs ReLUs as modules "
                         "(replace F.relu calls by nn.ReLU layers)")
    if any(m.inplace for m in relus):
        raise ValueError("guided_backprop needs ReLU(inplace=False) modules")
    with hooks(relus, backward=_positive_grad):
        return gradient(model, inputs, target)
