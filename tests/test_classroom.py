"""The class round trip through nbgrader's exchange, for real: every exercise is released; three
simulated students fetch and submit (a full solution, wrong answers, a notebook that hangs and
deleted a locked test cell); the instructor collects, autogrades (sandboxed, in parallel),
releases feedback that the students fetch, and exports the grades. Exercise 02 draws each
student's own data from the student id; its grading must use the id of the submission."""
import json
import re
import html
import time
from pathlib import Path

import nbformat
import pytest

from xaicourse import classroom, course
from xaicourse.grading import student_id, student_rng

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = ("00_introduction", "02_tsne")
ARTIFACTS = ROOT / "build" / "test-artifacts"


@pytest.fixture(scope="module")
def trip(tmp_path_factory):
    t0 = time.time()
    r = classroom.simulate(ROOT, tmp_path_factory.mktemp("class"), exercises=EXERCISES, jobs=2, timeout=15,
                           regrade=True, log=lambda *a: None)
    r["seconds"] = time.time() - t0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "classroom-times.json").write_text(json.dumps(dict(r["times"], total=r["seconds"]), indent=1))
    with open(r["grades"]) as fh:
        import csv
        r["by"] = {(x["student"], x["exercise"]): x for x in csv.DictReader(fh)}
    return r


def _text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def _hidden_lines(ex: str) -> set[str]:
    """Lines of the hidden checks of ``ex`` (``solutions/<ex>/checks.py``) that appear nowhere else
    (not in the released exercise, not in the solution, which a student may hand in)."""
    sol = nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)
    elsewhere = {l.strip() for c in sol.cells for l in c.source.splitlines()}
    elsewhere |= {l.strip() for c in nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4).cells
                  for l in c.source.splitlines()}
    src = (ROOT / "solutions" / ex / "checks.py").read_text()
    lines = {l.strip() for l in src.splitlines()
             if len(l.strip()) > 25 and not l.strip().startswith(("#", "import", "from"))
             and not any(l.strip() in e for e in elsewhere)}
    assert len(lines) > 5
    return lines


def test_student_id_from_grading_folder_then_environment(tmp_path, monkeypatch):
    for var in ("XAICOURSE_STUDENT", "JUPYTERHUB_USER", "NB_USER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", "hubuser")
    monkeypatch.chdir(tmp_path)
    assert student_id() == "hubuser"
    monkeypatch.setenv("XAICOURSE_STUDENT", "preview")
    assert student_id() == "preview"
    graded = tmp_path / "autograded" / "dora" / "02_tsne"
    graded.mkdir(parents=True)
    monkeypatch.chdir(graded)  # nbgrader's folder names the student, whatever the environment says
    assert student_id() == "dora"
    a1, a2, b = (student_rng("02_tsne", s).random(3) for s in ("alice", "alice", "bob"))
    assert (a1 == a2).all() and not (a1 == b).any()


@pytest.mark.slow
def test_every_exercise_released_and_fetched(trip):
    out = trip["exchange"] / classroom.DEFAULT_COURSE_ID / "outbound"
    assert sorted(p.name for p in out.iterdir()) == course.exercise_names(ROOT)
    for ex in course.exercise_names(ROOT):
        rel = nbformat.read(out / ex / f"{ex}.ipynb", as_version=4)
        assert "BEGIN HIDDEN TESTS" not in json.dumps(rel) and "BEGIN SOLUTION" not in json.dumps(rel), ex
    for st in classroom.STUDENTS:
        for ex in EXERCISES:
            assert (trip["homes"] / st / ex / f"{ex}.ipynb").exists(), (st, ex)


@pytest.mark.slow
def test_grades(trip):
    by = trip["by"]
    expect = {("alice", "00_introduction"): 5.0, ("alice", "02_tsne"): 8.0,     # full solution
              ("bob", "00_introduction"): 3.0, ("bob", "02_tsne"): 4.0,         # one task wrong in each
              ("carol", "00_introduction"): 2.0}   # task 1 hangs; deleting task 2's visible test changes nothing
    assert {k: float(v["score"]) for k, v in by.items()} == expect
    assert "topweights_tests=failed" in by[("bob", "00_introduction")]["tasks"]
    assert "gradient_tests=failed" in by[("bob", "02_tsne")]["tasks"]
    carol = by[("carol", "00_introduction")]
    assert "perturbation_tests=timeout" in carol["tasks"] and "topweights_tests=passed" in carol["tasks"]
    assert float(carol["seconds"]) >= 15, "the hanging answer ran into the per-cell timeout"
    table = trip["by_student"].read_text().splitlines()
    assert table[0] == "student,00_introduction,02_tsne,total,max_total"
    assert table[1:] == ["alice,5,8,13,13", "bob,3,4,7,13", "carol,2,0,2,13"]


@pytest.mark.slow
def test_regrading_gives_the_same_grades_and_fills_the_gradebook(trip):
    from nbgrader.api import Gradebook

    def key(rows):
        return sorted((r["student"], r["exercise"], r["score"], r["tasks"]) for r in rows)
    assert key(trip["regraded"]) == key(trip["by"].values())
    assert not any("error" in r["status"] for r in trip["regraded"])
    with Gradebook(f"sqlite:///{trip['course'] / 'gradebook.db'}") as gb:   # what formgrader shows
        for (st, ex), r in trip["by"].items():
            assert gb.find_submission(ex, st).score == pytest.approx(float(r["score"])), (st, ex)
    cfg = (trip["course"] / "nbgrader_config.py").read_text()
    assert "UseXaicourseGrade" in cfg and "checks.py" in cfg
    assert (trip["course"].stat().st_mode & 0o077) == 0, "the course folder is private"
    assert not list((trip["course"] / "source").rglob("checks.py")), "hidden checks never enter the course folder"


