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
