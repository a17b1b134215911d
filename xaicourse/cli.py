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
    b = sub.add_parser("build", help="execute every lecture and solution; write an HTML site to build/site/")
    b.add_argument("--quick", action="store_true", help="small sizes (XAICOURSE_QUICK=1), for tests")
    b.add_argument("--out", default=None, help="site folder (default: build/site)")
    b.add_argument("--only", default=None, help="only notebooks whose name contains this text")
    b.add_argument("--jobs", "-j", type=int, default=1, help="notebooks to run at once (default 1)")
    sub.add_parser("exercises", help="regenerate exercises/ from solutions/ with nbgrader")
    sub.add_parser("check", help="fail when exercises/ is out of sync or a notebook carries outputs")
    g = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<exercise>/*.ipynb into a CSV")
    g.add_argument("submissions")
    g.add_argument("--out", default="grades.csv")
    g.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell")
    args = ap.parse_args(argv)
    try:
        root = course.find_root(args.root)
    except FileNotFoundError as err:
        print(f"xaicourse: {err}", file=sys.stderr)
        return 2
    if args.cmd == "build":
        try:
            results = course.build(root, Path(args.out) if args.out else None, quick=args.quick,
                                   only=args.only, jobs=args.jobs)
        except ValueError as err:
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
        rows = course.grade(root, Path(args.submissions), Path(args.out), timeout=args.timeout)
        print(f"[grade] {len(rows)} row(s) written to {args.out}")
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
