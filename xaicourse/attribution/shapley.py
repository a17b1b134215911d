"""Shapley values (lecture 04): the game-theory answer to "how much did each feature add?".

A *game* on features F = {1 … d}: v(S) = f_t(x with the features in S kept and the others set
to the baseline x′). The Shapley value of feature i averages its marginal contribution over
all orders in which the features can be switched on:

    φ_i = Σ_{S ⊆ F∖{i}} |S|! (d − |S| − 1)! / d! · (v(S ∪ {i}) − v(S))
        = E_π [ v(pre_π(i) ∪ {i}) − v(pre_π(i)) ],   π a uniformly random permutation.

It is the unique attribution with efficiency (Σ φ_i = v(F) − v(∅) = f_t(x) − f_t(x′)),
symmetry, dummy (a feature that never changes v gets 0) and linearity (φ of v + w is
φ(v) + φ(w)).

* ``shapley_exact`` — the first formula, every coalition (2^d model evaluations; d ≤ 12).
* ``shapley_sampling`` — the second, with ``n_samples`` random permutations (Castro et al.
  2009; captum ``ShapleyValueSampling``): each permutation costs d + 1 evaluations and gives
  an unbiased estimate whose efficiency holds exactly (a telescoping sum).

Features are single input entries or groups given by ``feature_mask`` (ints 0 … d−1 of a shape
broadcastable to the inputs: e.g. (H, W) superpixels shared by the channels — see
``patch_mask`` and ``superpixel_mask``). Shapley sampling with superpixels is KernelSHAP's
target and LIME with the Shapley kernel; LIME's own kernel gives a different weighting.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .._torch import check_inputs, maybe_eval, resolve_baselines, resolve_target, scores, select
from .._validate import check_bool, check_int

__all__ = ["shapley_sampling", "shapley_exact", "patch_mask", "superpixel_mask"]

MAX_EXACT_FEATURES = 12


def _feature_mask(feature_mask, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The mask broadcast to x's shape (long) and the number of features d."""
    if feature_mask is None:
        d = math.prod(x.shape[1:])
        return torch.arange(d, device=x.device).reshape(1, *x.shape[1:]).expand_as(x), d
    if not isinstance(feature_mask, torch.Tensor):
        raise TypeError(f"feature_mask must be an integer tensor, got {type(feature_mask).__name__}")
    if feature_mask.dtype.is_floating_point or feature_mask.dtype == torch.bool:
        raise TypeError(f"feature_mask must hold integer feature ids, got dtype {feature_mask.dtype}")
    m = feature_mask.to(x.device).long()
    while m.dim() < x.dim():
        m = m[None]
    try:
        m = m.expand_as(x)
    except RuntimeError:
        raise ValueError(f"feature_mask of shape {tuple(feature_mask.shape)} does not broadcast to inputs "
                         f"{tuple(x.shape)}; use (H, W), (C, H, W), (1, ...) or the inputs' shape") from None
    ids = torch.unique(m)
    d = int(ids.max()) + 1
    if int(ids.min()) != 0 or len(ids) != d:
        raise ValueError(f"feature_mask must use every id 0 … d−1 (got ids {ids.tolist()[:10]}…); relabel with "
                         f"torch.unique(mask, return_inverse=True)[1]")
    return m, d


def _values(model, x, b, t, coalitions, mask, batch_size):
    """v(S) for each coalition row (K, d) of booleans → (K, N) outputs f_t(x_S, x′_rest)."""
    K, N = len(coalitions), len(x)
    fdt = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
    out = torch.empty(K, N, dtype=fdt, device=x.device)
    per = max(1, batch_size // N)
    for s in range(0, K, per):
        c = coalitions[s:s + per]                                    # (k, d)
        keep = c[:, mask]                                            # (k, N, ...) gathered per entry
        z = torch.where(keep, x[None], b[None]).reshape(-1, *x.shape[1:])
        out[s:s + len(c)] = select(scores(model, z), t.repeat(len(c))).reshape(len(c), N)
    return out


def shapley_sampling(model: nn.Module, inputs: torch.Tensor, target=None, baselines=None, n_samples: int = 25,
                     feature_mask=None, seed: int = 0, batch_size: int = 4096, *, sigma: float = 2.0,
                     progress: bool = False) -> torch.Tensor:
    """Shapley values by permutation sampling, shaped like ``inputs`` (N, ...).

    For each of ``n_samples`` permutations π (``torch.randperm(d)`` from a generator seeded with
    ``seed``, the same π for every sample), switch the features on one by one in the order π
    starting from the baseline, and credit each with the change of f_t; average over π. Every
    entry of a feature gets the feature's value (like captum). Cost: n_samples·(d + 1) evaluations.

    baselines: None (zeros), a number, a tensor or a name as ``_torch.resolve_baselines``.
    feature_mask: None (every entry its own feature) or ints 0 … d−1 broadcastable to inputs.
    batch_size: images per model call. model: an nn.Module or any callable returning (N, n_outputs)
    scores (no gradients are taken: integer inputs work too). target None = the predicted class.
    progress: a tqdm bar over the permutations.

    With ``torch.manual_seed(seed)`` before ``captum.attr.ShapleyValueSampling(model).attribute(
    inputs, baselines, target, feature_mask=..., n_samples=n_samples)`` captum draws the same
    permutations and the results agree.
    """
    x = check_inputs(model, inputs, allow_int=True).detach()
    n_samples = check_int("n_samples", n_samples, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, min=0))
    b = resolve_baselines(x, baselines, sigma=sigma, seed=seed)
    mask, d = _feature_mask(feature_mask, x)
    N = len(x)
    fdt = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
    phi = torch.zeros(d, N, dtype=fdt, device=x.device)
    from tqdm.auto import tqdm

    with maybe_eval(model), torch.no_grad():
        t = resolve_target(model, x, target)
        steps = torch.tril(torch.ones(d + 1, d, dtype=torch.bool, device=x.device), diagonal=-1)  # row k: first k on
        for _ in tqdm(range(n_samples), disable=not check_bool("progress", progress), desc="Shapley"):
            perm = torch.randperm(d, generator=g).to(x.device)
            coalitions = torch.zeros_like(steps)
            coalitions[:, perm] = steps                                # row k: features perm[:k] on
            v = _values(model, x, b, t, coalitions, mask, batch_size)  # (d + 1, N)
            phi[perm] += v[1:] - v[:-1]
    phi /= n_samples
    return phi.T.gather(1, mask.reshape(N, -1)).reshape(x.shape).to(inputs.device if isinstance(inputs, torch.Tensor) else x.device)


