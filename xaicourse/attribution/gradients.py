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
* ``integrated_gradients`` (lecture 04) — (x − x′) ⊙ ∫₀¹ ∇f_t(x′ + α(x − x′)) dα with captum's
  quadrature rules (``ig_points``), baselines (``blurred_baseline``, ``uniform_noise_baseline``,
  ``sample_baselines`` for expected gradients) and the convergence delta.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._torch import check_inputs, eval_on, hooks, scores, select, target_index
from .._validate import as_tensor, check_bool, check_choice, check_int, check_real

__all__ = ["gradient", "saliency", "squared_gradient", "input_x_gradient", "smoothgrad", "guided_backprop",
           "integrated_gradients", "ig_points", "blurred_baseline", "uniform_noise_baseline", "sample_baselines"]


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


# ------------------------------------------------------------------ integrated gradients (lecture 04)
RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def ig_points(n_steps: int, method: str = "gausslegendre"):
    """Quadrature points α_k ∈ [0, 1] and weights w_k for ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k).

    The same numbers as captum's ``approximation_methods``:

    * ``riemann_left`` α_k = k/n, ``riemann_right`` α_k = (k+1)/n, ``riemann_middle``
      α_k = (k+½)/n, all with w_k = 1/n (k = 0 … n−1);
    * ``riemann_trapezoid`` α_k = k/(n−1) (n ≥ 2) with w = 1/n, the two end weights halved —
      captum's weights, which sum to (n−1)/n, not 1: its "trapezoid" underestimates every
      integral by the factor (n−1)/n (visible as an O(1/n) convergence delta);
    * ``gausslegendre`` the n-point Gauss–Legendre nodes and weights mapped from [−1, 1] to
      [0, 1] (exact for polynomials of degree ≤ 2n − 1).

    Returns two Python lists (alphas, weights) of length n.
    """
    check_choice("method", method, RULES)
    n = check_int("n_steps", n_steps, min=2 if method == "riemann_trapezoid" else 1)
    if method == "gausslegendre":
        import numpy as np
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()
    if method == "riemann_trapezoid":
        w = [1 / n] * n
        w[0] /= 2
        w[-1] /= 2
        return torch.linspace(0, 1, n).tolist(), w
    start, stop = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
                   "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
    return torch.linspace(start, stop, n).tolist(), [1 / n] * n


def _as_baseline(baselines, x: torch.Tensor) -> torch.Tensor:
    """None → zeros, a number → constant, a tensor of shape x.shape[1:], (1, ...) or x.shape."""
    if baselines is None:
        return torch.zeros_like(x)
    if isinstance(baselines, (int, float)) and not isinstance(baselines, bool):
        return torch.full_like(x, float(check_real("baselines", baselines)))
    if not isinstance(baselines, torch.Tensor):
        raise TypeError(f"baselines must be None, a number, a tensor or a list of tensors, "
                        f"got {type(baselines).__name__}")
    b = baselines.to(device=x.device, dtype=x.dtype)
    if b.dim() == 0:                                          # a 0-d tensor: a constant
        b = b.expand(x.shape[1:])
    if b.shape == x.shape[1:]:
        b = b[None]
    if b.dim() != x.dim() or b.shape[1:] != x.shape[1:] or len(b) not in (1, len(x)):
        raise ValueError(f"baselines must have the shape of one input {tuple(x.shape[1:])}, of a batch of one "
                         f"(1, {', '.join(map(str, x.shape[1:]))}) or of inputs {tuple(x.shape)}, "
                         f"got {tuple(b.shape)}")
    if not torch.isfinite(b).all():
        raise ValueError("baselines contain NaN or inf")
    return b.expand_as(x)


