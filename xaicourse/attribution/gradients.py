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

import warnings

import torch
from torch import nn

from .._torch import (QUADRATURE_RULES, check_inputs, deprecated_kwargs, eval_on, hooks, interpolation_path,
                      quadrature, resolve_baselines, resolve_target, scores, select, target_gradient)
from .._validate import as_tensor, check_bool, check_choice, check_int, check_real

__all__ = ["gradient", "saliency", "squared_gradient", "input_x_gradient", "smoothgrad", "guided_backprop",
           "integrated_gradients", "ig_points", "blurred_baseline", "uniform_noise_baseline", "sample_baselines"]


# ------------------------------------------------------------------ the vanilla gradient
def gradient(model: nn.Module, inputs: torch.Tensor, target=None, *, create_graph: bool = False) -> torch.Tensor:
    """∂f_t/∂x for each sample of ``inputs`` (N, ...) → tensor of the same shape.

    Computes the gradient of Σ_n f_{t_n}(x_n); samples do not interact in eval mode, so row n
    of the result is ∂f_{t_n}(x_n)/∂x_n. ``target``: int, one int per sample, or None (the
    predicted class). ``create_graph=True`` keeps the graph (for a gradient of the gradient, e.g.
    attacks; then ``inputs`` that require grad are differentiated as given).
    """
    x0 = check_inputs(model, inputs)
    return target_gradient(model, x0, target, create_graph=create_graph).to(inputs.device)


def saliency(model: nn.Module, inputs: torch.Tensor, target=None, *, absolute: bool = True, **old) -> torch.Tensor:
    """Saliency map |∂f_t/∂x| (``absolute=True``, captum's default) or the signed gradient.

    inputs: (N, C, H, W) or (N, D); returns the same shape. (``abs=`` is the deprecated name.)
    """
    if old:
        if set(old) - {"abs"}:
            raise TypeError(f"saliency got unexpected keyword arguments {sorted(set(old) - {'abs'})}")
        warnings.warn("saliency(abs=...) is deprecated; use absolute=", DeprecationWarning, stacklevel=2)
        absolute = old["abs"]
    absolute = check_bool("absolute", absolute)
    g = gradient(model, inputs, target)
    return g.abs() if absolute else g


def squared_gradient(model: nn.Module, inputs: torch.Tensor, target=None) -> torch.Tensor:
    """(∂f_t/∂x)² element-wise; inputs (N, ...) → same shape, all entries ≥ 0."""
    return gradient(model, inputs, target) ** 2


def input_x_gradient(model: nn.Module, inputs: torch.Tensor, target=None) -> torch.Tensor:
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


def smoothgrad(model: nn.Module, inputs: torch.Tensor, target=None, *, sigma: float = 0.15, n_samples: int = 50,
               seed: int | None = 0, generator: torch.Generator | None = None, input_range=None,
               base: str = "gradient", batch_size: int | None = None, create_graph: bool = False) -> torch.Tensor:
    """SmoothGrad map, shaped like ``inputs`` (N, ...).

    sigma: noise std relative to the input range (≥ 0; the paper finds 10–20 % works well).
    input_range: ``(lo, hi)`` to fix the range (σ_abs = σ·(hi − lo)) or None to use each
    sample's own max − min. n_samples: number of noisy copies n ≥ 1. seed / generator: the
    noise source (a ``torch.Generator`` wins over ``seed``; ``seed=None`` uses torch's global
    RNG, like captum). base: "gradient" | "saliency" | "squared_gradient" | "input_x_gradient".
    batch_size: noisy copies per model call (None = all n at once). target: int, one per sample,
    or None (the predicted class). create_graph: keep the graph (attacks on explanations).

    Noise layout follows captum's ``NoiseTunnel``: chunks of ``batch_size`` copies are drawn as
    one ``normal`` call of shape (N·chunk, ...), sample n's copies being rows n·chunk …
    n·chunk+chunk−1 (``repeat_interleave``). With the same generator state and the same absolute
    σ the noise — hence the result — equals captum's: ``torch.manual_seed(s);
    NoiseTunnel(Saliency(m)).attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=σ_abs,
    target=t, abs=False)`` ≙ ``smoothgrad(m, x, t, sigma=σ, n_samples=n, seed=s, input_range=(0, 1))``.
    """
    x = check_inputs(model, inputs)
    check_bool("create_graph", create_graph)
    x = x if (create_graph and x.requires_grad) else x.detach()
    check_choice("base", base, BASES)
    sigma = check_real("sigma", sigma, min=0.0)
    n_samples = check_int("n_samples", n_samples, min=1)
    bs = n_samples if batch_size is None else min(n_samples, check_int("batch_size", batch_size, min=1))
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    N = len(x)
    t = resolve_target(model, x, target)
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
        generator = torch.Generator(device=x.device).manual_seed(check_int("seed", seed, min=0))
    total = torch.zeros_like(x)
    done = 0
    while done < n_samples:
        k = min(bs, n_samples - done)
        eps = torch.randn((N * k,) + tuple(x.shape[1:]), generator=generator, dtype=x.dtype, device=x.device)
        noisy = x.repeat_interleave(k, dim=0) + eps * std.repeat_interleave(k, dim=0)
        g = target_gradient(model, noisy, t.repeat_interleave(k), create_graph=create_graph)
        a = {"gradient": g, "saliency": g.abs() if base == "saliency" else None,
             "squared_gradient": g ** 2 if base == "squared_gradient" else None,
             "input_x_gradient": noisy * g if base == "input_x_gradient" else None}[base]
        total = total + a.reshape(N, k, *x.shape[1:]).sum(1)
        done += k
    return (total / n_samples).to(inputs.device)


