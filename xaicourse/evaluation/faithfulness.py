"""Lecture 08 · faithfulness by perturbation: is the map right about what the model uses?

* ``deletion_curve`` / ``insertion_curve`` (Petsiuk et al. 2018): remove / add features
  most-relevant-first and follow the target's score; ``curve_auc`` integrates a curve;
* ``aopc`` (Samek et al. 2017): mean output drop along the path, MoRF or LeRF order;
* ``input_reduction``: drop the least relevant features of a *given* map while the prediction
  holds, report how few remain (a one-shot ranking: a score for the map);
* ``iterative_input_reduction`` (Feng et al. 2018, as the paper does it): remove the least
  important feature, re-rank the rest by leave-one-out importance on the reduced input, repeat
  while the prediction holds;
* ``random_attribution``: the control every metric must beat.

A removed feature is replaced by the reference x₀ = ``baselines`` (``_torch.resolve_baselines``: a
number for a constant image, a tensor, or "blur", "noise", "zero", "mean"). The default is
"blur" (a Gaussian-blurred copy, std ``sigma`` px), as lecture 08 teaches: a black (zero) fill
draws sharp, out-of-distribution edges and leaves the object's silhouette behind, so it misleads
(lecture 08 §1 measures it). A blurred fill needs images (N, C, H, W); other inputs pass
``baselines=`` explicitly (a number, a tensor, "noise", "zero" or "mean"). Lecture 08 itself uses
grey (``baselines=0.5``), the course CNN's neutral input.

Images (N, C, H, W): the attribution is reduced to one value per pixel (``feature_map``) and a
pixel is removed in all channels at once. Other shapes (N, ...) are used element by element.
"""
from __future__ import annotations

import torch

from .._torch import (check_inputs, maybe_eval, resolve_target, scores, select, threads_for, torch_threads,
                      resolve_baselines)
from .._validate import as_tensor, check_choice, check_int, check_real
from ._common import FILLS, feature_map, legacy, reference

__all__ = ["deletion_curve", "insertion_curve", "curve_auc", "aopc", "input_reduction", "iterative_input_reduction",
           "random_attribution",
           "fill_baseline", "OUTPUTS"]

OUTPUTS = ("prob", "logit")


def fill_baseline(inputs: torch.Tensor, fill: str = "constant", value: float = 0.0, sigma: float = 2.0,
                  seed: int = 0) -> torch.Tensor:
    """Deprecated: ``_torch.resolve_baselines(inputs, baselines, sigma=, seed=)`` (also
    ``evaluation.resolve_baselines``) — ``fill="constant", value=v`` is ``baselines=v``."""
    import warnings

    warnings.warn("fill_baseline(inputs, fill, value) is deprecated; use "
                  "xaicourse.evaluation.resolve_baselines(inputs, baselines) with baselines=v for a constant, "
                  "'blur' or 'noise'", DeprecationWarning, stacklevel=2)
    # a batch of feature vectors (N, D) or of images (N, C, H, W): with no model to run, these are the
    # two shapes the old metrics took, so a missing or an extra leading dimension is refused here
    x = as_tensor("inputs", inputs, ndim=(2, 4),
                  dtype=None if isinstance(inputs, torch.Tensor) else torch.get_default_dtype())
    check_choice("fill", fill, FILLS)
    return resolve_baselines(x, check_real("value", value) if fill == "constant" else fill, sigma=sigma, seed=seed)


