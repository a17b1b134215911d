"""Lecture 04: do the attribution axioms hold, numerically?

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
"""
from __future__ import annotations

import torch
from torch import nn

from .._torch import check_forward, check_inputs, maybe_eval, resolve_baselines, resolve_target, scores, select
from .._validate import check_int, check_real
from ._common import explain, method_name

__all__ = ["check_axioms", "axioms_table", "format_axioms_table", "toy_networks", "AXIOMS", "EXPECTED",
           "DEFAULT_OPTIONS", "BASELINE_METHODS"]

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
    g = torch.Generator().manual_seed(check_int("seed", seed, min=0))

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


def check_axioms(method, model: nn.Module | None = None, inputs: torch.Tensor | None = None, target=0,
                 baselines=None, tol: float = 0.02, seed: int = 0, **options) -> list[dict]:
    """One row per axiom: ``{"method", "axiom", "holds", "value"}`` (value: the measured error,
    or the attribution checked for being non-zero).

    method: a name in ``attribution.METHODS`` or ``f(model, inputs, target, **options)``.
    model / inputs / target / baselines: where completeness is measured (None: the toy net with
    x′ = 0); the other five axioms use the constructed networks of ``toy_networks(seed)``.
    target: as everywhere (None = the model's predicted class). baselines: x′ as
    ``_torch.resolve_baselines`` takes it (None: zeros). The model is evaluated in eval mode and
    left as found (a train-mode BatchNorm keeps its running statistics).
    tol: relative tolerance for "equal" (completeness, linearity, symmetry, invariance).
    options: passed to the method (e.g. ``n_steps`` for IG); methods that take a baseline get x′.
    """
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    seed = check_int("seed", seed, min=0)
    name = method_name(method)
    takes_baseline = name in BASELINE_METHODS

    def run(net, x, t=0, b=None):
        kw = dict(options)
        if takes_baseline:
            kw["baselines"] = b
        with maybe_eval(net):
            return explain(method, net, x, t, **kw).detach().double()

    def rel(a, b):
        return float((a - b).abs().max() / max(float(b.abs().max()), 1e-12))

    toys = toy_networks(seed)
    rows = []
    # completeness
    if model is None:
        if inputs is not None:
            raise ValueError("inputs are measured on model: give model= too (or neither, for the toy network)")
        net, x = toys["completeness"]
        b, t = torch.zeros_like(x), torch.zeros(1, dtype=torch.long)
    else:
        if inputs is None:
            raise ValueError("inputs is required when model is given")
        net = check_forward(model)
        x = check_inputs(net, inputs).detach()
        b = resolve_baselines(x, baselines)
        t = resolve_target(net, x, target)
    attr = run(net, x, t, b if model is not None or takes_baseline else None)
    if tuple(attr.shape) != tuple(x.shape):
        raise ValueError(f"method returned attributions of shape {tuple(attr.shape)} for inputs {tuple(x.shape)}; "
                         "completeness needs one attribution per input feature")
    with maybe_eval(net), torch.no_grad():
        gap = (select(scores(net, x), t) - select(scores(net, b), t)).double()
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
                   "shapley_sampling": dict(n_samples=25),
                   # the ε → 0 limit, where ε-LRP equals input × gradient on ReLU networks (Ancona et al.
                   # 2018) — the row EXPECTED states; lrp's own default ε = 0.25 stabilises the maps and
                   # therefore breaks linearity and implementation invariance (measured: 0.026 and 0.18)
                   "lrp": dict(epsilon=1e-9)}
"""Options ``axioms_table`` gives each method (``check_axioms`` itself passes only yours)."""


def axioms_table(methods=tuple(EXPECTED), **kwargs) -> list[dict]:
    """``check_axioms`` for each method (with ``DEFAULT_OPTIONS``) → rows
    ``{"method", <axiom>: bool, ..., "<axiom>_value": float}``, one per method."""
    if isinstance(methods, str) or callable(methods):
        raise TypeError(f"methods must be a list of method names or functions, got {methods!r}; "
                        f"for one method pass [{methods!r}]")
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
