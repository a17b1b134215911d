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
from .sandbox import _kill_running, bwrap_available, resolve_sandbox

__all__ = ["grade", "grade_one", "scan_answer", "discover", "feedback_html", "partial_path", "bwrap_available",
           "resolve_sandbox"]

FIELDS = ["student", "exercise", "score", "max_score", "status", "tasks", "seconds", "notebook"]

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
               "importlib": "imports dynamically", "pty": "opens a terminal", "socket": "opens sockets",
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
    wall: float = 0.0          # seconds for the whole submission (0: timeout × cells + 180)


@dataclass
class Template:
    exercise: str
    course: Path
    release_nb: object
    max_score: float
    cells: dict = field(default_factory=dict)   # grade_id → (points, is_test)
    checks: object = None                       # xaicourse.checking.Checks
    context: str = ""                           # the locked code cells (for the import scan)


def make_template(root: Path, exercise: str, workdir: Path) -> Template:
    """``nbgrader generate_assignment`` for one exercise (the release notebook and its points) and
    the exercise's hidden checks (``solutions/<exercise>/checks.py``, trusted code)."""
    from nbgrader.api import Gradebook

    from .checking import load_checks

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
    checks = load_checks(root, exercise)
    missing = [gid for gid, (_, is_test) in cells.items() if is_test and gid not in checks.tasks]
    if missing:
        raise RuntimeError(f"{checks.source and 'solutions/' + exercise + '/checks.py'}: no hidden check for the "
                           f"test cell(s) {', '.join(missing)} — add @task({missing[0]!r}) there")
    context = "\n".join(c.source for c in rel.cells if c.cell_type == "code"
                        and not c.metadata.get("nbgrader", {}).get("solution"))
    return Template(exercise, course, rel, max_score, cells, checks, context)


def _nbgrader(course: Path, *args: str, timeout: float | None = None, cmd_prefix=None):
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
           f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}"]
    return subprocess.run(cmd, cwd=course, capture_output=True, text=True, timeout=timeout, env=_env())


def _env() -> dict:
    env = dict(os.environ, MPLBACKEND=INLINE_BACKEND, XAICOURSE_QUICK="1", PYDEVD_DISABLE_FILE_VALIDATION="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    import xaicourse
    pkg_parent = str(Path(xaicourse.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


_KERNEL_ENV_KEYS = ("LANG", "LC_ALL", "TZ", "XAICOURSE_CACHE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TERM")


def _kernel_env(box: Path, student: str) -> dict:
    """The sandboxed kernel's whole environment: what the notebook needs, nothing of the grader's."""
    import xaicourse

    env = {k: os.environ[k] for k in _KERNEL_ENV_KEYS if k in os.environ}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
               HOME=str(Path.home()), MPLBACKEND=INLINE_BACKEND, XAICOURSE_QUICK="1",
               XAICOURSE_STUDENT=student, IPYTHONDIR=str(box / ".ipython"), MPLCONFIGDIR=str(box / ".matplotlib"),
               PYDEVD_DISABLE_FILE_VALIDATION="1", JUPYTER_PLATFORM_DIRS="1", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=str(Path(xaicourse.__file__).resolve().parent.parent))
    from .models import cache_dir
    env["XAICOURSE_CACHE"] = str(cache_dir())
    return env


def _status_of_error(cell) -> str:
    errs = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    return errs[-1].get("ename", "Error") if errs else ""


def _assemble(sub, release):
    """The notebook that runs: the release's locked and test cells (whatever the submission did to
    them, deleted ones put back), the submission's answer cells, and the cells it added, in order."""
    import copy

    rel_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in release.cells]
    # the release's own cells without nbgrader metadata (set-up, demos) run from the release; the
    # submission's copies of them are not cells the student added
    unmarked = {c.source.strip() for c, gid in zip(release.cells, rel_ids) if not gid and c.cell_type == "code"}
    by_id, extras, pending = {}, {}, []
    for c in sub.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid and gid in rel_ids and gid not in by_id:
            by_id[gid] = c
            extras[gid], pending = pending, []
        elif c.cell_type == "code" and c.source.strip() and c.source.strip() not in unmarked:
            pending.append(c)
    cells, answers, added = [], {}, []
    for rc, gid in zip(release.cells, rel_ids):
        for e in extras.get(gid, []):
            cells.append(copy.deepcopy(e))
            added.append(len(cells) - 1)
        md = rc.metadata.get("nbgrader", {})
        if gid and md.get("solution") and gid in by_id:
            c = copy.deepcopy(by_id[gid])
            c.metadata["nbgrader"] = copy.deepcopy(md)
            c.cell_type = rc.cell_type
            cells.append(c)
            answers[len(cells) - 1] = gid
        else:
            cells.append(copy.deepcopy(rc))
            if gid and md.get("solution"):
                answers[len(cells) - 1] = gid
    for e in pending:
        cells.append(copy.deepcopy(e))
        added.append(len(cells) - 1)
    for k, c in enumerate(cells):
        c["id"] = f"cell-{k}"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(release.metadata))
    return nb, answers, added


