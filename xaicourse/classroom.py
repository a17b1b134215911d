"""Running the course for a class with nbgrader's exchange: release, fetch, submit, collect,
autograde, feedback, export.

The instructor side lives in an nbgrader *course directory* (``source/`` copied from
``solutions/``, ``release/``, ``submitted/``, ``autograded/``, ``feedback/``, ``gradebook.db``,
``nbgrader_config.py``); students and instructor meet in the *exchange* (``Exchange.root``,
``/srv/nbgrader/exchange`` on a JupyterHub). Every step is nbgrader's own command, except
grading:

* **release** — ``nbgrader generate_assignment`` + ``release_assignment`` for every exercise;
* **fetch / submit** (students) — ``nbgrader fetch_assignment`` / ``submit`` (on a hub: the
  *Assignments* tab); the student id is the login name;
* **collect** — ``nbgrader collect`` into ``submitted/<student>/<exercise>/``;
* **autograde** — ``xaicourse.autograding.grade`` over ``submitted/``, *not* ``nbgrader
  autograde`` in the course directory: each submission runs in its own throw-away course inside
  a sandbox (bubblewrap or a container), several at once, with wall-time / memory limits,
  kernel-death recovery and tampering checks; a hanging or malicious notebook cannot touch the
  course directory, the gradebook or a classmate. Its autograded notebooks and feedback pages
  (hidden-test *results*, never their code) are then filed under ``autograded/`` and
  ``feedback/`` as nbgrader lays them out;
* **feedback** — ``nbgrader release_feedback``; students ``nbgrader fetch_feedback``;
* **export** — ``grades.csv`` (one row per submission: score, max, status, per-task results) and
  ``grades_by_student.csv`` (one row per student, one column per exercise, total).

``simulate(root, workdir)`` runs the whole round trip with three simulated students (a full
solution, wrong answers, a hanging notebook that also deleted a locked test cell); the test
suite and ``xaicourse classroom demo`` use it.
"""
from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat

from .course import _course_dir, exercise_names

DEFAULT_COURSE_ID = "xaicourse"


def _config(course: Path | None, exchange: Path, course_id: str, home: Path | None = None):
    """The traitlets config of one nbgrader call (run in this process: no start-up per call)."""
    from traitlets.config import Config

    c = Config()
    if course is not None:
        c.CourseDirectory.root = str(Path(course).resolve())
        c.CourseDirectory.db_url = f"sqlite:///{Path(course).resolve() / 'gradebook.db'}"
    c.CourseDirectory.course_id = course_id
    c.Exchange.root = str(Path(exchange).resolve())
    if home is not None:  # a student: their folder, and their own record of what they submitted
        c.Exchange.assignment_dir = str(Path(home).resolve())
        c.Exchange.cache = str(Path(home).resolve() / ".local" / "share" / "jupyter" / "nbgrader_cache")
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    return c


def _alembic_on_path() -> None:
    """nbgrader's gradebook shells out to ``alembic``, installed next to this interpreter."""
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")


def _api(course: Path, exchange: Path, course_id: str, force: bool = False):
    from nbgrader.apps import NbGraderAPI

    _alembic_on_path()
    c = _config(course, exchange, course_id)
    if force:
        c.ExchangeReleaseAssignment.force = True
    return NbGraderAPI(config=c)


def _ok(result: dict, what: str) -> dict:
    if not result.get("success"):
        raise RuntimeError(f"nbgrader {what} failed: {result.get('error') or ''}\n{result.get('log', '')[-2000:]}")
    return result


