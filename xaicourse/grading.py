"""Helpers for the hidden tests of the graded exercises.

A graded task tests the student's own work, so while a hidden test calls the student's
function the library implementations of the same thing must not work. ``forbid`` switches
them off *by swapping the code object* of each function: every name bound to the function —
``import xaicourse.tsne as T; T.kl_gradient``, ``from xaicourse.tsne import kl_gradient as g``
executed before the test, a reference kept in a list — runs the replacement, which raises
``ForbiddenCall``. Rebinding a module attribute (``setattr``) would miss those aliases.

    from xaicourse.grading import forbid
    ref = kl_gradient(P, Y)                          # reference first, outside the block
    with forbid(xaicourse.tsne.kl_gradient, torch.autograd.grad, reason="analytic gradient"):
        assert torch.allclose(student_grad(P, Y), ref)

Classes are forbidden method by method (every function in the class body, ``__init__`` too).
Functions decorated with ``functools.wraps`` (e.g. ``@torch.no_grad()``) are swapped along
their whole ``__wrapped__`` chain. Built-in (C) functions have no Python code to swap; forbid
raises TypeError for them, so a test never silently fails to switch something off.
"""
from __future__ import annotations

import contextlib
import functools
import types

__all__ = ["ForbiddenCall", "IntegrityError", "forbid", "forbidden_code", "describe", "snapshot", "guard", "check_integrity", "plain",
           "student_id", "student_rng"]


class ForbiddenCall(AssertionError):
    """Raised when a hidden test's forbidden function is called (counts as a failed test)."""


def describe(obj) -> str:
    """``module.qualname`` of a function, method or class."""
    mod = getattr(obj, "__module__", None) or "?"
    return f"{mod}.{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"


def _refuse(name: str, reason: str):  # called by the swapped-in code
    raise ForbiddenCall(f"this task must be solved without {name}"
                        + (f" ({reason})" if reason else "")
                        + ": write the computation yourself, as the lecture derives it")


def forbidden_code(fn: types.FunctionType, name: str, reason: str = "") -> types.CodeType:
    """A code object that raises ``ForbiddenCall`` and has ``fn``'s free variables, so it can be
    assigned to ``fn.__code__`` even when ``fn`` is a closure."""
    free = fn.__code__.co_freevars
    body = "".join(f"    {v} = None\n" for v in free)
    touch = f"        ({', '.join(free)},)\n" if free else ""
    src = (f"def _outer():\n{body}"
           f"    def _forbidden(*args, **kwargs):\n{touch}"
           f"        __import__('xaicourse.grading', fromlist=['_refuse'])._refuse({name!r}, {reason!r})\n"
           f"    return _forbidden\n")
    ns: dict = {}
    exec(compile(src, f"<forbidden {name}>", "exec"), ns)
    code = ns["_outer"]().__code__
    if code.co_freevars != free:  # keep the order Python checks
        code = code.replace(co_freevars=free)
    return code


def _functions(obj):
    """The Python functions whose code must be swapped to switch ``obj`` off ([] for a compiled one)."""
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if isinstance(obj, types.MethodType):
        obj = obj.__func__
    if isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, type):
        found = []
        for attr in vars(obj).values():
            if isinstance(attr, (types.FunctionType, classmethod, staticmethod)):
                found += _functions(attr)
            elif isinstance(attr, property):
                found += [f for f in (attr.fget, attr.fset) if isinstance(f, types.FunctionType)]
        if not found:
            raise TypeError(f"cannot forbid {describe(obj)}: it defines no Python methods of its own")
        return found
    if not isinstance(obj, types.FunctionType):
        if callable(obj) and getattr(obj, "__module__", None) not in (None, "builtins"):
            return []  # compiled (C / Cython): switched off by rebinding every reference instead
        raise TypeError(f"cannot forbid {describe(obj)} ({type(obj).__name__}): only Python functions, "
                        "methods, classes and compiled functions of a library module can be switched off")
    chain, seen = [], set()
    while isinstance(obj, types.FunctionType) and id(obj) not in seen:
        seen.add(id(obj))
        chain.append(obj)
        obj = getattr(obj, "__wrapped__", None)
    return chain


def _rebind_everywhere(obj, replacement) -> list:
    """Replace every reference to the compiled function ``obj`` held by a namespace dict (module
    globals, the notebook's namespace, class bodies) by ``replacement``; return what to undo."""
    import gc

    undo = []
    for ref in gc.get_referrers(obj):
        if isinstance(ref, dict):
            for k, v in list(ref.items()):
                if v is obj and isinstance(k, str):
                    ref[k] = replacement
                    undo.append((ref, k))
    return undo


