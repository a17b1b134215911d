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
    b.add_argument("--only", default=None, help="only these lectures: numbers (\"04\" is 04 alone, not 04b) or name fragments, comma-separated (\"05,09\", \"tsne\")")
    b.add_argument("--jobs", "-j", type=int, default=None,
                   help="notebooks to run at once (default: one per core, as many as the free memory holds)")
    b.add_argument("--deadline", type=float, default=None,
                   help="seconds a notebook may run in all (default 1200 quick, 3600 full); then it is stopped "
                        "and reported, and the build goes on")
    e = sub.add_parser("exercises", help="regenerate exercises/ from solutions/ with nbgrader")
    e.add_argument("names", nargs="*", help="only these exercises (default: all)")
    sub.add_parser("check", help="fail when exercises/ is out of sync or a notebook carries outputs")
    g = sub.add_parser("grade", help="autograde SUBMISSIONS/<student>/<exercise>/*.ipynb into a CSV")
    g.add_argument("submissions")
    g.add_argument("--out", default="grades.csv", help="the CSV (rows appended as they are graded)")
    g.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell")
    g.add_argument("--jobs", "-j", type=int, default=1, help="submissions graded at once, each isolated")
    g.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "docker", "podman", "none"],
                   help="isolation of each submission (auto: bubblewrap where it works, else none with a warning)")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run (OUT.partial) or add to OUT: skip students already graded")
    g.add_argument("--roster", default=None, help="file with one student id per line: absent ones get a 'missing' row")
    g.add_argument("--memory", type=int, default=6144, help="MB of RAM one submission may use (default 6144)")
    g.add_argument("--no-feedback", action="store_true", help="skip the per-student feedback pages")
    k = sub.add_parser("classroom", help="run a class through nbgrader's exchange: release, collect, grade, feedback",
                       description="Works from any folder: the course folder, exchange and course id come from "
                       "the options, else from the nbgrader configuration (c.CourseDirectory.root, c.Exchange.root, "
                       "c.CourseDirectory.course_id in ~/.jupyter/nbgrader_config.py or /etc/jupyter/); the course "
                       "repository (with solutions/ and the hidden checks) from --root, else the folder you are in, "
                       "else the one the course folder was released from, else ~/xaicourse.")
    k.add_argument("action", choices=["release", "collect", "grade", "feedback", "export", "demo"],
                   help="release: exercises to the exchange; collect: submissions into COURSE/submitted; "
                        "grade: sandboxed grading + feedback pages + gradebook scores; feedback: release the pages to "
                        "the students; export: grades_by_student.csv; demo: the round trip with three simulated students")
    k.add_argument("exercises", nargs="*", help="exercise names (default: all)")
    k.add_argument("--course", default=None, help="nbgrader course folder (default: from the nbgrader configuration)")
    k.add_argument("--exchange", default=None, help="nbgrader exchange root (default: from the nbgrader "
                   "configuration, else /srv/nbgrader/exchange)")
    k.add_argument("--course-id", default=None)
    k.add_argument("--force", action="store_true", help="release: release again an exercise already released")
    k.add_argument("--resume", action="store_true", help="grade: continue an interrupted grading run")
    k.add_argument("--jobs", "-j", type=int, default=2, help="submissions graded at once, each isolated")
    k.add_argument("--timeout", type=int, default=120, help="seconds allowed per cell")
    k.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "docker", "podman", "none"])
    k.add_argument("--workdir", default=None, help="demo: folder for course, exchange and homes (default: a temporary one)")
    args = ap.parse_args(argv)
    try:
        root = course.find_root(args.root)
    except FileNotFoundError as err:
        if args.cmd != "classroom":
            print(f"xaicourse: {err}", file=sys.stderr)
            return 2
        root = None   # classroom: the repository the course folder was released from
    if args.cmd == "build":
        try:
            results = course.build(root, Path(args.out) if args.out else None, quick=args.quick,
                                   only=args.only, jobs=args.jobs, instructor=args.instructor,
                                   deadline=args.deadline)
        except (ValueError, RuntimeError) as err:
            print(f"xaicourse: {err}", file=sys.stderr)
            return 2
        return 1 if any(not r.ok for r in results) else 0
    if args.cmd == "classroom":
        return _classroom(root, args)
    if args.cmd == "exercises":
        try:
            course.generate_exercises(root, only=args.names or None)
        except (ValueError, RuntimeError) as err:
            print(f"xaicourse: {err}", file=sys.stderr)
            return 2
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
            print(f"[grade] interrupted: the rows graded so far are in {args.out}.partial ({args.out} is "
                  f"unchanged); continue with\n"
                  f"  xaicourse grade {args.submissions} --out {args.out} --resume", file=sys.stderr)
            return 130
        print(f"[grade] {len(rows)} row(s) written to {args.out}")
        return 0
    return 2


def _classroom(root: Path | None, args) -> int:
    import tempfile

    from . import classroom

    if args.action == "demo":
        if root is None:
            print("xaicourse: the demo needs the course repository: run it there or give --root", file=sys.stderr)
            return 2
        work = Path(args.workdir or tempfile.mkdtemp(prefix="xaicourse-class-"))
        ex = tuple(args.exercises) or ("00_introduction", "02_tsne")
        r = classroom.simulate(root, work, exercises=ex, jobs=args.jobs, timeout=min(args.timeout, 20))
        print((r["by_student"]).read_text())
        print(f"[classroom] course {r['course']}, exchange {r['exchange']}, student homes {r['homes']}")
        return 0
    try:
        c, x, cid = classroom.course_settings(args.course, args.exchange, args.course_id)
        if root is None:
            root = classroom.repository_of(c)
        if root is None and (Path.home() / "xaicourse" / "solutions").is_dir():
            root = Path.home() / "xaicourse"   # the README's private clone
        if root is None or not (Path(root) / "solutions").is_dir():
            raise ValueError("no course repository: give --root DIR (your private clone of the course, with "
                             "solutions/), or run the command inside it" + (f" (course folder {c} was released "
                             f"from {root}, which has no solutions/)" if root else ""))
        known = course.exercise_names(root)
        names = args.exercises or known
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise ValueError(f"unknown exercise(s) {', '.join(unknown)}; known: {', '.join(known)}")
        if args.action == "release":
            classroom.release(root, c, x, cid, names, force=args.force)
            print(f"[classroom] {len(names)} exercise(s) released from {root} to {x} (course folder {c})")
        elif args.action == "collect":
            for n in names:
                classroom.collect(c, x, n, cid)
        elif args.action == "grade":
            rows = classroom.autograde(root, c, jobs=args.jobs, timeout=args.timeout, sandbox=args.sandbox,
                                       resume=args.resume)
            print(f"[classroom] {len(rows)} submission(s) graded → {c / 'grades.csv'}; feedback pages in "
                  f"{c / 'feedback'}; scores in the gradebook (formgrader). Release the pages with "
                  f"`xaicourse classroom feedback EXERCISE`.")
        elif args.action == "feedback":
            for n in (args.exercises or sorted({p.parent.name for p in (c / "feedback").glob("*/*/*.html")})):
                classroom.release_feedback(c, x, n, cid)
        elif args.action == "export":
            print(f"[classroom] {classroom.export(c)}")
    except KeyboardInterrupt:
        print("[classroom] interrupted: grades.csv is unchanged; continue with `xaicourse classroom grade "
              "--resume`", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as err:
        print(f"xaicourse: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