def _task_of(nb, index: int, template: Template) -> str | None:
    """The test cell (task) that follows cell ``index``."""
    for c in nb.cells[index:]:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in template.cells and template.cells[gid][1]:
            return gid
    return None


def _boot(nb, disabled: dict, template: Template, settings: Settings, box: Path, env: dict, lines: list,
          added=()):
    """A fresh sandboxed kernel that has run the notebook (disabled cells replaced by a ``raise``);
    returns (kernel, (cell index, reason) of the first cell that did not come back, or None)."""
    from .models import cache_dir
    from .sandbox import KernelProblem, SandboxKernel

    for k, c in enumerate(nb.cells):
        if k in disabled and c.cell_type == "code":
            c.source = f"raise RuntimeError('this cell did not finish during grading ({disabled[k]})')"
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    sk = SandboxKernel(box, settings.sandbox, env, settings.timeout, settings.memory_mb, cache=cache_dir(),
                       disk_mb=settings.disk_mb)
    try:
        sk.start(nb)
    except Exception as err:
        sk.close()
        raise RuntimeError(f"the sandboxed kernel did not start: {type(err).__name__}: {str(err)[:200]}") from err
    for k, c in enumerate(nb.cells):
        if c.cell_type != "code" or k in disabled:
            if c.cell_type == "code" and k in disabled:
                try:
                    sk.execute(c, k)
                except KernelProblem:
                    pass
            continue
        t0 = time.time()
        md = c.metadata.get("nbgrader", {})
        # the release's set-up cells (locked, not a test) load torch and the course models: on a
        # loaded machine they need more than an answer's time, and a student cannot change them
        setup = not md.get("solution") and not md.get("grade") and k not in added
        try:
            sk.execute(c, k, timeout=max(4 * settings.timeout, 300) if setup else None)
        except KernelProblem as p:
            lines.append(f"cell {k}: {p.reason} after {time.time() - t0:.1f}s")
            return sk, (k, p.reason)
        lines.append(f"cell {k}: {_status_of_error(c) or 'ok'} in {time.time() - t0:.1f}s")
    return sk, None


def _result_output(text: str):
    return nbformat.v4.new_output("stream", name="stdout", text=text)


def grade_one(template: Template, entry: Entry, settings: Settings, log=print) -> dict:
    """Grade one submission: its notebook runs in a sandboxed kernel; the hidden checks run here
    and call the student's functions through it, receiving plain data only → one CSV row."""
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
        if nb_path.stat().st_size > 50 * 2 ** 20:
            raise ValueError("larger than 50 MB")
        import warnings
        with warnings.catch_warnings():  # duplicated cell ids are repaired below
            warnings.simplefilter("ignore")
            sub = nbformat.reads(nb_path.read_text(encoding="utf-8", errors="replace"), as_version=4)
    except Exception as err:
        row.update(status=f"unreadable notebook ({type(err).__name__}: {str(err)[:120]})",
                   seconds=round(time.time() - t0, 1))
        return row
    notes += _repair(sub, template.release_nb)
    nb, answers, added = _assemble(sub, template.release_nb)
    # ---- static review of what the student wrote (trusted side, before anything runs); one scan
    # at a time: CPython 3.11's ast.parse is not thread-safe (gh-106905)
    with _AST_LOCK:
        flags, ruled_out = _review(nb, answers, added, template)
    return _run_and_check(template, entry, settings, nb, answers, added, flags, ruled_out, notes, row, t0)


_AST_LOCK = threading.Lock()


def _review(nb, answers: dict, added: list, template: Template):
    from .checking import scan_imports

    flags, ruled_out = {}, {}
    every_forbidden = sorted({m for ms in template.checks.forbidden.values() for m in ms})
    for k in list(answers) + added:
        src = nb.cells[k].source
        for why in scan_answer(src):
            flags[why] = None
        gid = answers.get(k)
        forbidden = template.checks.forbidden.get(gid, []) if gid else every_forbidden
        hits = scan_imports(src, forbidden, template.context)
        if hits:
            task_id = _task_of(nb, k, template)
            ruled_out.setdefault(task_id, []).extend(hits)
            for h in hits:
                flags[f"{gid or 'an added cell'} {h}, which the task rules out"] = None
    return flags, ruled_out


