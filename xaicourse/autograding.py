"""Grading a class: every submission isolated, every student a row, nothing lost.

``grade(root, submissions, out_csv)`` autogrades ``SUBMISSIONS/<student>/<exercise>/<any>.ipynb``:

1. **Templates** — for each exercise somebody submitted, ``nbgrader generate_assignment`` runs once
   in a template course (its gradebook then holds that exercise only).
2. **Isolation** — each submission is graded in its own throw-away course folder holding what
   nbgrader needs for that one student: a copy of the exercise's gradebook and the submitted
   notebook (no solutions, no other student, no CSV). ``nbgrader autograde`` runs inside a sandbox:
   bubblewrap (``bwrap``: a whitelist of read-only system and Python directories — the course
   repository, the submissions and the output folder do not exist inside — private /tmp, /proc
   and home, no network, own PID namespace so every child dies with it), or a container (``--sandbox docker|podman``), or nothing (``--sandbox none``, warned).
   A watchdog kills the run past the wall-time, memory (RSS of the whole process tree) or disk
   limit. The model cache is visible read-only.
3. **Trusted post-processing** — outside the sandbox the score is read from that submission's own
   gradebook and checked (0 ≤ score ≤ max of the trusted template), the status of every task is
   taken from the autograded notebook (passed / failed / error / timeout / kernel died), a kernel
   death re-runs the remaining tasks in a fresh kernel (the cell that killed it is replaced by a
   ``raise``), answer cells are scanned for tampering (``flagged: …``), and a feedback page is
   written with hidden-test *results* but not their code.
4. **Nothing lost** — each row is appended to the CSV (and flushed) as soon as it is graded, the
   autograded notebook, the nbgrader log and the feedback are kept next to the CSV, ``resume=True``
   skips rows already there, Ctrl-C/SIGTERM leaves a valid CSV and says how to resume.
"""
from __future__ import annotations

import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .course import INLINE_BACKEND, _course_dir, exercise_names

FIELDS = ["student", "exercise", "score", "max_score", "status", "tasks", "seconds", "notebook"]
SANDBOXES = ("auto", "bwrap", "docker", "podman", "none")
DOCKER_IMAGE = "xaicourse-grader"

# ----------------------------------------------------------------------------- nbgrader config
NBGRADER_CONFIG = '''c = get_config()
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}
from nbgrader.preprocessors import (Execute, IgnorePattern, LimitOutput, SaveAutoGrades, AssignLatePenalties,
                                    CheckCellMetadata, GetGrades, ClearHiddenTests)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from xaicourse.autograding import StderrAsStdout, HideHiddenTestCode
c.Autograde.autograde_preprocessors = [Execute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       StderrAsStdout, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTestCode, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
c.LimitOutput.max_lines = 2000
c.LimitOutput.max_length = 20000
'''


def _preprocessor_base():
    from nbgrader.preprocessors import NbGraderPreprocessor
    return NbGraderPreprocessor


class _LazyBase:
    """nbgrader is imported only when the preprocessors are used (inside nbgrader itself)."""


try:  # the classes must be importable by name from nbgrader's config
    from nbgrader.preprocessors import NbGraderPreprocessor as _Base
except Exception:  # pragma: no cover - nbgrader is a dependency
    _Base = _LazyBase


def _is_test_cell(cell) -> bool:
    md = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and md.get("grade", False) and not md.get("solution", False)


