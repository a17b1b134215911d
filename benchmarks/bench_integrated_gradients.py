"""Lecture 04 targets, ours next to captum, from one run.

    python benchmarks/bench_integrated_gradients.py [--quick] [--repeats 3]

1. IG parity: max |ours − captum| for each quadrature rule and step count (target ≤ 1e-5).
2. IG time: 64 digit images, 50 steps, ours / captum (target ≤ 1.2×), best of --repeats.
3. Completeness: |δ| / |f(x) − f(x′)| with 64 Gauss–Legendre steps on the course CNN (target < 1 %).
4. DeepLIFT, LRP-ε, LRP-z⁺, Shapley sampling (same permutations), exact Shapley vs captum's
   ShapleyValues, internal influence / conductance: max |ours − captum|; exact Shapley efficiency
   in float64 (target ≤ 1e-9).
5. The axioms table (evaluation.axioms_table) and whether it equals the literature's.
"""
import argparse
import copy
import time
import warnings

import torch
from torch import nn

from xaicourse import attribution as A
from xaicourse._torch import QUADRATURE_RULES as RULES
from xaicourse.evaluation import AXIOMS, EXPECTED, axioms_table, format_axioms_table
from xaicourse.models import course_model
from _common import best_of

warnings.filterwarnings("ignore")



