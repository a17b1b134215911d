"""Shared by the benchmark scripts (run as ``python benchmarks/bench_<topic>.py``, so this folder
is on ``sys.path``)."""
import time


def best_of(fn, repeats: int = 3):
    """(fastest wall time in seconds over ``repeats`` calls of ``fn()``, the last call's result):
    the minimum is the figure least disturbed by whatever else the machine is doing."""
    ts, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), out
