"""Hidden checks of exercise 08 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own images, attributions, step counts, fill values, masks and map sizes per
student and computes the reference here, from scratch (float64). Both tasks ask for something the
libraries do not return: the predicted class along the deletion path (``xaicourse.evaluation`` and
Quantus's ``PixelFlipping`` give the target's score only) and the pixel each map points at
(``pointing_game`` / Quantus's ``PointingGame`` give hit or miss only). The sanity check (cascading
model randomisation, Adebayo et al. 2018) draws the layers, seed, images and targets per student;
``cascading_randomization`` and Quantus's ``ModelParameterRandomisation`` are ruled out.

Attributions are drawn on a dyadic grid (multiples of 1/4, plus distinct multiples of 1/1024 where
the order must be strict), so the channel sums are exact in float32 and float64 alike: the pixel
order (ties broken by index, as the task says) does not depend on the student's dtype.
"""
import copy
import math

import torch
from torch import nn

from xaicourse.checking import Failed, close, task

RULED_OUT = ["xaicourse.evaluation", "xaicourse.maps", "xaicourse.metrics", "xaicourse.widgets", "quantus", "captum"]
FORBIDDEN = {"deletion_answer": RULED_OUT, "pointing_answer": RULED_OUT, "sanity_answer": RULED_OUT}

PROB_ATOL = 1e-5
"""Probabilities: a float32 forward pass is good to ~1e-7; 1e-5 leaves two orders of margin."""
LOGIT_TIE = 1e-4
"""A predicted class is only required where the reference's two largest logits differ by more than
this (float32 logits are good to ~1e-6); within it either of the two classes is accepted."""


def _cnn():
    """The notebook's model: the course's shapes CNN (32×32 RGB, 4 classes, cached) and its split."""
    from xaicourse.models import course_model

    model, split, _ = course_model("shapes", progress=False)
    return model.eval(), split


def prepare():
    _cnn()


# ----------------------------------------------------------------------------- references
def _counts(D, steps):
    return [round(j * D / steps) for j in range(steps + 1)]


def _no_half(D, steps):
    """No j·D/steps lands on a half (where round-half-even and round-half-up differ)."""
    return all(abs((j * D / steps) % 1 - 0.5) > 1e-6 for j in range(steps + 1))


def _deletion(model, x, target, attribution, steps, fill):
    """(probs, logits) along the deletion path, float64."""
    m = copy.deepcopy(model).double().eval()
    x = x.double()
    r = attribution.double().sum(0).flatten()
    order = torch.sort(-r, stable=True).indices
    D = r.numel()
    xs = []
    for k in _counts(D, steps):
        removed = torch.zeros(D, dtype=torch.bool)
        removed[order[:k]] = True
        mask = removed.reshape(1, *x.shape[1:])
        xs.append(torch.where(mask, torch.full_like(x, fill), x))
    with torch.no_grad():
        logits = m(torch.stack(xs))
    return torch.softmax(logits, 1)[:, int(target)], logits


def _auc(scores, D, steps):
    fr = torch.tensor([k / D for k in _counts(D, steps)], dtype=torch.float64)
    return float(torch.trapezoid(torch.as_tensor(scores, dtype=torch.float64), fr))


def _grid_attribution(g, shape, distinct):
    """Multiples of 1/4 (many exact ties in the channel sum); ``distinct``: plus a permutation of
    the pixels / 1024 in channel 0, so that every pixel's sum differs (exactly)."""
    a = torch.randint(-6, 7, shape, generator=g).double() / 4
    if distinct:
        C, H, W = shape
        a[0] += (torch.randperm(H * W, generator=g).double() / 1024).reshape(H, W)
    return a


def _check_preds(got, logits, what):
    got = torch.as_tensor(got)
    if tuple(got.shape) != (len(logits),):
        raise Failed(f"{what}: preds has shape {tuple(got.shape)}, expected ({len(logits)},)")
    if got.is_floating_point() and not bool((got == got.round()).all()):
        raise Failed(f"{what}: preds must be class indices (integers)")
    top2 = logits.topk(2, dim=1)
    for j in range(len(logits)):
        ok = {int(top2.indices[j, 0])}
        if float(top2.values[j, 0] - top2.values[j, 1]) <= LOGIT_TIE:
            ok.add(int(top2.indices[j, 1]))
        if int(got[j]) not in ok:
            raise Failed(f"{what}: preds[{j}] = {int(got[j])}, but the model predicts class "
                         f"{int(top2.indices[j, 0])} for x^({j})")


def _check_curve(k, model, spec, x, target, attribution, steps, fill, what):
    want_p, logits = _deletion(model, x, target, attribution, steps, fill)
    res, info = k.call("deletion_scores", spec, x, target, attribution, steps=steps, fill_value=fill, meta=True)
    if not isinstance(res, (tuple, list)) or len(res) != 2:
        raise Failed("deletion_scores must return a pair (probs, preds)")
    probs, preds = res
    close(probs, want_p, atol=PROB_ATOL, what=f"probs, {what}")
    _check_preds(preds, logits, f"preds, {what}")
    if any(i["requires_grad"] for i in info):
        raise Failed("deletion_scores must return tensors that do not require grad")
    return probs