@contextlib.contextmanager
def forbid(*targets, reason: str = ""):
    """Within the block, calling any of ``targets`` (functions, methods, classes or compiled
    functions, however they were imported or aliased) raises ``ForbiddenCall``; restored on exit.

    Python functions get their code object swapped (every alias runs the swapped code); a compiled
    function has no code to swap, so every namespace entry that refers to it is rebound instead.
    reason: a short note shown in the error (e.g. "the task rules out autograd").
    """
    if not targets:
        raise ValueError("forbid needs at least one function or class")
    swapped, rebound = [], []
    try:
        for target in targets:
            name = describe(target)
            fns = _functions(target)
            for fn in fns:
                swapped.append((fn, fn.__code__))
                fn.__code__ = forbidden_code(fn, name, reason)
            if not fns:
                def _compiled_forbidden(*args, _name=name, **kwargs):
                    _refuse(_name, reason)
                rebound.append((target, _rebind_everywhere(target, _compiled_forbidden)))
        yield
    finally:
        for fn, code in reversed(swapped):
            fn.__code__ = code
        for target, undo in rebound:
            for ref, k in undo:
                ref[k] = target


# ----------------------------------------------------------------------------- integrity
class IntegrityError(AssertionError):
    """The grading environment was tampered with (a checking function, builtins, IPython hooks)."""


_SNAPSHOT: dict | None = None
# builtins the kernel itself swaps around every cell (stdin forwarding, IPython's exit trap)
_KERNEL_SWAPPED = {"input", "raw_input", "exit", "quit", "get_ipython", "display", "_", "__", "___"}

# functions the hidden tests rely on to compare answers with reference values
_CHECKED = [("torch", "allclose"), ("torch", "equal"), ("torch", "isclose"), ("torch", "all"),
            ("torch", "isfinite"), ("torch.testing", "assert_close"), ("numpy", "allclose"),
            ("numpy", "isclose"), ("numpy", "array_equal"), ("numpy", "all"), ("numpy", "abs"),
            ("numpy.testing", "assert_allclose"), ("numpy.testing", "assert_array_equal"), ("math", "isclose")]
_TENSOR_ATTRS = ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__float__", "__int__",
                 "__abs__", "__sub__", "__torch_function__", "all", "any", "item", "tolist", "abs", "max", "min",
                 "sum", "norm", "allclose", "equal", "shape", "dim", "numel", "dtype")


def _ipython_hooks():
    try:
        ip = get_ipython()  # noqa: F821 - defined inside IPython
    except NameError:
        try:
            from IPython import get_ipython as _g
            ip = _g()
        except Exception:
            ip = None
    if ip is None:
        return None
    return dict(ast=tuple(ip.ast_transformers), post=tuple(getattr(ip, "input_transformers_post", ())),
                cleanup=tuple(getattr(ip, "input_transformers_cleanup", ())),
                exc=tuple(getattr(ip, "custom_exceptions", ())), showtraceback=ip.showtraceback.__func__
                if hasattr(ip.showtraceback, "__func__") else ip.showtraceback)


def _watched():
    import builtins
    import importlib

    funcs = {}
    for mod, name in _CHECKED:
        try:
            obj = getattr(importlib.import_module(mod), name)
        except Exception:
            continue
        funcs[f"{mod}.{name}"] = (obj, getattr(obj, "__code__", None))
    tensor = {}
    try:
        import torch
        for a in _TENSOR_ATTRS:
            tensor[a] = vars(torch.Tensor).get(a, None)
    except Exception:
        pass
    return dict(builtins=dict(vars(builtins)), funcs=funcs, tensor=tensor, ipython=_ipython_hooks(),
                code={n: f.__code__ for n, f in (("forbid", forbid), ("check_integrity", check_integrity),
                                                  ("_refuse", _refuse))})


def snapshot() -> None:
    """Record the pristine state (the grading kernel does this at start-up, before any cell)."""
    global _SNAPSHOT
    _SNAPSHOT = _watched()


def guard() -> None:
    """Snapshot now, and check before every cell the kernel runs (an IPython ``pre_run_cell``
    event, which runs outside the cell's code, so no transformer can wrap it). A violation ends
    the kernel: the grader then re-runs the notebook with the answer cell that did it disabled,
    so tampering costs exactly that task. Called by the grading kernel's start-up file."""
    snapshot()
    try:
        from IPython import get_ipython as _g
        ip = _g()
    except Exception:
        ip = None
    if ip is not None:
        ip.events.register("pre_run_cell", _before_cell)
        _SNAPSHOT["ipython"] = _ipython_hooks()
        _SNAPSHOT["guarded"] = True


