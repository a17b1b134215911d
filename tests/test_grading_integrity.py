"""Grading a class you can trust: malicious submissions cannot reach the solutions, other students
or the grades; one-line cheats earn nothing or are flagged; honest students with odd notebooks get
their points and a specific status; an interrupted batch resumes to the same CSV."""
import copy
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from xaicourse import autograding, cli
from xaicourse.models import cache_dir

ROOT = Path(__file__).resolve().parents[1]
EX = "00_introduction"
SOL = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
BWRAP, WHY = autograding.bwrap_available()
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"isolation tests need bubblewrap: {WHY}")

GOOD = ("def perturbation_score_vector(f, x, delta):\n"
        "    if delta == 0:\n        raise ValueError('delta must be non-zero')\n"
        "    x = torch.as_tensor(x)\n"
        "    X = x[None] + delta * torch.eye(len(x), dtype=x.dtype)\n"
        "    return f(x[None])[0] - f(X)\n")
WRONG = "def perturbation_score_vector(f, x, delta):\n    return torch.zeros(len(x))\n"


def _with(grade_id, source, nb=None):
    nb = copy.deepcopy(nb or SOL)
    for c in nb.cells:
        if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            c.source = source
    return nb


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    subs = tmp_path_factory.mktemp("subs")
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    marker = f"xaicourse-detached-{os.getpid()}"

    def put(student, nb, name=f"{EX}.ipynb", ex=EX):
        d = subs / student / ex
        d.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, d / name)
        return d / name

    alice = put("alice", SOL)
    # --- malicious
    snoop = (f"import os\n_hits = [p for p in [{str(ROOT / 'solutions' / EX / (EX + '.ipynb'))!r}, {str(alice)!r}, "
             f"{str(out)!r}] if os.path.exists(p)]\n"
             f"_hits += [p for p in os.listdir('/proc') if p.isdigit() and p != str(os.getpid()) and "
             f"'nbgrader' in open(f'/proc/{{p}}/cmdline', 'rb').read().decode(errors='ignore') "
             f"and {str(subs)!r} in open(f'/proc/{{p}}/cmdline', 'rb').read().decode(errors='ignore')]\n"
             "if _hits:\n" + "\n".join("    " + line for line in GOOD.splitlines()) + "\n"
             "else:\n    raise RuntimeError('found nothing to read')\n")
    put("snoop", _with("perturbation_answer", snoop))
    vandal = (f"import os, subprocess, sys\n"
              f"for _p in [{str(alice)!r}, {str(out)!r}, {str(cache_dir() / 'planted.pt')!r}]:\n"
              "    try:\n        open(_p, 'w').write('garbage')\n    except OSError:\n        pass\n"
              f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}], "
              "start_new_session=True)\n" + GOOD)
    put("vandal", _with("perturbation_answer", vandal))
    put("cheat_allclose", _with("perturbation_answer",
                                "torch.allclose = lambda *a, **k: True\n" + WRONG))
    put("cheat_ast", _with("perturbation_answer",
                           "import ast\nclass _Swallow(ast.NodeTransformer):\n"
                           "    def visit_Module(self, node):\n"
                           "        node.body = [ast.Try(body=node.body or [ast.Pass()], handlers=[ast.ExceptHandler("
                           "type=None, name=None, body=[ast.Pass()])], orelse=[], finalbody=[])]\n"
                           "        return ast.fix_missing_locations(node)\n"
                           "get_ipython().ast_transformers.append(_Swallow())\n" + WRONG))
    put("cheat_bind", _with("perturbation_answer",
                            "from xaicourse.attribution import perturbation_scores as _ps\n"
                            "def perturbation_score_vector(f, x, delta):\n"
                            "    if delta == 0:\n        raise ValueError('delta')\n"
                            "    class F(torch.nn.Module):\n        def forward(self, X):\n"
                            "            return f(X)[:, None]\n"
                            "    return _ps(F(), x[None], 0, delta=delta)[0]\n"))
    # --- honest but odd
    stripped = copy.deepcopy(SOL)
    for c in stripped.cells:
        c.metadata.pop("nbgrader", None)
    put("stripped", stripped)
    put("warner", _with("perturbation_answer", "import warnings\n" + GOOD.replace(
        "    x = torch.as_tensor(x)\n", "    warnings.warn('a harmless warning')\n    x = torch.as_tensor(x)\n")))
    put("renamed", SOL, name="my_homework.ipynb")
    dup = copy.deepcopy(SOL)
    for c in dup.cells:
        c["id"] = "same-id"
    (subs / "dupids" / EX).mkdir(parents=True)
    (subs / "dupids" / EX / f"{EX}.ipynb").write_text(json.dumps(dup))  # nbformat would refuse to write it
    regid = copy.deepcopy(SOL)
    for c in regid.cells:
        md = c.metadata.get("nbgrader")
        if md and md.get("grade_id"):
            md["grade_id"] = "cell-" + md["grade_id"][:3]
    put("regrade_ids", regid)
    put("exit_task2", _with("topweights_answer", "import os\nos._exit(3)\n"))
    put("misnamed", SOL, ex="00_intro")
    (subs / "empty").mkdir()
    (subs / "archive.zip").write_bytes(b"PK\x03\x04")
    roster = tmp_path_factory.mktemp("roster") / "roster.txt"
    roster.write_text("alice\nghost\n")
    before = {"alice": _sha(alice), "cache": sorted(p.name for p in cache_dir().glob("*"))}
    t0 = time.time()
    rows = autograding.grade(ROOT, subs, out, timeout=40, jobs=2, roster=roster, log=lambda *a: None)
    seconds = time.time() - t0
    alive = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    with open(out) as fh:
        table = {r["student"]: r for r in csv.DictReader(fh)}
    return dict(rows=rows, table=table, subs=subs, out=out, alice=alice, before=before, alive=alive,
                seconds=seconds)


