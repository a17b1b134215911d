"""Checks on explanations. Lecture 04: do the attribution axioms hold, numerically? Lecture 08:
is an explanation faithful to the model and does it agree with the ground truth?

``check_axioms(method, ...)`` runs one attribution method (a name of ``attribution.METHODS`` or a
function ``f(model, inputs, target, **options)``) through six tests and returns one row per axiom
``{"method", "axiom", "holds", "value"}``; ``axioms_table(methods)`` stacks them and
``format_axioms_table`` prints the ✓/✗ grid. All toy networks are ``nn.Sequential`` ReLU nets
(so DeepLIFT and LRP apply), float64, built by ``toy_networks()``:

* completeness — Σ_i A_i = f(x) − f(x′) (x′ = 0), mean relative error ≤ ``tol`` on
  ``model``/``inputs`` when given, else on f = ReLU(x1 + x2 − 1) + ½ReLU(1 − x1) − ½ReLU(x2 − ½) at
  (2, 2), whose units switch between x′ and x (so the local linearisation is wrong).
* sensitivity — x and x′ differ in one feature and f(x) ≠ f(x′) ⇒ that feature gets A ≠ 0.
  f(x) = 1 − ReLU(1 − x) at x = 2, x′ = 0 (f = 1 vs 0, but f′(2) = 0: gradients see nothing).
* dummy — a feature the function ignores gets A = 0: f(x1, x2) with zero weights from x2.
* linearity — A(f1 + f2) = A(f1) + A(f2): two random nets and their sum as one net (hidden
  layers stacked side by side).
* symmetry — f symmetric in x1, x2 (f = h(x1) + h(x2)) and x1 = x2, x′1 = x′2 ⇒ A_1 = A_2.
* implementation invariance — two networks computing the same function get the same A:
  (a) the IG paper's pair f = ReLU(ReLU(x1) − 1 − ReLU(x2)), g = ReLU(ReLU(x1 − 1) − ReLU(x2)) at
  (3, 1); (b) −x written as ReLU(−x) − ReLU(x) and as ReLU(10 − x) − ReLU(x − 10) − 10 at x = 1.

``EXPECTED`` is what the literature says (Sundararajan et al. 2017 §2–3; Shrikumar et al. 2017;
Ancona et al. 2018: ε-LRP equals input × gradient on ReLU networks, so it inherits its axioms;
Lundberg & Lee 2017 for Shapley values).

Lecture 08 (second section below, in the lecture's order) — evaluating explanations:

* faithfulness by perturbation — ``deletion_curve`` / ``insertion_curve`` (Petsiuk et al. 2018:
  remove / add features most-relevant-first, fill with a constant, a blurred copy or noise) and
  ``curve_auc``; ``aopc`` (Samek et al. 2017: mean output drop, MoRF or LeRF order);
* agreement with ground truth — ``pointing_game`` (Zhang et al. 2018), ``mask_iou`` (top-k pixels
  vs the object mask), ``mass_on_mask`` (share of |attribution| inside a mask; Arras et al. 2022's
  relevance mass accuracy — lecture 08 uses it on the Clever-Hans watermark);
* sanity checks (Adebayo et al. 2018) — ``cascading_randomization`` and ``label_randomization``,
  compared with ``rank_correlation`` (Spearman ρ per map);
* ``input_reduction`` (Feng et al. 2018): drop the least relevant features while the prediction
  holds, report how few remain.

Feature maps: an attribution for images (N, C, H, W) is reduced to a pixel map (N, H, W) by
summing over channels (``absolute=True``: summing |A|); a pixel is then one feature, removed
in all channels at once. Other shapes (N, ...) are used element by element.
"""
from __future__ import annotations

import torch
from torch import nn

from ._torch import check_inputs, eval_on, scores, select, target_index, threads_for, torch_threads
from ._validate import as_tensor, check_choice, check_int, check_real

__all__ = ["check_axioms", "axioms_table", "format_axioms_table", "toy_networks", "AXIOMS", "EXPECTED",
           # lecture 08
           "feature_map", "fill_baseline", "deletion_curve", "insertion_curve", "curve_auc", "aopc", "pointing_game",
           "mask_iou", "mass_on_mask", "rank_correlation", "randomized_layers", "cascading_randomization",
           "label_randomization", "input_reduction", "FILLS", "random_attribution", "evaluate_methods",
           "format_evaluation_table", "EVALUATION_COLUMNS"]

AXIOMS = ("completeness", "sensitivity", "dummy", "linearity", "symmetry", "implementation_invariance")