class StderrAsStdout(_Base):
    """A warning printed on stderr by a passing test is not a failure: nbgrader scores any
    stderr output of a test cell as 0, so stderr streams of test cells become stdout."""

    def preprocess_cell(self, cell, resources, index):
        if _is_test_cell(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "stream" and out.get("name") == "stderr":
                    out["name"] = "stdout"
        return cell, resources


class HideHiddenTestCode(_Base):
    """Feedback shows each hidden test's result (error name and message) but not its code: the
    traceback, which quotes the failing line, is cut to its last line."""

    def preprocess_cell(self, cell, resources, index):
        if _is_test_cell(cell):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources


# ----------------------------------------------------------------------------- static scan
_FLAG_ATTRS = {"__code__": "swaps a function's code", "__globals__": "reads function globals",
               "__builtins__": "touches builtins", "__class__": "rewrites classes",
               "__subclasses__": "walks class internals", "ast_transformers": "installs an AST transformer",
               "input_transformers_post": "installs an input transformer",
               "input_transformers_cleanup": "installs an input transformer",
               "custom_exceptions": "hooks IPython's error handling", "set_custom_exc": "hooks IPython's error handling",
               "register_magic_function": "registers a magic", "f_globals": "reads a frame",
               "f_locals": "reads a frame", "_getframe": "reads the call stack"}
_FLAG_NAMES = {"sys.modules": "edits sys.modules", "builtins": "edits builtins", "ctypes": "uses ctypes",
               "subprocess": "starts processes", "os.system": "starts processes", "os.fork": "forks",
               "os.kill": "signals processes", "os.exec": "replaces the process", "signal": "installs signal handlers",
               "gc.get_objects": "walks the heap", "gc.get_referrers": "walks the heap",
               "importlib.reload": "reloads modules", "pty": "opens a terminal", "socket": "opens sockets",
               "multiprocessing": "starts processes", "threading": "starts threads",
               "get_ipython": "drives IPython itself", "atexit": "registers exit hooks",
               "sys.settrace": "traces execution", "sys.setprofile": "traces execution",
               "sys.excepthook": "hooks exceptions", "sys.meta_path": "hooks imports",
               "eval": "evaluates strings", "exec": "executes strings", "compile": "compiles strings",
               "__import__": "imports dynamically", "setattr": "sets attributes dynamically",
               "open": "opens files"}
_MODULE_ATTR_WRITE = "assigns to an attribute of an imported module"
# names the course's notebooks bind to modules in their (locked) set-up cells
_KNOWN_MODULES = {"torch", "np", "numpy", "nn", "F", "plt", "matplotlib", "scipy", "sklearn", "captum", "lime",
                  "xaicourse", "math", "os", "sys", "builtins", "A", "L", "viz", "models", "data", "fv", "T",
                  "IPython", "nbgrader", "grading", "random", "functools", "inspect", "types", "importlib"}


def scan_answer(source: str) -> list[str]:
    """Reasons to flag one answer cell for review (monkeypatching, process, IPython hooks…).

    A static scan of the AST: it flags what an honest answer never needs. It cannot prove
    innocence (code can be obfuscated), which is why the status says "flagged" for an
    instructor to look at rather than deciding the grade.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the kernel reports it; nothing to flag
    reasons: dict[str, None] = {}
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                imported.add((a.asname or a.name).split(".")[0])
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            for a in node.names:
                full = f"{mod}.{a.name}" if mod else a.name
                for key, why in _FLAG_NAMES.items():
                    if full == key or full.startswith(key + ".") or (mod and mod == key):
                        reasons[f"{why} ({full})"] = None
        elif isinstance(node, ast.Attribute):
            if node.attr in _FLAG_ATTRS:
                reasons[f"{_FLAG_ATTRS[node.attr]} (.{node.attr})"] = None
            dotted = _dotted(node)
            for key, why in _FLAG_NAMES.items():
                if dotted and (dotted == key or dotted.startswith(key + ".")) and "." in key:
                    reasons[f"{why} ({dotted})"] = None
        elif isinstance(node, ast.Name) and node.id in ("eval", "exec", "compile", "__import__", "get_ipython",
                                                       "setattr", "globals", "vars", "breakpoint"):
            reasons[f"{_FLAG_NAMES.get(node.id, 'inspects namespaces')} ({node.id})"] = None
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                base = t
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                if isinstance(t, (ast.Attribute, ast.Subscript)) and isinstance(base, ast.Name) \
                        and (base.id in imported or base.id in _KNOWN_MODULES):
                    reasons[f"{_MODULE_ATTR_WRITE} ({_dotted(t) or base.id})"] = None
    return list(reasons)


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


# ----------------------------------------------------------------------------- discovery
@dataclass
class Entry:
    """One row to grade: a student's exercise folder (or why there is nothing to grade)."""
    student: str
    exercise: str
    folder: Path | None = None
    problem: str = ""


def discover(submissions: Path, known: list[str], roster: list[str] | None = None) -> list[Entry]:
    """Every entry of SUBMISSIONS becomes at least one Entry; roster names with nothing get one too."""
    entries: list[Entry] = []
    seen = set()
    try:
        children = sorted(submissions.iterdir(), key=lambda p: p.name)
    except OSError as err:
        raise ValueError(f"cannot read the submissions folder {submissions}: {err}") from err
    for child in children:
        student = child.name
        if child.name.startswith("."):
            continue
        seen.add(student)
        try:
            if child.is_symlink() and not child.exists():
                entries.append(Entry(student, "", problem="broken symlink, not a folder"))
                continue
            if not child.is_dir():
                hint = " (unpack archives first)" if child.suffix in (".zip", ".tar", ".gz", ".tgz") else ""
                entries.append(Entry(student, "", problem=f"not a folder: {child.name}{hint}"))
                continue
            ex_dirs = sorted((p for p in child.iterdir() if p.is_dir() and not p.name.startswith(".")),
                             key=lambda p: p.name)
        except OSError as err:
            entries.append(Entry(student, "", problem=f"unreadable: {type(err).__name__}: {err}"))
            continue
        if not ex_dirs:
            entries.append(Entry(student, "", problem="no exercise folder in the submission"))
            continue
        for ex_dir in ex_dirs:
            ex = ex_dir.name
            if ex not in known:
                guess = [k for k in known if k.split("_")[0] == ex.split("_")[0][:2]] if ex[:2].isdigit() else []
                if len(guess) == 1:
                    entries.append(Entry(student, guess[0], ex_dir, problem=f"folder {ex!r} graded as {guess[0]}"))
                else:
                    entries.append(Entry(student, ex, problem=f"unknown exercise {ex!r} (known: {', '.join(known)})"))
                continue
            entries.append(Entry(student, ex, ex_dir))
    for name in roster or []:
        if name not in seen:
            entries.append(Entry(name, "", problem="missing: no submission"))
    return entries


def _pick_notebook(folder: Path, exercise: str) -> tuple[Path | None, str]:
    """The submitted notebook: the expected name, else the only notebook under any name."""
    try:
        nbs = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file())
    except OSError as err:
        return None, f"unreadable submission ({type(err).__name__}: {err})"
    expected = [p for p in nbs if p.name == f"{exercise}.ipynb"]
    if expected:
        return expected[0], ""
    if len(nbs) == 1:
        return nbs[0], f"notebook {nbs[0].name!r} accepted as {exercise}.ipynb"
    if not nbs:
        return None, "no notebook (.ipynb) in the submission"
    return None, f"{len(nbs)} notebooks and none named {exercise}.ipynb: cannot tell which to grade"