def _student_exchange(kind: str, exchange: Path, exercise: str, student: str, home: Path, course_id: str):
    """nbgrader's exchange step ``kind`` (FetchAssignment, Submit, FetchFeedback) as ``student``."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeFactory

    cfg = _config(None, exchange, course_id, home=home)
    coursedir = CourseDirectory(config=cfg)
    coursedir.assignment_id = exercise
    coursedir.student_id = student       # on a hub nbgrader takes it from the login name
    factory = ExchangeFactory(config=cfg)
    cls = getattr(factory, kind)
    cls(coursedir=coursedir, authenticator=Authenticator(config=cfg), config=cfg).start()


def config_text(exchange: Path, course_id: str) -> str:
    """The course directory's ``nbgrader_config.py`` (nbgrader's command line and formgrader).

    nbgrader's own *autograde* and *generate feedback* (formgrader's buttons) are switched off
    for this course: they would run submissions without the sandbox and the hidden checks. They
    fail with a message that names the command to use; the scores formgrader shows are the ones
    ``xaicourse classroom grade`` writes into the gradebook."""
    return ('c = get_config()\n'
            'c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}\n'
            f"c.CourseDirectory.course_id = {course_id!r}\n"
            f"c.Exchange.root = {str(Path(exchange).resolve())!r}\n"
            "c.CourseDirectory.ignore = ['.ipynb_checkpoints', '*.pyc', '__pycache__', 'feedback', 'checks.py']\n"
            "from xaicourse.classroom import UseXaicourseGrade\n"
            "c.Autograde.autograde_preprocessors = [UseXaicourseGrade]\n"
            "c.GenerateFeedback.preprocessors = [UseXaicourseGrade]\n")


try:  # nbgrader loads this class by name from the course's configuration
    from nbgrader.preprocessors import NbGraderPreprocessor as _Pre
except Exception:  # pragma: no cover - nbgrader is a dependency
    _Pre = object


class UseXaicourseGrade(_Pre):
    """Stands in for nbgrader's autograde and feedback steps in a course graded by xaicourse."""

    def preprocess(self, nb, resources):
        raise RuntimeError("this course is graded by `xaicourse classroom grade` (sandboxed, with the "
                           "hidden checks outside the student's kernel), and its feedback is written by "
                           "that command; release it with `xaicourse classroom feedback EXERCISE`. "
                           "nbgrader's own autograde and feedback are switched off here.")


def course_settings(course=None, exchange=None, course_id=None):
    """``(course folder, exchange, course id)``: the arguments, else what the nbgrader configuration
    says (system-wide, then ``~/.jupyter``, then the current folder — nbgrader's own order), else
    the defaults (exchange ``/srv/nbgrader/exchange``, course id ``xaicourse``)."""
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    merged = Config()
    for d in [*reversed(jupyter_config_path()), os.getcwd()]:
        if (Path(d) / "nbgrader_config.py").is_file():
            try:
                merged.merge(PyFileConfigLoader("nbgrader_config.py", path=str(d)).load_config())
            except Exception as err:
                raise ValueError(f"cannot read {Path(d) / 'nbgrader_config.py'}: {err}") from err
    cd, ex = merged.get("CourseDirectory", {}), merged.get("Exchange", {})
    if course is None:
        root = cd.get("root") if isinstance(cd, Config) or isinstance(cd, dict) else None
        if not root:
            raise ValueError("no course folder: give --course DIR, or set c.CourseDirectory.root in "
                             "~/.jupyter/nbgrader_config.py (see deploy/nbgrader_config_instructor.py)")
        course = root
    exchange = exchange or (ex.get("root") if hasattr(ex, "get") else None) or "/srv/nbgrader/exchange"
    course_id = course_id or (cd.get("course_id") if hasattr(cd, "get") else None) or DEFAULT_COURSE_ID
    return Path(os.path.expanduser(str(course))).resolve(), Path(os.path.expanduser(str(exchange))), course_id


def make_private(path: Path, log=print) -> None:
    """Take group/other permissions off ``path`` (the course folder, the solutions): students are
    Linux users on the same machine."""
    path = Path(path)
    if not path.exists():
        return
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, mode & 0o700)
        log(f"[classroom] {path} was readable by other users (mode {mode:o}): made private (mode {mode & 0o700:o})")


def repository_of(course: Path) -> Path | None:
    """The course repository (with ``solutions/``) this course folder was released from."""
    import json

    f = Path(course) / ".xaicourse.json"
    try:
        return Path(json.loads(f.read_text())["root"])
    except (OSError, ValueError, KeyError):
        return None


# ----------------------------------------------------------------------------- instructor
def setup(root: Path, course: Path, exchange: Path, course_id: str = DEFAULT_COURSE_ID,
          names: list[str] | None = None, log=print) -> Path:
    """An nbgrader course directory, private to the instructor, whose ``source/`` holds the
    exercises being released (``names``, default all; ones released before stay). The hidden
    checks (``checks.py``) are not copied: grading reads them from the repository."""
    import json

    course, exchange = Path(course), Path(exchange)
    names = names or exercise_names(root)
    course.mkdir(parents=True, exist_ok=True)
    make_private(course, log)
    make_private(Path(root) / "solutions", log)
    for name in names:
        shutil.rmtree(course / "source" / name, ignore_errors=True)
    _course_dir(root, names, dest=course)
    (course / "nbgrader_config.py").write_text(config_text(exchange, course_id))
    (course / ".xaicourse.json").write_text(json.dumps({"root": str(Path(root).resolve()),
                                                        "exchange": str(exchange), "course_id": course_id}))
    exchange.mkdir(parents=True, exist_ok=True)
    return course


