"""Lecture 05 targets: influence functions vs leave-one-out retraining and vs captum, one run.

    python benchmarks/bench_influence.py [--quick] [--repeats 3]

Model: xaicourse.models.LogisticRegression on the digits (1,347 training images), float64,
trained to the optimum of mean cross-entropy + (λ/2)‖θ‖² (λ = 0.01) by full-batch L-BFGS
(max |gradient| ≤ 1e-9).

1. Ground truth: Pearson r between −I_up,loss/n (exact) and the actual change of the test loss
   after removing the point and retraining (``leave_one_out``, L-BFGS warm start, tol 1e-9), over the
   50 most influential training points (by |I|) of each of 3 test points. Target r ≥ 0.99.
2. Approximations vs exact, r over all training points of 3 test points: CG (target ≥ 0.999),
   LiSSA (target ≥ 0.99; settings printed), Arnoldi (full Krylov space, and 200 iterations/top 100).
3. Time for the influence of every training point on one test point: CG (target ≤ 1 s), exact
   Hessian, Arnoldi, and captum's NaiveInfluenceFunction / ArnoldiInfluenceFunction on the same
   model (same scores up to captum's convention −I/n; time ratio ours/captum, target ≤ 1×).
4. The small CNN (course model): last layer only and all parameters, refit to the optimum of the same
   objective, LOO correlation reported as measured.
Times are the best of ``--repeats`` runs (the machine is shared); one CPU thread.
"""
import argparse
import copy
import os
import tempfile
import time
import warnings

import numpy as np
import torch
from torch import nn

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import fit, influence, leave_one_out
from xaicourse.models import LogisticRegression, course_model
from _common import best_of

warnings.filterwarnings("ignore")
L2 = 1e-2



