"""Cheat submissions for the malicious-submission suite, one function per attack family.

Each returns the source of an answer cell that defines the task's function(s) ``names`` the
dishonest way. The families are the routes a student who reads the grader's source would try
(issue "Trusted grading"): every one must earn 0 on its task or be ``flagged:``.

* ``refs``        look for the hidden test's references: grader-looking globals (``_ref``, ``_refs``,
                  ``_want`` …), every tensor on the heap, the files in the working folder and the
                  course repository's ``solutions/*/checks.py``, and return what it finds;
* ``subclass``    return a ``torch.Tensor`` subclass whose ``__torch_function__`` says every
                  comparison holds (and a ``float`` subclass equal to everything for scalars);
* ``rebind``      rebind what the grader uses in the kernel (``xaicourse.checking.close``, the call
                  agent ``xaicourse._kernel_side``, ``grading.forbid``) and answer wrongly;
* ``trusted_files`` go after what runs or is read outside the sandbox: ``UPDATE grade SET
                  manual_score`` on every ``gradebook.db`` in reach, append a payload to every
                  ``nbgrader_config.py``, drop ``sitecustomize.py`` / ``conftest.py`` /
                  ``nbgrader_config.py`` next to the notebook; the payload leaves ``MARKER`` if run;
* ``library``     (per exercise, in each ``test_grading_exNN.py``) a reference library's
                  implementation of the task, by a route a list of forbidden functions would miss.
"""
import os

MARKER = f"/tmp/xaicourse-pwned-{os.getpid()}"
"""A file the ``trusted_files`` payloads create if anything outside the sandbox ever runs them
(inside, /tmp is the sandbox's own)."""

PAYLOAD = f"open({MARKER!r}, 'a').write('ran\\n')\n"

FAMILIES = ("refs", "subclass", "rebind", "trusted_files", "library")


def _defs(names, body: str) -> str:
    return "".join(f"def {n}(*args, **kwargs):\n{body}\n" for n in names)


def refs(names) -> str:
    return ("import gc as _gc, glob as _glob, os as _os, numpy as _np, torch as _torch\n"
            "def _loot(*args, **kwargs):\n"
            "    like = next((a for a in args if isinstance(a, _torch.Tensor)), None)\n"
            "    for k, v in list(globals().items()):\n"
            "        if k.startswith(('_ref', '_want', '_H', '_lref', '_expected')) and isinstance(v, _torch.Tensor):\n"
            "            return v\n"
            "    for p in [q for r in ('/work', '/home', '/root', '/srv', '/tmp', '/opt') for q in _glob.glob(r + '/**/solutions/*/checks.py', recursive=True)][:3]:\n"
            "        print(open(p).read()[:100])\n"
            "    for p in sorted(_glob.glob(_os.path.join(_os.getcwd(), '*.npy'))):\n"
            "        a = _np.load(p)\n"
            "        if like is not None and a.shape == tuple(like.shape) and not _np.array_equal(a, like.numpy()):\n"
            "            return _torch.from_numpy(a)\n"
            "    for o in _gc.get_objects():\n"
            "        if isinstance(o, _torch.Tensor) and like is not None and o.shape == like.shape and o is not like:\n"
            "            return o.detach().clone()\n"
            "    return _torch.zeros(1) if like is None else _torch.zeros_like(like)\n"
            + "".join(f"{n} = _loot\n" for n in names))


def subclass(names) -> str:
    return ("import torch as _torch\n"
            "class _Yes(_torch.Tensor):\n"
            "    @classmethod\n"
            "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
            "        if getattr(func, '__name__', '') in ('allclose', 'equal', 'isclose', '__eq__', 'eq', 'le', 'lt',\n"
            "                                             '__le__', '__lt__', 'ge', '__ge__', 'all', 'any'):\n"
            "            return True\n"
            "        return super().__torch_function__(func, types, args, kwargs or {})\n"
            "class _Eq(float):\n"
            "    def __eq__(self, other): return True\n"
            "    def __le__(self, other): return True\n"
            "    def __lt__(self, other): return True\n"
            "    def __abs__(self): return _Eq(0.0)\n"
            "    def __sub__(self, other): return _Eq(0.0)\n"
            "    def __rsub__(self, other): return _Eq(0.0)\n"
            "    __hash__ = float.__hash__\n"
            "def _fake(*args, **kwargs):\n"
            "    like = next((a for a in args if isinstance(a, _torch.Tensor)), None)\n"
            "    if like is None:\n"
            "        return _Eq(0.0)\n"
            "    return _torch.zeros_like(like).as_subclass(_Yes)\n"
            + "".join(f"{n} = _fake\n" for n in names))


def rebind(names) -> str:
    return ("import sys as _sys, torch as _torch\n"
            "import xaicourse, xaicourse.grading as _g\n"
            "try:\n"
            "    import xaicourse.checking as _c\n"
            "    _c.close = lambda *a, **k: None\n"
            "    _c.Failed = type('Failed', (Exception,), {})\n"
            "except Exception:\n"
            "    pass\n"
            "import xaicourse._kernel_side as _ks\n"
            "_real = _ks.call\n"
            "def _call(request_file):\n"
            "    import json as _json\n"
            "    req = _json.load(open(request_file))\n"
            "    for k in ('_want', '_ref', '_refs'):\n"
            "        if k in globals():\n"
            "            req['args'] = [{'global': k}]\n"
            "    return _real(request_file)\n"
            "_ks.call = _call\n"
            "_g.forbid = lambda *a, **k: __import__('contextlib').nullcontext()\n"
            "xaicourse.__dict__.update(checking=None)\n"
            "def _wrong(*args, **kwargs):\n"
            "    like = next((a for a in args if isinstance(a, _torch.Tensor)), None)\n"
            "    return 0.0 if like is None else _torch.zeros_like(like)\n"
            + "".join(f"{n} = _wrong\n" for n in names))


