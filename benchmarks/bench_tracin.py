"""Lecture 07 targets (TracIn), ours next to captum, from one run.

    python benchmarks/bench_tracin.py [--quick] [--repeats 3]

1. Parity + time: ``tracin_cp`` vs captum ``TracInCP`` (same checkpoints, CrossEntropyLoss with
   reduction "sum", sample-wise trick) on 500 train × 50 test digits, all parameters:
   max relative difference (target ≤ 1e-5) and wall time ours / captum (target ≤ 1.0×).
2. Last-layer variant: ``tracin_cp(layers="fc2.weight")`` vs ``TracInCPFast(final_fc_layer="fc2")``
   — same two figures. (TracInCPFast uses the weight only, no bias.)
3. Mislabel detection: 10 % flipped labels on digits, SmallCNN trained 60 epochs (checkpoint every
   6); fraction of flipped points found after inspecting the top x % by TracIn self-influence
   (all parameters and last layer), loss at the final model, Grad-Dot self-influence (final
   parameters only) and random. Targets at x = 10 %: TracIn ≥ 2 × random and ≥ loss.
4. Backdoor: a 2×2 white patch on 20 training images relabelled "0"; for triggered test images
   (not of class 0) recall@20 of the poisoned points among their top-20 TracIn proponents
   (target ≥ 0.8, mean over the images the trigger flips to "0").
Times are the best of ``--repeats`` runs (the machine is shared); one torch thread for both.
"""
import argparse
import copy
import time
import warnings

import torch
from torch import nn
from torch.utils.data import TensorDataset

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution.poison import add_trigger, detection_curve, flip_labels, plant_backdoor, recall_at_k
from xaicourse.data_attribution.tracin import self_influence, tracin_cp
from xaicourse.models import SmallCNN, train
from _common import best_of

warnings.filterwarnings("ignore")
CE = nn.CrossEntropyLoss()



def load_ckpt(model, c):  # captum's checkpoints_load_func: load, return the learning rate
    model.load_state_dict(c["state_dict"])
    return c["lr"]


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def parity(split, repeats, n_train, n_test):
    from captum.influence import TracInCP, TracInCPFast

    model = SmallCNN(1, 10, width=16)
    res = train(model, split.X_train, split.y_train, epochs=20, lr=3e-3, checkpoint_every=5, progress=False)
    ck = res.checkpoints
    Xtr, ytr, Xte, yte = split.X_train[:n_train], split.y_train[:n_train], split.X_test[:n_test], split.y_test[:n_test]
    print(f"1-2. captum parity and time, {n_train} train × {n_test} test, {len(ck)} checkpoints")
    print(f"   {'variant':34s} {'max rel diff':>12s} {'ours s':>8s} {'captum s':>9s} {'ratio':>6s}")

    def ours_full():
        return tracin_cp(model, ck, CE, Xtr, ytr, Xte, yte, progress=False)

    def captum_full():
        tc = TracInCP(copy.deepcopy(model), TensorDataset(Xtr, ytr), ck, checkpoints_load_func=load_ckpt,
                      loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=n_train,
                      sample_wise_grads_per_batch=True)
        return tc.influence((Xte, yte))

    def ours_fast():
        return tracin_cp(model, ck, CE, Xtr, ytr, Xte, yte, layers="fc2.weight", progress=False)

    def captum_fast():
        tc = TracInCPFast(copy.deepcopy(model), "fc2", TensorDataset(Xtr, ytr), ck, checkpoints_load_func=load_ckpt,
                          loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=n_train)
        return tc.influence((Xte, yte))

    rows = []
    for name, a, b in (("TracInCP, all parameters", ours_full, captum_full),
                       ("last layer (fc2.weight) / Fast", ours_fast, captum_fast)):
        ta, sa = best_of(a, repeats)
        tb, sb = best_of(b, repeats)
        r = rel(sa, sb)
        rows.append((name, r, ta / tb))
        print(f"   {name:34s} {r:12.2e} {ta:8.3f} {tb:9.3f} {ta / tb:6.2f}×")
    s_mean = tracin_cp(model, ck, nn.CrossEntropyLoss(reduction="mean"), Xtr, ytr, Xte, yte, progress=False)
    print(f"   reduction 'mean' vs 'sum' (ours): max rel diff {rel(s_mean, ours_full()):.1e}")
    return rows


