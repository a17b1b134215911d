"""Benchmark: xaicourse.tsne.TSNE against scikit-learn's exact t-SNE, side by side.

    .venv/bin/python benchmarks/bench_tsne.py [--no-bh] [--no-memory]

Digits (N = 1,797, 64 features), perplexity 30, 1,000 iterations, the same PCA
initialisation for both. Prints KL divergence, trustworthiness (k = 10) and wall time of
each, and the ratios; targets: KL ≤ 1.02 × sklearn exact, trustworthiness ≥ 0.99, time
≤ 0.5 × sklearn exact (aim 0.3 ×). Then, for scale, scikit-learn's Barnes–Hut time, and
the peak memory of our exact method at N = 5,000 (measured in a fresh subprocess as the
growth of the process's maximum resident set size).

The machine may be shared: the load average is printed before and after.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.manifold import TSNE as SkTSNE
from sklearn.manifold import trustworthiness

from xaicourse.tsne import TSNE, pca_init

PERPLEXITY, N_ITER = 30.0, 1000

MEMORY_CHILD = r"""
import sys, threading, time
import numpy as np, torch
from xaicourse.tsne import TSNE

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

n = int(sys.argv[1])
rng = np.random.default_rng(0)
X = rng.normal(size=(n, 64)) + 4 * rng.normal(size=(10, 64))[rng.integers(0, 10, n)]
torch.ones(1000, 1000) @ torch.ones(1000, 1000)    # warm up torch's allocator and threads
base, peak, stop = rss_mb(), [0.0], [False]

def sample():                                       # current RSS every 2 ms
    while not stop[0]:
        peak[0] = max(peak[0], rss_mb())
        time.sleep(0.002)

th = threading.Thread(target=sample, daemon=True)
th.start()
t = time.perf_counter()
m = TSNE(perplexity=30.0, max_iter=50, device="cpu").fit(X)
dt = time.perf_counter() - t
stop[0] = True
th.join()
print(f"{peak[0] - base:.0f} {base:.0f} {dt:.2f}")
"""


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def row(name, ours, ref, fmt="{:.4f}"):
    ratio = ours / ref if ref else float("nan")
    print(f"  {name:<24} {fmt.format(ours):>12} {fmt.format(ref):>14} {ratio:>9.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-bh", action="store_true", help="skip scikit-learn Barnes-Hut")
    ap.add_argument("--no-memory", action="store_true", help="skip the N=5000 memory run")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {loadavg()}")
    X = load_digits().data.astype(np.float64)
    Y0 = pca_init(torch.tensor(X)).numpy().astype(np.float32)
    print(f"digits N={len(X)}, perplexity {PERPLEXITY}, {N_ITER} iterations, same PCA init\n")

    t = time.perf_counter()
    ours = TSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init=Y0, device="cpu")
    E = ours.fit_transform(X)
    t_ours = time.perf_counter() - t

    t = time.perf_counter()
    ours50 = TSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init=Y0, device="cpu", kl_every=50).fit(X)
    t_ours50 = time.perf_counter() - t

    t = time.perf_counter()
    ours1 = TSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init=Y0, device="cpu",
                 n_threads=torch.get_num_threads()).fit(X)
    t_ours1 = time.perf_counter() - t

    t = time.perf_counter()
    sk = SkTSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init=Y0, method="exact", random_state=0)
    Es = sk.fit_transform(X)
    t_sk = time.perf_counter() - t

    tw_ours = trustworthiness(X, E, n_neighbors=10)
    tw_sk = trustworthiness(X, Es, n_neighbors=10)
    print(f"  {'':<24} {'xaicourse':>12} {'sklearn exact':>14} {'ratio':>9}")
    row("KL divergence", ours.kl_divergence_, sk.kl_divergence_)
    row("trustworthiness (k=10)", tw_ours, tw_sk)
    row("wall time [s]", t_ours, t_sk, "{:.2f}")
    row("  ... KL every 50 steps", t_ours50, t_sk, "{:.2f}")
    row(f"  ... on {torch.get_num_threads()} threads", t_ours1, t_sk, "{:.2f}")
    print(f"  (KL with kl_every=50: {ours50.kl_divergence_:.4f}, on {torch.get_num_threads()} threads: "
          f"{ours1.kl_divergence_:.4f}; "
          f"per step {1e3 * t_ours / N_ITER:.1f} ms vs {1e3 * t_sk / N_ITER:.1f} ms)")
    kl_ok = ours.kl_divergence_ <= 1.02 * sk.kl_divergence_
    print(f"\n  targets: KL ≤ 1.02× sklearn: {'PASS' if kl_ok else 'FAIL'} "
          f"({ours.kl_divergence_ / sk.kl_divergence_:.3f}×); trustworthiness ≥ 0.99: "
          f"{'PASS' if tw_ours >= 0.99 else 'FAIL'} ({tw_ours:.4f}); time ≤ 0.5×: "
          f"{'PASS' if t_ours <= 0.5 * t_sk else 'FAIL'} ({t_ours / t_sk:.3f}×, aim 0.3×)")

    if not args.no_bh:
        t = time.perf_counter()
        bh = SkTSNE(perplexity=PERPLEXITY, max_iter=N_ITER, init=Y0, method="barnes_hut",
                    random_state=0).fit(X)
        t_bh = time.perf_counter() - t
        print(f"\n  sklearn Barnes-Hut (approximate): {t_bh:.2f} s, KL {bh.kl_divergence_:.4f}, "
              f"trustworthiness {trustworthiness(X, bh.embedding_, n_neighbors=10):.4f}; "
              f"ours exact / BH time = {t_ours / t_bh:.2f}×")
        print("  openTSNE (FFT, not installed here): ~3 s reported for this problem in the issue")

    if not args.no_memory:
        n = 5000
        # A fixed mmap threshold makes glibc return freed N×N blocks to the OS at once, so the
        # sampled RSS follows the live memory (by default it keeps up to ~270 MB of freed blocks).
        out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(n)], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                                  "MALLOC_MMAP_THRESHOLD_": str(1 << 20)})
        if out.returncode != 0:
            print("\n  memory run failed:", out.stderr[-500:])
        else:
            grow, base, dt = out.stdout.split()[-3:]
            print(f"\n  N={n}: peak memory of the fit {grow} MB above the process's {base} MB "
                  f"(sampled RSS); 3 float32 N×N matrices = {3 * 4 * n * n / 2**20:.0f} MB; "
                  f"affinities + 50 steps took {dt} s")
    print(f"\nload average after: {loadavg()}")


if __name__ == "__main__":
    main()
