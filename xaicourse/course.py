"""The course pipeline: execute and publish notebooks, generate exercises, autograde.

All real work is done by nbclient/nbconvert (execution, HTML) and nbgrader
(generate_assignment, autograde, the gradebook); this module only arranges files.

Layout it expects under ``root``: ``lectures/NN_topic.ipynb``,
``solutions/NN_topic/*.ipynb`` (nbgrader source), ``exercises/NN_topic/`` (generated).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

# the layout the grader shares lives below this module (course uses autograding, never the reverse)
from .autograding.layout import INLINE_BACKEND, TRUSTED_FILES, _course_dir, exercise_names  # noqa: F401


# ----------------------------------------------------------------------------- discovery
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder at or above ``start`` holding ``lectures/``."""
    p = Path(start or os.getcwd()).resolve()
    for q in (p, *p.parents):
        if (q / "lectures").is_dir() and (q / "solutions").is_dir():
            return q
    raise FileNotFoundError(f"no course root (a folder with lectures/ and solutions/) at or above {p}")


def lecture_notebooks(root: Path) -> list[Path]:
    return sorted((Path(root) / "lectures").glob("[0-9][0-9]*_*.ipynb"))


def solution_notebooks(root: Path) -> list[Path]:
    return sorted((Path(root) / "solutions").glob("[0-9][0-9]*_*/*.ipynb"))


# ----------------------------------------------------------------------------- execution
# A notebook runs in a child process with a per-cell timeout, an overall deadline and a watchdog
# for lost replies (xaicourse.runner); the names stay importable from here.
from .runner import RunResult, execute_notebook  # noqa: E402,F401
from .site import lecture_key, matches_only  # noqa: E402,F401  (--only; site.py needs it too)

GIB = 1024 ** 3
KERNEL_MEMORY = 3 * GIB          # the most a full-size lecture's kernel was seen to hold, with margin


