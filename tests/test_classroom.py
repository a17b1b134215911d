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
                           log=lambda *a: None)
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
    """Lines of the hidden tests of ``ex`` that appear nowhere else (not in the released exercise,
    not in the solution's answers, which a student may hand in)."""
    sol = nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)
    pattern = r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS"
    elsewhere = {l.strip() for c in sol.cells for l in re.sub(pattern, "", c.source, flags=re.S).splitlines()}
    elsewhere |= {l.strip() for c in nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4).cells
                  for l in c.source.splitlines()}
    lines = set()
    for c in sol.cells:
        for block in re.findall(pattern, c.source, re.S):
            lines |= {l.strip() for l in block.splitlines() if len(l.strip()) > 20 and l.strip() not in elsewhere}
    assert len(lines) > 10
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
              ("carol", "00_introduction"): 0.0}                                # hung; its other test deleted
    assert {k: float(v["score"]) for k, v in by.items()} == expect
    assert "topweights_tests=failed" in by[("bob", "00_introduction")]["tasks"]
    assert "gradient_tests=failed" in by[("bob", "02_tsne")]["tasks"]
    carol = by[("carol", "00_introduction")]
    assert "perturbation_tests=passed" not in carol["tasks"] and "topweights_tests=not graded" in carol["tasks"]
    assert float(carol["seconds"]) >= 15, "the hanging answer ran into the per-cell timeout"
    table = trip["by_student"].read_text().splitlines()
    assert table[0] == "student,00_introduction,02_tsne,total,max_total"
    assert table[1:] == ["alice,5,8,13,13", "bob,3,4,7,13", "carol,0,0,0,13"]


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
        assert "BEGIN HIDDEN TESTS" not in text and "_check_integrity" not in text and "_forbid" not in text
        leaked = [l for l in _hidden_lines(ex) if l in text]
        assert not leaked, f"{st}/{ex} feedback shows hidden-test code: {leaked[:3]}"
        score = float(trip["by"][(st, ex)]["score"])
        assert re.search(rf"Score:\s*{score:g}(\.0)?\s*/", text) or f"{score:g}" in text
    bob = _text(trip["feedback"][("bob", "02_tsne")][0])
    assert "relative difference to autograd" in bob  # the hidden test's result (its message) is shown


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


def test_deploy_nbgrader_config_uses_the_graders_preprocessors():
    """deploy/nbgrader_config.py (what a hub installs) loads and gives feedback without hidden code."""
    from traitlets.config import Config

    from xaicourse.autograding import HideHiddenTestCode, StderrAsStdout

    c = Config()
    exec((ROOT / "deploy" / "nbgrader_config.py").read_text(), {"get_config": lambda: c})
    assert StderrAsStdout in c.Autograde.autograde_preprocessors
    assert HideHiddenTestCode in c.GenerateFeedback.preprocessors
    assert c.CourseDirectory.course_id == "xaicourse" and c.ExecutePreprocessor.timeout == 120
