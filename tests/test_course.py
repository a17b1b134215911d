"""The course pipeline end to end: every notebook executes in quick mode (discovered, so new
lectures are covered automatically), the site index links them, exercises are in sync and
clean, and nbgrader grades solutions to full marks and untouched exercises to zero."""
import copy
import html
import json
import re
from pathlib import Path

import nbformat
import pytest

from xaicourse import cli, course

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = course.lecture_notebooks(ROOT) + course.solution_notebooks(ROOT)
EXERCISES = course.exercise_names(ROOT)


@pytest.fixture(scope="session")
def built(sites):
    """The instructor build (every lecture and solution executed once; see conftest ``sites``)."""
    return sites.instructor, sites.results


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_executes_in_quick_mode(built, nb):
    _, results = built
    r = results[nb]
    assert r.ok, r.error


@pytest.mark.slow
@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_speaks_the_current_api(built, nb):
    """Issue #25: lectures and solutions use the one vocabulary. A DeprecationWarning raised by a
    notebook's own code (the package's renamed arguments and functions point their warnings at the
    caller: a cell, shown as an ipykernel file) means a call site was not updated."""
    _, results = built
    r = results[nb]
    stale = [line for c in r.nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
             if o.get("output_type") == "stream" for line in o.get("text", "").splitlines()
             if "DeprecationWarning" in line and "ipykernel" in line]
    assert stale == [], stale


@pytest.mark.slow
def test_site_index_links_every_lecture(built, sites):
    out, results = built
    for site_dir in (sites.student, sites.instructor):
        index = (site_dir / "index.html").read_text()
        for nb in course.lecture_notebooks(ROOT):
            name = f"lectures/{nb.stem}.html"
            assert f'href="{name}"' in index, (site_dir.name, name)
            page = (site_dir / name).read_text()
            imgs = re.findall(r'<img[^>]+src="\.\./(_images/[^"]+\.png)"', page)
            assert imgs and all((site_dir / i).stat().st_size > 1000 for i in imgs), \
                f"{name} shows no figure of our execution (inline backend lost?)"
            assert 'class="reference download internal"' in page and 'class="math' in page
            # every lecture ends with widgets; a static page must say they do not respond here
            assert "no Python runs behind a web page" in page and "_static/site.css" in page, name
        for ex in EXERCISES:
            assert f'href="exercises/{ex}.html"' in index, ex
    assert len(results) == len(NOTEBOOKS)
    index = (sites.instructor / "index.html").read_text()
    assert "Instructor only: solutions" in index
    for ex in EXERCISES:
        assert f'href="solutions/{ex}.html"' in index, ex


RAW_TEX = re.compile(r"\$|\\[A-Za-z]+|[\^_]\{")  # a dollar, a \command or ^{ / _{ left in the text