# ----------------------------------------------------------------------------- repair
def _repair(sub, release) -> list[str]:
    """Put back nbgrader metadata an editor stripped or renamed, matching cells to the release.

    Cells are matched in order: a release cell that is locked matches the submission cell with the
    same source; answer cells match the cells between them. Returns what was repaired.
    """
    notes = []
    rel_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in release.cells]
    sub_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in sub.cells]
    wanted = {i for i in rel_ids if i}
    have = {i for i in sub_ids if i}
    if wanted <= have and len(set(sub_ids) - {None}) == len([i for i in sub_ids if i]):
        return notes
    if len(sub.cells) == len(release.cells):
        pairs = list(zip(sub.cells, release.cells))
    else:  # align on identical (locked) sources
        pairs, j = [], 0
        for rc in release.cells:
            while j < len(sub.cells) and sub.cells[j].source.strip() != rc.source.strip() \
                    and not rc.metadata.get("nbgrader", {}).get("solution"):
                j += 1
            if j < len(sub.cells):
                pairs.append((sub.cells[j], rc))
                j += 1
    fixed = 0
    for sc, rc in pairs:
        rmd = rc.metadata.get("nbgrader")
        if rmd and sc.metadata.get("nbgrader", {}).get("grade_id") != rmd.get("grade_id"):
            sc.metadata["nbgrader"] = json.loads(json.dumps(rmd))
            fixed += 1
    if fixed:
        notes.append(f"nbgrader metadata of {fixed} cell(s) restored from the release")
    ids = [c.get("id") for c in sub.cells]
    if len(set(ids)) != len(ids):
        for k, c in enumerate(sub.cells):
            c["id"] = f"cell-{k}"
        notes.append("duplicated cell ids renumbered")
    return notes


# ----------------------------------------------------------------------------- sandbox
def bwrap_available() -> tuple[bool, str]:
    exe = shutil.which("bwrap")
    if not exe:
        return False, "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
    try:
        r = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"],
                           capture_output=True, text=True, timeout=20)
    except Exception as err:  # pragma: no cover
        return False, f"bwrap failed to start: {err}"
    if r.returncode != 0:
        return False, f"bwrap cannot create namespaces here: {r.stderr.strip()[:200]}"
    return True, ""


