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

__all__ = ["ForbiddenCall", "forbid", "forbidden_code", "describe"]


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
    """The Python functions whose code must be swapped to switch ``obj`` off."""
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
        raise TypeError(f"cannot forbid {describe(obj)} ({type(obj).__name__}): only Python functions, "
                        "methods and classes have code that can be swapped")
    chain, seen = [], set()
    while isinstance(obj, types.FunctionType) and id(obj) not in seen:
        seen.add(id(obj))
        chain.append(obj)
        obj = getattr(obj, "__wrapped__", None)
    return chain


@contextlib.contextmanager
def forbid(*targets, reason: str = ""):
    """Within the block, calling any of ``targets`` (functions, methods or classes, however they
    were imported or aliased) raises ``ForbiddenCall``; their code is restored on exit.

    reason: a short note shown in the error (e.g. "the task rules out autograd").
    """
    if not targets:
        raise ValueError("forbid needs at least one function or class")
    swapped = []
    try:
        for target in targets:
            name = describe(target)
            for fn in _functions(target):
                swapped.append((fn, fn.__code__))
                fn.__code__ = forbidden_code(fn, name, reason)
        yield
    finally:
        for fn, code in reversed(swapped):
            fn.__code__ = code
