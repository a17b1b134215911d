"""Lecture 08 targets: the evaluation table of every attribution method, its checks, the Clever-Hans
audit, the mask's instability, and our metrics next to Quantus's — from one run.

    python benchmarks/bench_evaluation.py [--n 50] [--quick]

1. The table on the shapes test set (course CNN): deletion AUC, insertion AUC, AOPC, pointing game,
   mask IoU, sanity-check ρ (top 3 layers random), time per image — every method of lectures 03–04,
   the meaningful-perturbation masks and a random control.
   Checks: IG and Grad-CAM beat random on deletion AUC (≥ 20 % lower) and the pointing game
   (≥ +0.3), deletion with the grey fill; the gradient's ρ < 0.2 while guided backprop's > 0.5.
2. Clever Hans: share of |attribution| on the watermark per method, mean ± s.e.m. over cued test
   images; check: some method > 50 %.
3. Meaningful perturbation instability: IoU of the top-15 % regions across λ and across noise seeds.
4. Quantus side by side (ratio ours / Quantus): pointing game, relevance mass, pixel flipping.
Target: the whole run ≤ 3 min on this CPU once the course models are cached.
"""
import argparse
import itertools
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("XAICOURSE_CACHE", str(ROOT / "build" / "test-cache"))

from xaicourse import attribution as A, data, evaluation as M, models  # noqa: E402
from xaicourse.attribution.shapley import patch_mask  # noqa: E402

warnings.filterwarnings("ignore")


def table_methods(quick=False):
    """Every method of lectures 03–04 (with the options the lectures use), the masks, a random control."""
    return {
        "random": (M.random_attribution, {}),
        "gradient": ("gradient", {}),
        "saliency |∇|": ("saliency", {}),
        "squared gradient": ("squared_gradient", {}),
        "input × gradient": ("input_x_gradient", {}),
        "SmoothGrad": ("smoothgrad", dict(n_samples=8 if quick else 20, sigma=0.15)),
        "guided backprop": ("guided_backprop", {}),
        "Grad-CAM": ("grad_cam", dict(layer="relu3")),
        "occlusion 4×4": ("occlusion", dict(window=4, stride=4)),
        "LIME (grid 4)": ("lime", dict(n_samples=100 if quick else 200, segmentation="grid", cell=4)),
        "integrated gradients": ("integrated_gradients", dict(n_steps=16 if quick else 32)),
        "DeepLIFT": ("deeplift", {}),
        "LRP-ε": ("lrp", {}),
        "Shapley (4×4 patches)": ("shapley_sampling", dict(n_samples=2, feature_mask=patch_mask(32, 32, 4))),
        "mask (delete)": ("meaningful_perturbation", dict(n_steps=60 if quick else 120)),
        "mask (preserve)": ("meaningful_perturbation", dict(mode="preserve", n_steps=60 if quick else 120)),
    }


def clever_hans(n_eval, quick):
    hans, _ = models.clever_hans_model(400 if quick else 2000, epochs=3 if quick else 10, device="cpu")
    cued = data.make_shapes(n_eval, seed=99, watermark=1.0)
    x, t = cued.images, cued.labels
    acc = models.accuracy(hans, x, t)
    out = {}
    for name, (method, opts) in table_methods(quick).items():
        if name.startswith("Shapley") or name.startswith("LIME"):
            continue      # slow; lecture 03 showed them
        a = M.explain(method, hans, x, t, **opts)
        share = M.mass_on_mask(a, cued.cue_masks).numpy()
        out[name] = (share.mean(), share.std(ddof=1) / np.sqrt(len(share)))
    area = cued.cue_masks.flatten(1).float().mean(1).mean().item()
    return acc, out, area


def instability(model, x, t, quick):
    """IoU of the top-15 % regions of masks across λ₁/λ₂ (blur x₀) and across noise x₀ seeds."""
    def region(a):
        r = M.feature_map(a, x.shape, absolute=True)
        k = int(0.15 * r[0].numel())
        thr = r.flatten(1).topk(k, dim=1).values[:, -1:]
        return (r.flatten(1) >= thr).reshape(r.shape)
    n_steps = 60 if quick else 120
    lams = [(0.02, 0.1), (0.05, 0.2), (0.2, 0.2), (0.05, 1.0)]
    by_lam = [region(A.meaningful_perturbation(model, x, t, l1=l1, tv=tv, n_steps=n_steps)) for l1, tv in lams]
    by_seed = [region(A.meaningful_perturbation(model, x, t, baselines="noise", seed=s, n_steps=n_steps))
               for s in range(3)]

    def pair_iou(regs):
        v = [(a & b).flatten(1).sum(1).double() / (a | b).flatten(1).sum(1).double()
             for a, b in itertools.combinations(regs, 2)]
        return torch.stack(v).mean().item(), torch.stack(v).min().item()
    return pair_iou(by_lam), pair_iou(by_seed)