def resolve_sandbox(sandbox: str) -> str:
    if sandbox not in SANDBOXES:
        raise ValueError(f"sandbox must be one of {SANDBOXES}, got {sandbox!r}")
    if sandbox == "auto":
        ok, why = bwrap_available()
        return "bwrap" if ok else "none"
    if sandbox == "bwrap":
        ok, why = bwrap_available()
        if not ok:
            raise ValueError(f"sandbox 'bwrap' is not usable: {why} (or choose --sandbox docker/none)")
    if sandbox in ("docker", "podman") and not shutil.which(sandbox):
        raise ValueError(f"sandbox {sandbox!r}: the {sandbox} command is not installed")
    return sandbox


def sandbox_command(kind: str, argv: list[str], course: Path, cache: Path | None = None) -> list[str]:
    """``argv`` wrapped in the chosen sandbox; ``course`` is the only writable folder."""
    course = course.resolve()
    if kind == "none":
        return argv
    if kind == "bwrap":
        return _bwrap(argv, course, cache)
    # docker / podman: the image must hold this Python environment (see the README)
    return [kind, "run", "--rm", "--network", "none", "--pids-limit", "512", "--memory", "6g",
            "-v", f"{course}:{course}", "-w", str(course), DOCKER_IMAGE] + argv


def _bwrap(argv: list[str], course: Path, cache: Path | None) -> list[str]:
    """A sandbox built from a whitelist: the system's read-only directories, this Python (its base
    installation, the virtual environment, the xaicourse package), the model cache (read-only), the
    cache key, and the one writable course folder. Nothing else of the machine exists inside — not
    the course repository, not the submissions, not the grades — and the sandbox's own command
    line, visible in its /proc, names only those whitelisted paths."""
    import xaicourse

    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--dev", "/dev", "--proc", "/proc",
           "--tmpfs", "/tmp", "--tmpfs", "/run"]
    for d in ("/usr", "/etc", "/opt", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(d):
            cmd += ["--symlink", os.readlink(d), d]
        elif os.path.isdir(d):
            cmd += ["--ro-bind", d, d]
    pkg = Path(xaicourse.__file__).resolve().parent
    home = Path.home()
    cmd += ["--tmpfs", str(home)]
    keep = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), pkg,
            Path(os.path.realpath(sys.executable)).parent.parent,
            Path(os.path.abspath(sys.executable)).parent.parent}  # a symlinked venv, as it is called
    key = home / ".config" / "xaicourse"
    if key.exists():
        keep.add(key.resolve())
    if cache is not None and cache.exists():
        keep.add(cache.resolve())
    for p in sorted(keep, key=lambda q: len(q.parts)):
        if not any(_inside(p, q) and p != q for q in keep):  # parents first, no double mounts
            cmd += ["--ro-bind", str(p), str(p)]
    cmd += ["--bind", str(course), str(course), "--chdir", str(course), "--setenv", "HOME", str(home),
            "--setenv", "MPLCONFIGDIR", str(course / ".matplotlib"), "--"]
    return cmd + argv


def _inside(p: Path, parent: Path) -> bool:
    try:
        p.relative_to(parent)
        return True
    except ValueError:
        return False


def _tree_rss(proc) -> int:
    import psutil
    try:
        ps = psutil.Process(proc.pid)
        return sum(c.memory_info().rss for c in [ps, *ps.children(recursive=True)])
    except psutil.Error:
        return 0