_T, _F = True, False
EXPECTED = {  # method: (completeness, sensitivity, dummy, linearity, symmetry, implementation invariance)
    "gradient": (_F, _F, _T, _T, _T, _T),
    "input_x_gradient": (_F, _F, _T, _T, _T, _T),
    "guided_backprop": (_F, _F, _T, _T, _T, _F),
    "deeplift": (_T, _T, _T, _T, _T, _F),
    "lrp": (_F, _F, _T, _T, _T, _T),
    "integrated_gradients": (_T, _T, _T, _T, _T, _T),
    "shapley_sampling": (_T, _T, _T, _T, _T, _T),
}
"""What the literature says each method satisfies, in the order of ``AXIOMS``."""

BASELINE_METHODS = ("integrated_gradients", "deeplift", "shapley_sampling", "shapley_exact")


def _net(*layers):
    """nn.Sequential of (weight, bias) pairs with ReLUs between them, float64."""
    mods = []
    for k, (w, b) in enumerate(layers):
        w = torch.as_tensor(w, dtype=torch.float64)
        lin = nn.Linear(w.shape[1], w.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(torch.as_tensor(b, dtype=torch.float64))
        mods += [lin, nn.ReLU()] if k < len(layers) - 1 else [lin]
    return nn.Sequential(*mods).eval()


def toy_networks(seed: int = 0) -> dict:
    """The constructed networks and points of each test (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)
    toys = {}
    # f = ReLU(x1 + x2 − 1) + ½ReLU(1 − x1) − ½ReLU(x2 − ½): units switch on/off between 0 and x
    toys["completeness"] = (_net(([[1.0, 1.0], [-1.0, 0.0], [0.0, 1.0]], [-1.0, 1.0, -0.5]), ([[1.0, 0.5, -0.5]], [0.0])),
                            torch.tensor([[2.0, 2.0]], dtype=torch.float64))
    # f(x) = 1 − ReLU(1 − x)
    toys["sensitivity"] = (_net(([[-1.0]], [1.0]), ([[-1.0]], [1.0])), torch.tensor([[2.0]], dtype=torch.float64))
    # f(x1, x2) = random ReLU net of x1 only (x2's weights are 0)
    w1 = rnd(3, 2)
    w1[:, 1] = 0
    toys["dummy"] = (_net((w1, rnd(3)), (rnd(1, 3), rnd(1))), torch.tensor([[1.0, 2.0]], dtype=torch.float64))
    # f1, f2 random nets; f12 = f1 + f2 as one net (hidden units side by side, output weights concatenated)
    (a1, c1, a2, c2), (b1, d1, b2, d2) = (rnd(3, 2), rnd(3), rnd(1, 3), rnd(1)), (rnd(3, 2), rnd(3), rnd(1, 3), rnd(1))
    f1, f2 = _net((a1, c1), (a2, c2)), _net((b1, d1), (b2, d2))
    f12 = _net((torch.cat([a1, b1]), torch.cat([c1, d1])), (torch.cat([a2, b2], 1), c2 + d2))
    toys["linearity"] = (f1, f2, f12, torch.tensor([[0.7, 1.3]], dtype=torch.float64))
    # f = h(x1) + h(x2), h(u) = ReLU(u − ½) + 0.3·ReLU(2 − u): swapping x1, x2 leaves f unchanged
    toys["symmetry"] = (_net(([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], [-0.5, -0.5, 2.0, 2.0]),
                             ([[1.0, 1.0, 0.3, 0.3]], [0.1])), torch.tensor([[1.0, 1.0]], dtype=torch.float64))
    f_ig = _net(([[1.0, 0.0], [0.0, 1.0]], [0.0, 0.0]), ([[1.0, -1.0]], [-1.0]), ([[1.0]], [0.0]))
    g_ig = _net(([[1.0, 0.0], [0.0, 1.0]], [-1.0, 0.0]), ([[1.0, -1.0]], [0.0]), ([[1.0]], [0.0]))
    f_neg = _net(([[-1.0], [1.0]], [0.0, 0.0]), ([[1.0, -1.0]], [0.0]))
    g_neg = _net(([[-1.0], [1.0]], [10.0, -10.0]), ([[1.0, -1.0]], [-10.0]))
    toys["implementation_invariance"] = [(f_ig, g_ig, torch.tensor([[3.0, 1.0]], dtype=torch.float64)),
                                         (f_neg, g_neg, torch.tensor([[1.0]], dtype=torch.float64))]
    return toys


def _method(method):
    from .attribution import METHODS

    if callable(method):
        return getattr(method, "__name__", "method"), method
    if method not in METHODS:
        raise ValueError(f"method must be a callable or one of {tuple(METHODS)}, got {method!r}")
    return method, METHODS[method]


def check_axioms(method, model: nn.Module | None = None, inputs: torch.Tensor | None = None, target=0,
                 baselines=None, tol: float = 0.02, seed: int = 0, **options) -> list[dict]:
    """One row per axiom: ``{"method", "axiom", "holds", "value"}`` (value: the measured error,
    or the attribution checked for being non-zero).

    method: a name in ``attribution.METHODS`` or ``f(model, inputs, target, **options)``.
    model / inputs / target / baselines: where completeness is measured (None: the toy net with
    x′ = 0); the other five axioms use the constructed networks of ``toy_networks(seed)``.
    tol: relative tolerance for "equal" (completeness, linearity, symmetry, invariance).
    options: passed to the method (e.g. ``n_steps`` for IG); methods that take a baseline get x′.
    """
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    name, fn = _method(method)
    takes_baseline = name in BASELINE_METHODS

    def run(net, x, t=0, b=None):
        kw = dict(options)
        if takes_baseline:
            kw["baselines"] = b
        return fn(net, x, t, **kw).detach().double()

    def rel(a, b):
        return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))

    toys = toy_networks(seed)
    rows = []
    # completeness
    if model is None:
        net, x = toys["completeness"]
        b, t = torch.zeros_like(x), 0
    else:
        if inputs is None:
            raise ValueError("inputs is required when model is given")
        net, x, t = model, inputs, target
        b = torch.zeros_like(x) if baselines is None else baselines
    attr = run(net, x, t, b if model is not None or takes_baseline else None)
    with torch.no_grad():
        from ._torch import select, target_index
        out_x, out_b = net(x), net(b.expand_as(x) if isinstance(b, torch.Tensor) else torch.full_like(x, b))
        ti = target_index(t, len(x), out_x.shape[1])
        gap = (select(out_x, ti) - select(out_b, ti)).double()
    err = float(((attr.reshape(len(x), -1).sum(1) - gap).abs() / gap.abs().clamp_min(1e-12)).mean())
    rows.append(dict(method=name, axiom="completeness", holds=err <= tol, value=err))
    # sensitivity
    net, x = toys["sensitivity"]
    a = float(run(net, x, 0, torch.zeros_like(x)).abs().sum())
    rows.append(dict(method=name, axiom="sensitivity", holds=a > 1e-6, value=a))
    # dummy
    net, x = toys["dummy"]
    a = float(run(net, x, 0, torch.zeros_like(x))[0, 1].abs())
    rows.append(dict(method=name, axiom="dummy", holds=a <= 1e-9, value=a))
    # linearity
    f1, f2, f12, x = toys["linearity"]
    z = torch.zeros_like(x)
    e = rel(run(f12, x, 0, z), run(f1, x, 0, z) + run(f2, x, 0, z))
    rows.append(dict(method=name, axiom="linearity", holds=e <= tol, value=e))
    # symmetry
    net, x = toys["symmetry"]
    a = run(net, x, 0, torch.zeros_like(x))[0]
    e = float((a[0] - a[1]).abs() / max(float(a.abs().max()), 1e-12))
    rows.append(dict(method=name, axiom="symmetry", holds=e <= tol, value=e))
    # implementation invariance
    e = max(rel(run(f, x, 0, torch.zeros_like(x)), run(g, x, 0, torch.zeros_like(x)))
            for f, g, x in toys["implementation_invariance"])
    rows.append(dict(method=name, axiom="implementation_invariance", holds=e <= tol, value=e))
    return rows


DEFAULT_OPTIONS = {"integrated_gradients": dict(n_steps=256),
                   "shapley_sampling": dict(n_samples=25)}


def axioms_table(methods=tuple(EXPECTED), **kwargs) -> list[dict]:
    """``check_axioms`` for each method (with ``DEFAULT_OPTIONS``) → rows
    ``{"method", <axiom>: bool, ..., "<axiom>_value": float}``, one per method."""
    table = []
    for m in methods:
        opts = dict(DEFAULT_OPTIONS.get(m, {})) if isinstance(m, str) else {}
        rows = check_axioms(m, **(opts | kwargs))
        row = {"method": rows[0]["method"]}
        for r in rows:
            row[r["axiom"]] = r["holds"]
            row[r["axiom"] + "_value"] = r["value"]
        table.append(row)
    return table


def format_axioms_table(table: list[dict]) -> str:
    """The table as text: one line per method, ✓ / ✗ per axiom."""
    heads = ["complete", "sensitive", "dummy", "linear", "symmetric", "impl.inv."]
    lines = [f"{'method':22s}" + "".join(f"{h:>11s}" for h in heads)]
    for row in table:
        lines.append(f"{row['method']:22s}" + "".join(f"{'✓' if row[a] else '✗':>11s}" for a in AXIOMS))
    return "\n".join(lines)


# =====================================================================================
# Lecture 08 · evaluating explanations: faithfulness, ground truth, sanity checks
# =====================================================================================
FILLS = ("constant", "blur", "noise")
"""How ``deletion_curve`` & co. remove a feature: a constant, a blurred copy, uniform noise."""


def feature_map(attributions, inputs_shape=None, absolute: bool = False, name: str = "attributions") -> torch.Tensor:
    """An attribution as one relevance value per feature, (N, ...) float64.

    Images: (N, C, H, W) → Σ_c A_c (or Σ_c |A_c| with ``absolute``), shape (N, H, W); a map
    already (N, H, W) (or (N, 1, H, W)) is taken as is. Anything else is used element-wise.
    ``inputs_shape``: the inputs' shape, to check that the attribution belongs to them.
    """
    a = as_tensor(name, attributions, min_ndim=2).detach()
    if inputs_shape is not None:
        shape = tuple(inputs_shape)
        ok = tuple(a.shape) == shape or (len(shape) == 4 and tuple(a.shape) in
                                          ((shape[0], shape[2], shape[3]), (shape[0], 1, shape[2], shape[3])))
        if not ok:
            raise ValueError(f"{name} has shape {tuple(a.shape)} but the inputs have shape {shape}; give one "
                             f"attribution per input (same shape, or (N, H, W) for images)")
    if a.dim() == 4:
        a = a.abs().sum(1) if absolute else a.sum(1)
    return (a.abs() if absolute else a).double()


def _map_and_mask(attributions, masks, absolute):
    """(relevance (N, D), masks (N, D) bool), checked to match; masks (N, ...) bool or 0/1."""
    m = as_tensor("masks", masks, min_ndim=2, floating=False).detach()
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("masks must be boolean (or 0/1) ground-truth masks")
        m = m.bool()
    a = as_tensor("attributions", attributions, min_ndim=2).detach()
    if a.dim() == m.dim() + 1:  # (N, C, H, W) attributions for (N, H, W) masks
        a = a.abs().sum(1) if absolute else a.sum(1)
    if tuple(a.shape) != tuple(m.shape):
        raise ValueError(f"attributions (shape {tuple(attributions.shape)}) do not match masks (shape "
                         f"{tuple(m.shape)}): give one map per mask, (N, H, W) or (N, C, H, W) for (N, H, W) masks")
    a = a.double().flatten(1)
    m = m.to(a.device).flatten(1)
    empty = (m.sum(1) == 0).nonzero().flatten()
    if len(empty):
        raise ValueError(f"masks {empty.tolist()[:5]} are empty (no True pixel): the metric is undefined there; "
                         "drop those samples")
    return (a.abs() if absolute else a), m


def fill_baseline(inputs: torch.Tensor, fill: str = "constant", value: float = 0.0, sigma: float = 2.0,
                  seed: int = 0) -> torch.Tensor:
    """x₀, what a removed feature is replaced by: "constant" (``value``), "blur" (Gaussian of std
    ``sigma`` pixels, images only) or "noise" (U(0, 1), seeded) — shaped like ``inputs``."""
    from .attribution.gradients import blurred_baseline, uniform_noise_baseline

    x = as_tensor("inputs", inputs, min_ndim=2)
    check_choice("fill", fill, FILLS)
    if fill == "constant":
        return torch.full_like(x, check_real("value", value))
    if fill == "blur":
        if x.dim() != 4:
            raise ValueError(f"fill='blur' needs images (N, C, H, W), got shape {tuple(x.shape)}")
        return blurred_baseline(x, sigma)
    return uniform_noise_baseline(x, seed=seed)


def _output(model, x, t, output):
    out = scores(model, x)
    return select(torch.softmax(out, 1) if output == "prob" else out, t)


def _curve(model, inputs, target, attributions, order, insert, steps, fill, value, sigma, seed, output, absolute,
           batch_size):
    """Scores along a removal (or insertion) path: fractions (S+1,), scores (N, S+1)."""
    x = check_inputs(model, inputs).detach()
    rel = feature_map(attributions, x.shape, absolute).to(x.device).flatten(1)
    steps = check_int("steps", steps, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    check_choice("output", output, ("prob", "logit"))
    x0 = fill_baseline(x, fill, value, sigma, seed).to(x.device)
    N, D = rel.shape
    # rank[n, d] = position of feature d in the removal order (0 = removed first); ties by index
    key = -rel if order == "morf" else rel
    rank = torch.empty_like(key, dtype=torch.long)
    rank.scatter_(1, torch.sort(key, dim=1, stable=True).indices,
                  torch.arange(D, device=x.device).expand(N, D).contiguous())
    counts = torch.round(torch.linspace(0, D, steps + 1, dtype=torch.float64)).long().to(x.device)
    fr = counts.double().cpu() / D
    out = torch.empty(N, steps + 1, dtype=torch.float64)
    with eval_on(model), torch.no_grad(), torch_threads(threads_for(x.device, x[0].numel() * min(batch_size, steps + 1))):
        t = target_index(target, N, scores(model, x[:1]).shape[1])
        for n in range(N):
            changed = rank[n][None] < counts[:, None]                         # (S+1, D): feature already moved
            m = changed.reshape(steps + 1, *([1] if x.dim() == 4 else []), *x.shape[2 if x.dim() == 4 else 1:])
            m = m.to(x.dtype)
            src, dst = (x0[n], x[n]) if insert else (x[n], x0[n])
            for s in range(0, steps + 1, batch_size):
                mm = m[s:s + batch_size]
                xs = src[None] * (1 - mm) + dst[None] * mm
                out[n, s:s + batch_size] = _output(model, xs, t[n].expand(len(mm)), output).double().cpu()
    return fr, out


def deletion_curve(model: nn.Module, inputs: torch.Tensor, target, attributions, *, steps: int = 20,
                   fill: str = "constant", value: float = 0.0, sigma: float = 2.0, seed: int = 0,
                   output: str = "prob", absolute: bool = False, batch_size: int = 64):
    """The deletion curve: remove features most relevant first and watch the target's score fall.

    With r = the feature map of ``attributions`` (``feature_map``), order the D features by r
    descending; x⁽ᵏ⁾ = x with its k most relevant features replaced by x₀ (``fill_baseline``).
    The curve is s_k = f_t(x⁽ᵏ⁾) at k = round(j·D/steps), j = 0 … steps. A faithful map makes the
    score drop fast: small ``curve_auc``.

    inputs: (N, C, H, W) or (N, D); attributions: same shape (or (N, H, W) for images).
    output: "prob" (softmax probability of the target) or "logit".
    Returns ``(fractions (steps+1,), scores (N, steps+1))`` (float64, CPU).
    """
    return _curve(model, inputs, target, attributions, "morf", False, steps, fill, value, sigma, seed, output,
                  absolute, batch_size)


def insertion_curve(model: nn.Module, inputs: torch.Tensor, target, attributions, *, steps: int = 20,
                    fill: str = "blur", value: float = 0.0, sigma: float = 2.0, seed: int = 0,
                    output: str = "prob", absolute: bool = False, batch_size: int = 64):
    """The insertion curve: start from x₀ and put back the most relevant features first.

    x⁽ᵏ⁾ = x₀ with the k most relevant features of x restored; s_k = f_t(x⁽ᵏ⁾). A faithful map
    makes the score rise fast: large ``curve_auc``. Petsiuk et al. start from a blurred image
    (the default fill here), so that inserting pixels does not create sharp, out-of-distribution
    edges. Arguments and return value as ``deletion_curve``.
    """
    return _curve(model, inputs, target, attributions, "morf", True, steps, fill, value, sigma, seed, output,
                  absolute, batch_size)


def curve_auc(fractions, scores) -> torch.Tensor:
    """Area under a curve sampled at ``fractions`` (K,) in [0, 1] — trapezoid rule — per row of
    ``scores`` (N, K) → (N,)."""
    f = as_tensor("fractions", fractions, ndim=1).double().cpu()
    s = as_tensor("scores", scores, ndim=2).double().cpu()
    if s.shape[1] != len(f) or len(f) < 2:
        raise ValueError(f"scores (shape {tuple(s.shape)}) need one column per fraction ({len(f)} ≥ 2)")
    return torch.trapezoid(s, f, dim=1)


def aopc(model: nn.Module, inputs: torch.Tensor, target, attributions, *, order: str = "morf", steps: int = 20,
         fill: str = "constant", value: float = 0.0, sigma: float = 2.0, seed: int = 0, output: str = "prob",
         absolute: bool = False, batch_size: int = 64) -> torch.Tensor:
    """Area over the perturbation curve (Samek et al. 2017), per sample (N,):

        AOPC = 1/(L+1) Σ_{k=0}^{L} [f_t(x⁽⁰⁾) − f_t(x⁽ᵏ⁾)]

    with x⁽ᵏ⁾ as in ``deletion_curve`` (L = ``steps``). order "morf" (most relevant first: large
    AOPC = faithful) or "lerf" (least relevant first: a faithful map keeps the score, AOPC ≈ 0
    or negative).
    """
    check_choice("order", order, ("morf", "lerf"))
    _, s = _curve(model, inputs, target, attributions, order, False, steps, fill, value, sigma, seed, output,
                  absolute, batch_size)
    return (s[:, :1] - s).mean(1)


def pointing_game(attributions, masks, *, tolerance: int = 0, absolute: bool = False) -> torch.Tensor:
    """Pointing game (Zhang et al. 2018): is the map's maximum on the object? (N,) in [0, 1].

    attributions: (N, C, H, W) or (N, H, W) (any (N, ...) matching masks); masks: (N, ...) bool
    ground truth, not empty. hit_n = 1 if argmax r_n lies in mask_n (grown by ``tolerance`` pixels
    for 2-D masks). Ties: the fraction of the maximal locations inside the mask (a random tie
    break's expected hit; a constant map scores the mask's area share, not 1).
    """
    tolerance = check_int("tolerance", tolerance, min=0)
    m0 = as_tensor("masks", masks, min_ndim=2, floating=False)
    a, m = _map_and_mask(attributions, masks, absolute)
    if tolerance:
        if m0.dim() != 3:
            raise ValueError("tolerance needs 2-D masks (N, H, W)")
        mm = m.reshape(m0.shape).double()[:, None]
        m = (torch.nn.functional.max_pool2d(mm, 2 * tolerance + 1, 1, tolerance)[:, 0] > 0).flatten(1)
    top = a == a.max(1, keepdim=True).values
    return ((top & m).sum(1).double() / top.sum(1).double()).cpu()


def mask_iou(attributions, masks, top_fraction: float | None = None, *, absolute: bool = False) -> torch.Tensor:
    """IoU of the map's top-k features with the ground-truth mask, (N,).

    k = round(top_fraction · D) (D features per sample), or |mask_n| when ``top_fraction`` is None
    (then IoU = 1 iff the top |mask| features are exactly the mask). IoU = |T ∩ M| / |T ∪ M|.
    Ties at the k-th value are broken by index (stable sort).
    """
    a, m = _map_and_mask(attributions, masks, absolute)
    N, D = a.shape
    if top_fraction is None:
        k = m.sum(1)
    else:
        top_fraction = check_real("top_fraction", top_fraction, min=0.0, max=1.0, min_inclusive=False)
        k = torch.full((N,), max(1, int(round(top_fraction * D))), device=a.device)
    rank = torch.empty(N, D, dtype=torch.long, device=a.device)
    rank.scatter_(1, torch.sort(-a, dim=1, stable=True).indices, torch.arange(D, device=a.device).expand(N, D).contiguous())
    T = rank < k[:, None]
    return ((T & m).sum(1).double() / (T | m).sum(1).double()).cpu()


def mass_on_mask(attributions, masks, *, absolute: bool = True) -> torch.Tensor:
    """Share of the attribution mass inside a mask, (N,): Σ_{i∈M} |r_i| / Σ_i |r_i| (relevance mass
    accuracy, Arras et al. 2022). With ``absolute=False`` only positive relevance counts:
    Σ_{i∈M} r_i⁺ / Σ_i r_i⁺. A map with no mass raises a ValueError."""
    a, m = _map_and_mask(attributions, masks, absolute)
    a = a if absolute else a.clamp_min(0)
    tot = a.sum(1)
    if bool((tot <= 0).any()):
        raise ValueError(f"attributions {(tot <= 0).nonzero().flatten().tolist()[:5]} have no "
                         f"{'mass' if absolute else 'positive mass'}: the share is undefined")
    return ((a * m).sum(1) / tot).cpu()


def rank_correlation(a, b) -> torch.Tensor:
    """Spearman rank correlation of each row of ``a`` with the same row of ``b`` → (N,).

    a, b: (N, ...) with the same shape; flattened per row; ties get average ranks (as scipy's
    ``spearmanr``). A constant row carries no ranking: ρ = 0 there (rather than NaN).
    """
    from scipy.stats import rankdata

    a = as_tensor("a", a, min_ndim=1).detach().double().cpu()
    b = as_tensor("b", b, min_ndim=1).detach().double().cpu()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.reshape(len(a), -1).numpy(), b.reshape(len(b), -1).numpy()
    ra, rb = torch.from_numpy(rankdata(a, axis=1)), torch.from_numpy(rankdata(b, axis=1))
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    den = (ra.norm(dim=1) * rb.norm(dim=1))
    return torch.where(den > 0, (ra * rb).sum(1) / den.clamp_min(1e-300), torch.zeros_like(den))


def randomized_layers(model: nn.Module) -> list[str]:
    """Names of the model's layers with their own parameters, output side first — the order in
    which the cascading randomisation test re-initialises them."""
    return [n for n, m in reversed(list(model.named_modules()))
            if n and any(True for _ in m.parameters(recurse=False)) and hasattr(m, "reset_parameters")]


def _attribute(method, model, x, target, options):
    from .attribution import METHODS

    if callable(method):
        return method(model, x, target, **options)
    if method not in METHODS:
        raise ValueError(f"method must be a callable or one of {tuple(METHODS)}, got {method!r}")
    return METHODS[method](model, x, target, **options)


def cascading_randomization(model: nn.Module, inputs: torch.Tensor, target, method, *, layers=None,
                            seed: int = 0, absolute: bool = True, **options) -> dict:
    """Model-parameter randomisation test, cascading (Adebayo et al. 2018).

    Re-initialise the layers (``layers``: names, output side first; default
    ``randomized_layers(model)``) one more at a time — step j has the first j layers random — on a
    copy of the model, recompute the explanation and compare it with the trained model's by
    Spearman ρ of the feature maps (``feature_map``, |·| if ``absolute``). An explanation that
    depends on what the model learnt must decorrelate (ρ → 0); one that stays high is explaining
    the input, not the model.

    method: a name in ``attribution.METHODS`` or ``f(model, inputs, target, **options)``.
    target: None = the trained model's predictions (kept fixed for every step).
    Returns {"layers": ["(trained)", name1, ...], "rho": (S+1, N) tensor (row 0 = 1),
    "maps": list of (N, ...) feature maps}. The model is not modified.
    """
    import copy

    x = check_inputs(model, inputs).detach()
    seed = check_int("seed", seed)
    names = randomized_layers(model) if layers is None else list(layers)
    named = dict(model.named_modules())
    for n in names:
        if n not in named or not hasattr(named[n], "reset_parameters"):
            raise ValueError(f"layers: {n!r} is not a layer with parameters of the model; "
                             f"choose from {randomized_layers(model)}")
    if target is None:
        with eval_on(model), torch.no_grad():
            target = scores(model, x).argmax(1)
    base = feature_map(_attribute(method, model, x, target, options), x.shape, absolute)
    m = copy.deepcopy(model)
    maps, rhos = [base], [torch.ones(len(x), dtype=torch.float64)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for n in names:
            dict(m.named_modules())[n].reset_parameters()
            r = feature_map(_attribute(method, m, x, target, options), x.shape, absolute)
            maps.append(r)
            rhos.append(rank_correlation(base, r))
    return {"layers": ["(trained)"] + names, "rho": torch.stack(rhos), "maps": maps}


def label_randomization(model: nn.Module, X_train, y_train, inputs: torch.Tensor, target, method, *,
                        seed: int = 0, absolute: bool = True, train_options: dict | None = None,
                        **options) -> dict:
    """Data randomisation test (Adebayo et al. 2018): train the same architecture on randomly
    permuted labels (a model that can only memorise) and compare its explanation with the trained
    model's by Spearman ρ. A method whose maps stay similar cannot be telling us what the labels
    taught the model.

    X_train, y_train: the training data; ``train_options`` go to ``models.train`` (epochs, lr, ...).
    target: None = the trained model's predictions. Returns {"rho": (N,), "random_model": the
    model trained on permuted labels, "maps": (trained map, random-label map)}.
    """
    import copy

    from .models import train

    x = check_inputs(model, inputs).detach()
    seed = check_int("seed", seed)
    y = torch.as_tensor(y_train)
    g = torch.Generator().manual_seed(seed)
    y_perm = y[torch.randperm(len(y), generator=g)]
    if target is None:
        with eval_on(model), torch.no_grad():
            target = scores(model, x).argmax(1)
    base = feature_map(_attribute(method, model, x, target, options), x.shape, absolute)
    rnd = copy.deepcopy(model)
    opts = dict(progress=False, seed=seed, device=x.device) | dict(train_options or {})
    rnd = train(rnd, X_train, y_perm, **opts).model.eval()
    r = feature_map(_attribute(method, rnd, x, target, options), x.shape, absolute)
    return {"rho": rank_correlation(base, r), "random_model": rnd, "maps": (base, r)}


def input_reduction(model: nn.Module, inputs: torch.Tensor, target, attributions, *, fill: str = "constant",
                    value: float = 0.0, sigma: float = 2.0, seed: int = 0, absolute: bool = True,
                    step: int = 1, batch_size: int = 256) -> dict:
    """Input reduction (Feng et al. 2018): remove the least relevant features one by one while the
    model still predicts ``target``; how few features does the prediction need?

    With features ordered by relevance ascending (``feature_map``; by |r| with ``absolute``, the
    default: a strongly negative feature matters too), x⁽ᵏ⁾ = x with the k least
    relevant replaced by x₀ (``fill_baseline``); k* = the largest k with argmax f(x⁽ʲ⁾) = t for
    every j ≤ k (checked every ``step`` features). A good attribution keeps the prediction with
    few features. If the model does not predict ``target`` on x itself, nothing can be removed
    (k* = 0).

    Returns {"remaining": (N,) int64 = D − k*, "fraction": (N,) remaining / D, "n_features": D,
    "reduced": the inputs x⁽ᵏ*⁾}.
    """
    x = check_inputs(model, inputs).detach()
    rel = feature_map(attributions, x.shape, absolute).to(x.device).flatten(1)
    step = check_int("step", step, min=1)
    batch_size = check_int("batch_size", batch_size, min=1)
    x0 = fill_baseline(x, fill, value, sigma, seed).to(x.device)
    N, D = rel.shape
    rank = torch.empty(N, D, dtype=torch.long, device=x.device)
    rank.scatter_(1, torch.sort(rel, dim=1, stable=True).indices, torch.arange(D, device=x.device).expand(N, D).contiguous())
    ks = torch.arange(0, D + 1, step, device=x.device)
    if int(ks[-1]) != D:
        ks = torch.cat([ks, torch.tensor([D], device=x.device)])
    kept = torch.zeros(N, dtype=torch.long)
    reduced = x.clone()
    spatial = x.shape[2:] if x.dim() == 4 else x.shape[1:]
    with eval_on(model), torch.no_grad(), torch_threads(threads_for(x.device, x[0].numel() * min(batch_size, len(ks)))):
        t = target_index(target, N, scores(model, x[:1]).shape[1])
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


def random_attribution(model: nn.Module, inputs: torch.Tensor, target, *, seed: int = 0) -> torch.Tensor:
    """The control every metric must beat: U(0, 1) noise shaped like ``inputs`` (seeded; ignores the
    model, so it also "passes" no sanity check: its maps do not change when the model does)."""
    x = check_inputs(model, inputs)
    g = torch.Generator().manual_seed(check_int("seed", seed))
    return torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)


EVALUATION_COLUMNS = ("deletion_auc", "insertion_auc", "aopc", "pointing_game", "mask_iou", "sanity_rho",
                      "seconds_per_image")


def evaluate_methods(model: nn.Module, inputs: torch.Tensor, target, masks, methods: dict, *, steps: int = 20,
                     fill: str = "constant", value: float = 0.5, sigma: float = 5.0, sanity_n: int = 10,
                     sanity_layers: int = 3, progress: bool = True) -> list[dict]:
    """Lecture 08's benchmark table: one row per method, the columns of ``EVALUATION_COLUMNS``.

    methods: {row name: (method, options)} with method a name in ``attribution.METHODS`` or a function.
    deletion AUC, insertion AUC and AOPC (MoRF) of the signed map with ``fill``/``value``/``sigma``
    (default: grey 0.5, the course CNN's "zero", which centres its input at 0.5; on these 32×32
    images a blurred start is often classified already, which compresses insertion AUCs), the
    pointing game and mask IoU (k = |mask|) of |map| against ``masks`` (each a mean over the inputs);
    sanity_rho: mean Spearman ρ between the trained model's signed map and the map after the top
    ``sanity_layers`` layers are re-initialised (cascading randomisation, first ``sanity_n`` inputs);
    seconds_per_image: wall time of the attribution / N. Values are floats; row["maps"] keeps the maps.
    """
    import time

    from tqdm.auto import tqdm

    x = check_inputs(model, inputs).detach()
    with eval_on(model), torch.no_grad():
        t = target_index(target, len(x), scores(model, x[:1]).shape[1])
    top = randomized_layers(model)[:sanity_layers]
    rows = []
    for name, (method, options) in tqdm(list(methods.items()), desc="methods", disable=not progress):
        t0 = time.perf_counter()
        a = _attribute(method, model, x, t, dict(options)).detach()
        sec = (time.perf_counter() - t0) / len(x)
        d = curve_auc(*deletion_curve(model, x, t, a, steps=steps, fill=fill, value=value, sigma=sigma))
        i = curve_auc(*insertion_curve(model, x, t, a, steps=steps, fill=fill, value=value, sigma=sigma))
        ao = aopc(model, x, t, a, steps=steps, fill=fill, value=value, sigma=sigma)
        pg = pointing_game(a, masks, absolute=True)
        iou = mask_iou(a, masks, absolute=True)
        rho = cascading_randomization(model, x[:sanity_n], t[:sanity_n], method, layers=top, absolute=False,
                                      **dict(options))["rho"][-1]
        rows.append(dict(method=name, deletion_auc=float(d.mean()), insertion_auc=float(i.mean()),
                         aopc=float(ao.mean()), pointing_game=float(pg.mean()), mask_iou=float(iou.mean()),
                         sanity_rho=float(rho.mean()), seconds_per_image=sec, maps=a))
    return rows


def format_evaluation_table(rows: list[dict]) -> str:
    """The table as text, one line per method (↓ lower is better, ↑ higher is better)."""
    heads = ("deletion↓", "insertion↑", "AOPC↑", "pointing↑", "IoU↑", "rand ρ↓", "s/image")
    lines = [f"{'method':24s}" + "".join(f"{h:>11s}" for h in heads)]
    for r in rows:
        lines.append(f"{r['method']:24s}" + "".join(f"{r[c]:>11.3f}" for c in EVALUATION_COLUMNS[:-1])
                     + f"{r['seconds_per_image']:>11.4f}")
    return "\n".join(lines)
