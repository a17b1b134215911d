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