def r(a, b):
    return float(np.corrcoef(np.asarray(a, float).ravel(), np.asarray(b, float).ravel())[0, 1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sections", default="1234", help="which sections to run, e.g. 4")
    args = ap.parse_args()
    torch.set_num_threads(1)
    top_k = 10 if args.quick else 50
    s = load_digits_tensors()
    X, y, Xt, yt = s.X_train.double(), s.y_train, s.X_test.double(), s.y_test
    n = len(X)
    loss = nn.CrossEntropyLoss()
    model = LogisticRegression().double()
    torch.manual_seed(0)
    t, info = best_of(lambda: fit(model, loss, X, y, l2=L2), 1)
    print(f"logistic regression, n={n}, l2={L2}: L-BFGS fit {t:.1f} s, max|grad| {info['grad_max']:.1e}")
    tests = [0, 1, 2]
    exact = influence(model, loss, X, y, Xt[tests], yt[tests], l2=L2, method="exact")

    if "1" in args.sections:
        section1(args, model, loss, X, y, Xt, yt, exact, tests, top_k, n)
    if "2" in args.sections:
        section2(model, loss, X, y, Xt, yt, exact, tests)
    if "3" in args.sections:
        section3(args, model, loss, X, y, Xt, yt, exact, n)
    if "4" in args.sections:
        section4(args, loss, X, y, Xt, yt, top_k, n)


def section1(args, model, loss, X, y, Xt, yt, exact, tests, top_k, n):
    print(f"\n1. −I_up,loss/n vs actual leave-one-out change, top {top_k} by |I| (target r ≥ 0.99)")
    for k, i in enumerate(tests):
        top = exact[k].abs().argsort(descending=True)[:top_k]
        t0 = time.perf_counter()
        actual = leave_one_out(model, loss, X, y, Xt[i:i + 1], yt[i:i + 1], top, l2=L2, progress=False)[0]
        dt = time.perf_counter() - t0
        pred = -exact[k, top] / n
        print(f"   test {i}: r = {r(pred, actual):.4f}   median predicted/actual = "
              f"{float((pred / actual).median()):.3f}   ({top_k} retrains, {dt:.1f} s)")



def section2(model, loss, X, y, Xt, yt, exact, tests):
    print("\n2. approximations vs exact, Pearson r over all training points (min over 3 test points)")
    lissa_kw = dict(depth=300, scale=None, repeats=1, lissa_batch=None)
    lissa_sto = dict(depth=500, scale=None, repeats=4, lissa_batch=256, seed=0)
    for name, kw, target in [("cg", {}, 0.999), ("lissa", lissa_kw, 0.99), ("lissa", lissa_sto, 0.99),
                             ("arnoldi", {}, None), ("arnoldi", dict(arnoldi_dim=200, rank=100), None)]:
        I = influence(model, loss, X, y, Xt[tests], yt[tests], l2=L2, method=name, **kw)
        rr = min(r(I[k], exact[k]) for k in range(len(tests)))
        md = float((I - exact).abs().max() / exact.abs().max())
        tgt = f"(target ≥ {target})" if target else ""
        print(f"   {name:8s} {str(kw):70s} r = {rr:.6f}  max rel diff {md:.1e} {tgt}")



def section3(args, model, loss, X, y, Xt, yt, exact, n):
    lissa_kw = dict(depth=300, scale=None, repeats=1, lissa_batch=None)
    print(f"\n3. time for all {n} training points on one test point (best of {args.repeats})")
    one = slice(0, 1)
    times = {}
    for name, kw in [("cg", {}), ("exact", {}), ("arnoldi", {}), ("lissa", lissa_kw)]:
        times[name], I = best_of(lambda: influence(model, loss, X, y, Xt[one], yt[one], l2=L2, method=name,
                                                   **kw), args.repeats)
        print(f"   ours {name:8s} {times[name]:7.3f} s" + ("   (target ≤ 1 s)" if name == "cg" else ""))
    try:
        from captum.influence import NaiveInfluenceFunction
        from captum.influence._core.arnoldi_influence_function import ArnoldiInfluenceFunction
        from torch.utils.data import TensorDataset
    except ImportError:
        print("   captum.influence not installed")
        return
    d = tempfile.mkdtemp()
    ck = os.path.join(d, "logreg.pt")
    torch.save(model.state_dict(), ck)
    ds = TensorDataset(X, y)
    P = sum(p.numel() for p in model.parameters())
    common = dict(loss_fn=nn.CrossEntropyLoss(reduction="none"), batch_size=n, hessian_reg=n * L2)

    def captum_naive():
        f = NaiveInfluenceFunction(model, ds, ck, projection_dim=P, hessian_inverse_tol=0.0, **common)
        return f.influence((Xt[one], yt[one]))

    def captum_arnoldi(dim):
        f = ArnoldiInfluenceFunction(model, ds, ck, projection_dim=min(dim, P), arnoldi_dim=dim,
                                     hessian_inverse_tol=0.0, **common)
        return f.influence((Xt[one], yt[one]))

    tn, In = best_of(captum_naive, args.repeats)
    ref = -exact[0] / n  # captum's convention: +∇ℓ_testᵀ (Σ∇²ℓ + nλI)⁻¹ ∇ℓ = −I_up,loss / n
    print(f"   captum NaiveInfluenceFunction {tn:7.3f} s   max |ours − captum| / max|captum| = "
          f"{float((ref - In[0]).abs().max() / In.abs().max()):.1e}")
    print(f"   ratio ours cg / captum naive = {times['cg'] / tn:.2f}×,  ours exact / captum naive = "
          f"{times['exact'] / tn:.2f}×   (target ≤ 1×)")
    dim = 200
    ta, Ia = best_of(lambda: captum_arnoldi(dim), 1)
    tao, Iao = best_of(lambda: influence(model, loss, X, y, Xt[one], yt[one], l2=L2, method="arnoldi",
                                         arnoldi_dim=dim), 1)
    print(f"   captum ArnoldiInfluenceFunction (arnoldi_dim={dim}) {ta:7.3f} s, r vs exact {r(Ia[0], ref):.4f};"
          f" ours arnoldi_dim={dim}: {tao:.3f} s, r vs exact {r(Iao[0], exact[0]):.4f};"
          f" ratio {tao / ta:.2f}×")



def section4(args, loss, X, y, Xt, yt, top_k, n):
    print("\n4. small CNN (course model, digits), objective mean CE + (λ/2)‖θ‖² on the chosen parameters")
    cnn, split, _ = course_model("digits", progress=False)
    cnn = cnn.double().eval()
    # last layer only: θ = fc2 on the frozen penultimate features — a convex problem, identical to
    # layers="fc2" on the whole CNN but without re-running the convolutions in every L-BFGS step
    with torch.no_grad():
        F, Ft = cnn.features(X), cnn.features(Xt[:3])
    head = copy.deepcopy(cnn.fc2)
    t0 = time.perf_counter()
    info = fit(head, loss, F, y, l2=L2)
    I = influence(head, loss, F, y, Ft, yt[:3], l2=L2, method="cg")
    rs = []
    for k in range(3):
        top = I[k].abs().argsort(descending=True)[:top_k]
        actual = leave_one_out(head, loss, F, y, Ft[k:k + 1], yt[k:k + 1], top, l2=L2, progress=False)[0]
        rs.append(r(-I[k, top] / n, actual))
    print(f"   last layer (fc2, {sum(p.numel() for p in head.parameters())} params, n={n}): refit max|grad| "
          f"{info['grad_max']:.1e}; r(top {top_k}) per test point = {', '.join(f'{v:.3f}' for v in rs)}  "
          f"({time.perf_counter() - t0:.0f} s)")
    # all parameters: non-convex; refit by L-BFGS from the trained weights on a subset, damping if needed
    n_sub = 150 if args.quick else 300
    cnn_top = 5 if args.quick else 15
    iters = 100 if args.quick else 300
    Xs, ys = X[:n_sub], y[:n_sub]
    m = copy.deepcopy(cnn)
    t0 = time.perf_counter()
    info = fit(m, loss, Xs, ys, l2=L2, max_iter=iters)
    damping = 0.0
    while True:
        try:
            I = influence(m, loss, Xs, ys, Xt[:1], yt[:1], l2=L2, method="cg", damping=damping, tol=1e-6,
                          max_iter=300)
            break
        except ValueError as e:
            damping = max(2 * damping, 1e-3) if "damping" in str(e) else None
            if damping is None:
                raise
    top = I[0].abs().argsort(descending=True)[:cnn_top]
    actual = leave_one_out(m, loss, Xs, ys, Xt[:1], yt[:1], top, l2=L2, progress=False, max_iter=iters)[0]
    pred = -I[0, top] / n_sub
    print(f"   all parameters ({sum(p.numel() for p in m.parameters())} params, n={n_sub}): refit max|grad| "
          f"{info['grad_max']:.1e} after {iters} L-BFGS its, damping {damping:g}; r(top {cnn_top}) = "
          f"{r(pred, actual):.3f}, median pred/actual {float((pred / actual).median()):.2f}  "
          f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
