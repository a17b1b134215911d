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
from dataclasses import dataclass
from pathlib import Path

import nbformat

# Kernels draw figures inline (into the notebook) even when the caller runs headless with Agg.
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


# ----------------------------------------------------------------------------- discovery
def find_root(start: str | os.PathLike | None = None) -> Path:
    """The course root: the nearest folder at or above ``start`` holding ``lectures/``."""
    p = Path(start or os.getcwd()).resolve()
    for q in (p, *p.parents):
        if (q / "lectures").is_dir() and (q / "solutions").is_dir():
            return q
    raise FileNotFoundError(f"no course root (a folder with lectures/ and solutions/) at or above {p}")


def lecture_notebooks(root: Path) -> list[Path]:
    return sorted((Path(root) / "lectures").glob("[0-9][0-9]_*.ipynb"))


def solution_notebooks(root: Path) -> list[Path]:
    return sorted((Path(root) / "solutions").glob("[0-9][0-9]_*/*.ipynb"))


def exercise_names(root: Path) -> list[str]:
    return sorted(p.name for p in (Path(root) / "solutions").glob("[0-9][0-9]_*") if p.is_dir())


# ----------------------------------------------------------------------------- execution
@dataclass
class RunResult:
    path: Path
    ok: bool
    seconds: float
    error: str = ""
    nb: object = None


def execute_notebook(path: Path, quick: bool = False, timeout: int | None = None, kernel: str = "python3",
                     threads: int | None = None) -> RunResult:
    """Run a notebook top to bottom in its own folder; on failure report the failing cell.

    The kernel gets ``XAICOURSE_QUICK=1`` when ``quick``, and ``threads`` caps torch/BLAS
    threads (used when several notebooks run at once). ``timeout`` is per cell (default
    300 s in quick mode, 1800 s otherwise), so a stuck cell fails instead of stalling.
    """
    if timeout is None:
        timeout = 300 if quick else 1800
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, XAICOURSE_QUICK="1" if quick else "0", MPLBACKEND=INLINE_BACKEND,
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    t0 = time.time()
    client = NotebookClient(nb, timeout=timeout, kernel_name=kernel,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(env=env)
        return RunResult(path, True, time.time() - t0, nb=nb)
    except (CellExecutionError, CellTimeoutError) as err:
        idx = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
            o.get("output_type") == "error" for o in c.get("outputs", []))), None)
        where = f"cell {idx}" if idx is not None else "a cell (timeout)"
        return RunResult(path, False, time.time() - t0, f"{path.name}: failed in {where}:\n{err}", nb=nb)
    except Exception as err:  # kernel died, etc.
        return RunResult(path, False, time.time() - t0, f"{path.name}: {type(err).__name__}: {err}", nb=nb)


def build(root: Path, out: Path | None = None, quick: bool = False, only: str | None = None,
          jobs: int = 1, instructor: bool = False, log=print) -> list[RunResult]:
    """Execute the lectures (and, with ``instructor``, the solutions) once and write the course site.

    The **student site** (default ``build/site``) holds the executed lectures and the generated
    exercises (unexecuted), never the solutions; ``instructor=True`` also executes every solution
    and writes the **instructor site** (default ``build/instructor-site``) with a separate, marked
    section for them. The site is built by Sphinx + MyST-NB from the notebooks executed here (see
    ``xaicourse.site``). ``jobs`` notebooks run at once (each kernel then limited to one torch
    thread). Returns one ``RunResult`` per executed notebook; failures are reported by name with
    the failing cell. The CLI exits non-zero when any failed.
    """
    from concurrent.futures import ThreadPoolExecutor

    from . import site

    root = Path(root)
    out = Path(out or root / "build" / ("instructor-site" if instructor else "site"))
    notebooks = lecture_notebooks(root) + (solution_notebooks(root) if instructor else [])
    if only:
        notebooks = [p for p in notebooks if only in p.name or only in p.parent.name]
    has_exercises = (root / "exercises").is_dir() and any(
        only is None or only in p.name for p in (root / "exercises").glob("[0-9][0-9]_*"))
    if not notebooks and not has_exercises:
        raise ValueError(f"no notebooks to build (only={only!r})")
    jobs = max(1, int(jobs))

    def run(p):
        log(f"[build] running {p.relative_to(root)} ...")
        r = execute_notebook(p, quick=quick, threads=1 if jobs > 1 else None)
        log(f"[build]   {p.relative_to(root)}: {'ok' if r.ok else 'FAILED'} in {r.seconds:.1f}s")
        return r

    t0 = time.time()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(run, notebooks))
    log(f"[build] executed {len(results)} notebook(s) in {time.time() - t0:.1f}s")
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


TRUSTED_FILES = ("checks.py",)   # instructor-only files next to a solution: never released, never in a sandbox


def _course_dir(root: Path, names: list[str], dest: Path | None = None) -> Path:
    """A (temporary, unless ``dest``) nbgrader course folder whose source/ holds the solutions."""
    course = Path(tempfile.mkdtemp(prefix="xaicourse-nbgrader-")) if dest is None else Path(dest)
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.ClearSolutions.code_stub = {'python': '# YOUR CODE HERE\\nraise NotImplementedError()'}\n")
    for name in names:
        # checks.py (the hidden checks) never enters a course folder: nbgrader would release it
        shutil.copytree(Path(root) / "solutions" / name, course / "source" / name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", *TRUSTED_FILES))
    return course


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


def _last_error(text: str) -> str:
    """The most telling error line of an nbgrader log (the exception, not the boilerplate)."""
    lines = [l.strip() for l in text.splitlines()]
    for l in reversed(lines):
        if l.startswith(("nbclient.exceptions.", "RuntimeError", "ValueError")) or "Kernel died" in l:
            return l[:300]
    errs = [l for l in lines if "ERROR" in l and "see the the above traceback" not in l]
    return (errs[-1] if errs else lines[-1] if lines else "unknown")[:300]
