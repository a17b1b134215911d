"""Lecture 06 targets (representer points), from one run.

    python benchmarks/bench_representer.py

1. Course CNN on digits: refit the bias-free last layer on the penultimate features (L2, L-BFGS to
   stationarity): fit time (target ≤ 5 s), stationarity residual ‖W − Σα_iΦ_iᵀ‖/‖W‖, test accuracy
   of the model vs the refit layer, and the decomposition error max|Σ_i α_i Φ_iᵀΦ_t − WΦ_t| / max|WΦ_t|
   over the test set (target ≤ 1e-4). Weights vs scikit-learn's LogisticRegression (same objective).
2. Mislabel detection (10 % flipped labels, SmallCNN 60 epochs): fraction of flipped points found after
   inspecting the top x % by |α_{i,y_i}|, by loss, and at random.
"""
import time
import warnings

import torch
from torch import nn

from xaicourse.data_attribution import RepresenterPoints, detection_curve, flip_labels
from xaicourse.models import SmallCNN, course_model, train

warnings.filterwarnings("ignore")


def main():
    from sklearn.linear_model import LogisticRegression
    torch.set_num_threads(1)
    model, sp, _ = course_model("digits", progress=False)
    rp = RepresenterPoints(l2=1e-2).from_model(model, sp.X_train, sp.y_train, sp.X_test, sp.y_test)
    r = rp.report_
    ft = rp.features_of(model, sp.X_test)
    lg = rp.logits(ft)
    err = ((rp.decompose(ft).sum(1) - lg).abs().max() / lg.abs().max()).item()
    n = len(sp.y_train)
    t0 = time.perf_counter()
    sk = LogisticRegression(C=1 / (2 * rp.l2 * n), fit_intercept=False, tol=1e-10, max_iter=10000)
    sk.fit(rp.features_.numpy(), sp.y_train.numpy())
    t_sk = time.perf_counter() - t0
    dW = ((torch.from_numpy(sk.coef_) - rp.weight_).abs().max() / rp.weight_.abs().max()).item()
    print(f"1. course CNN (digits), λ = {rp.l2}, n = {n}, d = {rp.n_features_in_}")
    print(f"   fit: {r['fit_seconds']:.2f} s, {rp.n_iter_} L-BFGS iterations (target ≤ 5 s); sklearn lbfgs "
          f"{t_sk:.2f} s; ours/sklearn {r['fit_seconds'] / t_sk:.2f}×")
    print(f"   stationarity: residual {r['residual']:.2e}, max|∇L| {r['grad_norm']:.2e}; "
          f"weights vs sklearn max rel diff {dW:.2e}")
    print(f"   test accuracy: model {r['test_acc_model']:.4f}, refit {r['test_acc_refit']:.4f} "
          f"(change {r['test_acc_change']:+.4f})")
    print(f"   decomposition max relative error over {len(ft)} test points: {err:.2e} (target ≤ 1e-4)")

    y, flipped = flip_labels(sp.y_train, 0.1, 10, seed=0)
    m = SmallCNN(1, 10, width=16)
    train(m, sp.X_train, y, epochs=60, lr=3e-3, checkpoint_every=6, progress=False)
    rp2 = RepresenterPoints(l2=1e-2).from_model(m, sp.X_train, y)
    with torch.no_grad():
        loss = nn.functional.cross_entropy(m(sp.X_train), y, reduction="none")
    xs = [0.05, 0.1, 0.2, 0.3, 0.5]
    print(f"2. mislabel detection ({int(flipped.sum())}/{n} flipped): fraction found after inspecting top x %")
    print(f"   {'ranking':18s}" + "".join(f"{int(100 * x):>6d}%" for x in xs))
    for name, s in (("|α| (representer)", rp2.importance()), ("loss", loss),
                    ("random", torch.rand(n, generator=torch.Generator().manual_seed(0)))):
        print(f"   {name:18s}" + "".join(f"{v:7.3f}" for v in detection_curve(s, flipped, xs)[1].tolist()))


if __name__ == "__main__":
    main()