# ----------------------------------------------------------------------------- the tasks
@task("deletion_tests")
def deletion(k):
    rng = k.rng("deletion")
    g = k.generator("deletion")
    cnn, split = _cnn()
    spec = k.module(cnn)
    idx = rng.choice(len(split.X_test), 3, replace=False)
    plans = [(16, 0.5, False), (int(k.choice([7, 12, 24], "s2")), 0.0, True),
             (int(k.choice([10, 20, 32], "s3")), float(rng.choice([0.25, 0.5, 0.75])), False)]
    for i, (steps, fill, distinct) in enumerate(plans):
        x = split.X_test[int(idx[i])]
        a = _grid_attribution(g, tuple(x.shape), distinct).float()
        target = int(split.y_test[int(idx[i])]) if i != 1 else int(rng.integers(4))
        D = x[0].numel()
        probs = _check_curve(k, cnn, spec, x, target, a, steps, fill,
                             f"test image {int(idx[i])}, steps={steps}, fill_value={fill}"
                             + ("" if distinct else " (tied scores)"))
        got = k.call("deletion_auc", probs, D, steps)
        close(got, _auc(probs, D, steps), atol=1e-6, shape=False, what=f"deletion_auc(·, {D}, {steps})")
    # a linear model on non-square 12×20 images (D = 240), float64 attribution
    H, W = 12, 20
    lin = nn.Linear(3 * H * W, 4)
    with torch.no_grad():
        lin.weight.copy_(0.2 * torch.randn(4, 3 * H * W, generator=g))
        lin.bias.copy_(torch.randn(4, generator=g))
    seq = nn.Sequential(nn.Flatten(), lin)
    x = torch.rand(3, H, W, generator=g)
    steps = int(k.choice([s for s in (9, 11, 14, 18, 30) if _no_half(H * W, s)], "lin"))
    a = _grid_attribution(g, (3, H, W), True)
    _check_curve(k, seq, k.sequential(nn.Flatten(), lin), x, int(rng.integers(4)), a, steps, 0.25,
                 f"a linear model on a 12×20 image, steps={steps}")
    # the AUC on its own: this student's scores, D / steps not an integer (never a half: see _no_half)
    for D in (256, 240):
        steps = int(k.choice([s for s in (5, 7, 9, 11, 13) if _no_half(D, s)], f"auc{D}"))
        s = torch.rand(steps + 1, generator=g)
        close(k.call("deletion_auc", s, D, steps), _auc(s, D, steps), atol=1e-6, shape=False,
              what=f"deletion_auc(scores, {D}, {steps})")