# ------------------------------------------------------------------ guided backprop
def _positive_grad(module, grad_input, grad_output):
    # grad_input already carries the ReLU's own 1[x > 0]; guided backprop also drops g < 0
    return tuple(None if g is None else torch.relu(g) for g in grad_input)


def guided_backprop(model: nn.Module, inputs: torch.Tensor, target=None) -> torch.Tensor:
    """Guided-backprop map shaped like ``inputs`` (N, ...).

    Implemented with a backward hook on every ``nn.ReLU`` module (functional ``F.relu`` calls
    are not seen, so the model must use ``nn.ReLU(inplace=False)`` modules — ValueError
    otherwise); the hooks are removed afterwards.
    """
    from .._torch import check_model

    check_model(model)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("model has no nn.ReLU modules: guided backprop needs ReLUs as modules "
                         "(replace F.relu calls by nn.ReLU layers)")
    if any(m.inplace for m in relus):
        raise ValueError("guided_backprop needs ReLU(inplace=False) modules")
    with hooks(relus, backward=_positive_grad):
        return gradient(model, inputs, target)


# ------------------------------------------------------------------ integrated gradients (lecture 04)
RULES = QUADRATURE_RULES


def ig_points(n_steps: int, method: str = "gausslegendre"):
    """Deprecated: ``_torch.quadrature(n_steps, method)`` (tensors in a chosen dtype). Returns the
    float64 points and weights as two Python lists (alphas, weights)."""
    warnings.warn("ig_points is deprecated; use xaicourse._torch.quadrature(n_steps, method, dtype=...)",
                  DeprecationWarning, stacklevel=2)
    a, w = quadrature(n_steps, method, dtype=torch.float64)
    return a.tolist(), w.tolist()


def baseline_set(baselines, x: torch.Tensor, *, sigma: float = 2.0, seed: int = 0) -> list[torch.Tensor]:
    """``baselines`` as a list of tensors shaped like ``x`` (a list/tuple = a set of baselines)."""
    if isinstance(baselines, (list, tuple)):
        if not baselines:
            raise ValueError("baselines: an empty list; give at least one baseline")
        return [resolve_baselines(x, b, sigma=sigma, seed=seed, name=f"baselines[{i}]") for i, b in enumerate(baselines)]
    return [resolve_baselines(x, baselines, sigma=sigma, seed=seed)]