def raw_tex_in_prose(html: str) -> list[str]:
    """Prose of a site page (paragraphs, list items, table cells, headings, answers) in which maths
    did not render: TeX that MathJax will not see because MyST left it outside a math node."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    body = soup.find("main") or soup
    for el in body.select("script, style, pre, code, .math, .cell_input, .cell_output, .output, .highlight"):
        el.decompose()
    found = []
    for el in body.find_all(["p", "li", "td", "th", "h1", "h2", "h3", "h4", "summary", "dd", "dt"]):
        text = " ".join(el.get_text(" ").split())
        if RAW_TEX.search(text):
            found.append(text[:160])
    return found


def test_raw_tex_detector_sees_what_did_not_render():
    assert raw_tex_in_prose('<main><p>fine <span class="math">\\(\\alpha_k\\)</span> text</p></main>') == []
    assert raw_tex_in_prose("<main><p>a stray $ here</p></main>")
    assert raw_tex_in_prose("<main><li>raw \\alpha_k</li></main>")
    assert raw_tex_in_prose("<main><p>x in R^{H×W}</p></main>")
    assert raw_tex_in_prose('<main><div class="cell_output"><p>$5</p></div><pre>\\n</pre></main>') == []


@pytest.mark.slow
def test_site_maths_render_everywhere(sites):
    """No page of either site shows a `$`, a raw `\\command` or `^{…}` in its prose: display maths that
    starts mid-paragraph, Unicode maths with TeX exponents, or a stray dollar all fail here."""
    bad = {}
    for site_dir in (sites.student, sites.instructor):
        for page in sorted(list(site_dir.glob("lectures/*.html")) + list(site_dir.glob("exercises/*.html"))
                           + list(site_dir.glob("solutions/*.html"))):
            found = raw_tex_in_prose(page.read_text())
            if found:
                bad[f"{site_dir.name}/{page.parent.name}/{page.name}"] = found[:3]
    assert bad == {}, bad


@pytest.mark.slow
def test_student_site_has_no_solution_or_hidden_test(sites):
    """Every line of solution code and hidden tests that the released exercises and lectures do
    not show anyway must be absent from every file of the student site (HTML text, search index,
    downloads); the instructor site must have them (so the check can fail)."""
    public = "".join(p.read_text() for p in sorted((ROOT / "exercises").glob("*/*.ipynb")))
    public += "".join(p.read_text() for p in course.lecture_notebooks(ROOT))
    secrets = {}
    for ex in EXERCISES:
        src = (ROOT / "solutions" / ex / f"{ex}.ipynb")
        for c in nbformat.read(src, as_version=4).cells:
            for block in re.findall(r"### BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)### END", c.source, re.S):
                for line in block.splitlines():
                    line = line.strip()
                    if len(line) > 24 and json.dumps(line)[1:-1] not in public and line not in public:
                        secrets.setdefault(ex, set()).add(line)
    secret = set().union(*secrets.values())
    assert len(secret) > 50

    def text_of(site_dir):
        parts = []
        for p in site_dir.rglob("*"):
            if p.is_file() and p.suffix in (".html", ".js", ".ipynb", ".txt", ".json") and "_static" not in p.parts:
                t = p.read_text(encoding="utf-8", errors="replace")
                parts.append(html.unescape(re.sub(r"<[^>]+>", "", t)) if p.suffix == ".html" else t)
                parts.append(t)
        return "\n".join(parts)

    student = text_of(sites.student)
    leaked = sorted(l for l in secret if l in student)
    assert not leaked, f"{len(leaked)} solution / hidden-test lines in the student site, e.g. {leaked[:3]}"
    for marker in ("BEGIN SOLUTION", "BEGIN HIDDEN TESTS", "_check_integrity", "Instructor only"):
        assert marker not in student, marker
    assert not (sites.student / "solutions").exists()
    instructor = text_of(sites.instructor)  # the check can fail: the instructor site shows them
    shown = [ex for ex in EXERCISES if (sites.instructor / "solutions" / f"{ex}.html").exists()]
    assert shown
    for ex in shown:
        assert sum(l in instructor for l in secrets[ex]) > 0.5 * len(secrets[ex]), ex


def test_parameters_cell_first_and_device_toggle():
    for nb_path in NOTEBOOKS:
        nb = nbformat.read(nb_path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), nb_path.name
        assert 'DEVICE = "auto"' in code[0].source, nb_path.name
        assert any("device_toggle(" in c.source for c in code), nb_path.name


def test_committed_notebooks_have_no_outputs():
    assert course.notebooks_with_outputs(ROOT) == []


def test_committed_notebooks_are_valid_with_unique_cell_ids():
    """nbformat 4.5 wants an id on every cell (a missing one is a warning today, an error tomorrow)."""
    import json
    for nb_path in sorted(NOTEBOOKS + list((ROOT / "exercises").glob("*/*.ipynb"))):
        raw = json.loads(nb_path.read_text())
        ids = [c.get("id") for c in raw["cells"]]
        assert None not in ids, f"{nb_path.relative_to(ROOT)}: cell {ids.index(None)} has no id"
        assert len(set(ids)) == len(ids), f"{nb_path.relative_to(ROOT)}: repeated cell ids"
        nbformat.validate(nbformat.reads(nb_path.read_text(), as_version=4))


@pytest.mark.slow
def test_exercises_in_sync_with_solutions():
    assert course.check(ROOT, log=lambda *a: None) == []


def test_failing_notebook_reported_with_cell(tmp_path, capsys):
    (tmp_path / "lectures").mkdir()
    (tmp_path / "solutions").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom 42')")]
    nbformat.write(nb, tmp_path / "lectures" / "99_broken.ipynb")
    code = cli.main(["--root", str(tmp_path), "build", "--quick"])
    out = capsys.readouterr().out
    assert code == 1
    assert "99_broken.ipynb: failed in cell 1" in out and "boom 42" in out
    assert cli.main(["--root", str(tmp_path), "build", "--only", "nothing-matches"]) == 2


def _cell(nb, grade_id):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def _solution(ex):
    return nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)


def submissions():
    """This module's students (graded with the other modules' in conftest's ``course_grades``)."""
    subs = {}
    for ex in EXERCISES:
        subs["alice", ex] = _solution(ex)
        subs["bob", ex] = nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4)
    sol = _solution("00_introduction")
    ex0 = nbformat.read(ROOT / "exercises/00_introduction/00_introduction.ipynb", as_version=4)
    wrong = copy.deepcopy(sol)  # task 2 forgot the sign of R_i (R_i/δ → −∂f/∂x_i): task 1 still right
    _cell(wrong, "topweights_answer").source = (
        "def gradient_limit(f, x, i, deltas, exact):\n"
        "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
        "    errors = torch.stack([((f(x[None])[0] - f((x + float(dl) * torch.eye(x.numel(), dtype=x.dtype)[i])[None])[0])\n"
        "                           / dl - exact).abs() for dl in deltas.tolist()]).double()\n"
        "    return errors, float(deltas[errors.argmin()])\n")
    subs["carol", "00_introduction"] = wrong
    hang = copy.deepcopy(sol)
    _cell(hang, "perturbation_answer").source = "import time\nwhile True:\n    time.sleep(0.5)\n"
    subs["dave", "00_introduction"] = hang
    crash = copy.deepcopy(sol)
    _cell(crash, "perturbation_answer").source = "import os\nos._exit(3)\n"
    subs["eve", "00_introduction"] = crash
    tamper = copy.deepcopy(ex0)  # unsolved, but the locked tests edited to pass / deleted
    _cell(tamper, "perturbation_tests").source = "pass"
    tamper.cells = [c for c in tamper.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "topweights_tests"]
    subs["frank", "00_introduction"] = tamper
    return subs