def _run_and_check(template, entry, settings, nb, answers, added, flags, ruled_out, notes, row, t0):
    import traceback

    from .checking import Failed, Remote, StudentError
    from .sandbox import KernelProblem

    work = Path(tempfile.mkdtemp(prefix="xaicourse-grade-"))
    os.chmod(work, 0o700)
    box = work / "box"
    lines: list[str] = []
    statuses, messages, earned = {}, {}, {gid: 0.0 for gid in template.cells}
    tests = [gid for gid, (_, is_test) in template.cells.items() if is_test]
    sk = None
    try:
        env = _kernel_env(box, entry.student)
        disabled: dict = {}
        for _ in range(len(nb.cells) + 1):
            box.mkdir(exist_ok=True)
            sk, problem = _boot(nb, disabled, template, settings, box, env, lines, added)
            if problem is None:
                break
            sk.close()
            sk = None
            disabled[problem[0]] = problem[1]
            wall = settings.wall or settings.timeout * max(4, len(template.cells)) + 180
            if time.time() - t0 > wall:
                notes.append(f"killed: wall time over {wall:.0f}s")
                break
        doomed = {}
        for k, reason in disabled.items():
            gid = nb.cells[k].metadata.get("nbgrader", {}).get("grade_id")
            if gid in template.cells and template.cells[gid][1]:
                # a visible test that did not finish is only the student's sanity check: the
                # hidden checks of its task still run (and time out themselves if the answer hangs)
                notes.append(f"visible test {gid}: {reason}")
            elif k in answers:
                doomed.setdefault(_task_of(nb, k, template), reason)
                if reason == "kernel died":
                    notes.append(f"kernel died in {answers[k]}; the other tasks were re-run in a fresh kernel")
                else:
                    notes.append(f"{answers[k]}: {reason}")
            elif k not in added:
                notes.append(f"set-up cell {k} did not finish ({reason}): every task after it is marked so")
                for gid in tests:
                    if _index_of(nb, gid) > k:
                        doomed.setdefault(gid, f"set-up {reason}")
        wall = settings.wall or settings.timeout * max(4, len(template.cells)) + 180
        for gid in tests:
            pts = template.cells[gid][0]
            if gid not in doomed and time.time() - t0 > wall:
                doomed[gid] = f"killed (wall time over {wall:.0f}s)"
            if gid in doomed:
                statuses[gid] = doomed[gid]
                continue
            if gid in ruled_out:
                statuses[gid] = "flagged"
                messages[gid] = "uses " + ", ".join(sorted(set(h.split(" ", 1)[-1] for h in ruled_out[gid])))[:200] \
                    + ": ruled out by the task, 0 points"
                continue
            if sk is None:
                statuses[gid] = "not graded"
                continue
            remote = Remote(sk.run, box, entry.student, entry.exercise)
            check = template.checks.tasks[gid]
            remote.timeout = max(settings.timeout, check.timeout)
            c0 = time.time()
            try:
                check.fn(remote)
            except KernelProblem as p:
                statuses[gid] = p.reason
                sk.close()
                sk, problem = _boot(nb, disabled, template, settings, box, env, lines, added)
                if problem is not None:
                    sk.close()
                    sk = None
            except StudentError as err:
                statuses[gid], messages[gid] = f"error ({err.kind})", str(err)
            except (Failed, AssertionError) as err:
                msg = str(err) or "a hidden check failed"
                statuses[gid], messages[gid] = "failed", msg
            except Exception as err:  # a bug in the check: say so, never blame the student silently
                statuses[gid] = f"grading error ({type(err).__name__})"
                messages[gid] = "the grader failed on this task; your instructor has been told"
                lines.append(traceback.format_exc())
            else:
                statuses[gid], earned[gid] = "passed", pts
            lines.append(f"check {gid}: {statuses[gid]} in {time.time() - c0:.1f}s {messages.get(gid, '')}")
    finally:
        if sk is not None:
            sk.close()
    try:
        score = sum(earned.values())
        row["score"] = score
        row["tasks"] = "; ".join(f"{gid}={statuses.get(gid, 'not graded')} {earned[gid]:g}/{template.cells[gid][0]:g}"
                                 for gid in tests)
        if flags:
            notes.insert(0, "flagged: " + "; ".join(list(flags)[:6]))
        row["status"] = "; ".join(dict.fromkeys(notes)) if notes else "ok"
        _limit_outputs(nb)
        _annotate(nb, template, statuses, messages, earned)
        if settings.artifacts is not None:
            dest = settings.artifacts / entry.student / entry.exercise
            dest.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, dest / f"{entry.exercise}.ipynb")
            (dest / "grading.log").write_text("\n".join(lines) + "\n")
            if settings.feedback:
                try:
                    (dest / f"{entry.exercise}.html").write_text(feedback_html(nb, row, template))
                except Exception as err:  # the grade stands; the missing page is said in the row
                    row["status"] += f"; no feedback page ({type(err).__name__}: {str(err)[:120]})"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row["seconds"] = round(time.time() - t0, 1)
    return row


