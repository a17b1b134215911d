"""The README's first command, timed: the full course build, per lecture and in total.

    python benchmarks/bench_build.py [--jobs N] [--quick] [--out DIR]

Runs ``course.build`` (full size unless ``--quick``; ``--jobs`` defaults to what ``xaicourse
build`` would choose) into a scratch folder and prints, per lecture, our time next to the
reference: the times measured on this 2-core machine before the build was reworked (issue #27,
full size, ``-j 1``, loaded machine), and the total next to the 15-minute target.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from xaicourse import course
from xaicourse.site import lecture_key

# seconds per lecture, full size, -j 1, measured for issue #27 (lecture 09 hung and never finished)
BEFORE = {"00": 89, "01": 150, "02": 195, "03": 497, "04": 151, "05": 462, "06": 401, "07": 399,
          "08": 146, "09": None}   # 04b did not exist yet
TARGET_S = 15 * 60


def slowest_cells(nb, k=2):
    """The ``k`` slowest code cells of an executed notebook, from nbclient's execution timestamps."""
    from datetime import datetime

    def t(s):
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    out = []
    for i, c in enumerate(nb.cells if nb is not None else []):
        ex = c.get("metadata", {}).get("execution", {})
        if c.cell_type == "code" and "iopub.execute_input" in ex and "shell.execute_reply" in ex:
            out.append(((t(ex["shell.execute_reply"]) - t(ex["iopub.execute_input"])).total_seconds(), i))
    return sorted(out, reverse=True)[:k]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", "-j", type=int, default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default=None, help="as `xaicourse build --only`")
    ap.add_argument("--log", default=None, help="also write the build's progress lines to this file")
    a = ap.parse_args(argv)
    logf = open(a.log, "a") if a.log else None

    def log(line):
        if logf:
            print(time.strftime("%H:%M:%S"), line, file=logf, flush=True)
    root = course.find_root()
    jobs = a.jobs or course.default_jobs()
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        out = Path(a.out or tmp) / "site"
        t0 = time.perf_counter()
        results = course.build(root, out=out, quick=a.quick, jobs=jobs, log=log, only=a.only)
        total = time.perf_counter() - t0
    mode = "quick" if a.quick else "full"
    print(f"xaicourse build ({mode}, -j {jobs}) on this machine")
    print(f"{'lecture':38s} {'ours s':>8s} {'before s':>9s} {'ours/before':>12s}  status; slowest cells (s)")
    for r in results:
        before = BEFORE.get(lecture_key(r.path.name))
        ratio = f"{r.seconds / before:12.2f}" if before and not a.quick else f"{'-':>12s}"
        status = "ok" if r.ok else "FAILED"
        if getattr(r, "recovered", None):
            status += f" (recovered cells {r.recovered})"
        slow = ", ".join(f"#{i} {sec:.0f}" for sec, i in slowest_cells(r.nb))
        before_s = before if before else ("hung" if lecture_key(r.path.name) == "09" else "-")
        print(f"{r.path.name:38s} {r.seconds:8.1f} {before_s:>9} {ratio}  {status}; {slow}")
    busy = sum(r.seconds for r in results)
    print(f"{'total (wall, incl. site)':38s} {total:8.1f} {'≥ 2490':>9s} {total / TARGET_S:12.2f}  "
          f"× the 15-min target; notebooks' own time summed: {busy:.0f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