def quantus_side_by_side(model, x, t, masks, a):
    try:
        import quantus
    except ImportError as err:
        return f"quantus not importable: {err}"
    a1 = a.sum(1, keepdim=True).detach()
    a1 = a1 + 1e-7 * torch.rand(a1.shape, generator=torch.Generator().manual_seed(0))   # break ties (IG = 0 on clipped pixels)
    xs, ys, an, sn = x.numpy(), t.numpy(), a1.numpy(), masks[:, None].numpy().astype(float)
    rows = []
    q = np.nanmean(quantus.PointingGame(disable_warnings=True)(model=model, x_batch=xs, y_batch=ys, a_batch=an,
                                                               s_batch=sn, device="cpu"))
    rows.append(("pointing game (IG, signed)", M.pointing_game(a1, masks, absolute=False).mean().item(), q))
    q = np.mean(quantus.RelevanceMassAccuracy(abs=True, normalise=False, disable_warnings=True)(
        model=model, x_batch=xs, y_batch=ys, a_batch=an, s_batch=sn, device="cpu"))
    rows.append(("relevance mass on object (IG)", M.mass_on_mask(a1, masks).mean().item(), q))
    q = np.asarray(quantus.PixelFlipping(features_in_step=64, perturb_baseline=0.0, disable_warnings=True)(
        model=model, x_batch=xs, y_batch=ys, a_batch=a1.expand_as(x).numpy().copy(), device="cpu", softmax=True))
    fr, s = M.deletion_curve(model, x, t, a1, n_steps=16, baselines=0.0)   # Quantus: perturb_baseline=0.0
    # Quantus: 48 steps of 64 entries = 64/3 pixels; every 3rd step ends on a whole number of pixels (64·j)
    ours = s[:, 1:].numpy()
    qq = q[:, 2::3]
    rows.append(("pixel-flipping curve, mean (IG)", ours.mean(), qq.mean()))
    rows.append(("pixel-flipping curve, max |diff|", float(np.abs(ours - qq).max()), 0.0))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50, help="test images in the table")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)          # small problems on a shared 2-core CPU: one thread is fastest
    T0 = time.perf_counter()
    n = 16 if args.quick else args.n
    model, split, _ = models.course_model("shapes", device="cpu", progress=False)
    x, t, masks = split.X_test[:n], split.y_test[:n], split.extras["test_masks"][:n]
    print(f"course shapes CNN, {n} test images, test accuracy {models.accuracy(model, split.X_test, split.y_test):.3f}")

    t0 = time.perf_counter()
    rows = M.evaluate_methods(model, x, t, masks, table_methods(args.quick), progress=False)
    print(f"\n1 · evaluation table ({time.perf_counter() - t0:.0f} s)\n" + M.format_evaluation_table(rows))
    r = {row["method"]: row for row in rows}
    rnd = r["random"]
    for m in ("integrated gradients", "Grad-CAM"):
        d_ok = r[m]["deletion_auc"] <= 0.8 * rnd["deletion_auc"]
        p_ok = r[m]["pointing_game"] >= rnd["pointing_game"] + 0.3
        print(f"check {m} vs random: deletion AUC {r[m]['deletion_auc']:.3f} vs {rnd['deletion_auc']:.3f} "
              f"({'✓' if d_ok else '✗'} ≤ 0.8×), pointing {r[m]['pointing_game']:.2f} vs {rnd['pointing_game']:.2f} "
              f"({'✓' if p_ok else '✗'} ≥ +0.3)")
    g, gb = r["gradient"]["sanity_rho"], r["guided backprop"]["sanity_rho"]
    print(f"check sanity: gradient ρ {g:.3f} ({'✓' if g < 0.2 else '✗'} < 0.2), guided backprop ρ {gb:.3f} "
          f"({'✓' if gb > 0.5 else '✗'} > 0.5)")

    t0 = time.perf_counter()
    acc, shares, area = clever_hans(16 if args.quick else 50, args.quick)
    print(f"\n2 · Clever Hans CNN (accuracy on cued images {acc:.2f}); share of |attribution| on the watermark "
          f"(area {area:.3f}), mean ± s.e.m. ({time.perf_counter() - t0:.0f} s)")
    for k, (mu, se) in shares.items():
        print(f"  {k:24s} {mu:6.3f} ± {se:.3f}")
    best = max(shares, key=lambda k: shares[k][0])
    print(f"check: {best} puts {shares[best][0]:.1%} on the watermark ({'✓' if shares[best][0] > 0.5 else '✗'} > 50 %)")

    t0 = time.perf_counter()
    (lam_mean, lam_min), (seed_mean, seed_min) = instability(model, x[:8], t[:8], args.quick)
    print(f"\n3 · mask instability (top-15 % regions, 8 images; {time.perf_counter() - t0:.0f} s): pairwise IoU across "
          f"4 (λ₁, λ₂) settings {lam_mean:.2f} (min {lam_min:.2f}); across 3 noise-x₀ seeds {seed_mean:.2f} "
          f"(min {seed_min:.2f})")

    print("\n4 · ours vs Quantus (integrated gradients maps)")
    q = quantus_side_by_side(model, x, t, masks, r["integrated gradients"]["maps"])
    if isinstance(q, str):
        print("  " + q)
    else:
        print(f"  {'quantity':34s}{'ours':>10s}{'quantus':>10s}{'ratio':>8s}")
        for name, a, b in q:
            print(f"  {name:34s}{a:>10.4f}{b:>10.4f}{(a / b if b else float('nan')):>8.3f}")
    print(f"\ntotal {time.perf_counter() - T0:.0f} s (target ≤ 180 s)")


if __name__ == "__main__":
    main()