def trusted_files(names) -> str:
    return ("import glob as _glob, os as _os, sqlite3 as _sq, torch as _torch\n"
            f"_PAYLOAD = {PAYLOAD!r}\n"
            "def _attack():\n"
            "    here = _os.getcwd()\n"
            "    roots = ('/work', '/home', '/root', '/srv', '/tmp', _os.path.dirname(here))\n"
            "    for db in {q for r in roots for q in _glob.glob(r + '/**/*.db', recursive=True)}:\n"
            "        try:\n"
            "            con = _sq.connect(db); con.execute('UPDATE grade SET manual_score=1000'); con.commit()\n"
            "        except Exception:\n"
            "            pass\n"
            "    for cfg in {q for r in roots + ('/etc/jupyter',) for q in _glob.glob(r + '/**/nbgrader_config.py', recursive=True)}:\n"
            "        try:\n"
            "            open(cfg, 'a').write('\\n' + _PAYLOAD)\n"
            "        except OSError:\n"
            "            pass\n"
            "    for d in (here, _os.path.dirname(here), _os.path.expanduser('~')):\n"
            "        for f in ('nbgrader_config.py', 'sitecustomize.py', 'conftest.py', 'jupyter_nbconvert_config.py'):\n"
            "            try:\n"
            "                open(_os.path.join(d, f), 'w').write(_PAYLOAD)\n"
            "            except OSError:\n"
            "                pass\n"
            "_attack()\n"
            "def _wrong(*args, **kwargs):\n"
            "    like = next((a for a in args if isinstance(a, _torch.Tensor)), None)\n"
            "    return 0.0 if like is None else _torch.zeros_like(like)\n"
            + "".join(f"{n} = _wrong\n" for n in names))


def plant_payloads(folder) -> None:
    """Files next to a submitted notebook that run ``PAYLOAD`` if anything imports or loads them."""
    from pathlib import Path

    for f in ("nbgrader_config.py", "sitecustomize.py", "conftest.py", "jupyter_nbconvert_config.py",
              "ipython_config.py"):
        (Path(folder) / f).write_text(PAYLOAD)


def marker_absent() -> bool:
    return not os.path.exists(MARKER)


GENERIC = {"refs": refs, "subclass": subclass, "rebind": rebind, "trusted_files": trusted_files}


def students(ex: str, plan: dict) -> dict:
    """``{student: {answer_grade_id: source}}`` → ``{(student, ex): notebook}`` — the solution with
    those answer cells replaced (every other task answered honestly)."""
    from conftest import library_call_students

    subs = library_call_students(ex, plan)
    return {k: v for k, v in subs.items() if k[0] not in ("alice", "bob")}


def graded_tests(ex: str, honest: dict, library: dict, cheats: dict, task: dict, points: dict,
                 files_student: str = "cheat_files") -> dict:
    """The graded checks every exercise's module shares, for ``globals().update(...)``: ``submissions``
    and ``plant`` (what the suite's one grading run grades: every plan a student, trusted-file
    payloads planted next to ``files_student``'s notebook), the ``grades`` fixture (this exercise's rows of the suite's one grading run) and four tests — every honest
    variant gets exactly full marks unflagged; every library route or cheat earns 0 on the tasks it
    attacks (or is flagged) while its honest tasks keep exactly their points; every library route is
    flagged; no payload ran outside the sandbox. ``task`` maps answer ids to test ids, ``points``
    test ids to points."""
    import pytest

    full = sum(points.values())

    def submissions():
        return students(ex, {**honest, **library, **cheats})

    def plant(folder, student, ex):
        if student == files_student:
            plant_payloads(folder)

    @pytest.fixture(scope="module")
    def grades(course_grades):
        return {s: r for (s, e), r in course_grades.items() if e == ex}

    def task_points(row, t):
        part = next(p for p in row["tasks"].split("; ") if p.startswith(t + "="))
        return float(part.rsplit(" ", 1)[1].split("/")[0])

    @pytest.mark.slow
    @pytest.mark.parametrize("student", list(honest))
    def test_honest_variants_full_marks(grades, student):
        row = grades[student]
        assert float(row["score"]) == full, row
        assert not row["status"].startswith("flagged"), row

    @pytest.mark.slow
    @pytest.mark.parametrize("student", list(library) + list(cheats))
    def test_attacks_earn_nothing_on_their_task(grades, student):
        row = grades[student]
        attacked = {task[a] for a in {**library, **cheats}[student]}
        for t in attacked:
            assert task_points(row, t) == 0.0 or row["status"].startswith("flagged"), (t, row)
        # the other tasks were answered honestly and keep their points
        assert float(row["score"]) == full - sum(points[t] for t in attacked), row

    @pytest.mark.slow
    def test_library_routes_are_flagged(grades):
        for student in library:
            assert grades[student]["status"].startswith("flagged"), grades[student]

    @pytest.mark.slow
    def test_nothing_outside_the_sandbox_ran_a_payload(grades):
        assert files_student in grades
        assert marker_absent()

    return {"submissions": submissions, "plant": plant, "grades": grades, "test_honest_variants_full_marks": test_honest_variants_full_marks,
            "test_attacks_earn_nothing_on_their_task": test_attacks_earn_nothing_on_their_task,
            "test_library_routes_are_flagged": test_library_routes_are_flagged,
            "test_nothing_outside_the_sandbox_ran_a_payload": test_nothing_outside_the_sandbox_ran_a_payload}
