"""Grading a class: every submission isolated, every student a row, nothing lost.

``grade(root, submissions, out_csv)`` autogrades ``SUBMISSIONS/<student>/<exercise>/<any>.ipynb``:

1. **Templates** — for each exercise somebody submitted, ``nbgrader generate_assignment`` runs once
   in a template course (its gradebook then holds that exercise only).
2. **Isolation** — each submission is graded in its own throw-away course folder holding what
   nbgrader needs for that one student: a copy of the exercise's gradebook and the submitted
   notebook (no solutions, no other student, no CSV). ``nbgrader autograde`` runs inside a sandbox:
   bubblewrap (``bwrap``: a whitelist of read-only system and Python directories — the course
   repository, the submissions and the output folder do not exist inside — private /tmp, /proc
   and home, no network, own PID namespace so every child dies with it), or a container (``--sandbox docker|podman``), or nothing (``--sandbox none``, warned).
   A watchdog kills the run past the wall-time, memory (RSS of the whole process tree) or disk
   limit. The model cache is visible read-only.
3. **Trusted post-processing** — outside the sandbox the score is read from that submission's own
   gradebook and checked (0 ≤ score ≤ max of the trusted template), the status of every task is
   taken from the autograded notebook (passed / failed / error / timeout / kernel died), a kernel
   death re-runs the remaining tasks in a fresh kernel (the cell that killed it is replaced by a
   ``raise``), answer cells are scanned for tampering (``flagged: …``), and a feedback page is
   written with hidden-test *results* but not their code.
4. **Nothing lost** — each row is appended to the CSV (and flushed) as soon as it is graded, the
   autograded notebook, the nbgrader log and the feedback are kept next to the CSV, ``resume=True``
   skips rows already there, Ctrl-C/SIGTERM leaves a valid CSV and says how to resume.

The package, one module per concern (``from xaicourse.autograding import grade, grade_one, …``
gives every name as before the split):

* ``layout`` — the course folder layout shared with ``course`` (exercise names, the nbgrader
  course folder, ``INLINE_BACKEND``);
* ``preprocessors`` — the nbgrader configuration and its two preprocessors;
* ``scan`` — the static scan of answer cells (``scan_answer``);
* ``discovery`` — submissions → entries, picking the notebook, metadata repair;
* ``notebook`` — assembling the notebook that runs, writing results into it;
* ``template`` — an exercise's template (release notebook, points, hidden checks), ``Settings``;
* ``run`` — one submission: template, sandboxed kernel, hidden checks (``grade_one``);
* ``feedback`` — the feedback page (``feedback_html``);
* ``batch`` — the class: validation, the pool, the resumable CSV (``grade``, ``partial_path``).
"""
from __future__ import annotations

from ..sandbox import bwrap_available, resolve_sandbox
from .batch import FIELDS, _prepare, _read_done, grade, partial_path, validate
from .discovery import Entry, _pick_notebook, _repair, discover
from .feedback import feedback_html
from .layout import INLINE_BACKEND, TRUSTED_FILES, _course_dir, exercise_names
from .notebook import _annotate, _assemble, _index_of, _limit_outputs, _status_of_error, _task_of
from .preprocessors import NBGRADER_CONFIG, HideHiddenTestCode, StderrAsStdout
from .run import _boot, _kernel_env, _review, grade_one
from .scan import scan_answer
from .template import Settings, Template, _env, _nbgrader, make_template

__all__ = ["grade", "grade_one", "scan_answer", "discover", "feedback_html", "partial_path", "bwrap_available",
           "resolve_sandbox"]