def release(root: Path, course: Path, exchange: Path, course_id: str = DEFAULT_COURSE_ID,
            exercises: list[str] | None = None, force: bool = False, log=print) -> list[str]:
    """Generate and release ``exercises`` (default: all) to the exchange (``force``: again)."""
    names = exercises or exercise_names(root)
    setup(root, course, exchange, course_id, names, log=log)
    for name in names:
        api = _api(course, exchange, course_id, force=force)
        _ok(api.generate_assignment(name, force=True, create=True), f"generate_assignment {name}")
        result = api.release_assignment(name)
        if not result.get("success") and "already exists" in (result.get("log", "") + str(result.get("error", ""))):
            raise RuntimeError(f"{name} is already released to {exchange}: add --force to release it again "
                               "(students who fetched it keep their copy)")
        _ok(result, f"release_assignment {name}")
        log(f"[classroom] released {name} → {exchange / course_id / 'outbound' / name}")
    return names


def collect(course: Path, exchange: Path, exercise: str, course_id: str = DEFAULT_COURSE_ID, log=print) -> list[str]:
    """``nbgrader collect``: the latest submission of every student → ``submitted/<student>/<exercise>/``."""
    _ok(_api(course, exchange, course_id).collect(exercise, update=True), f"collect {exercise}")
    students = sorted(p.parent.name for p in (Path(course) / "submitted").glob(f"*/{exercise}"))
    log(f"[classroom] collected {exercise}: {', '.join(students) or 'nobody'}")
    return students


def autograde(root: Path, course: Path, *, jobs: int = 2, timeout: int = 60, sandbox: str = "auto",
              resume: bool = False, log=print) -> list[dict]:
    """Grade ``course/submitted`` with ``xaicourse.autograding.grade`` (isolated, sandboxed,
    parallel) into ``course/grades.csv`` (replaced only when every submission is graded; ``resume``
    continues an interrupted run); file the graded notebooks and feedback pages under
    ``autograded/`` and ``feedback/`` (with the submission's timestamp, so that ``nbgrader
    release_feedback`` can deliver them) and write the scores into the course's gradebook, where
    formgrader shows them. Running it again regrades everything the same way."""
    from .autograding import grade, partial_path

    course = Path(course)
    make_private(course, log)
    out = course / "grades.csv"
    grade(root, course / "submitted", out, timeout=timeout, jobs=jobs, sandbox=sandbox, resume=resume, log=log)
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    files = course / "grades_files"
    for r in rows:
        st, ex = r["student"], r["exercise"]
        src, sub = files / st / ex, course / "submitted" / st / ex
        if not ex or not src.exists():
            continue
        for kind, suffix in (("autograded", ".ipynb"), ("feedback", ".html")):
            dest = course / kind / st / ex
            dest.mkdir(parents=True, exist_ok=True)
            for f in list(src.glob(f"*{suffix}")) + [sub / m for m in ("timestamp.txt", "submission_secret.txt")]:
                if f.exists():
                    target = dest / f.name
                    if target.exists() or target.is_symlink():
                        target.unlink()   # nbgrader leaves its files read-only: replace, never write over
                    shutil.copy(f, target)
    record_scores(course, rows, log=log)
    assert not partial_path(out).exists()
    return rows


def _task_scores(tasks: str) -> dict:
    """``"a=passed 4/4; b=failed 0/2"`` → ``{"a": 4.0, "b": 0.0}``."""
    out = {}
    for part in filter(None, (p.strip() for p in tasks.split(";"))):
        gid, _, rest = part.partition("=")
        try:
            out[gid] = float(rest.rsplit(" ", 1)[1].split("/")[0])
        except (IndexError, ValueError):
            continue
    return out


