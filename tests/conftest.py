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
# Every grading test in the suite shares ONE ``xaicourse grade`` run: each module that grades
# submissions lists them in ``GRADED_BY`` and exposes ``submissions() -> {(student, exercise): nb}``.
# Only the modules collected in this session contribute, so ``pytest tests/test_grading_ex04.py``
# grades exercise 04's submissions alone. One run instead of one per module saves the repeated
# assignment generation and the idle tail of each parallel run (a third of the grading time).
GRADED_BY = ("test_course", "test_grading_ex01", "test_grading_ex02", "test_grading_ex04", "test_grading_ex05")
GRADING_TIMEOUT = 30  # seconds per cell: the hanging student costs this once; solutions need < 10


@pytest.fixture(scope="session")
def course_grades(request, tmp_path_factory):
    """{(student, exercise): CSV row} for every submission of the collected grading modules."""
    import csv
    import sys

    import nbformat

    from xaicourse import cli

    collected = {getattr(getattr(item, "module", None), "__name__", None) for item in request.session.items}
    submissions = {}
    for name in GRADED_BY:
        if name in collected:
            submissions.update(sys.modules[name].submissions())
    subs = tmp_path_factory.mktemp("submitted")
    for (student, ex), nb in submissions.items():
        d = subs / student / ex
        d.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, d / f"{ex}.ipynb")
    out = tmp_path_factory.mktemp("grades") / "grades.csv"
    code = cli.main(["--root", str(ROOT), "grade", str(subs), "--out", str(out),
                     "--timeout", str(GRADING_TIMEOUT), "-j", "2"])
    assert code == 0
    with open(out) as fh:
        rows = {(r["student"], r["exercise"]): r for r in csv.DictReader(fh)}
    assert set(rows) == set(submissions), "every submission gets exactly one row"
    return rows