def _dir_size(p: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(p):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


_RUNNING: set = set()


def _kill_running() -> None:
    """Kill every sandboxed run still going (on Ctrl-C / SIGTERM)."""
    import signal

    for proc in list(_RUNNING):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass


def run_limited(cmd, cwd, env, wall: float, memory_mb: int, disk_mb: int, output_kb: int = 512):
    """Run ``cmd`` in its own session; kill the whole process group past a limit.

    Returns (returncode, output text (cut to ``output_kb``), reason it was killed or "").
    """
    import signal

    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        _RUNNING.add(proc)
        reason = ""
        t0 = time.time()
        while proc.poll() is None:
            time.sleep(0.25)
            if time.time() - t0 > wall:
                reason = f"wall time over {wall:.0f}s"
            elif _tree_rss(proc) > memory_mb * 2 ** 20:
                reason = f"memory over {memory_mb} MB"
            elif int(time.time() - t0) % 5 == 0 and _dir_size(Path(cwd)) > disk_mb * 2 ** 20:
                reason = f"disk use over {disk_mb} MB"
            if reason:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
                break
        _RUNNING.discard(proc)
        log.seek(0)
        raw = log.read()
    text = raw.decode("utf-8", "replace")
    if len(text) > output_kb * 1024:
        text = text[: output_kb * 512] + "\n…[output cut]…\n" + text[-output_kb * 512:]
    return proc.returncode, text, reason


# ----------------------------------------------------------------------------- grading one
@dataclass
class Settings:
    root: Path
    timeout: int = 120
    sandbox: str = "none"
    memory_mb: int = 6144
    disk_mb: int = 512
    hide: tuple = ()
    artifacts: Path | None = None
    feedback: bool = True


@dataclass
class Template:
    exercise: str
    course: Path
    release_nb: object
    max_score: float
    cells: dict = field(default_factory=dict)   # grade_id → (points, is_test)


def make_template(root: Path, exercise: str, workdir: Path) -> Template:
    """``nbgrader generate_assignment`` for one exercise in its own template course."""
    from nbgrader.api import Gradebook

    course = _course_dir(root, [exercise], dest=workdir / f"template-{exercise}")
    (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    r = _nbgrader(course, "generate_assignment", exercise, "--force")
    if r.returncode != 0:
        raise RuntimeError(f"nbgrader generate_assignment {exercise} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        max_score = float(gb.find_assignment(exercise).max_score)
    rel = nbformat.read(course / "release" / exercise / f"{exercise}.ipynb", as_version=4)
    cells = {}
    for c in rel.cells:
        md = c.metadata.get("nbgrader", {})
        if md.get("grade"):
            cells[md["grade_id"]] = (float(md.get("points", 0)), not md.get("solution", False))
    return Template(exercise, course, rel, max_score, cells)


def _nbgrader(course: Path, *args: str, timeout: float | None = None, cmd_prefix=None):
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
           f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    return subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=_env())


def _env() -> dict:
    env = dict(os.environ, MPLBACKEND=INLINE_BACKEND, XAICOURSE_QUICK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    # the kernel must import this very package (an editable checkout may not be on sys.path otherwise)
    import xaicourse
    pkg_parent = str(Path(xaicourse.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _task_status(cell) -> str:
    outs = cell.get("outputs", [])
    errs = [o for o in outs if o.get("output_type") == "error"]
    if not errs:
        return "passed"
    e = errs[-1]
    name = e.get("ename", "")
    if name in ("CellTimeoutError", "TimeoutError") or "timed out" in e.get("evalue", "").lower():
        return "timeout"
    if name in ("DeadKernelError",) or "kernel died" in e.get("evalue", "").lower():
        return "kernel died"
    if name in ("AssertionError", "ForbiddenCall"):
        why = e.get("evalue", "").splitlines()[0][:120] if e.get("evalue") else ""
        return "failed" + (f" ({why})" if name == "ForbiddenCall" and why else "")
    if name == "NotImplementedError":
        return "not answered"
    return f"error ({name})"


_PROGRESS = "_xaicourse_progress"


def _instrument(nb, progress: Path) -> None:
    """Before each answer cell, a cell that records which answer runs (to find a kernel killer)."""
    cells = []
    for k, c in enumerate(nb.cells):
        md = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and md.get("solution") and not md.get("grade"):
            cells.append(nbformat.v4.new_code_cell(
                f"open({str(progress)!r}, 'w').write({md.get('grade_id', str(k))!r})"))
        cells.append(c)
    nb.cells = cells


def grade_one(template: Template, entry: Entry, settings: Settings, log=print) -> dict:
    """Grade one submission in an isolated, sandboxed course folder → one CSV row."""
    from nbgrader.api import Gradebook

    t0 = time.time()
    row = dict(student=entry.student, exercise=entry.exercise, score=0.0, max_score=template.max_score,
               status="", tasks="", seconds=0.0, notebook="")
    nb_path, note = _pick_notebook(entry.folder, entry.exercise)
    notes = [n for n in (entry.problem, note) if n]
    if nb_path is None:
        row.update(status=note, seconds=round(time.time() - t0, 1))
        return row
    row["notebook"] = nb_path.name
    try:
        sub = nbformat.read(nb_path, as_version=4)
    except Exception as err:
        row.update(status=f"unreadable notebook ({type(err).__name__}: {str(err)[:120]})",
                   seconds=round(time.time() - t0, 1))
        return row
    notes += _repair(sub, template.release_nb)
    flags = {}
    for c in sub.cells:
        md = c.metadata.get("nbgrader", {})
        if c.cell_type == "code" and not (md.get("locked") or (md.get("grade") and not md.get("solution"))):
            for why in scan_answer(c.source):
                flags[why] = None
    work = Path(tempfile.mkdtemp(prefix="xaicourse-grade-"))
    try:
        course = work / "course"
        _instrument(sub, course / f".{_PROGRESS}")
        (course / "source" / entry.exercise).mkdir(parents=True)
        shutil.copy(template.course / "gradebook.db", course / "gradebook.db")
        (course / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
        startup = course / ".ipython" / "profile_default" / "startup"
        sdir = course / "submitted" / entry.student / entry.exercise
        sdir.mkdir(parents=True)
        died, statuses, score = [], {}, 0.0
        for attempt in range(len(template.cells) + 1):
            nbformat.write(sub, sdir / f"{entry.exercise}.ipynb")
            # the kernel records the pristine state before any cell runs (grading.check_integrity);
            # IPython needs its folder writable, so the file is written afresh before every run
            shutil.rmtree(startup.parent.parent, ignore_errors=True)
            startup.mkdir(parents=True)
            (startup / "00-xaicourse-grading.py").write_text("import xaicourse.grading as _g\n_g.guard()\ndel _g\n")
            argv = [sys.executable, "-m", "nbgrader", "autograde", entry.exercise, f"--student={entry.student}",
                    "--create", "--force", f"--ExecutePreprocessor.timeout={settings.timeout}",
                    f"--CourseDirectory.root={course}", f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
            from .models import cache_dir
            cmd = sandbox_command(settings.sandbox, argv, course, cache=cache_dir())
            wall = settings.timeout * max(4, len(template.cells)) + 180
            env = dict(_env(), IPYTHONDIR=str(course / ".ipython"))
            code, text, killed = run_limited(cmd, course, env, wall, settings.memory_mb, settings.disk_mb)
            (work / f"nbgrader-{attempt}.log").write_text(text)
            auto = course / "autograded" / entry.student / entry.exercise / f"{entry.exercise}.ipynb"
            dead = killed or "DeadKernelError" in text or "Kernel died" in text or "kernel died" in text.lower()
            if not dead and auto.exists():
                break
            culprit = _read_progress(course, entry)
            if killed:
                notes.append(f"killed: {killed}")
            if culprit and culprit not in died and not killed:
                died.append(culprit)
                _neutralise(sub, culprit)
                continue
            break
        earned = _earned_all(course, entry, template, Gradebook)
        score = sum(earned.values())
        got = nbformat.read(auto, as_version=4) if auto.exists() else None
        by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in got.cells} if got else {}
        killed_tests = {t for gid in died for t in _tests_after(template, gid)}
        statuses = {}
        for gid, (pts, is_test) in template.cells.items():
            if not is_test:
                continue
            if gid in killed_tests:
                statuses[gid] = "kernel died"
            elif killed:
                statuses[gid] = f"killed ({killed})"
            elif gid not in by_id:
                statuses[gid] = "not graded"
            else:
                statuses[gid] = "passed" if earned[gid] >= pts else _task_status(by_id[gid])
        if not auto.exists() and not killed:
            notes.append("autograde failed: " + _last_error(text))
        if died:
            notes.append(f"kernel died in {', '.join(died)}; the other tasks were re-run in a fresh kernel")
        row["score"] = score
        row["tasks"] = "; ".join(f"{gid}={statuses[gid]} {earned[gid]:g}/{pts:g}"
                                 for gid, (pts, is_test) in template.cells.items() if is_test)
        if flags:
            notes.insert(0, "flagged: " + "; ".join(list(flags)[:6]))
        row["status"] = "; ".join(notes) if notes else "ok"
        if settings.feedback and auto.exists():
            _nbgrader(course, "generate_feedback", entry.exercise, f"--student={entry.student}", "--force",
                      timeout=300)
        if settings.artifacts is not None:
            _keep(work, course, entry, settings.artifacts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row["seconds"] = round(time.time() - t0, 1)
    return row


def _read_progress(course: Path, entry: Entry) -> str | None:
    try:
        return (course / f".{_PROGRESS}").read_text()[:200]
    except OSError:
        return None


def _neutralise(nb, grade_id: str) -> None:
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            c.source = "raise RuntimeError('this answer killed the kernel during grading')"


def _tests_after(template: Template, answer_id: str) -> list[str]:
    ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in template.release_nb.cells]
    if answer_id not in ids:
        return []
    out = []
    for gid in ids[ids.index(answer_id) + 1:]:
        if gid in template.cells and template.cells[gid][1]:
            out.append(gid)
            break
    return out


def _earned_all(course, entry, template: Template, Gradebook) -> dict:
    """Points per graded cell from this submission's gradebook, each clamped to [0, the
    template's points] — a gradebook the graded code rewrote can never give more."""
    earned = {gid: 0.0 for gid in template.cells}
    try:
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            for gid, (pts, _) in template.cells.items():
                try:
                    s = float(gb.find_grade(gid, entry.exercise, entry.exercise, entry.student).score or 0.0)
                except Exception:
                    s = 0.0
                earned[gid] = min(max(s, 0.0), pts) if s == s else 0.0
    except Exception:
        pass
    return earned


def _keep(work: Path, course: Path, entry: Entry, dest_root: Path) -> None:
    dest = dest_root / entry.student / entry.exercise
    dest.mkdir(parents=True, exist_ok=True)
    for src in [course / "autograded" / entry.student / entry.exercise / f"{entry.exercise}.ipynb",
                course / "feedback" / entry.student / entry.exercise / f"{entry.exercise}.html"]:
        if src.exists():
            shutil.copy(src, dest / src.name)
    logs = sorted(work.glob("nbgrader-*.log"))
    if logs:
        (dest / "nbgrader.log").write_text("\n\n".join(p.read_text() for p in logs))


def _last_error(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"(Error|Exception|Kernel died|No notebooks found|No such)", line) \
                and "see the the above traceback" not in line:
            return line[:300]
    return (lines[-1] if lines else "unknown")[:300]


# ----------------------------------------------------------------------------- the batch
def _read_done(out_csv: Path) -> set:
    if not out_csv.exists():
        return set()
    with open(out_csv, newline="") as fh:
        return {(r["student"], r["exercise"]) for r in csv.DictReader(fh)}


def validate(root: Path, submissions: Path, out_csv: Path, timeout, jobs) -> None:
    """Every argument checked before any work: clear errors, nothing half-done."""
    from ._validate import check_int

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


def grade(root: Path, submissions: Path, out_csv: Path, timeout: int = 120, jobs: int = 1,
          sandbox: str = "auto", resume: bool = False, roster: Path | None = None,
          memory_mb: int = 6144, feedback: bool = True, log=print) -> list[dict]:
    """Grade every entry of ``submissions`` into ``out_csv`` (see the module docstring).

    Returns the rows written by this call. The autograded notebooks, nbgrader logs and feedback
    pages are kept in ``<out_csv stem>_files/<student>/<exercise>/``.
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
    done = _read_done(out_csv) if resume else set()
    if not resume and out_csv.exists():
        out_csv.unlink()
    todo = [e for e in entries if (e.student, e.exercise) not in done]
    artifacts = out_csv.parent / f"{out_csv.stem}_files"
    settings = Settings(root=root, timeout=int(timeout), sandbox=kind, memory_mb=memory_mb,
                        hide=(submissions, out_csv.parent), artifacts=artifacts, feedback=feedback)
    lock = threading.Lock()
    new_file = not out_csv.exists()
    fh = open(out_csv, "a", newline="")
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
        for e in todo:
            if e not in gradable:
                write(dict(student=e.student, exercise=e.exercise, score=0.0,
                           max_score=templates[e.exercise].max_score if e.exercise in templates else 0.0,
                           status=e.problem, tasks="", seconds=0.0, notebook=""))

        def run(e):
            try:
                row = grade_one(templates[e.exercise], e, settings, log)
            except Exception as err:  # one bad submission never stops the batch
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
    finally:
        fh.close()
        shutil.rmtree(work, ignore_errors=True)
    return rows
