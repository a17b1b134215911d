"""The ``xaicourse`` command: build, exercises, check, grade."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import course


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="xaicourse", description="Build, check and grade the xaicourse notebooks.")
    ap.add_argument("--root", default=None, help="course folder (default: found from the current folder)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="execute the lectures once and write the course site (Sphinx): the student "
                       "site build/site/ (lectures + exercises, no solutions); --instructor adds the solutions")
    b.add_argument("--quick", action="store_true", help="small sizes (XAICOURSE_QUICK=1), for tests")
    b.add_argument("--out", default=None, help="site folder (default: build/site, or build/instructor-site)")
    b.add_argument("--instructor", action="store_true",
                   help="also execute the solutions and publish them in a marked section (never give this site to students)")
    b.add_argument("--only", default=None, help="only notebooks whose name contains this text")
    b.add_argument("--jobs", "-j", type=int, default=1, help="notebooks to run at once (default 1)")
    sub.add_parser("exercises", help="regenerate exercises/ from solutions/ with nbgrader")
    sub.add_parser("check", help="fail when exercises/ is out of sync or a notebook carries outputs")
    g = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<exercise>/*.ipynb into a CSV")
    g.add_argument("submissions")
    g.add_argument("--out", default="grades.csv", help="the CSV (rows appended as they are graded)")
    g.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell")
    g.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded at once, each isolated")
    g.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "docker", "podman", "none"],
                   help="isolation of each submission (auto: bubblewrap where it works, else none with a warning)")
    g.add_argument("--resume", action="store_true", help="skip students already in --out")
    g.add_argument("--roster", default=None, help="file with one student id per line: absent ones get a 'missing' row")
    g.add_argument("--memory", type=int, default=6144, help="MB of RAM one submission may use (default 6144)")
    g.add_argument("--no-feedback", action="store_true", help="skip the per-student feedback pages")
    args = ap.parse_args(argv)
    try:
        root = course.find_root(args.root)
    except FileNotFoundError as err:
        print(f"xaicourse: {err}", file=sys.stderr)
        return 2
    if args.cmd == "build":
        try:
            results = course.build(root, Path(args.out) if args.out else None, quick=args.quick,
                                   only=args.only, jobs=args.jobs, instructor=args.instructor)
        except (ValueError, RuntimeError) as err:
            print(f"xaicourse: {err}", file=sys.stderr)
            return 2
        return 1 if any(not r.ok for r in results) else 0
    if args.cmd == "exercises":
        course.generate_exercises(root)
        return 0
    if args.cmd == "check":
        problems = course.check(root)
        print("[check] ok" if not problems else f"[check] {len(problems)} problem(s)")
        return 1 if problems else 0
    if args.cmd == "grade":
        import signal

        def stop(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, stop)
        try:
            rows = course.grade(root, Path(args.submissions), Path(args.out), timeout=args.timeout, jobs=args.jobs,
                                sandbox=args.sandbox, resume=args.resume, roster=args.roster,
                                memory_mb=args.memory, feedback=not args.no_feedback)
        except ValueError as err:
            print(f"xaicourse: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"[grade] interrupted: the rows graded so far are in {args.out}; continue with\n"
                  f"  xaicourse grade {args.submissions} --out {args.out} --resume", file=sys.stderr)
            return 130
        print(f"[grade] {len(rows)} row(s) written to {args.out}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