def _score(batch, student):
    return float(batch["table"][student]["score"])


@pytest.mark.slow
def test_every_entry_is_a_row_with_a_reason(batch):
    t = batch["table"]
    assert _score(batch, "alice") == 5.0 and t["alice"]["status"] == "ok"
    assert "not a folder" in t["archive.zip"]["status"] and "unpack" in t["archive.zip"]["status"]
    assert "no exercise folder" in t["empty"]["status"]
    assert "missing" in t["ghost"]["status"]
    assert _score(batch, "misnamed") == 5.0 and "graded as 00_introduction" in t["misnamed"]["status"]
    assert all(float(r["score"]) <= float(r["max_score"]) for r in t.values())


@pytest.mark.slow
def test_honest_students_get_their_points(batch):
    t = batch["table"]
    assert _score(batch, "stripped") == 5.0 and "restored" in t["stripped"]["status"]
    assert _score(batch, "warner") == 5.0            # a warning on stderr is not a failure
    assert _score(batch, "renamed") == 5.0 and "my_homework.ipynb" in t["renamed"]["status"]
    assert _score(batch, "dupids") == 5.0
    assert _score(batch, "regrade_ids") == 5.0 and "restored" in t["regrade_ids"]["status"]
    # a kernel killed in task 2 keeps task 1's points, and says where it died
    assert _score(batch, "exit_task2") == 3.0
    assert "kernel died in topweights_answer" in t["exit_task2"]["status"]
    assert "topweights_tests=kernel died" in t["exit_task2"]["tasks"]


@pytest.mark.slow
def test_one_line_cheats_earn_nothing_or_are_flagged(batch):
    t = batch["table"]
    # the patched allclose ends the kernel before the next cell: that answer is disabled and the
    # notebook re-run, so the cheat costs its own task and the honest task 2 keeps its points
    assert _score(batch, "cheat_allclose") == 2.0
    assert "kernel died in perturbation_answer" in t["cheat_allclose"]["status"]
    assert "flagged" in t["cheat_allclose"]["status"]
    assert _score(batch, "cheat_ast") <= 2.0 and "flagged" in t["cheat_ast"]["status"]
    assert "AST transformer" in t["cheat_ast"]["status"]
    assert _score(batch, "cheat_bind") == 2.0        # forbid reaches the alias bound before the test
    assert "failed" in t["cheat_bind"]["tasks"].split(";")[0]


@needs_bwrap
@pytest.mark.slow
def test_a_submission_cannot_read_or_change_anything_else(batch):
    t = batch["table"]
    assert _score(batch, "snoop") == 2.0, t["snoop"]   # found no solution, classmate, CSV or grader
    assert _sha(batch["alice"]) == batch["before"]["alice"]
    assert _score(batch, "alice") == 5.0
    assert sorted(p.name for p in cache_dir().glob("*")) == batch["before"]["cache"]
    assert "garbage" not in batch["out"].read_text()
    assert _score(batch, "vandal") == 5.0   # its own answer still graded
    assert batch["alive"] == [], "a detached child outlived its sandbox"


@pytest.mark.slow
def test_feedback_shows_results_not_hidden_code(batch):
    page = (batch["out"].parent / "grades_files" / "cheat_bind" / EX / f"{EX}.html").read_text()
    assert "ForbiddenCall" in page
    assert "BEGIN HIDDEN TESTS" not in page and "perturbation_score_vector(g, x, 0.25)" not in page
    log = batch["out"].parent / "grades_files" / "alice" / EX / "nbgrader.log"
    assert log.exists() and (log.parent / f"{EX}.ipynb").exists()


def test_scan_flags_tampering_and_passes_honest_code():
    assert autograding.scan_answer(GOOD) == []
    assert autograding.scan_answer("import numpy as np\ndef f(x):\n    return np.sort(x)\n") == []
    for bad, why in [("torch.allclose = lambda *a: True", "assigns to an attribute"),
                     ("import sys\nsys.modules['torch'] = None", "sys.modules"),
                     ("f.__code__ = g.__code__", "swaps a function's code"),
                     ("get_ipython().ast_transformers.append(1)", "AST transformer"),
                     ("import ctypes", "ctypes"), ("import subprocess", "starts processes"),
                     ("import builtins\nbuiltins.abs = print", "builtins")]:
        flags = autograding.scan_answer(bad)
        assert any(why in f for f in flags), (bad, flags)


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
    for student, nb in [("a1", SOL), ("a2", _with("perturbation_answer", WRONG)), ("a3", SOL)]:
        (subs / student / EX).mkdir(parents=True)
        nbformat.write(nb, subs / student / EX / f"{EX}.ipynb")
    ref = tmp_path / "ref.csv"
    cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(ref), "--timeout", "40", "-j", "2",
              "--no-feedback"])
    out = tmp_path / "run.csv"
    cmd = [sys.executable, "-m", "xaicourse.cli", "--root", str(ROOT), "grade", str(subs), "--out", str(out),
           "--timeout", "40", "--no-feedback"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline:  # kill as soon as the first row is on disk
        if out.exists() and len(out.read_text().splitlines()) >= 2:
            break
        time.sleep(0.5)
    proc.terminate()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in err, err
    assert 2 <= len(out.read_text().splitlines()) <= 3
    assert cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out), "--timeout", "40",
                     "--resume", "--no-feedback"]) == 0

    def rows(p):
        with open(p) as fh:
            return sorted((r["student"], r["score"], r["status"], r["tasks"]) for r in csv.DictReader(fh))
    assert rows(out) == rows(ref)
    assert [r[1] for r in rows(ref)] == ["5.0", "2.0", "5.0"]