def _curve(fn_name, model, inputs, target, attributions, order, insert, n_steps, baselines, sigma, seed, output,
           absolute, batch_size):
    """Scores along a removal (or insertion) path: fractions (S+1,), scores (N, S+1)."""
    x = check_inputs(model, inputs).detach()
    rel = feature_map(attributions, x.shape, absolute).to(x.device).flatten(1)
    steps = check_int("n_steps", n_steps, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    check_choice("output", output, OUTPUTS)
    check_choice("order", order, ("morf", "lerf"))
    x0 = reference(x, baselines, sigma, seed)
    N, D = rel.shape
    # rank[n, d] = position of feature d in the removal order (0 = removed first); ties by index
    key = -rel if order == "morf" else rel
    rank = torch.empty_like(key, dtype=torch.long)
    rank.scatter_(1, torch.sort(key, dim=1, stable=True).indices,
                  torch.arange(D, device=x.device).expand(N, D).contiguous())
    counts = torch.round(torch.linspace(0, D, steps + 1, dtype=torch.float64)).long().to(x.device)
    fr = counts.double().cpu() / D
    out = torch.empty(N, steps + 1, dtype=torch.float64)
    with maybe_eval(model), torch.no_grad(), \
            torch_threads(threads_for(x.device, x[0].numel() * min(batch_size, steps + 1))):
        t = resolve_target(model, x, target)
        for n in range(N):
            changed = rank[n][None] < counts[:, None]                         # (S+1, D): feature already moved
            m = changed.reshape(steps + 1, *([1] if x.dim() == 4 else []), *x.shape[2 if x.dim() == 4 else 1:])
            m = m.to(x.dtype)
            src, dst = (x0[n], x[n]) if insert else (x[n], x0[n])
            for s in range(0, steps + 1, batch_size):
                mm = m[s:s + batch_size]
                xs = src[None] * (1 - mm) + dst[None] * mm
                o = scores(model, xs)
                o = torch.softmax(o, 1) if output == "prob" else o
                out[n, s:s + batch_size] = select(o, t[n].expand(len(mm))).double().cpu()
    return fr, out


def deletion_curve(model, inputs: torch.Tensor, target, attributions, *, n_steps: int = 20, baselines="blur",
                   sigma: float = 2.0, seed: int = 0, output: str = "prob", absolute: bool = False,
                   batch_size: int = 64, **deprecated):
    """The deletion curve: remove features most relevant first and watch the target's score fall.

    With r = the feature map of ``attributions`` (``feature_map``; |·| with ``absolute``), order the D
    features by r descending; x⁽ᵏ⁾ = x with its k most relevant features replaced by x₀
    (``baselines``, see the module docstring; default a blurred copy). The curve is
    s_k = f_t(x⁽ᵏ⁾) at k = round(j·D/n_steps), j = 0 … n_steps. A faithful map makes the score drop
    fast: small ``curve_auc``.

    model: an nn.Module (evaluated in eval mode, left as found) or any callable inputs → scores.
    inputs: (N, C, H, W) or (N, D); attributions: same shape (or (N, H, W) for images).
    target: int, one per sample, or None (the predicted class). output: "prob" (softmax
    probability of the target) or "logit". Deprecated: ``steps=`` (``n_steps``), ``fill=``/``value=``
    (``baselines``). Returns ``(fractions (n_steps+1,), scores (N, n_steps+1))`` (float64, CPU).
    """
    baselines, n_steps = legacy("deletion_curve", deprecated, baselines=baselines, n_steps=n_steps)
    return _curve("deletion_curve", model, inputs, target, attributions, "morf", False, n_steps, baselines, sigma,
                  seed, output, absolute, batch_size)


def insertion_curve(model, inputs: torch.Tensor, target, attributions, *, n_steps: int = 20, baselines="blur",
                    sigma: float = 2.0, seed: int = 0, output: str = "prob", absolute: bool = False,
                    batch_size: int = 64, **deprecated):
    """The insertion curve: start from x₀ and put back the most relevant features first.

    x⁽ᵏ⁾ = x₀ with the k most relevant features of x restored; s_k = f_t(x⁽ᵏ⁾). A faithful map
    makes the score rise fast: large ``curve_auc``. Petsiuk et al. start from a blurred image
    (the default), so that inserting pixels does not create sharp, out-of-distribution edges.
    Arguments and return value as ``deletion_curve``.
    """
    baselines, n_steps = legacy("insertion_curve", deprecated, baselines=baselines, n_steps=n_steps,
                                fill_default="blur")
    return _curve("insertion_curve", model, inputs, target, attributions, "morf", True, n_steps, baselines, sigma,
                  seed, output, absolute, batch_size)


def curve_auc(fractions, scores) -> torch.Tensor:
    """Area under a curve sampled at ``fractions`` (K,) — increasing, in [0, 1] — by the trapezoid
    rule, per row of ``scores`` (N, K) → (N,) float64 on the CPU.

    A decreasing axis (which the trapezoid rule would turn into a negative area) is refused."""
    f = as_tensor("fractions", fractions, ndim=1).double().cpu()
    s = as_tensor("scores", scores, ndim=2).double().cpu()
    if s.shape[1] != len(f) or len(f) < 2:
        raise ValueError(f"scores (shape {tuple(s.shape)}) need one column per fraction ({len(f)} ≥ 2)")
    if bool((f < 0).any()) or bool((f > 1).any()):
        raise ValueError(f"fractions must lie in [0, 1] (the share of features moved), got values from "
                         f"{float(f.min()):g} to {float(f.max()):g}")
    if bool((f[1:] < f[:-1]).any()) or not bool(f[-1] > f[0]):
        raise ValueError("fractions must increase along the curve (as deletion_curve / insertion_curve return "
                         "them); a decreasing axis would give a negative area — reverse both arrays")
    return torch.trapezoid(s, f, dim=1)


def aopc(model, inputs: torch.Tensor, target, attributions, *, order: str = "morf", n_steps: int = 20,
         baselines="blur", sigma: float = 2.0, seed: int = 0, output: str = "prob", absolute: bool = False,
         batch_size: int = 64, **deprecated) -> torch.Tensor:
    """Area over the perturbation curve (Samek et al. 2017), per sample (N,):

        AOPC = 1/(L+1) Σ_{k=0}^{L} [f_t(x⁽⁰⁾) − f_t(x⁽ᵏ⁾)]

    with x⁽ᵏ⁾ as in ``deletion_curve`` (L = ``n_steps``). order "morf" (most relevant first: large
    AOPC = faithful) or "lerf" (least relevant first: a faithful map keeps the score, AOPC ≈ 0
    or negative). Other arguments as ``deletion_curve``.
    """
    baselines, n_steps = legacy("aopc", deprecated, baselines=baselines, n_steps=n_steps)
    check_choice("order", order, ("morf", "lerf"))
    _, s = _curve("aopc", model, inputs, target, attributions, order, False, n_steps, baselines, sigma, seed, output,
                  absolute, batch_size)
    return (s[:, :1] - s).mean(1)


def input_reduction(model, inputs: torch.Tensor, target, attributions, *, baselines="blur", sigma: float = 2.0,
                    seed: int = 0, absolute: bool = True, step: int = 1, batch_size: int = 256,
                    **deprecated) -> dict:
    """Input reduction with a fixed ranking: remove the least relevant features of ``attributions``
    one by one while the model still predicts ``target``; how few features does the prediction
    need? (A score for the map. Feng et al. 2018 re-rank after every removal instead:
    ``iterative_input_reduction``.)

    With features ordered by relevance ascending (``feature_map``; by |r| with ``absolute``, the
    default: a strongly negative feature matters too), x⁽ᵏ⁾ = x with the k least relevant replaced
    by x₀ (``baselines``, as ``deletion_curve``); k* = the largest k with argmax f(x⁽ʲ⁾) = t for
    every j ≤ k (checked every ``step`` features, 1 ≤ step ≤ D). A good attribution keeps the prediction with
    few features. If the model does not predict ``target`` on x itself, nothing can be removed
    (k* = 0). target: int, one per sample, or None (the predicted class).

    Returns {"remaining": (N,) int64 = D − k*, "fraction": (N,) remaining / D, "n_features": D,
    "reduced": the inputs x⁽ᵏ*⁾}.
    """
    baselines, _ = legacy("input_reduction", deprecated, baselines=baselines)
    x = check_inputs(model, inputs).detach()
    rel = feature_map(attributions, x.shape, absolute).to(x.device).flatten(1)
    N, D = rel.shape
    step = check_int("step", step, min=1, max=D)   # at most one check, after all D features (D = features per sample)
    batch_size = check_int("batch_size", batch_size, min=1)
    x0 = reference(x, baselines, sigma, seed)
    rank = torch.empty(N, D, dtype=torch.long, device=x.device)
    rank.scatter_(1, torch.sort(rel, dim=1, stable=True).indices, torch.arange(D, device=x.device).expand(N, D).contiguous())
    ks = torch.arange(0, D + 1, step, device=x.device)
    if int(ks[-1]) != D:
        ks = torch.cat([ks, torch.tensor([D], device=x.device)])
    kept = torch.zeros(N, dtype=torch.long)
    reduced = x.clone()
    spatial = x.shape[2:] if x.dim() == 4 else x.shape[1:]
    with maybe_eval(model), torch.no_grad(), \
            torch_threads(threads_for(x.device, x[0].numel() * min(batch_size, len(ks)))):
        t = resolve_target(model, x, target)
        for n in range(N):
            best = -1
            for s in range(0, len(ks), batch_size):
                kk = ks[s:s + batch_size]
                m = (rank[n][None] < kk[:, None]).reshape(len(kk), *([1] if x.dim() == 4 else []), *spatial)
                m = m.to(x.dtype)
                xs = x[n][None] * (1 - m) + x0[n][None] * m
                ok = (scores(model, xs).argmax(1) == t[n]).cpu()
                bad = (~ok).nonzero().flatten()
                if len(bad):
                    best = s + int(bad[0]) - 1
                    break
                best = s + len(kk) - 1
            k_star = int(ks[best]) if best >= 0 else 0
            kept[n] = D - k_star
            m = (rank[n] < k_star).reshape(*([1] if x.dim() == 4 else []), *spatial).to(x.dtype)
            reduced[n] = x[n] * (1 - m) + x0[n] * m
    return {"remaining": kept, "fraction": kept.double() / D, "n_features": D, "reduced": reduced}


def iterative_input_reduction(model, inputs: torch.Tensor, target=None, *, feature_mask=None, baselines="blur",
                              sigma: float = 2.0, seed: int = 0, batch_size: int = 256) -> dict:
    """Input reduction as Feng et al. (2018) define it: starting from x, repeatedly remove the
    *least important* remaining feature — the one whose removal lowers the target's probability
    least (leave-one-out importance g(i | x') = p_t(x') − p_t(x' without i), recomputed on the
    current reduced input x' after every removal) — as long as the model still predicts ``target``;
    stop when every candidate removal would change the prediction (or nothing is left).

    feature_mask: None (every element of a sample is a feature; for images every pixel, all
    channels together) or an int tensor (H, W) (or shaped like one sample) of group ids 0 … G−1:
    a group is removed at once (e.g. ``attribution.shapley.patch_mask(H, W, 4)``). A removed
    feature is replaced by x₀ = ``baselines`` (as ``deletion_curve``). Each step costs one forward
    pass per remaining feature (batched by ``batch_size``): keep G small (≲ 300).
    target: int, one per sample, or None (the predicted class). If the model does not predict
    ``target`` on x itself, nothing is removed.

    Returns {"remaining": (N,) int64 features kept, "n_features": G, "kept": (N, G) bool,
    "reduced": the reduced inputs, "prob": (N,) p_t on them, "prob_path": list of N float64
    tensors — p_t after 0, 1, 2, … removals}.
    """
    x = check_inputs(model, inputs).detach()
    batch_size = check_int("batch_size", batch_size, min=1)
    x0 = reference(x, baselines, sigma, seed)
    spatial = x.shape[2:] if x.dim() == 4 else x.shape[1:]
    if feature_mask is None:
        groups = torch.arange(int(torch.tensor(spatial).prod())).reshape(spatial)
    else:
        groups = as_tensor("feature_mask", feature_mask, floating=False).detach().cpu()
        if groups.is_floating_point() or groups.dtype == torch.bool:
            raise TypeError(f"feature_mask must hold integer group ids, got dtype {groups.dtype}")
        if tuple(groups.shape) != tuple(spatial):
            raise ValueError(f"feature_mask has shape {tuple(groups.shape)}; expected {tuple(spatial)} "
                             f"(one group id per pixel / element of a sample)")
        if int(groups.min()) < 0 or sorted(groups.unique().tolist()) != list(range(int(groups.max()) + 1)):
            raise ValueError("feature_mask must number its groups 0, 1, …, G−1 (every id used)")
    G = int(groups.max()) + 1
    onehot = (groups.flatten()[None] == torch.arange(G)[:, None]).to(x.device)       # (G, D)
    shape1 = (1, *spatial) if x.dim() == 4 else tuple(spatial)

    def removed_to_mask(rem):  # (B, G) bool → (B, [1,] *spatial) float
        m = (rem.to(x.dtype) @ onehot.to(x.dtype)).clamp(max=1)
        return m.reshape(len(rem), *shape1)

    kept_all = torch.ones(len(x), G, dtype=torch.bool)
    reduced, probs, paths = x.clone(), torch.zeros(len(x), dtype=torch.float64), []
    with maybe_eval(model), torch.no_grad(), torch_threads(threads_for(x.device, x[0].numel() * min(batch_size, G))):
        t = resolve_target(model, x, target)
        for n in range(len(x)):
            removed = torch.zeros(G, dtype=torch.bool, device=x.device)

            def run(rem):
                out = []
                for s in range(0, len(rem), batch_size):
                    m = removed_to_mask(rem[s:s + batch_size])
                    out.append(scores(model, x[n][None] * (1 - m) + x0[n][None] * m))
                return torch.cat(out)

            z = run(removed[None])
            p = torch.softmax(z.double(), 1)[0, int(t[n])]
            path = [float(p)]
            ok_start = int(z.argmax(1)[0]) == int(t[n])
            while ok_start and not bool(removed.all()):
                cand = (~removed).nonzero().flatten()
                rem = removed[None].repeat(len(cand), 1)
                rem[torch.arange(len(cand)), cand] = True
                z = run(rem)
                pc = torch.softmax(z.double(), 1)[:, int(t[n])]
                pc = torch.where(z.argmax(1) == t[n], pc, torch.full_like(pc, -1.0))
                best = int(pc.argmax())
                if float(pc[best]) < 0:      # every removal changes the prediction: stop
                    break
                removed[cand[best]] = True
                path.append(float(pc[best]))
            m = removed_to_mask(removed[None])
            reduced[n] = (x[n][None] * (1 - m) + x0[n][None] * m)[0]
            kept_all[n] = ~removed.cpu()
            probs[n] = path[-1]
            paths.append(torch.tensor(path, dtype=torch.float64))
    return {"remaining": kept_all.sum(1), "n_features": G, "kept": kept_all, "reduced": reduced, "prob": probs,
            "prob_path": paths}


def random_attribution(model, inputs: torch.Tensor, target=None, *, seed: int = 0) -> torch.Tensor:
    """The control every metric must beat: U(0, 1) noise shaped like ``inputs`` (seeded; ignores the
    model, so it also "passes" no sanity check: its maps do not change when the model does).
    ``target`` is checked like everywhere but not used."""
    x = check_inputs(model, inputs)
    g = torch.Generator().manual_seed(check_int("seed", seed, min=0))
    if target is not None:
        resolve_target(model, x, target)
    return torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
