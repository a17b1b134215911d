"""Grading a class: seconds per student for N synthetic submissions of one exercise.

    python benchmarks/bench_grading.py [--exercise 04_integrated_gradients] [--n 40] [--jobs 2]
                                       [--reference-n 6] [--sandbox auto]

Ours: ``xaicourse.autograding.grade`` (the notebook in a sandboxed kernel, the hidden checks in
the grader's process, feedback pages, -j N). Reference: plain ``nbgrader autograde`` of the same
kind of submissions, one after another in one shared course folder (no isolation, visible tests
only) — what an instructor would run by hand. Prints both figures side by side and their ratio,
from one run.
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
EX = "04_integrated_gradients"


def synthetic(subs: Path, n: int) -> None:
    """A third each: the solution, the untouched exercise, the solution with its first answer blank."""
    sol = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    blank = nbformat.read(ROOT / "exercises" / EX / f"{EX}.ipynb", as_version=4)
    wrong = copy.deepcopy(sol)
    first = next(c for c in wrong.cells if c.metadata.get("nbgrader", {}).get("solution"))
    first.source = next(c.source for c in blank.cells if c.metadata.get("nbgrader", {}).get("grade_id")
                        == first.metadata["nbgrader"]["grade_id"])
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
    ap.add_argument("--exercise", default=EX)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reference-n", type=int, default=6)
    ap.add_argument("--sandbox", default="auto")
    args = ap.parse_args()
    globals()["EX"] = args.exercise
    from xaicourse import autograding

    work = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        synthetic(work / "subs", args.n)
        t0 = time.time()
        rows = autograding.grade(ROOT, work / "subs", work / "grades.csv", timeout=60, jobs=args.jobs,
                                 sandbox=args.sandbox, log=lambda *a: None)
        total = time.time() - t0
        ok = sum(1 for r in rows if r["status"] in ("ok",))
        scores = sorted({float(r["score"]) for r in rows})
        per = total / max(1, len(rows))
        busy = sum(float(r["seconds"]) for r in rows) / max(1, len(rows))
        ref = reference(args.reference_n)
        kind = autograding.resolve_sandbox(args.sandbox)
        print(f"{'':38s}{'ours':>12s}{'nbgrader alone':>16s}{'ratio':>8s}")
        print(f"{'wall seconds per student':38s}{per:12.2f}{ref:16.2f}{per / ref:8.2f}")
        print(f"{'seconds of one grading (isolated)':38s}{busy:12.2f}{ref:16.2f}{busy / ref:8.2f}")
        print(f"total for {len(rows)} students at -j {args.jobs} ({kind} sandbox, feedback on): {total:.0f} s; "
              f"rows ok: {ok}/{len(rows)}; scores seen {scores}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
