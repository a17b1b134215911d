"""Grading a class you can trust, tried as a dishonest student would and as an honest one with odd
notebooks. The submissions below are graded in the suite's one shared ``xaicourse grade`` run
(conftest's ``course_grades``), on exercise 04:

* nothing the student's code can reach decides the grade: the hidden checks run in the grader's
  process and receive plain data; the sandbox cannot read the solutions, the checks, a classmate
  or the grades, nor change them; files planted next to the notebook are never loaded; a reply
  that points outside the sandbox (symlink), is too large or never comes back costs only that task;
* honest students get their points and a specific status (stripped metadata, renamed notebook,
  duplicated cell ids, warnings on stderr, a kernel killed in one task, floods of output);
* a hanging answer reads ``timeout``; each row is appended as soon as it is graded and an
  interrupted batch resumes to the same CSV.
"""
import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import attacks
import nbformat
import pytest

from xaicourse import autograding, checking, cli
from xaicourse.models import cache_dir

ROOT = Path(__file__).resolve().parents[1]
EX = "04_integrated_gradients"
SOL = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
BWRAP, WHY = autograding.bwrap_available()
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"isolation tests need bubblewrap: {WHY}")
FULL, IG, DELTA, INV = 9.0, 4.0, 2.0, 3.0


def _answer(grade_id):
    return next(c.source for c in SOL.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


GOOD_IG = _answer("ig_answer").replace("    ### BEGIN SOLUTION\n", "").replace("    ### END SOLUTION\n", "")
MARKER = f"xaicourse-detached-{os.getpid()}"
SOLUTION_PATH = ROOT / "solutions" / EX / f"{EX}.ipynb"
CHECKS_PATH = ROOT / "solutions" / EX / "checks.py"


def _with(answers: dict, nb=None):
    nb = copy.deepcopy(nb or SOL)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            c.source = answers[gid]
    return nb


def _indent(src: str) -> str:
    return "\n".join("    " + line for line in src.splitlines()) + "\n"


def _students(subs_dir_hint: str = "") -> dict:
    s = {}
    # --- it tries to read what it must not: the solution, the checks, the course repository, a grader process
    snoop = ("import os\n"
             f"_hits = [p for p in [{str(SOLUTION_PATH)!r}, {str(CHECKS_PATH)!r}, {str(ROOT / 'README.md')!r}] "
             "if os.path.exists(p)]\n"
             "_hits += [p for p in os.listdir('/proc') if p.isdigit() and "
             "any(w in open(f'/proc/{p}/cmdline', 'rb').read() for w in (b'pytest', b'xaicourse.cli', b'bin/xaicourse'))]\n"
             "if _hits:\n" + _indent(GOOD_IG) + "else:\n    raise RuntimeError('found nothing to read')\n")
    s["i_snoop"] = _with({"ig_answer": snoop})
    # --- it writes where it must not and leaves a process behind; its own answer is honest
    vandal = ("import os, subprocess, sys\n"
              f"for _p in [{str(SOLUTION_PATH)!r}, {str(CHECKS_PATH)!r}, {str(cache_dir() / 'planted.pt')!r}]:\n"
              "    try:\n        open(_p, 'a').write('garbage')\n    except OSError:\n        pass\n"
              f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(90)', {MARKER!r}], "
              "start_new_session=True)\n" + GOOD_IG)
    s["i_vandal"] = _with({"ig_answer": vandal})
    # --- one-line cheats of the old design
    wrong = "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n    return torch.zeros_like(x)\n"
    s["i_allclose"] = _with({"ig_answer": "torch.allclose = lambda *a, **k: True\n" + wrong})
    s["i_ast"] = _with({"ig_answer": (
        "import ast\nclass _Swallow(ast.NodeTransformer):\n"
        "    def visit_Module(self, node):\n"
        "        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[ast.ExceptHandler("
        "type=None, name=None, body=[ast.Pass()])], orelse=[], finalbody=[])]\n"
        "        return ast.fix_missing_locations(node)\n"
        "get_ipython().ast_transformers.append(_Swallow())\n" + wrong)})
    # --- the reply itself attacks the grader: a symlink to a host file, a FIFO, a huge array
    s["i_symlink"] = _with({"ig_answer": (
        "import os, json, numpy as np, xaicourse._kernel_side as _ks\n"
        "_real = _ks.call\n"
        "def _evil(request_file):\n"
        "    folder = os.path.dirname(request_file)\n"
        "    req = json.load(open(request_file))\n"
        "    if req['fn'] != 'riemann_ig':\n"
        "        return _real(request_file)\n"
        "    for name, make in (('link.npy', lambda p: os.symlink('/etc/passwd', p)), ('fifo.npy', os.mkfifo)):\n"
        "        if not os.path.exists(os.path.join(folder, name)):\n"
        "            make(os.path.join(folder, name))\n"
        "    name = 'link.npy' if len(req['kwargs']) % 2 else 'fifo.npy'\n"
        "    json.dump({'id': req['id'], 'value': {'t': 'tensor', 'file': name}},\n"
        "              open(os.path.join(folder, 'reply-' + req['id'] + '.json'), 'w'))\n"
        "_ks.call = _evil\n" + wrong)})
    s["i_huge"] = _with({"ig_answer": (
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    return torch.zeros(40_000_000)\n")})
    # --- hangs: a cell that never ends, a function that never returns
    s["i_hang_cell"] = _with({"ig_answer": "import time\nwhile True:\n    time.sleep(0.5)\n"})
    s["i_hang_call"] = _with({"ig_answer": (
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    import time\n    while True:\n        time.sleep(0.5)\n")})
    # --- the kernel dies in task 2: tasks 1 and 3 keep their points
    s["i_exit_task2"] = _with({"delta_answer": "import os\nos._exit(3)\n"})
    # --- honest but odd
    stripped = copy.deepcopy(SOL)
    for c in stripped.cells:
        c.metadata.pop("nbgrader", None)
    s["i_stripped"] = stripped
    s["i_warner"] = _with({"ig_answer": "import warnings, sys\nwarnings.warn('a harmless warning')\n"
                                        "print('to stderr', file=sys.stderr)\n" + GOOD_IG})
    s["i_flood"] = _with({"ig_answer": "for _i in range(200_000):\n    print('line', _i)\n" + GOOD_IG})
    regid = copy.deepcopy(SOL)
    for c in regid.cells:
        md = c.metadata.get("nbgrader")
        if md and md.get("grade_id"):
            md["grade_id"] = "cell-" + md["grade_id"][:3]
    s["i_regrade_ids"] = regid
    s["i_renamed"] = SOL
    s["i_dupids"] = SOL
    s["i_planted"] = SOL
    # --- locked tests edited to pass, one deleted, nothing solved
    blank = nbformat.read(ROOT / "exercises" / EX / f"{EX}.ipynb", as_version=4)
    tamper = copy.deepcopy(blank)
    for c in tamper.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ig_tests":
            c.source = "pass"
    tamper.cells = [c for c in tamper.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "delta_tests"]
    s["i_tamper_locked"] = tamper
    return s


def submissions():
    return {(student, EX): nb for student, nb in _students().items()}


def plant(folder, student, ex):
    nb = folder / f"{ex}.ipynb"
    if student == "i_renamed":
        nb.rename(folder / "my_homework.ipynb")
    elif student == "i_dupids":
        d = json.loads(nb.read_text())
        for c in d["cells"]:
            c["id"] = "same-id"
        nb.write_text(json.dumps(d))   # nbformat would refuse to write it
    elif student == "i_planted":
        attacks.plant_payloads(folder)
    if student in ("i_snoop", "i_vandal"):
        global _BEFORE
        _BEFORE = {"solution": _sha(SOLUTION_PATH), "checks": _sha(CHECKS_PATH)}


_BEFORE: dict = {}


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def table(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


def _score(table, student):
    return float(table[student]["score"])


def _task(table, student, task):
    part = next(p for p in table[student]["tasks"].split("; ") if p.startswith(task + "="))
    return part.split("=", 1)[1]


@needs_bwrap
@pytest.mark.slow
def test_a_submission_cannot_read_or_change_anything_else(table):
    assert _score(table, "i_snoop") == FULL - IG, table["i_snoop"]  # found no solution, checks, repo or grader
    assert _sha(SOLUTION_PATH) == _BEFORE["solution"] and _sha(CHECKS_PATH) == _BEFORE["checks"]
    assert "planted.pt" not in {p.name for p in cache_dir().glob("*")}
    assert _score(table, "i_vandal") == FULL   # its own answer still graded
    alive = subprocess.run(["pgrep", "-f", MARKER], capture_output=True, text=True).stdout.split()
    assert alive == [], "a detached child outlived its sandbox"


@pytest.mark.slow
def test_nothing_outside_the_sandbox_loads_planted_files(table):
    # nbgrader_config.py, sitecustomize.py, conftest.py, jupyter_nbconvert_config.py, ipython_config.py
    # next to the notebook: the grader reads the notebook as data and never runs anything there
    assert _score(table, "i_planted") == FULL
    assert attacks.marker_absent()


@pytest.mark.slow
def test_old_one_line_cheats_earn_nothing(table):
    for student in ("i_allclose", "i_ast"):
        r = table[student]
        assert _score(table, student) == FULL - IG, r
        assert r["status"].startswith("flagged"), r
    assert "AST transformer" in table["i_ast"]["status"]
    assert _score(table, "i_tamper_locked") == 0.0, table["i_tamper_locked"]


@pytest.mark.slow
def test_hostile_replies_cost_only_their_task(table):
    for student in ("i_symlink", "i_huge"):
        assert _score(table, student) == FULL - IG, table[student]
        assert _task(table, student, "ig_tests").startswith("failed"), table[student]


@pytest.mark.slow
def test_hangs_read_timeout_and_the_rest_is_graded(table):
    for student in ("i_hang_cell", "i_hang_call"):
        r = table[student]
        assert _task(table, student, "ig_tests").startswith("timeout"), r
        assert _score(table, student) == FULL - IG, r


@pytest.mark.slow
def test_honest_students_get_their_points(table):
    t = table
    assert _score(t, "i_stripped") == FULL and "restored" in t["i_stripped"]["status"]
    assert _score(t, "i_warner") == FULL            # a warning on stderr is not a failure
    assert _score(t, "i_renamed") == FULL and "my_homework.ipynb" in t["i_renamed"]["status"]
    assert _score(t, "i_dupids") == FULL
    assert _score(t, "i_regrade_ids") == FULL and "restored" in t["i_regrade_ids"]["status"]
    assert _score(t, "i_flood") == FULL
    # a kernel killed in task 2 keeps tasks 1 and 3, and says where it died
    assert _score(t, "i_exit_task2") == IG + INV, t["i_exit_task2"]
    assert "kernel died in delta_answer" in t["i_exit_task2"]["status"]
    assert _task(t, "i_exit_task2", "delta_tests").startswith("kernel died")


@pytest.mark.slow
def test_feedback_shows_results_not_checks_or_plumbing(course_grades_csv):
    files = course_grades_csv.parent / f"{course_grades_csv.stem}_files"
    page = (files / "i_allclose" / EX / f"{EX}.html").read_text()
    assert "Hidden checks: failed" in page and "0 / 4 points" in page
    checks_src = CHECKS_PATH.read_text()
    for line in (l.strip() for l in checks_src.splitlines()):
        if len(line) > 30 and "import" not in line and not line.startswith(("#", '"""')):
            assert line not in page, line
    for plumbing in ("_kernel_side", "request-", "reply-", "xaicourse-grade-", "_xaicourse_progress"):
        assert plumbing not in page, plumbing
    nb = files / "i_flood" / EX / f"{EX}.ipynb"
    assert nb.stat().st_size < 2_000_000, "the output flood was cut"
    assert (files / "i_flood" / EX / "grading.log").exists()


# ----------------------------------------------------------------------------- rows for every entry
@pytest.fixture(scope="module")
def odd_layouts(tmp_path_factory):
    subs = tmp_path_factory.mktemp("odd")
    (subs / "misnamed" / "04_ig").mkdir(parents=True)
    nbformat.write(SOL, subs / "misnamed" / "04_ig" / f"{EX}.ipynb")
    (subs / "empty").mkdir()
    (subs / "archive.zip").write_bytes(b"PK\x03\x04")
    roster = tmp_path_factory.mktemp("roster") / "roster.txt"
    roster.write_text("misnamed\nghost\n")
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    autograding.grade(ROOT, subs, out, timeout=60, jobs=1, roster=roster, log=lambda *a: None)
    with open(out) as fh:
        return {r["student"]: r for r in csv.DictReader(fh)}


@pytest.mark.slow
def test_every_entry_is_a_row_with_a_reason(odd_layouts):
    t = odd_layouts
    assert "not a folder" in t["archive.zip"]["status"] and "unpack" in t["archive.zip"]["status"]
    assert "no exercise folder" in t["empty"]["status"]
    assert "missing" in t["ghost"]["status"]
    assert float(t["misnamed"]["score"]) == FULL and "graded as 04_integrated_gradients" in t["misnamed"]["status"]


# ----------------------------------------------------------------------------- unit tests
def test_scan_flags_tampering_and_passes_honest_code():
    assert autograding.scan_answer(GOOD_IG) == []
    assert autograding.scan_answer("import numpy as np\ndef f(x):\n    return np.sort(x)\n") == []
    for bad, why in [("torch.allclose = lambda *a: True", "assigns to an attribute"),
                     ("import sys\nsys.modules['torch'] = None", "sys.modules"),
                     ("f.__code__ = g.__code__", "swaps a function's code"),
                     ("get_ipython().ast_transformers.append(1)", "AST transformer"),
                     ("import ctypes", "ctypes"), ("import subprocess", "starts processes"),
                     ("import importlib.util", "imports dynamically"),
                     ("import builtins\nbuiltins.abs = print", "builtins")]:
        flags = autograding.scan_answer(bad)
        assert any(why in f for f in flags), (bad, flags)
    # a matrix named like a usual module alias is a variable (lecture 07's T_{j,i}); an imported
    # name or an attribute in the chain is still a write into a module
    assert autograding.scan_answer("T = torch.zeros(3, 3)\nT[:, 0] += 1\n") == []
    for bad in ("import torchvision.transforms as T\nT[0] = 1", "T.x = 1", "np.__dict__['x'] = 1",
                "import math\nmath.pi = 3"):
        assert any("assigns to an attribute" in f for f in autograding.scan_answer(bad)), bad


def test_import_scan_follows_aliases_and_strings():
    ctx = "import xaicourse.attribution as A\nimport captum.attr\n"
    forbidden = ["captum", "xaicourse.attribution", "torch.func"]
    assert checking.scan_imports("def f(x):\n    return x * 2\n", forbidden, ctx) == []
    assert checking.scan_imports("y = A.integrated_gradients\n", forbidden, ctx) == \
        ["uses xaicourse.attribution.integrated_gradients"]
    assert checking.scan_imports("from torch.func import grad\n", forbidden) == ["imports torch.func.grad"]
    assert checking.scan_imports("g = torch.func.jacfwd(f)\n", forbidden) == ["uses torch.func.jacfwd"]
    assert checking.scan_imports("m = __import__('captum.attr')\n", forbidden) == ["names 'captum.attr' in a string"]
    assert checking.scan_imports("s = 'unlike captum, we do it by hand'\n", forbidden) == []


def test_replies_are_plain_data_only(tmp_path):
    import numpy as np
    import torch

    def fake_run(code, timeout):   # plays a kernel whose reply is ``fake_run.value``
        req = json.loads(next(tmp_path.glob("request-*.json")).read_text())
        (tmp_path / f"reply-{req['id']}.json").write_text(json.dumps({"id": req["id"], "value": fake_run.value}))

    np.save(tmp_path / "ok.npy", np.arange(3.0))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "link.npy").symlink_to(tmp_path / "ok.npy")
    os.mkfifo(tmp_path / "fifo.npy")
    k = checking.Remote(fake_run, tmp_path, "s", "e")
    fake_run.value = {"t": "tensor", "file": "ok.npy"}
    got = k.call("f", torch.zeros(2))
    assert type(got) is torch.Tensor and got.tolist() == [0.0, 1.0, 2.0]
    for bad in ({"t": "tensor", "file": "obj.npy"}, {"t": "tensor", "file": "link.npy"},
                {"t": "tensor", "file": "fifo.npy"}, {"t": "tensor", "file": "../ok.npy"},
                {"t": "tensor-subclass", "file": "ok.npy", "cls": "Evil"},
                {"t": "unsupported", "type": "builtins.object"}, {"t": "float", "v": [1, 2]}):
        fake_run.value = bad
        with pytest.raises(checking.Failed):
            k.call("f", torch.zeros(2))


def test_close_is_dtype_tolerant_and_strict_on_values():
    import numpy as np
    import torch

    checking.close(torch.ones(3, dtype=torch.float64), torch.ones(3), atol=1e-6)
    checking.close(np.ones(3, dtype=np.float32), torch.ones(3, dtype=torch.float64), atol=1e-6)
    with pytest.raises(checking.Failed, match="shape"):
        checking.close(torch.ones(4), torch.ones(3))
    with pytest.raises(checking.Failed, match="off by"):
        checking.close(torch.ones(3) + 1e-3, torch.ones(3), atol=1e-5)
    with pytest.raises(checking.Failed, match="NaN"):
        checking.close(torch.tensor([float("nan")]), torch.zeros(1))


def test_every_graded_exercise_has_checks_outside_the_release():
    from xaicourse.course import exercise_names

    for ex in exercise_names(ROOT):
        assert (ROOT / "solutions" / ex / "checks.py").exists(), ex
        assert not (ROOT / "exercises" / ex / "checks.py").exists(), ex
        nb = nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)
        assert not any("BEGIN HIDDEN TESTS" in c.source for c in nb.cells), f"{ex}: hidden tests belong in checks.py"


def test_cli_validates_before_grading(tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    assert cli.main(["--root", str(ROOT), "grade", str(tmp_path / "nope"), "--out", str(tmp_path / "g.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["--root", str(ROOT), "grade", str(tmp_path / "subs"), "--timeout", "-10"]) == 2
    assert "timeout must be positive" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert cli.main(["--root", str(ROOT), "grade", str(tmp_path / "subs"),
                     "--out", str(tmp_path / "afile" / "g.csv")]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert cli.main(["--root", str(ROOT), "grade", str(tmp_path / "subs"), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_csv(tmp_path):
    subs = tmp_path / "subs"
    wrong = _with({"delta_answer": "def convergence_delta(model, x, target, baseline, attributions):\n"
                                   "    return attributions.flatten(1).sum(1)\n"})
    for student, nb in [("a1", SOL), ("a2", wrong), ("a3", SOL)]:
        (subs / student / EX).mkdir(parents=True)
        nbformat.write(nb, subs / student / EX / f"{EX}.ipynb")
    ref = tmp_path / "ref.csv"
    cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(ref), "--timeout", "60", "-j", "2",
              "--no-feedback"])
    out = tmp_path / "run.csv"
    cmd = [sys.executable, "-m", "xaicourse.cli", "--root", str(ROOT), "grade", str(subs), "--out", str(out),
           "--timeout", "60", "--no-feedback"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    partial = autograding.partial_path(out)
    while time.time() < deadline:  # kill as soon as the first row is on disk
        if partial.exists() and len(partial.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err, err
    assert not out.exists(), "an interrupted run never replaces the grade sheet"
    assert 2 <= len(partial.read_text().splitlines()) <= 3
    assert cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out), "--timeout", "60",
                     "--resume", "--no-feedback"]) == 0

    def rows(p):
        with open(p) as fh:
            return sorted((r["student"], r["score"], r["status"], r["tasks"]) for r in csv.DictReader(fh))
    assert rows(out) == rows(ref) and not partial.exists()
    assert [r[1] for r in rows(ref)] == ["9.0", "7.0", "9.0"]


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="ast.parse is thread-safe from CPython 3.13 on (gh-106905)")
def test_the_grader_parses_one_thread_at_a_time():
    """Parallel ast.parse calls once made a student's grade "grading error: SystemError: AST
    constructor recursion depth mismatch" (CPython gh-106905). In the grading process every
    ast.parse — ours and the standard library's, e.g. traceback's carets — takes one lock."""
    import ast
    import threading

    from xaicourse.autograding import run

    assert getattr(ast.parse, "_xaicourse_serialized", False)
    done = threading.Event()

    def parse_elsewhere():
        ast.parse("y = (1 + 2) * 3")
        done.set()

    with run._AST_LOCK:                      # as the grader holds it while it scans a submission
        worker = threading.Thread(target=parse_elsewhere)
        worker.start()
        assert not done.wait(0.5), "another thread parsed while the grader's scan held the lock"
        assert ast.parse("x = 1")            # the same thread may parse again (re-entrant)
    assert done.wait(10)
    worker.join()