def baseline_set(baselines, x: torch.Tensor) -> list[torch.Tensor]:
    """``baselines`` as a list of tensors shaped like ``x`` (a list/tuple = a set of baselines)."""
    if isinstance(baselines, (list, tuple)):
        if not baselines:
            raise ValueError("baselines: an empty list; give at least one baseline")
        return [_as_baseline(b, x) for b in baselines]
    return [_as_baseline(baselines, x)]


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target, baselines=None, n_steps: int = 50,
                         method: str = "gausslegendre", internal_batch_size: int | None = None,
                         return_convergence_delta: bool = False):
    """Integrated gradients (Sundararajan et al. 2017), shaped like ``inputs`` (N, ...).

    IG_i(x) = (x_i − x′_i) ∫₀¹ ∂f_t(x′ + α(x − x′))/∂x_i dα
            ≈ (x_i − x′_i) Σ_k w_k ∂f_t(x′ + α_k(x − x′))/∂x_i

    with the quadrature (α_k, w_k) of ``method`` (see ``ig_points``; captum's numbers). By the
    fundamental theorem of calculus for line integrals Σ_i IG_i = f_t(x) − f_t(x′)
    (completeness); the quadrature error shows as the convergence delta.

    baselines: the reference x′ — None (zeros: a black image), a number (constant image), a
    tensor of shape (C, H, W), (1, C, H, W) or (N, C, H, W) (e.g. ``blurred_baseline``,
    ``uniform_noise_baseline``), or a list/tuple of such tensors: a *set* of baselines, the
    result being the mean of IG over the set (expected gradients, Erion et al. 2021, with the
    expectation over baselines taken exactly; completeness then reads
    Σ_i IG_i = f_t(x) − mean_b f_t(x′_b)).
    n_steps: quadrature points n ≥ 1 (≥ 2 for the trapezoid). internal_batch_size: at most this
    many interpolated images per forward/backward pass (None: all N·n at once).
    return_convergence_delta: also return δ = Σ_i IG_i − (f_t(x) − f_t(x′)) per sample, shape (N,).

    Same numbers as ``captum.attr.IntegratedGradients(model).attribute(inputs, baselines, target,
    n_steps=n_steps, method=method)`` (interpolated images laid out step-major, like captum).
    """
    x = check_inputs(model, inputs).detach()
    alphas, weights = ig_points(n_steps, method)
    check_bool("return_convergence_delta", return_convergence_delta)
    N, n = len(x), len(alphas)
    ibs = N * n if internal_batch_size is None else check_int("internal_batch_size", internal_batch_size, min=1)
    per = max(1, ibs // N)                                    # steps per pass
    base_list = baseline_set(baselines, x)
    total = torch.zeros_like(x)
    deltas = torch.zeros(N, dtype=x.dtype, device=x.device)
    with eval_on(model, freeze=True), torch.enable_grad():
        fx = scores(model, x)
        t = target_index(target, N, fx.shape[1])
        fx = select(fx, t).detach()
        for b in base_list:
            diff = x - b
            grads = torch.zeros_like(x)
            for s in range(0, n, per):
                a = alphas[s:s + per]
                w = torch.tensor(weights[s:s + per], dtype=torch.float32, device=x.device).to(x.dtype)
                k = len(a)
                # x′ + α_k (x − x′) for each step k, step-major; built with cat like captum so the
                # batch keeps x's memory layout: conv kernels then round alike, and so do ties in
                # max-pooling (on digits, with many equal zero pixels, a tie decides a gradient)
                path = torch.cat([torch.empty_like(x).copy_(b + a_k * diff) for a_k in a]).requires_grad_(True)
                out = select(scores(model, path), t.repeat(k))
                (g,) = torch.autograd.grad(out.sum(), path)
                grads += (g.reshape(k, N, *x.shape[1:]) * w.view(-1, *([1] * x.dim()))).sum(0)
            attr = grads * diff
            total += attr
            if return_convergence_delta:
                with torch.no_grad():
                    fb = select(scores(model, b), t)
                deltas += attr.reshape(N, -1).sum(1) - (fx - fb)
    total /= len(base_list)
    deltas /= len(base_list)
    total = total.to(inputs.device)
    return (total, deltas.to(inputs.device)) if return_convergence_delta else total


def blurred_baseline(inputs: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """A Gaussian-blurred copy of ``inputs`` (N, C, H, W): the "blurred image" baseline.

    Separable Gaussian of std ``sigma`` pixels (> 0; kernel radius ⌈3σ⌉), reflect padding, each
    channel blurred on its own. It removes fine detail (edges, strokes) but keeps the average
    brightness, so IG then asks "what did the sharp details add?".
    """
    x = as_tensor("inputs", inputs, ndim=4, floating=True, finite=True)
    sigma = check_real("sigma", sigma, min=0.0, min_inclusive=False)
    r = max(1, math.ceil(3 * sigma))
    r_h, r_w = min(r, x.shape[2] - 1), min(r, x.shape[3] - 1)
    C = x.shape[1]

    def kernel(radius):
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
        return k / k.sum()
    out = x
    if r_h > 0:
        kh = kernel(r_h).view(1, 1, -1, 1).repeat(C, 1, 1, 1)
        out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (0, 0, r_h, r_h), mode="reflect"), kh, groups=C)
    if r_w > 0:
        kw = kernel(r_w).view(1, 1, 1, -1).repeat(C, 1, 1, 1)
        out = torch.nn.functional.conv2d(torch.nn.functional.pad(out, (r_w, r_w, 0, 0), mode="reflect"), kw, groups=C)
    return out


def uniform_noise_baseline(inputs: torch.Tensor, low: float = 0.0, high: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Uniform noise U(low, high) shaped like ``inputs`` (seeded): the "noise" baseline."""
    x = as_tensor("inputs", inputs, min_ndim=2, floating=True)
    low, high = check_real("low", low), check_real("high", high)
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed))
    return (low + (high - low) * torch.rand(x.shape, generator=g, dtype=x.dtype)).to(x.device)


def sample_baselines(data: torch.Tensor, k: int = 10, seed: int = 0) -> list[torch.Tensor]:
    """``k`` rows of ``data`` (M, ...) drawn without replacement (seeded), as a list of (1, ...)
    tensors — a set of baselines for ``integrated_gradients`` (expected gradients)."""
    d = as_tensor("data", data, min_ndim=2, floating=True)
    k = check_int("k", k, min=1, max=len(d))
    g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed))
    idx = torch.randperm(len(d), generator=g)[:k]
    return [d[i:i + 1] for i in idx.tolist()]
