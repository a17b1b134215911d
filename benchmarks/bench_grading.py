"""Grading a class: seconds per student for N synthetic submissions of exercise 00.

    python benchmarks/bench_grading.py [--n 200] [--jobs 2] [--reference-n 10] [--sandbox auto]

Ours: ``xaicourse.autograding.grade`` (isolated course per submission, sandbox, feedback, -j N).
Reference: plain ``nbgrader autograde`` of the same kind of submissions, one after another in one
shared course folder (no isolation) — what an instructor would run by hand. Prints both figures
side by side and their ratio, from one run.
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EX = "00_introduction"


def synthetic(subs: Path, n: int) -> None:
    sol = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    blank = nbformat.read(ROOT / "exercises" / EX / f"{EX}.ipynb", as_version=4)
    wrong = copy.deepcopy(sol)
    for c in wrong.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "topweights_answer":
            c.source = "def top_weights(W, cls, k):\n    return torch.argsort(torch.as_tensor(W)[cls])[:k]\n"
    for i in range(n):
        d = subs / f"student{i:03d}" / EX
        d.mkdir(parents=True)
        nbformat.write([sol, blank, wrong][i % 3], d / f"{EX}.ipynb")


def reference(n: int) -> float:
    """Seconds per student of plain nbgrader autograde in one shared course (no isolation)."""
    from xaicourse.autograding import _nbgrader
    from xaicourse.course import _course_dir

    course = _course_dir(ROOT, [EX])
    try:
        _nbgrader(course, "generate_assignment", EX, "--force")
        synthetic(course / "submitted", n)
        t0 = time.time()
        for i in range(n):
            _nbgrader(course, "autograde", EX, f"--student=student{i:03d}", "--create", "--force")
        return (time.time() - t0) / n
    finally:
        shutil.rmtree(course, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reference-n", type=int, default=10)
    ap.add_argument("--sandbox", default="auto")
    args = ap.parse_args()
    from xaicourse import autograding

    work = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        synthetic(work / "subs", args.n)
        t0 = time.time()
        rows = autograding.grade(ROOT, work / "subs", work / "grades.csv", timeout=60, jobs=args.jobs,
                                 sandbox=args.sandbox, log=lambda *a: None)
        total = time.time() - t0
        ok = sum(1 for r in rows if r["status"] in ("ok",))
        per = total / max(1, len(rows))
        busy = sum(float(r["seconds"]) for r in rows) / max(1, len(rows))
        ref = reference(args.reference_n)
        kind = autograding.resolve_sandbox(args.sandbox)
        print(f"{'':38s}{'ours':>12s}{'nbgrader alone':>16s}{'ratio':>8s}")
        print(f"{'wall seconds per student':38s}{per:12.2f}{ref:16.2f}{per / ref:8.2f}")
        print(f"{'seconds of one grading (isolated)':38s}{busy:12.2f}{ref:16.2f}{busy / ref:8.2f}")
        print(f"total for {len(rows)} students at -j {args.jobs} ({kind} sandbox, feedback on): {total:.0f} s; "
              f"rows ok: {ok}/{len(rows)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