def record_scores(course: Path, rows: list[dict], log=print) -> int:
    """Write each graded submission's task scores into the course's nbgrader gradebook (as automatic
    scores, manual ones cleared), so formgrader shows the grades of ``xaicourse classroom grade``."""
    from nbgrader.api import Gradebook, MissingEntry

    import warnings

    _alembic_on_path()
    course = Path(course)
    done = 0
    with warnings.catch_warnings(), Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        warnings.simplefilter("ignore")   # SQLAlchemy's autoflush notes from inside nbgrader's API
        for r in rows:
            st, ex = r["student"], r["exercise"]
            if not ex:
                continue
            try:
                gb.find_assignment(ex)
            except MissingEntry:
                continue
            ts = course / "submitted" / st / ex / "timestamp.txt"
            kwargs = {"timestamp": ts.read_text().strip()} if ts.exists() else {}
            gb.update_or_create_student(st)
            gb.update_or_create_submission(ex, st, **kwargs)
            for gid, score in _task_scores(r["tasks"]).items():
                try:
                    g = gb.find_grade(gid, ex, ex, st)
                except MissingEntry:
                    continue
                g.auto_score, g.manual_score, g.needs_manual_grade = score, None, False
            gb.db.commit()
            done += 1
    return done


def release_feedback(course: Path, exchange: Path, exercise: str, course_id: str = DEFAULT_COURSE_ID,
                     log=print) -> int:
    """``nbgrader release_feedback``: the feedback pages of ``exercise`` to the exchange. Returns how many."""
    pages = sorted((Path(course) / "feedback").glob(f"*/{exercise}/*.html"))
    if not pages:
        raise ValueError(f"no feedback for {exercise} in {Path(course) / 'feedback'}: run `xaicourse classroom grade` first")
    _ok(_api(course, exchange, course_id).release_feedback(exercise), f"release_feedback {exercise}")
    log(f"[classroom] feedback of {exercise} released for {len(pages)} student(s): they fetch it in the "
        f"Assignments tab (or `nbgrader fetch_feedback {exercise}`)")
    return len(pages)


def export(course: Path) -> Path:
    """``grades_by_student.csv``: one row per student, one column per exercise, and the total."""
    course = Path(course)
    if not (course / "grades.csv").exists():
        raise ValueError(f"{course / 'grades.csv'} does not exist: run `xaicourse classroom grade --course {course}` first")
    with open(course / "grades.csv") as fh:
        rows = list(csv.DictReader(fh))
    exercises = sorted({r["exercise"] for r in rows if r["exercise"]})
    table: dict[str, dict] = {}
    for r in rows:
        if r["exercise"]:
            table.setdefault(r["student"], {})[r["exercise"]] = float(r["score"])
    maxima = {r["exercise"]: float(r["max_score"]) for r in rows if r["exercise"]}
    out = course / "grades_by_student.csv"
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", *exercises, "total", "max_total"])
        for st in sorted(table):
            scores = [table[st].get(ex, 0.0) for ex in exercises]
            w.writerow([st, *[f"{s:g}" for s in scores], f"{sum(scores):g}", f"{sum(maxima.values()):g}"])
    return out


# ----------------------------------------------------------------------------- students
def fetch(exchange: Path, exercise: str, student: str, home: Path, course_id: str = DEFAULT_COURSE_ID) -> Path:
    """``nbgrader fetch_assignment`` as ``student`` into ``home/<exercise>/``."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    _student_exchange("FetchAssignment", exchange, exercise, student, home, course_id)
    return home / exercise


def submit(exchange: Path, exercise: str, student: str, home: Path, course_id: str = DEFAULT_COURSE_ID) -> None:
    """``nbgrader submit`` of ``home/<exercise>/`` as ``student``."""
    _student_exchange("Submit", exchange, exercise, student, Path(home), course_id)


def fetch_feedback(exchange: Path, exercise: str, student: str, home: Path,
                   course_id: str = DEFAULT_COURSE_ID) -> list[Path]:
    _student_exchange("FetchFeedback", exchange, exercise, student, Path(home), course_id)
    return sorted((Path(home) / exercise / "feedback").glob("*/*.html"))


# ----------------------------------------------------------------------------- the simulated class
def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _answer(nb, solution, grade_id, source=None):
    """Fill the answer cell ``grade_id`` of the fetched ``nb`` with the solution's (or ``source``)."""
    _cell(nb, grade_id).source = source if source is not None else _cell(solution, grade_id).source