def _available_memory() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def default_jobs(n_notebooks: int | None = None) -> int:
    """Notebooks to run at once: one per CPU core, as many as the free memory holds
    (``KERNEL_MEMORY`` each), never more than there are notebooks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mem = _available_memory()
    jobs = min(cores, max(1, mem // KERNEL_MEMORY)) if mem else cores
    return max(1, min(jobs, n_notebooks or jobs))


def prepare_models(log=print) -> None:
    """Train (or load) the cached course models the lectures use, once, before notebooks run in
    parallel: otherwise two kernels would train the same model at the same time."""
    from .models import course_model

    t0 = time.time()
    for dataset, options in (("digits", {}), ("digits", {"checkpoint_every": 5}),
                             ("digits", {"kind": "mlp"}), ("shapes", {})):
        course_model(dataset, progress=False, **options)
    if time.time() - t0 > 5:
        log(f"[build] course models prepared in {time.time() - t0:.0f}s")


# Seconds each lecture took at full size (-j 2, quiet 2-core machine, benchmarks/bench_build.py):
# only the order of the first build on a fresh clone comes from here (longest first, so that the
# long lectures do not start last); every later build orders by its own last timings.
TYPICAL_SECONDS = {"05": 400, "09": 320, "08": 160, "02": 90, "03": 60, "01": 30, "07": 30, "06": 25,
                   "04": 20, "00": 10, "04b": 10}


def _timings_file(root: Path, quick: bool) -> Path:
    return root / "build" / f"timings-{'quick' if quick else 'full'}.json"


def build(root: Path, out: Path | None = None, quick: bool = False, only: str | None = None,
          jobs: int | None = None, instructor: bool = False, log=print,
          deadline: float | None = None) -> list[RunResult]:
    """Execute the lectures (and, with ``instructor``, the solutions) once and write the course site.

    The **student site** (default ``build/site``) holds the executed lectures and the generated
    exercises (unexecuted), never the solutions; ``instructor=True`` also executes every solution
    and writes the **instructor site** (default ``build/instructor-site``) with a separate, marked
    section for them. The site is built by Sphinx + MyST-NB from the notebooks executed here (see
    ``xaicourse.site``). ``jobs`` notebooks run at once (default ``default_jobs()``: the cores the
    memory allows; each kernel then limited to one torch thread), longest first by the last
    build's timings. Every notebook has a per-cell timeout and an overall ``deadline`` (see
    ``xaicourse.runner``); a notebook that fails is reported by name and cell and the others go
    on. Returns one ``RunResult`` per executed notebook, in course order; the CLI exits non-zero
    when any failed.
    """
    from concurrent.futures import ThreadPoolExecutor

    from . import site

    root = Path(root)
    out = Path(out or root / "build" / ("instructor-site" if instructor else "site"))
    notebooks = lecture_notebooks(root) + (solution_notebooks(root) if instructor else [])
    if only:
        notebooks = [p for p in notebooks if matches_only(only, p.name) or matches_only(only, p.parent.name)]
    has_exercises = (root / "exercises").is_dir() and any(
        matches_only(only, p.name) for p in (root / "exercises").glob("[0-9][0-9]*_*"))
    if not notebooks and not has_exercises:
        raise ValueError(f"no notebooks to build (only={only!r})")
    jobs = default_jobs(len(notebooks)) if jobs is None else max(1, int(jobs))
    timings_path = _timings_file(root, quick)
    try:
        timings = json.loads(timings_path.read_text())
    except (OSError, ValueError):
        timings = {}

    def expected_seconds(p: Path) -> float:
        typical = TYPICAL_SECONDS.get(lecture_key(p.name), 0.0) if p.parent.name == "lectures" else 0.0
        return float(timings.get(str(p.relative_to(root)), typical))

    order = sorted(notebooks, key=expected_seconds, reverse=True)
    if notebooks:
        prepare_models(log)
    log(f"[build] {len(notebooks)} notebook(s), {jobs} at a time ({'quick' if quick else 'full size'})")

    done = []

    def run(p):
        rel = p.relative_to(root)
        log(f"[build] running {rel} ...")
        r = execute_notebook(p, quick=quick, threads=1 if jobs > 1 else None, deadline=deadline,
                             log=lambda line: log(line))
        done.append(r)
        note = f" (reply recovered in cell(s) {r.recovered})" if r.recovered else ""
        log(f"[build]   {rel}: {'ok' if r.ok else 'FAILED'} in {r.seconds:.1f}s{note} "
            f"[{len(done)}/{len(notebooks)}]")
        return r

    t0 = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        by_path = dict(zip(order, pool.map(run, order)))
    results = [by_path[p] for p in notebooks]
    log(f"[build] executed {len(results)} notebook(s) in {time.time() - t0:.1f}s")
    try:
        timings.update({str(r.path.relative_to(root)): round(r.seconds, 1) for r in results if r.ok})
        timings_path.parent.mkdir(parents=True, exist_ok=True)
        timings_path.write_text(json.dumps(timings, indent=1, sort_keys=True))
    except OSError:
        pass                     # a read-only checkout still builds; only the ordering is lost
    site.write_site(root, out, results, instructor=instructor, quick=quick, only=only, log=log)
    failures = [r for r in results if not r.ok]
    for r in failures:
        log(f"[build] FAILED: {r.error}")
    log(f"[build] {len(results) - len(failures)}/{len(results)} notebooks ok; site: {out / 'index.html'}")
    return results


# ----------------------------------------------------------------------------- nbgrader
def _nbgrader(course: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
           f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    env = dict(os.environ, MPLBACKEND=INLINE_BACKEND, XAICOURSE_QUICK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    # nbgrader shells out to `alembic`, which lives next to this interpreter (an un-activated venv)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=env)


def generate_exercises(root: Path, dest: Path | None = None, log=print, only: list[str] | None = None) -> Path:
    """Regenerate ``exercises/`` (or ``dest``) from ``solutions/`` with nbgrader (``only``: just
    those exercises, the others left as they are)."""
    root = Path(root)
    dest = Path(dest or root / "exercises")
    names = exercise_names(root)
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"unknown exercise(s) {unknown}; known: {', '.join(names)}")
        names = list(only)
    course = _course_dir(root, names)
    try:
        for name in names:
            r = _nbgrader(course, "generate_assignment", name, "--force")
            if r.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {name} failed:\n{r.stdout}\n{r.stderr}")
        if dest.exists() and not only:
            shutil.rmtree(dest)
        dest.mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.rmtree(dest / name, ignore_errors=True)
            shutil.copytree(course / "release" / name, dest / name)
            log(f"[exercises] {name} → {dest / name}")
    finally:
        shutil.rmtree(course, ignore_errors=True)
    return dest


def _canonical(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return json.dumps(nb, sort_keys=True)


def notebooks_with_outputs(root: Path) -> list[Path]:
    root = Path(root)
    found = []
    for p in sorted(root.glob("lectures/*.ipynb")) + sorted(root.glob("solutions/*/*.ipynb")) \
            + sorted(root.glob("exercises/*/*.ipynb")):
        nb = nbformat.read(p, as_version=4)
        if any(c.cell_type == "code" and (c.get("outputs") or c.get("execution_count")) for c in nb.cells):
            found.append(p)
    return found


def check(root: Path, log=print) -> list[str]:
    """Problems that block a commit: exercises out of sync, notebooks with outputs."""
    root = Path(root)
    problems = [f"{p.relative_to(root)} carries outputs (clear them before committing)"
                for p in notebooks_with_outputs(root)]
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate_exercises(root, Path(tmp) / "ex", log=lambda *a: None)
        have = {p.relative_to(root / "exercises") for p in (root / "exercises").rglob("*") if p.is_file()}
        want = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        for rel in sorted(want - have):
            problems.append(f"exercises/{rel} is missing: run `xaicourse exercises`")
        for rel in sorted(have - want):
            problems.append(f"exercises/{rel} has no source in solutions/: run `xaicourse exercises`")
        for rel in sorted(want & have):
            a, b = fresh / rel, root / "exercises" / rel
            same = (_canonical(a) == _canonical(b)) if rel.suffix == ".ipynb" else a.read_bytes() == b.read_bytes()
            if not same:
                problems.append(f"exercises/{rel} is out of sync with solutions/: run `xaicourse exercises`")
    for p in problems:
        log(f"[check] {p}")
    return problems


def grade(root: Path, submissions: Path, out_csv: Path, timeout: int = 120, log=print, **options) -> list[dict]:
    """Autograde a class: see ``xaicourse.autograding.grade`` (isolated, sandboxed, resumable)."""
    from . import autograding

    return autograding.grade(root, submissions, out_csv, timeout=timeout, log=log, **options)