@pytest.fixture(scope="session")
def grades(course_grades):
    return course_grades


@pytest.mark.slow
@pytest.mark.parametrize("ex", EXERCISES)
def test_solution_full_marks_exercise_zero(grades, ex):
    a, b = grades[("alice", ex)], grades[("bob", ex)]
    assert float(a["max_score"]) > 0
    assert float(a["score"]) == float(a["max_score"]), a
    assert float(b["score"]) == 0.0, b


@pytest.mark.slow
def test_wrong_answer_partial_credit(grades):
    r = grades[("carol", "00_introduction")]
    assert 0 < float(r["score"]) < float(r["max_score"])
    assert float(r["score"]) == 3.0  # task 1 right, task 2 wrong


@pytest.mark.slow
def test_hanging_and_crashing_submissions_get_rows(grades):
    dave = grades[("dave", "00_introduction")]
    assert float(dave["score"]) == 2.0  # the hanging task interrupted, the other still graded
    assert "perturbation_tests=timeout" in dave["tasks"], dave
    eve = grades[("eve", "00_introduction")]  # killed the kernel in task 1: task 2 re-run in a fresh kernel
    assert float(eve["score"]) == 2.0 and "kernel died in perturbation_answer" in eve["status"]


@pytest.mark.slow
def test_tampered_locked_cells_do_not_earn_points(grades):
    frank = grades[("frank", "00_introduction")]
    assert float(frank["score"]) == 0.0
    assert set(submissions()) <= set(grades)


@pytest.mark.slow
def test_check_catches_stale_exercise_and_outputs(tmp_path, capsys):
    import shutil
    # one exercise is enough to show both problems (a copy of all would regenerate them all)
    for d in ("lectures/00_introduction.ipynb", "solutions/00_introduction", "exercises/00_introduction"):
        (tmp_path / d).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (ROOT / d).is_dir() else shutil.copy)(ROOT / d, tmp_path / d)
    ex = tmp_path / "exercises/00_introduction/00_introduction.ipynb"
    nb = nbformat.read(ex, as_version=4)
    nb.cells[0].source += "\n# edited by hand"
    nbformat.write(nb, ex)
    lec = tmp_path / "lectures/00_introduction.ipynb"
    nb = nbformat.read(lec, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi")]
    nbformat.write(nb, lec)
    assert cli.main(["--root", str(tmp_path), "check"]) == 1
    out = capsys.readouterr().out
    assert "exercises/00_introduction/00_introduction.ipynb is out of sync" in out, out
    assert "lectures/00_introduction.ipynb carries outputs" in out, out