WRONG = {  # wrong answers a student might hand in
    ("00_introduction", "topweights_answer"): (  # forgot the sign of R_i (R_i/δ → −∂f/∂x_i)
        "def gradient_limit(f, x, i, deltas, exact):\n"
        "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
        "    errors = torch.stack([((f(x[None])[0] - f((x + float(dl) * torch.eye(x.numel(), dtype=x.dtype)[i])[None])[0])\n"
        "                           / dl - exact).abs() for dl in deltas.tolist()]).double()\n"
        "    return errors, float(deltas[errors.argmin()])\n"),
    ("02_tsne", "gradient_answer"): (  # forgot the factor 4 of the KL gradient
        "def tsne_gradient(P, Y):\n"
        "    W = 1.0 / (1.0 + sq_dists(Y))\n"
        "    W.fill_diagonal_(0)\n"
        "    Q = W / W.sum()\n"
        "    M = (P - Q) * W\n"
        "    return M.sum(1, keepdim=True) * Y - M @ Y\n"),
}
HANG = "import time\nwhile True:\n    time.sleep(0.5)\n"


def _work(root: Path, student: str, exercise: str, folder: Path) -> None:
    """What the simulated ``student`` does to the fetched notebook in ``folder``."""
    path = folder / f"{exercise}.ipynb"
    nb = nbformat.read(path, as_version=4)
    sol = nbformat.read(Path(root) / "solutions" / exercise / f"{exercise}.ipynb", as_version=4)
    answers = [c.metadata["nbgrader"]["grade_id"] for c in sol.cells
               if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"]
    for gid in answers:
        _answer(nb, sol, gid)
    if student == "bob":
        for (ex, gid), src in WRONG.items():
            if ex == exercise:
                _answer(nb, sol, gid, src)
    if student == "carol":  # the first answer hangs; a locked test cell (the last task's) is deleted
        _answer(nb, sol, answers[0], HANG)
        tests = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
                 if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
        nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != tests[-1]]
    nbformat.write(nb, path)


STUDENTS = {"alice": "full solution", "bob": "wrong answers", "carol": "hangs, deleted a locked test cell"}
"""The simulated class: student → what they hand in."""
ONLY_FIRST = {"carol"}
"""Students who hand in only the first of the simulated exercises (keeps the round trip short)."""


def simulate(root: Path, workdir: Path, exercises: tuple[str, ...] = ("00_introduction", "02_tsne"),
             students: dict | None = None, jobs: int = 2, timeout: int = 20, course_id: str = DEFAULT_COURSE_ID,
             regrade: bool = False, log=print) -> dict:
    """The whole round trip in ``workdir`` (course directory, exchange, one home per student).

    Every exercise is released; each simulated student fetches and submits ``exercises``; the
    instructor collects, autogrades, releases feedback (students fetch it) and exports the grades.
    Returns paths and timings.
    """
    root, workdir = Path(root), Path(workdir)
    students = students or STUDENTS
    course, exchange, homes = workdir / "course", workdir / "exchange", workdir / "home"
    times = {}
    t = time.time()
    released = release(root, course, exchange, course_id, log=log)
    times["release"] = time.time() - t
    t = time.time()
    submitted = {}
    for st in students:
        for ex in exercises:
            folder = fetch(exchange, ex, st, homes / st, course_id)
            if st in ONLY_FIRST and ex != exercises[0]:
                continue
            _work(root, st, ex, folder)
            submit(exchange, ex, st, homes / st, course_id)
            submitted.setdefault(st, []).append(ex)
        log(f"[classroom] {st} ({students[st]}) fetched {', '.join(exercises)}, submitted {', '.join(submitted[st])}")
    times["fetch_submit"] = time.time() - t
    t = time.time()
    for ex in exercises:
        collect(course, exchange, ex, course_id, log=log)
    times["collect"] = time.time() - t
    t = time.time()
    rows = autograde(root, course, jobs=jobs, timeout=timeout, log=log)
    times["autograde"] = time.time() - t
    t = time.time()
    regraded = autograde(root, course, jobs=jobs, timeout=timeout, log=log) if regrade else None
    times["regrade"] = time.time() - t
    t = time.time()
    feedback = {}
    for ex in exercises:
        release_feedback(course, exchange, ex, course_id, log=log)
        for st in students:
            if ex in submitted.get(st, []):
                feedback[(st, ex)] = fetch_feedback(exchange, ex, st, homes / st, course_id)
    times["feedback"] = time.time() - t
    by_student = export(course)
    log("[classroom] times: " + ", ".join(f"{k} {v:.1f}s" for k, v in times.items()))
    return dict(course=course, exchange=exchange, homes=homes, released=released, rows=rows, regraded=regraded,
                submitted=submitted,
                grades=course / "grades.csv", by_student=by_student, feedback=feedback, times=times)
