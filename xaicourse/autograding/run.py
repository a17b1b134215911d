"""Grading one submission: the exercise's template, the sandboxed kernel, the hidden checks."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat

from .discovery import Entry, _pick_notebook, _repair
from .feedback import feedback_html
from .layout import INLINE_BACKEND
from .notebook import _annotate, _assemble, _index_of, _limit_outputs, _status_of_error, _task_of
from .scan import scan_answer
from .template import Settings, Template


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
    from ..models import cache_dir
    env["XAICOURSE_CACHE"] = str(cache_dir())
    return env


def _boot(nb, disabled: dict, template: Template, settings: Settings, box: Path, env: dict, lines: list,
          added=()):
    """A fresh sandboxed kernel that has run the notebook (disabled cells replaced by a ``raise``);
    returns (kernel, (cell index, reason) of the first cell that did not come back, or None)."""
    from ..models import cache_dir
    from ..sandbox import KernelProblem, SandboxKernel

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
    # at a time: CPython 3.11's ast.parse is not thread-safe (gh-106905; see _serialize_ast_parse)
    with _AST_LOCK:
        flags, ruled_out = _review(nb, answers, added, template)
    return _run_and_check(template, entry, settings, nb, answers, added, flags, ruled_out, notes, row, t0)


_AST_LOCK = threading.RLock()


def _serialize_ast_parse() -> None:
    """Make every ``ast.parse`` of this (grading) process take ``_AST_LOCK``.

    CPython before 3.13 keeps the AST converter's recursion depth in state shared by threads
    (gh-106905): two threads that parse at once can make one of them fail with "SystemError: AST
    constructor recursion depth mismatch". The grader parses in parallel threads: our scan (under
    the lock already) but also the standard library, e.g. 3.11's ``traceback`` parses source
    lines to place its ^^^ carets whenever an error is formatted. A student's grade once came out
    as "grading error: SystemError: AST constructor recursion depth mismatch" in a loaded test
    run (issue #27's soak). The lock costs nothing measurable: a parse takes microseconds."""
    import ast

    if sys.version_info >= (3, 13) or getattr(ast.parse, "_xaicourse_serialized", False):
        return
    unlocked = ast.parse

    def parse(*args, **kwargs):
        with _AST_LOCK:
            return unlocked(*args, **kwargs)

    parse._xaicourse_serialized = True
    parse.__wrapped__ = unlocked
    parse.__doc__ = unlocked.__doc__
    ast.parse = parse


_serialize_ast_parse()


def _review(nb, answers: dict, added: list, template: Template):
    from ..checking import scan_imports

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

    from ..checking import Failed, Remote, StudentError
    from ..sandbox import KernelProblem

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