def _index_of(nb, grade_id: str) -> int:
    for k, c in enumerate(nb.cells):
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return k
    return -1


def _limit_outputs(nb, max_chars: int = 20000, max_outputs: int = 50) -> None:
    """A flood of output (or a huge image) is cut, as nbgrader's LimitOutput does, so the graded
    notebook and the feedback page stay small."""
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        outs = c.get("outputs", [])
        if len(outs) > max_outputs:
            outs = outs[:max_outputs] + [_result_output(f"… {len(outs) - max_outputs} more outputs cut\n")]
        for o in outs:
            if o.get("output_type") == "stream" and len(o.get("text", "")) > max_chars:
                o["text"] = o["text"][:max_chars] + f"\n… output cut ({len(o['text'])} characters)\n"
            data = o.get("data") or {}
            for mime, val in list(data.items()):
                if len(str(val)) > 10 * max_chars * (20 if mime.startswith("image/") else 1):
                    data[mime] = f"(a {mime} output of {len(str(val))} characters was cut)" \
                        if mime.startswith("text/") else ""
                    if not mime.startswith("text/"):
                        data.pop(mime)
                        data.setdefault("text/plain", f"(a {mime} output was cut)")
        c["outputs"] = outs


def _annotate(nb, template: Template, statuses: dict, messages: dict, earned: dict) -> None:
    """Each test cell ends with its hidden checks' result (never their code)."""
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in statuses:
            pts = template.cells[gid][0]
            text = (f"Hidden checks: {statuses[gid]} — {earned[gid]:g} / {pts:g} points"
                    + (f"\n{messages[gid]}" if messages.get(gid) else "") + "\n")
            c.outputs.append(_result_output(text))


_SAFE_MIME = ("text/plain", "image/png", "image/jpeg")
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\$)")


def _mathml(markdown: str) -> str:
    """``$…$`` and ``$$…$$`` as MathML, which browsers render without a script or a network."""
    from latex2mathml.converter import convert

    def sub(display):
        def f(m):
            try:
                return convert(m.group(1).strip(), display="block" if display else "inline")
            except Exception:  # a formula latex2mathml cannot parse stays as source
                return m.group(0)
        return f
    return _INLINE_MATH.sub(sub(False), _DISPLAY_MATH.sub(sub(True), markdown))


def feedback_html(nb, row: dict, template: Template) -> str:
    """The student's feedback page: their notebook as it ran, each task's result, the total. Built
    here from data with a fixed in-memory nbconvert configuration (no config file is read). It
    needs no script and no network: rich outputs are reduced to text and images (the student's
    HTML could carry scripts, and the instructor opens the page too), maths is MathML."""
    import copy
    import html

    from nbconvert import HTMLExporter
    from traitlets.config import Config

    page = copy.deepcopy(nb)
    for c in page.cells:
        if c.cell_type == "markdown":
            c.source = _mathml(c.source)
        for o in c.get("outputs", []):
            data = o.get("data")
            if data is not None and "application/vnd.jupyter.widget-view+json" in data:
                o["data"] = {"text/plain": "(an interactive widget: run the notebook to use it)"}
            elif data is not None:
                kept = {k: v for k, v in data.items() if k in _SAFE_MIME}
                o["data"] = kept or {"text/plain": "(a rich output, not shown in feedback)"}
    head = nbformat.v4.new_markdown_cell(
        f"**Feedback · {html.escape(template.exercise)} · {html.escape(row['student'])}**: "
        f"{float(row['score']):g} / {float(row['max_score']):g} points\n\n"
        + "\n".join(f"* `{html.escape(t)}`" for t in row["tasks"].split("; ") if t))
    page.cells.insert(0, head)
    exporter = HTMLExporter(config=Config())
    body, _ = exporter.from_notebook_node(page)
    return re.sub(r"<script\b.*?</script>", "", body, flags=re.S | re.I)


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
