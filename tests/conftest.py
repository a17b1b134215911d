"""Shared test setup: a course-model cache inside the checkout (reused by notebook runs),
headless matplotlib, and the repository root."""
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("XAICOURSE_CACHE", str(ROOT / "build" / "test-cache"))
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(autouse=True)
def _restore_course_device():
    """No test leaks a ``set_device`` choice (or the toggle's) into the next one."""
    from xaicourse import device

    saved = device._current
    yield
    device._current = saved


# ----------------------------------------------------------------------------- grading, once
# Every grading test in the suite shares ONE ``xaicourse grade`` run, as a class would be graded:
# each collected test module that exposes ``submissions() -> {(student, exercise): nb}`` (and
# optionally ``plant(folder, student, exercise)`` to put extra files next to a notebook) adds its
# students. Only the modules collected in this session contribute, so ``pytest
# tests/test_grading_ex04.py`` grades exercise 04's submissions alone.
GRADING_TIMEOUT = 40  # seconds per answer or test cell (set-up cells get 300): each hanging student costs it once


@pytest.fixture(scope="session")
def course_grades(_course_grading):
    """{(student, exercise): CSV row} for every submission of the collected grading modules."""
    return _course_grading[0]


@pytest.fixture(scope="session")
def course_grades_csv(_course_grading):
    """The CSV of that run (its autograded notebooks, feedback and logs are in ``<stem>_files/``)."""
    return _course_grading[1]


@pytest.fixture(scope="session")
def _course_grading(request, tmp_path_factory):
    import csv

    import nbformat

    from xaicourse import cli

    modules = {getattr(item, "module", None) for item in request.session.items} - {None}
    modules = sorted((m for m in modules if callable(getattr(m, "submissions", None))), key=lambda m: m.__name__)
    submissions, planters = {}, {}
    for mod in modules:
        mine = mod.submissions()
        clash = {k for k in set(mine) & set(submissions) if mine[k] != submissions[k]}  # alice, bob: shared
        assert not clash, f"{mod.__name__}: students already submitted by another module: {sorted(clash)}"
        submissions.update(mine)
        if callable(getattr(mod, "plant", None)):
            planters.update({key: mod.plant for key in mine})
    subs = tmp_path_factory.mktemp("submitted")
    for (student, ex), nb in submissions.items():
        d = subs / student / ex
        d.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, d / f"{ex}.ipynb")
        if (student, ex) in planters:
            planters[student, ex](d, student, ex)
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    code = cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out),
                     "--timeout", str(GRADING_TIMEOUT), "-j", "2"])
    assert code == 0
    with open(out) as fh:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(fh)}
    assert set(rows) == set(submissions), "every submission gets exactly one row"
    return rows, out


@pytest.fixture(scope="session")
def sites(tmp_path_factory):
    """The course built once in quick mode: ``xaicourse build --instructor`` (lectures and solutions
    executed, instructor site) and the student site written from the same executed lectures (what
    ``xaicourse build`` publishes; nothing executed twice). Developer shortcuts (the full suite
    needs every notebook): ``XAICOURSE_TEST_ONLY=NAME`` builds only the matching notebooks;
    ``XAICOURSE_TEST_SITES=DIR`` checks sites already built in ``DIR/instructor`` and ``DIR/student``."""
    import json
    import time
    from types import SimpleNamespace

    from xaicourse import course, site

    prebuilt = os.environ.get("XAICOURSE_TEST_SITES")  # DIR with instructor/ and student/ (site checks only)
    if prebuilt:
        return SimpleNamespace(instructor=Path(prebuilt) / "instructor", student=Path(prebuilt) / "student",
                               results={}, stats={})
    base = tmp_path_factory.mktemp("sites")
    only = os.environ.get("XAICOURSE_TEST_ONLY") or None
    t0 = time.time()
    results = course.build(ROOT, out=base / "instructor", quick=True, jobs=2, instructor=True, only=only)
    instructor_seconds = time.time() - t0
    lectures = [r for r in results if r.path.parent.name == "lectures"]
    student = site.write_site(ROOT, base / "student", lectures, instructor=False, quick=True, only=only)
    info = json.loads((base / "instructor" / "_site.json").read_text())
    stats = dict(instructor_bytes=info["bytes"], instructor_build_seconds=instructor_seconds,
                 instructor_sphinx_seconds=info["seconds"], student_bytes=student["bytes"],
                 student_sphinx_seconds=student["seconds"],
                 lecture_execution_seconds=sum(r.seconds for r in lectures),
                 solution_execution_seconds=sum(r.seconds for r in results if r not in lectures))
    art = ROOT / "build" / "test-artifacts"
    art.mkdir(parents=True, exist_ok=True)
    (art / "site-stats.json").write_text(json.dumps(stats, indent=1))
    return SimpleNamespace(instructor=base / "instructor", student=base / "student",
                           results={r.path: r for r in results}, stats=stats)


def library_call_students(ex: str, students: dict) -> dict:
    """alice (the solution), bob (the untouched exercise) and one student per entry of
    ``students = {name: {grade_id: answer source}}``: the solution with those cells replaced."""
    import copy

    import nbformat

    sol = nbformat.read(ROOT / "solutions" / ex / f"{ex}.ipynb", as_version=4)
    subs = {("alice", ex): sol, ("bob", ex): nbformat.read(ROOT / "exercises" / ex / f"{ex}.ipynb", as_version=4)}
    for name, answers in students.items():
        nb = copy.deepcopy(sol)
        for c in nb.cells:
            grade_id = c.metadata.get("nbgrader", {}).get("grade_id")
            if grade_id in answers:
                c.source = answers[grade_id]
        assert sum(c.metadata.get("nbgrader", {}).get("grade_id") in answers for c in nb.cells) == len(answers), name
        subs[name, ex] = nb
    return subs


# ----------------------------------------------------------------------------- course models
# One trained (cached) course model per test module that asks for it: module scope keeps each
# module's model its own, as when every module built it.
def maxdiff(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def digits():
    from xaicourse.models import course_model

    model, split, _ = course_model("digits", progress=False)
    return model, split


@pytest.fixture(scope="module")
def shapes():
    from xaicourse.models import course_model

    model, split, _ = course_model("shapes", progress=False)
    return model, split


# ----------------------------------------------------------------------------- figures
def assert_gallery_readable(fig, n_images: int) -> None:
    """Issue #26: a ``viz.gallery`` figure (lectures 05–07 and their panels) is readable: at most
    11 in wide (a page does not shrink it), ``n_images`` images besides the query with titles
    ≥ 8 pt that overlap no other image or title, and a histogram (if any) with tick labels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    assert fig.get_size_inches()[0] <= 11, fig.get_size_inches()
    canvas = FigureCanvasAgg(fig)        # a panel closes its figure; give it a canvas to measure on
    canvas.draw()
    r = canvas.get_renderer()
    image_axes = [a for a in fig.axes if a.images][1:]          # the query image is first
    assert len(image_axes) == n_images, len(image_axes)
    for a in image_axes:
        assert a.title.get_fontsize() >= 8, a.title.get_fontsize()
        for b in image_axes:
            if b is not a:
                assert not a.title.get_window_extent(r).overlaps(b.get_window_extent(r)), (a.get_title(), b.get_title())
                assert not a.title.get_window_extent(r).overlaps(b.title.get_window_extent(r))
    hist = [a for a in fig.axes if a.patches]
    for h in hist:
        assert len([t for t in h.get_xticklabels() if t.get_text()]) >= 2