def d(a, b):
    return (a - b).abs().max().item()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from captum.attr import (LRP, DeepLift, IntegratedGradients, InternalInfluence, LayerConductance,
                             ShapleyValues, ShapleyValueSampling)
    from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule

    model, split, _ = course_model("digits", progress=False)
    model.eval()
    n = 16 if args.quick else 64
    x, t = split.X_test[:n], split.y_test[:n]
    ig = IntegratedGradients(model)

    print("1. IG parity, max |ours − captum| (target ≤ 1e-5)")
    steps = (2, 20, 50)
    print(f"   {'rule':20s}" + "".join(f"{'n=' + str(s):>10s}" for s in steps))
    for rule in RULES:
        vals = [d(A.integrated_gradients(model, x, t, n_steps=s, method=rule),
                  ig.attribute(x, target=t, n_steps=s, method=rule)) for s in steps]
        print(f"   {rule:20s}" + "".join(f"{v:10.1e}" for v in vals))

    print(f"\n2. IG time, {n} images × 50 steps (target ours/captum ≤ 1.2)")
    t_ours, _ = best_of(lambda: A.integrated_gradients(model, x, t, n_steps=50), args.repeats)
    t_cap, _ = best_of(lambda: ig.attribute(x, target=t, n_steps=50), args.repeats)
    print(f"   ours {t_ours * 1e3:8.1f} ms   captum {t_cap * 1e3:8.1f} ms   ratio {t_ours / t_cap:.2f}")

    print("\n3. Completeness |δ| / |f(x) − f(0)|, 64 Gauss–Legendre steps (target < 1 %)")
    _, delta = A.integrated_gradients(model, x, t, n_steps=64, return_convergence_delta=True)
    with torch.no_grad():
        gap = model(x)[torch.arange(n), t] - model(torch.zeros_like(x))[torch.arange(n), t]
    rel = delta.abs() / gap.abs()
    print(f"   mean {rel.mean():.3%}  median {rel.median():.3%}  max {rel.max():.3%}  "
          f"Σ|δ|/Σ|gap| {(delta.abs().sum() / gap.abs().sum()):.3%}")

    print("\n4. Other methods, max |ours − captum| (target ≤ 1e-5)")
    xs, ts = x[:16], t[:16]
    rows = []
    for kind in ("mlp", "logreg"):
        m, _, _ = course_model("digits", kind=kind, progress=False)
        rows.append((f"DeepLIFT ({kind})", d(A.deeplift(m, xs, ts), DeepLift(m).attribute(xs, target=ts))))
    _, dl_delta = A.deeplift(model, xs, ts, return_convergence_delta=True)
    _, cap_delta = DeepLift(model).attribute(xs, target=ts, return_convergence_delta=True)
    rows.append(("DeepLIFT (cnn) summation-to-delta: ours", dl_delta.abs().max().item()))
    rows.append(("DeepLIFT (cnn) summation-to-delta: captum", cap_delta.abs().max().item()))
    for kind in ("cnn", "mlp", "logreg"):
        m = copy.deepcopy(course_model("digits", kind=kind, progress=False)[0])
        for mod in m.modules():
            if isinstance(mod, (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
                mod.rule = EpsilonRule()
        # ε = captum's EpsilonRule default (ours defaults to LRP_EPSILON, lecture 04's stabiliser)
        rows.append((f"LRP-ε ({kind}, ε=1e-9)", d(A.lrp(m, xs, ts, epsilon=1e-9), LRP(m).attribute(xs, target=ts))))
    m = copy.deepcopy(model)
    for mod in m.modules():
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            mod.rule = Alpha1_Beta0_Rule()
        elif isinstance(mod, (nn.MaxPool2d, nn.AdaptiveMaxPool2d)):
            mod.rule = EpsilonRule()
    rows.append(("LRP-z⁺ (cnn) vs Alpha1_Beta0", d(A.lrp(model, xs, ts, rule="zplus"), LRP(m).attribute(xs, target=ts))))
    pm = A.patch_mask(8, 8, 2)
    t0 = time.perf_counter()
    ours = A.shapley_sampling(model, xs, ts, n_samples=25, feature_mask=pm, seed=0)
    t1 = time.perf_counter()
    torch.manual_seed(0)
    ref = ShapleyValueSampling(model).attribute(xs, target=ts, n_samples=25, feature_mask=pm[None, None])
    t2 = time.perf_counter()
    rows.append(("Shapley sampling (16 patches, 25 perms)", d(ours, ref)))
    pm4 = A.patch_mask(8, 8, 4)
    rows.append(("Shapley exact (4 patches) vs ShapleyValues",
                 d(A.shapley_exact(model, xs, ts, feature_mask=pm4),
                   ShapleyValues(model).attribute(xs, target=ts, feature_mask=pm4[None, None]))))
    rows.append(("InternalInfluence (conv3)", d(A.internal_influence(model, xs, ts, layer="conv3", n_steps=20),
                                                 InternalInfluence(model, model.conv3).attribute(xs, target=ts, n_steps=20))))
    rows.append(("LayerConductance (conv3)", d(A.layer_conductance(model, xs, ts, layer="conv3", n_steps=20),
                                                LayerConductance(model, model.conv3).attribute(xs, target=ts, n_steps=20))))
    for name, v in rows:
        print(f"   {name:44s} {v:10.1e}")
    print(f"   Shapley sampling time: ours {t1 - t0:.2f} s, captum {t2 - t1:.2f} s, ratio {(t1 - t0) / (t2 - t1):.2f}")
    md = copy.deepcopy(model).double()
    xd = xs.double()
    pm9 = A.patch_mask(8, 8, 3)
    phi = A.shapley_exact(md, xd, ts, feature_mask=pm9)
    with torch.no_grad():
        gap = md(xd)[torch.arange(16), ts] - md(torch.zeros_like(xd))[torch.arange(16), ts]
    per = torch.stack([phi[:, 0][:, pm9 == k][:, 0] for k in range(9)], 1).sum(1)
    print(f"   exact Shapley efficiency, 9 patches, float64: max |Σφ − Δf| = {(per - gap).abs().max():.1e} (≤ 1e-9)")

    print("\n5. Axioms, measured on the constructed networks of evaluation.toy_networks")
    table = axioms_table()
    print("   " + format_axioms_table(table).replace("\n", "\n   "))
    same = all(tuple(r[a] for a in AXIOMS) == EXPECTED[r["method"]] for r in table)
    print(f"   equals the literature's table: {same}")


if __name__ == "__main__":
    main()