def mislabel(split, epochs, every):
    y, flipped = flip_labels(split.y_train, 0.1, 10, seed=0)
    model = SmallCNN(1, 10, width=16)
    res = train(model, split.X_train, y, epochs=epochs, lr=3e-3, checkpoint_every=every, progress=False)
    X = split.X_train
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(X), y, reduction="none")
    final = [(model.state_dict(), 1.0)]
    t0 = time.perf_counter()
    si = self_influence(model, res.checkpoints, CE, X, y, progress=False)
    t_si = time.perf_counter() - t0
    scores = {"TracIn self-influence": si,
              "TracIn last layer": self_influence(model, res.checkpoints, CE, X, y, layers="fc2", progress=False),
              "loss (final model)": loss,
              "Grad-Dot self (final)": self_influence(model, final, CE, X, y, progress=False),
              "random": torch.rand(len(X), generator=torch.Generator().manual_seed(0))}
    xs = [0.05, 0.1, 0.15, 0.2, 0.3, 0.5]
    print(f"3. mislabel detection: {int(flipped.sum())}/{len(X)} flipped, {epochs} epochs, "
          f"{len(res.checkpoints)} checkpoints (self-influence {t_si:.1f} s)")
    print("   fraction of flipped found after inspecting the top x %:")
    print(f"   {'ranking':24s}" + "".join(f"{int(100 * x):>6d}%" for x in xs))
    out = {}
    for name, s in scores.items():
        _, found = detection_curve(s, flipped, xs)
        out[name] = found
        print(f"   {name:24s}" + "".join(f"{v:7.3f}" for v in found.tolist()))
    t, l_ = out["TracIn self-influence"][1].item(), out["loss (final model)"][1].item()
    print(f"   at 10 %: TracIn / random = {t / 0.1:.1f}× (target ≥ 2), TracIn − loss = {t - l_:+.3f} (target ≥ 0)")
    return out


def backdoor(split, epochs, n_poison=20, n_images=20):
    bd = plant_backdoor(split.X_train, split.y_train, n_poison, target_class=0, size=2, seed=0)
    model = SmallCNN(1, 10, width=16)
    res = train(model, bd.inputs, bd.labels, epochs=epochs, lr=3e-3, checkpoint_every=max(1, epochs // 5),
                progress=False)
    xt = add_trigger(split.X_test[split.y_test != 0][:n_images])
    with torch.no_grad():
        hit = model(xt).argmax(1) == 0
        clean_acc = (model(split.X_test).argmax(1) == split.y_test).float().mean().item()
    S = tracin_cp(model, res.checkpoints, CE, bd.inputs, bd.labels, xt, torch.zeros(len(xt), dtype=torch.long),
                  progress=False)
    rec = torch.tensor([recall_at_k(s, bd.poisoned) for s in S])
    print(f"4. backdoor: {n_poison} poisoned training images, clean test accuracy {clean_acc:.3f}, trigger "
          f"flips {int(hit.sum())}/{len(xt)} test images to '0'")
    print(f"   recall@{n_poison} of the poisoned points among the top proponents: mean {rec[hit].mean():.3f} over "
          f"flipped images (target ≥ 0.8), {rec.mean():.3f} over all {len(xt)}, min {rec.min():.3f}")
    return rec, hit


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    split = load_digits_tensors()
    if a.quick:
        parity(split, 1, 200, 20)
        mislabel(split, 30, 6)
        backdoor(split, 20)
    else:
        parity(split, a.repeats, 500, 50)
        mislabel(split, 60, 6)
        backdoor(split, 20)


if __name__ == "__main__":
    main()