@pytest.mark.slow
def test_every_submission_graded_and_kept(trip):
    inbound = trip["exchange"] / classroom.DEFAULT_COURSE_ID / "inbound"
    for st, exs in trip["submitted"].items():
        for ex in exs:
            assert (st, ex) in trip["by"], (st, ex)
            assert list(inbound.glob(f"{st}+{ex}+*")), f"{st}/{ex} not in the exchange's inbound"
            mine = nbformat.read(trip["homes"] / st / ex / f"{ex}.ipynb", as_version=4)
            kept = nbformat.read(trip["course"] / "submitted" / st / ex / f"{ex}.ipynb", as_version=4)
            assert [c.source for c in kept.cells] == [c.source for c in mine.cells], (st, ex)
            assert (trip["course"] / "autograded" / st / ex / f"{ex}.ipynb").exists()
    assert len(trip["by"]) == sum(len(v) for v in trip["submitted"].values())


@pytest.mark.slow
def test_feedback_shows_hidden_results_not_hidden_code(trip):
    for (st, ex), pages in trip["feedback"].items():
        assert len(pages) == 1, f"{st} fetched {len(pages)} feedback pages for {ex} (only their own: 1)"
        text = _text(pages[0])
        assert "BEGIN HIDDEN TESTS" not in text and "_kernel_side" not in text and "xaicourse-grade-" not in text
        leaked = [l for l in _hidden_lines(ex) if l in text]
        assert not leaked, f"{st}/{ex} feedback shows hidden-test code: {leaked[:3]}"
        score = float(trip["by"][(st, ex)]["score"])
        assert re.search(rf"Score:\s*{score:g}(\.0)?\s*/", text) or f"{score:g}" in text
    bob = _text(trip["feedback"][("bob", "02_tsne")][0])
    assert "Hidden checks: failed" in bob  # the hidden checks' result (and message) is shown


@pytest.mark.slow
def test_per_student_parameters_graded_with_the_submitters_id(trip):
    seen = {}
    for st in ("alice", "bob"):
        r = student_rng("02_tsne", st)
        p = float(r.choice([5.0, 8.0, 12.0, 20.0]))
        n = len(__import__("xaicourse.data", fromlist=["x"]).load_digits_tensors().X_train)
        rows = sorted(r.choice(n, 60, replace=False).tolist())
        auto = nbformat.read(trip["course"] / "autograded" / st / "02_tsne" / "02_tsne.ipynb", as_version=4)
        out = "".join(o.get("text", "") for c in auto.cells if c.cell_type == "code" for o in c.get("outputs", []))
        assert f"student {st!r}: perplexity {p:g} on the 60 training digits {rows[:4]}" in out, out[:500]
        seen[st] = (p, rows)
        assert "perplexity_tests=passed" in trip["by"][(st, "02_tsne")]["tasks"]  # graded on their own data
    assert seen["alice"] != seen["bob"]


def test_deploy_nbgrader_configs_split_everybody_and_instructor():
    """deploy/nbgrader_config.py (every user) names the course and exchange and imports nothing;
    the instructor's adds the course folder; a course folder's own config refuses nbgrader's
    autograde with a message naming the command."""
    from traitlets.config import Config

    c = Config()
    src = (ROOT / "deploy" / "nbgrader_config.py").read_text()
    assert "import" not in src.replace("imports nothing", "")
    exec(src, {"get_config": lambda: c})
    assert c.CourseDirectory.course_id == "xaicourse" and c.Exchange.root == "/srv/nbgrader/exchange"
    assert "root" not in c.CourseDirectory
    i = Config()
    exec((ROOT / "deploy" / "nbgrader_config_instructor.py").read_text(), {"get_config": lambda: i})
    assert i.CourseDirectory.root.endswith("xaicourse-course")
    k = Config()
    exec(classroom.config_text(Path("/srv/x"), "xaicourse"), {"get_config": lambda: k})
    with pytest.raises(RuntimeError, match="xaicourse classroom grade"):
        k.Autograde.autograde_preprocessors[0]().preprocess(nbformat.v4.new_notebook(), {})


def test_classroom_settings_come_from_the_nbgrader_config(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".jupyter").mkdir(parents=True)
    (home / ".jupyter" / "nbgrader_config.py").write_text(
        "c = get_config()\nc.CourseDirectory.root = '~/course'\nc.Exchange.root = '/srv/ex'\n")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(home / ".jupyter"))
    monkeypatch.chdir(tmp_path)
    course, exchange, cid = classroom.course_settings()
    assert course == (home / "course").resolve() and exchange == Path("/srv/ex") and cid == "xaicourse"
    assert classroom.course_settings(course=tmp_path / "c")[0] == (tmp_path / "c").resolve()
    (home / ".jupyter" / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(ValueError, match="CourseDirectory.root"):
        classroom.course_settings()