def shapley_exact(model: nn.Module, inputs: torch.Tensor, target=None, baselines=None, feature_mask=None,
                  batch_size: int = 4096, *, sigma: float = 2.0, seed: int = 0) -> torch.Tensor:
    """Exact Shapley values over all 2^d coalitions (d ≤ 12 features), shaped like ``inputs``.

    φ_i = Σ_{S ∌ i} |S|!(d−|S|−1)!/d! (v(S∪{i}) − v(S)); efficiency Σ_i φ_i = f_t(x) − f_t(x′)
    holds to float rounding (use a float64 model to see 1e-12). feature_mask: required unless
    the inputs have ≤ 12 entries — superpixels or patches (``patch_mask``). model, target and
    baselines as for ``shapley_sampling``.
    """
    x = check_inputs(model, inputs, allow_int=True).detach()
    batch_size = check_int("batch_size", batch_size, min=1)
    b = resolve_baselines(x, baselines, sigma=sigma, seed=seed)
    mask, d = _feature_mask(feature_mask, x)
    if d > MAX_EXACT_FEATURES:
        raise ValueError(f"shapley_exact enumerates 2^d coalitions: d must be ≤ {MAX_EXACT_FEATURES}, got d = {d} "
                         f"features; group entries with feature_mask (patch_mask / superpixel_mask) or use "
                         f"shapley_sampling")
    N = len(x)
    codes = torch.arange(2 ** d, device=x.device)
    coalitions = (codes[:, None] >> torch.arange(d, device=x.device)) & 1 == 1      # (2^d, d)
    size = coalitions.sum(1)
    w = torch.tensor([math.factorial(s) * math.factorial(d - s - 1) / math.factorial(d) if s < d else 0.0
                      for s in range(d + 1)], dtype=torch.float64, device=x.device)
    with maybe_eval(model), torch.no_grad():
        t = resolve_target(model, x, target)
        v = _values(model, x, b, t, coalitions, mask, batch_size).to(torch.float64)   # (2^d, N)
    phi = torch.zeros(d, N, dtype=torch.float64, device=x.device)
    for i in range(d):
        without = ~coalitions[:, i]                                   # S ∌ i, and S ∪ {i} = code + 2^i
        s_codes = codes[without]
        phi[i] = (w[size[without]][:, None] * (v[s_codes + 2 ** i] - v[s_codes])).sum(0)
    fdt = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
    return phi.T.to(fdt).gather(1, mask.reshape(N, -1)).reshape(x.shape).to(inputs.device if isinstance(inputs, torch.Tensor) else x.device)


def patch_mask(height: int, width: int, patch: int) -> torch.Tensor:
    """Square patches of ``patch`` pixels as a feature mask (H, W) with ids 0 … d−1, row-major."""
    height, width = check_int("height", height, min=1, max=10_000), check_int("width", width, min=1, max=10_000)
    patch = check_int("patch", patch, min=1, max=max(height, width))
    rows, cols = torch.arange(height) // patch, torch.arange(width) // patch
    return rows[:, None] * (int(cols.max()) + 1) + cols[None, :]


def superpixel_mask(image: torch.Tensor, n_segments: int = 10, compactness: float = 10.0) -> torch.Tensor:
    """SLIC superpixels of one image (C, H, W) as a feature mask (H, W), ids 0 … d−1
    (``lime.segment_image``; fewer segments than asked is normal)."""
    from .._validate import check_real
    from .lime import segment_image

    n_segments = check_int("n_segments", n_segments, min=1)
    compactness = check_real("compactness", compactness, min=0.0, min_inclusive=False)
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be one (C, H, W) tensor, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    return torch.as_tensor(segment_image(image, "slic", n_segments=n_segments, compactness=compactness))