def _pointing(a, masks):
    r = a.double().abs().sum(1)
    W = r.shape[-1]
    idx = r.flatten(1).argmax(1)
    return masks.flatten(1)[torch.arange(len(idx)), idx].double(), torch.stack([idx // W, idx % W], 1)


def _pointing_inputs(k, salt, N, C, H, W):
    """Grid attributions whose |·|-sum has one clear maximum per sample (a bump of ±5/4 per channel
    against at most 1 elsewhere), signs mixed so that summing before |·| points elsewhere; masks
    are rectangles, every other one around the bump (a hit), the others with the bump cut out (a miss)."""
    g = k.generator(salt)
    a = torch.randint(-4, 5, (N, C, H, W), generator=g).float() / 4
    masks = torch.zeros(N, H, W, dtype=torch.bool)
    for n in range(N):
        i, j = int(torch.randint(H, (1,), generator=g)), int(torch.randint(W, (1,), generator=g))
        signs = torch.where(torch.arange(C) % 2 == 0, 1.0, -1.0)[torch.randperm(C, generator=g)]
        a[n, :, i, j] = 1.25 * signs
        h, w = int(torch.randint(2, H // 2, (1,), generator=g)), int(torch.randint(2, W // 2, (1,), generator=g))
        if n % 2 == 0:  # a rectangle around the bump: a hit
            top, left = max(0, min(i - h // 2, H - h)), max(0, min(j - w // 2, W - w))
        else:           # anywhere, with the bump cut out: a miss
            top, left = int(torch.randint(H - h + 1, (1,), generator=g)), int(torch.randint(W - w + 1, (1,), generator=g))
        masks[n, top:top + h, left:left + w] = True
        if n % 2 == 1:
            masks[n, i, j] = False
    return a, masks


@task("pointing_tests")
def pointing(k):
    for C, (H, W), N in [(3, k.choice([(12, 16), (16, 12), (10, 14)], "hw"), 6), (1, (9, 13), 4)]:
        a, masks = _pointing_inputs(k, f"pg{C}", N, C, H, W)
        want_hits, want_points = _pointing(a, masks)
        res = k.call("pointing_game", a, masks)
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise Failed("pointing_game must return a pair (hits, points)")
        hits, points = res
        close(points, want_points, atol=0, what=f"points (row, col) of {N} maps {C}×{H}×{W} (r = Σ_c |a|)")
        close(hits, want_hits, atol=0, what=f"hits of {N} maps {C}×{H}×{W}")
    a, masks = _pointing_inputs(k, "empty", 3, 3, 8, 8)
    masks[int(k.rng("empty").integers(3))] = False
    k.raises(ValueError, "pointing_game", a, masks)


# ----------------------------------------------------------------------------- the sanity check
RHO_ATOL = 1e-3
"""Spearman ρ: float32 and float64 maps give the same ρ to ~1e-5 (measured on 40 images, five
layers); ordinal instead of average ranks for the tied zeros moves it by ~1e-2, |·| maps by ~1."""


def _grad_maps(m, x, target):
    xg = x.detach().clone().requires_grad_(True)
    out = m(xg)
    (g,) = torch.autograd.grad(out.gather(1, target[:, None]).sum(), xg)
    return g.sum(1).detach()


def _avg_ranks(v):
    from scipy.stats import rankdata

    return torch.as_tensor(rankdata(v.numpy(), axis=1, method="average"), dtype=torch.float64)


def _spearman(a, b):
    ra, rb = _avg_ranks(a.flatten(1).double()), _avg_ranks(b.flatten(1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def _reset(layer, gen):
    """``layer.reset_parameters()`` (Linear, Conv2d) drawing from ``gen`` instead of the global RNG:
    the grader checks students in parallel threads of one process, which share the global RNG (with
    it, the reference differed between two runs of the same student)."""
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
        if layer.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)


def _cascade(model, layers, x, target, seed):
    """The reference: layers re-initialised in float32 (the stream the student's copy draws), maps
    in float64."""
    m = copy.deepcopy(model).eval()
    x = x.double()
    base = _grad_maps(copy.deepcopy(m).double(), x, target)
    maps, rho = [base], [torch.ones(len(x), dtype=torch.float64)]
    gen = torch.Generator().manual_seed(seed)   # the stream torch.manual_seed(seed) starts, private
    for name in layers:
        _reset(getattr(m, name), gen)
        r = _grad_maps(copy.deepcopy(m).double(), x, target)
        maps.append(r)
        rho.append(_spearman(base, r))
    return torch.stack(rho), torch.stack(maps)


MAPS_OFF = 0.005
"""Share of a map's pixels allowed off the reference. The inputs carry a little noise, so max-pool
inputs do not tie exactly (on the bare shapes they do, and each implementation's rounding then
routes the gradient elsewhere: maps off by 4 % of their maximum between honest answers, measured);
with it, the solution and both honest variants agree to 3e-7 of the maximum and ρ to 1e-5 (16
students). The margin is for an accidental near-tie; every wrong map (|·|, the softmax instead of
the logit, another seed) is off on most of its pixels, and ρ is checked to RHO_ATOL."""


def _check_maps(got, want, what):
    close(got, want, atol=float("inf"), what=f"maps, {what}")   # shape and finiteness only
    g = torch.as_tensor(got).double()
    scale = float(want.abs().max())
    off = (g - want).abs() > 1e-5 * scale + 1e-4 * want.abs()
    share = off.flatten(2).double().mean(2)
    if float(share.max()) > MAPS_OFF:
        j, n = divmod(int(share.argmax()), share.shape[1])
        raise Failed(f"maps, {what}: map of image {n} after step {j} is off on {float(share[j, n]):.1%} "
                     f"of its pixels (by up to {float((g - want).abs()[j, n].max()):.3g}; tolerance "
                     f"{1e-5 * scale:.1g} + 1e-4·|map|)")


@task("sanity_tests")
def sanity(k):
    rng = k.rng("sanity")
    g = k.generator("sanity")
    cnn, split = _cnn()
    spec = k.module(cnn)
    top = ["fc2", "fc1", "conv3", "conv2", "conv1"]
    plans = [top[:int(k.choice([2, 3], "L1"))], top[:int(k.choice([4, 5], "L2"))]]
    for i, layers in enumerate(plans):
        idx = rng.choice(len(split.X_test), int(rng.integers(3, 6)), replace=False)
        # a little noise: the shapes' flat regions make max-pool inputs tie exactly, and then the
        # float rounding of each implementation (batched or not, float32 or float64) decides where
        # the gradient goes (measured: maps off by 4 % of their maximum between two honest answers)
        x = 0.98 * split.X_test[torch.as_tensor(idx)] + 0.02 * torch.rand(len(idx), 3, 32, 32, generator=g)
        # the true labels, then random targets (not always the predicted class)
        target = split.y_test[torch.as_tensor(idx)] if i == 0 else torch.as_tensor(rng.integers(4, size=len(idx)))
        seed = int(rng.integers(1000))
        want_rho, want_maps = _cascade(cnn, layers, x, target.long(), seed)
        res, info = k.call("cascading_test", spec, layers, x, target.long(), seed=seed, meta=True)
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise Failed("cascading_test must return a pair (rho, maps)")
        rho, maps = res
        what = f"layers={layers}, seed={seed}, {len(idx)} test images"
        _check_maps(maps, want_maps, what)
        close(rho, want_rho, atol=RHO_ATOL, what=f"rho, {what}")
        if any(i["requires_grad"] for i in info):
            raise Failed("cascading_test must return tensors that do not require grad")
