"""Grading a class: validation, templates, the pool of submissions, the resumable CSV."""
from __future__ import annotations

import csv
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..sandbox import _kill_running, resolve_sandbox
from .discovery import discover
from .layout import exercise_names
from .run import grade_one
from .template import Settings, Template, make_template


FIELDS = ["student", "exercise", "score", "max_score", "status", "tasks", "seconds", "notebook"]


def _read_done(out_csv: Path) -> set:
    if not out_csv.exists():
        return set()
    with open(out_csv, newline="") as fh:
        return {(r["student"], r["exercise"]) for r in csv.DictReader(fh)}


def validate(root: Path, submissions: Path, out_csv: Path, timeout, jobs) -> None:
    """Every argument checked before any work: clear errors, nothing half-done."""
    from .._validate import check_int

    check_int("timeout", timeout, min=1)
    check_int("jobs", jobs, min=1)
    if not submissions.exists():
        raise ValueError(f"submissions folder {submissions} does not exist")
    if not submissions.is_dir():
        raise ValueError(f"submissions must be a folder SUBMISSIONS/<student>/<exercise>/*.ipynb, got the file "
                         f"{submissions}")
    if out_csv.exists() and out_csv.is_dir():
        raise ValueError(f"--out {out_csv} is a folder; give a file name such as grades.csv")
    try:
        out_csv.parent.mkdir(parents=True, exist_ok=True)
        probe = out_csv.parent / f".xaicourse-write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write the grades next to --out {out_csv}: {err}") from err


def _prepare(template: Template, log=print) -> None:
    """Warm what the notebook's set-up needs (the course models, in quick mode as the sandbox runs
    it) here, before any sandbox starts: a cold cache would train inside every submission's time."""
    prep = template.checks.prepare
    if prep is None:
        return
    old = os.environ.get("XAICOURSE_QUICK")
    os.environ["XAICOURSE_QUICK"] = "1"
    t0 = time.time()
    try:
        prep()
    finally:
        if old is None:
            os.environ.pop("XAICOURSE_QUICK", None)
        else:
            os.environ["XAICOURSE_QUICK"] = old
    if time.time() - t0 > 5:
        log(f"[grade] {template.exercise}: models prepared in {time.time() - t0:.0f}s")


def grade(root: Path, submissions: Path, out_csv: Path, timeout: int = 120, jobs: int = 1,
          sandbox: str = "auto", resume: bool = False, roster: Path | None = None,
          memory_mb: int = 6144, feedback: bool = True, log=print) -> list[dict]:
    """Grade every entry of ``submissions`` into ``out_csv`` (see the module docstring).

    Returns the rows written by this call. Rows are appended to ``<out_csv>.partial`` as they are
    graded, which replaces ``out_csv`` when the batch is complete (``resume=True`` continues a
    partial file, or the finished CSV). The graded notebooks, logs and feedback pages are kept in
    ``<out_csv stem>_files/<student>/<exercise>/``.
    """
    root, submissions, out_csv = Path(root), Path(submissions), Path(out_csv)
    validate(root, submissions, out_csv, timeout, jobs)
    kind = resolve_sandbox(sandbox)
    if kind == "none":
        log("[grade] WARNING: no sandbox — submissions run with your permissions and can read and "
            "change your files. Install bubblewrap (apt-get install bubblewrap) or use --sandbox docker.")
    known = exercise_names(root)
    names = None
    if roster is not None:
        names = [line.strip() for line in Path(roster).read_text().splitlines() if line.strip()]
    entries = discover(submissions, known, names)
    # rows go to <out>.partial; <out> is replaced only when the whole batch is graded, so an
    # interrupted regrade never leaves the class with half a grade sheet (--resume continues it)
    partial = partial_path(out_csv)
    if resume and not partial.exists() and out_csv.exists():
        shutil.copy(out_csv, partial)
    elif not resume and partial.exists():
        partial.unlink()
    done = _read_done(partial) if resume else set()
    todo = [e for e in entries if (e.student, e.exercise) not in done]
    artifacts = out_csv.parent / f"{out_csv.stem}_files"
    settings = Settings(root=root, timeout=int(timeout), sandbox=kind, memory_mb=memory_mb,
                        hide=(submissions, out_csv.parent), artifacts=artifacts, feedback=feedback)
    lock = threading.Lock()
    new_file = not partial.exists()
    fh = open(partial, "a", newline="")
    writer = csv.DictWriter(fh, fieldnames=FIELDS)
    if new_file:
        writer.writeheader()
        fh.flush()
    rows = []

    def write(row):
        with lock:
            writer.writerow(row)
            fh.flush()
            os.fsync(fh.fileno())
            rows.append(row)
        log(f"[grade] {row['student']} / {row['exercise'] or '-'}: {float(row['score']):g} / "
            f"{float(row['max_score']):g} ({row['status'] or 'ok'})")

    work = Path(tempfile.mkdtemp(prefix="xaicourse-templates-"))
    try:
        gradable = [e for e in todo if e.folder is not None and e.exercise in known]
        templates = {}
        for ex in sorted({e.exercise for e in gradable}):
            templates[ex] = make_template(root, ex, work)
            _prepare(templates[ex], log)
        for e in todo:
            if e not in gradable:
                write(dict(student=e.student, exercise=e.exercise, score=0.0,
                           max_score=templates[e.exercise].max_score if e.exercise in templates else 0.0,
                           status=e.problem, tasks="", seconds=0.0, notebook=""))

        def run(e):
            try:
                row = grade_one(templates[e.exercise], e, settings, log)
            except Exception as err:  # one bad submission never stops the batch
                import traceback
                log(f"[grade] grading error for {e.student}/{e.exercise}:\n{traceback.format_exc()}")
                row = dict(student=e.student, exercise=e.exercise, score=0.0,
                           max_score=templates[e.exercise].max_score, status=f"grading error: "
                           f"{type(err).__name__}: {str(err)[:200]}", tasks="", seconds=0.0, notebook="")
            write(row)

        pool = ThreadPoolExecutor(max(1, int(jobs)))
        try:
            list(pool.map(run, gradable))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            _kill_running()
            raise
        pool.shutdown()
        fh.close()
        os.replace(partial, out_csv)
    finally:
        fh.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows


def partial_path(out_csv: Path) -> Path:
    """Where the rows of a batch in progress are written (``grades.csv`` → ``grades.csv.partial``)."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.name + ".partial")