def _before_cell(*_):
    check_integrity(fatal=True)


def check_integrity(fatal: bool = False) -> None:
    """Fail loudly if the answers changed what the hidden tests rely on.

    Compares the checking functions (``torch.allclose``, ``numpy.testing`` …, and their code), the
    builtins, ``torch.Tensor``'s comparison methods and IPython's hooks (AST / input transformers,
    custom exception handlers) with the snapshot taken when the kernel started. A changed hook
    could swallow the error of this very check, so then the kernel is ended (``os._exit``): the
    grader counts the rest as failed. Otherwise ``IntegrityError`` (an AssertionError) is raised.
    """
    if _SNAPSHOT is None:   # not started by the grader: take the reference now
        snapshot()
        return
    now = _watched()
    problems = []
    for k, v in _SNAPSHOT["builtins"].items():
        if k in _KERNEL_SWAPPED:
            continue
        if now["builtins"].get(k) is not v:
            problems.append(f"builtins.{k} was replaced")
    for k, (obj, code) in _SNAPSHOT["funcs"].items():
        o2, c2 = now["funcs"].get(k, (None, None))
        if o2 is not obj or c2 is not code:
            problems.append(f"{k} was replaced")
    for k, v in _SNAPSHOT["tensor"].items():
        if now["tensor"].get(k) is not v:
            problems.append(f"torch.Tensor.{k} was replaced")
    for k, v in _SNAPSHOT["code"].items():
        if now["code"][k] is not v:
            problems.append(f"xaicourse.grading.{k} was replaced")
    hooks_changed = _SNAPSHOT["ipython"] is not None and now["ipython"] != _SNAPSHOT["ipython"]
    try:
        from IPython import get_ipython as _g
        ip = _g()
        if ip is not None and _SNAPSHOT.get("guarded") and _before_cell not in ip.events.callbacks["pre_run_cell"]:
            problems.append("the grading kernel's pre-cell check was removed")
            hooks_changed = True
    except Exception:
        pass
    if hooks_changed:
        problems.append("IPython's transformers or exception hooks were changed")
    if problems:
        msg = "grading integrity check failed: " + "; ".join(problems[:5])
        if hooks_changed or fatal:
            import os
            import sys
            print(msg, file=sys.stdout, flush=True)
            os._exit(70)
        raise IntegrityError(msg)


def plain(value, kind):
    """``value`` if its type is exactly ``kind`` (no subclass, no look-alike object), else a failed
    test. For tensors/arrays a detached copy is returned, so later changes cannot reach it."""
    if type(value) is not kind:
        raise AssertionError(f"expected a {kind.__module__}.{kind.__qualname__}, got {type(value).__name__}")
    if hasattr(value, "detach"):
        return value.detach().clone()
    if hasattr(value, "copy"):
        return value.copy()
    return value


# ----------------------------------------------------------------------------- per-student parameters
_GRADING_FOLDERS = ("autograded", "submitted", "feedback")


def student_id(default: str = "student") -> str:
    """Who this notebook belongs to, for per-student parameters.

    When nbgrader grades a submission, the kernel runs in ``…/autograded/<student>/<exercise>/``
    (or ``submitted/``): that folder names the student, whatever the environment says. Otherwise
    (the student working on a hub or a laptop): ``$XAICOURSE_STUDENT``, then JupyterHub's
    ``$JUPYTERHUB_USER``, the Docker stacks' ``$NB_USER``, the login name, else ``default``.
    """
    import getpass
    import os
    from pathlib import Path

    cwd = Path.cwd()
    if cwd.parent.parent.name in _GRADING_FOLDERS and cwd.parent.name:
        return cwd.parent.name
    for var in ("XAICOURSE_STUDENT", "JUPYTERHUB_USER", "NB_USER"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser() or default
    except Exception:
        return default


def student_rng(exercise: str, student: str | None = None):
    """A NumPy ``Generator`` seeded by ``sha256(exercise:student)``: the same numbers for the same
    student (when they work and when they are graded), different numbers for different students."""
    import hashlib

    import numpy as np

    sid = student_id() if student is None else str(student)
    seed = int.from_bytes(hashlib.sha256(f"{exercise}:{sid}".encode()).digest()[:8], "little")
    return np.random.default_rng(seed)