def integrated_gradients(model: nn.Module, inputs: torch.Tensor, target=None, baselines=None, n_steps: int = 50,
                         method: str = "gausslegendre", batch_size: int | None = None,
                         return_convergence_delta: bool = False, *, sigma: float = 2.0, seed: int = 0,
                         create_graph: bool = False, **old):
    """Integrated gradients (Sundararajan et al. 2017), shaped like ``inputs`` (N, ...).

    IG_i(x) = (x_i − x′_i) ∫₀¹ ∂f_t(x′ + α(x − x′))/∂x_i dα
            ≈ (x_i − x′_i) Σ_k w_k ∂f_t(x′ + α_k(x − x′))/∂x_i

    with the quadrature (α_k, w_k) of ``method`` (``_torch.quadrature``; captum's numbers, in the
    inputs' dtype). By the fundamental theorem of calculus for line integrals
    Σ_i IG_i = f_t(x) − f_t(x′) (completeness); the quadrature error shows as the convergence delta.

    target: int, one per sample, or None (the predicted class).
    baselines: the reference x′ — None / "zero" (a black image), a number (constant image), a
    tensor broadcastable to the inputs, "blur" (std ``sigma``), "noise" (``seed``), "mean"
    (``_torch.resolve_baselines``), or a list/tuple of such: a *set* of baselines, the result
    being the mean of IG over the set (expected gradients, Erion et al. 2021, with the
    expectation over baselines taken exactly; completeness then reads
    Σ_i IG_i = f_t(x) − mean_b f_t(x′_b)).
    n_steps: quadrature points n ≥ 1 (≥ 2 for the trapezoid). batch_size: at most this many
    interpolated inputs per forward/backward pass (None: all N·n at once; ``internal_batch_size``
    is its deprecated name). create_graph: keep the graph (attacks on explanations).
    return_convergence_delta: also return δ = Σ_i IG_i − (f_t(x) − f_t(x′)) per sample, shape (N,).

    Same numbers as ``captum.attr.IntegratedGradients(model).attribute(inputs, baselines, target,
    n_steps=n_steps, method=method)`` (interpolated inputs laid out step-major, like captum).
    """
    deprecated_kwargs("integrated_gradients", old, {"internal_batch_size": "batch_size"})
    if old:
        unknown = set(old) - {"batch_size"}
        if unknown:
            raise TypeError(f"integrated_gradients got unexpected keyword arguments {sorted(unknown)}")
        if batch_size is not None:
            raise TypeError("integrated_gradients: give batch_size= only")
        batch_size = old["batch_size"]
    x = check_inputs(model, inputs)
    x = x if (create_graph and x.requires_grad) else x.detach()
    alphas, weights = quadrature(n_steps, method, dtype=x.dtype, device=x.device)
    check_bool("return_convergence_delta", return_convergence_delta)
    check_bool("create_graph", create_graph)
    N, n = len(x), len(alphas)
    ibs = N * n if batch_size is None else check_int("batch_size", batch_size, min=1)
    per = max(1, ibs // N)                                    # steps per pass
    base_list = baseline_set(baselines, x.detach(), sigma=sigma, seed=seed)
    total = torch.zeros_like(x)
    deltas = torch.zeros(N, dtype=x.dtype, device=x.device)
    with eval_on(model, freeze=True):
        with torch.no_grad():
            fx = scores(model, x)
        t = resolve_target(model, x, target, outputs=fx)
        fx = select(fx, t)
        for b in base_list:
            diff = x - b
            grads = torch.zeros_like(x)
            for s in range(0, n, per):
                a, w = alphas[s:s + per], weights[s:s + per]
                k = len(a)
                path = (torch.cat([b + a_k * diff for a_k in a.tolist()]) if create_graph
                        else interpolation_path(x, b, a))
                g = target_gradient(model, path, t.repeat(k), create_graph=create_graph)
                grads = grads + (g.reshape(k, N, *x.shape[1:]) * w.view(-1, *([1] * x.dim()))).sum(0)
            attr = grads * diff
            total = total + attr
            if return_convergence_delta:
                with torch.no_grad():
                    fb = select(scores(model, b), t)
                deltas += attr.detach().reshape(N, -1).sum(1) - (fx - fb)
    total = total / len(base_list)
    deltas /= len(base_list)
    total = total.to(inputs.device)
    return (total, deltas.to(inputs.device)) if return_convergence_delta else total


def blurred_baseline(inputs: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """A Gaussian-blurred copy of ``inputs`` (N, C, H, W): the "blurred image" baseline —
    ``maps.gaussian_blur(inputs, sigma)`` (= ``resolve_baselines(inputs, "blur", sigma=sigma)``).

    It removes fine detail (edges, strokes) but keeps the average brightness, so IG then asks
    "what did the sharp details add?".
    """
    from ..maps import gaussian_blur

    x = as_tensor("inputs", inputs, ndim=4, floating=True, finite=True)
    return gaussian_blur(x, sigma)


def uniform_noise_baseline(inputs: torch.Tensor, low: float = 0.0, high: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Uniform noise U(low, high) shaped like ``inputs`` (seeded): the "noise" baseline
    (low=0, high=1: ``resolve_baselines(inputs, "noise", seed=seed)``)."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor batch, got {type(inputs).__name__}")
    x = as_tensor("inputs", inputs, ndim=(2, 4), floating=True)
    low, high = check_real("low", low), check_real("high", high)
    if not high > low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, min=0))
    return (low + (high - low) * torch.rand(x.shape, generator=g, dtype=x.dtype)).to(x.device)


def sample_baselines(inputs: torch.Tensor = None, k: int = 10, seed: int = 0, **old) -> list[torch.Tensor]:
    """``k`` rows of ``inputs`` (M, ...) drawn without replacement (seeded), as a list of (1, ...)
    tensors — a set of baselines for ``integrated_gradients`` (expected gradients). (``data=`` is
    the deprecated name of ``inputs``.)"""
    if old:
        deprecated_kwargs("sample_baselines", old, {"data": "inputs"})
        if set(old) != {"inputs"}:
            raise TypeError(f"sample_baselines got unexpected keyword arguments {sorted(set(old) - {'inputs'})}")
        inputs = old["inputs"]
    d = as_tensor("inputs", inputs, min_ndim=2, floating=True)
    k = check_int("k", k, min=1)
    if k > len(d):
        raise ValueError(f"k must be ≤ the number of rows of inputs ({len(d)}, shape {tuple(d.shape)}), got {k}")
    g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, min=0))
    idx = torch.randperm(len(d), generator=g)[:k]
    return [d[i:i + 1] for i in idx.tolist()]
