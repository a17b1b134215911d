"""The static scan of answer cells: reasons to flag one for an instructor's review."""
from __future__ import annotations

import ast

from ..checking import _dotted  # the one reader of dotted names (the import scan uses it too)


_FLAG_ATTRS = {"__code__": "swaps a function's code", "__globals__": "reads function globals",
               "__builtins__": "touches builtins", "__class__": "rewrites classes",
               "__subclasses__": "walks class internals", "ast_transformers": "installs an AST transformer",
               "input_transformers_post": "installs an input transformer",
               "input_transformers_cleanup": "installs an input transformer",
               "custom_exceptions": "hooks IPython's error handling", "set_custom_exc": "hooks IPython's error handling",
               "register_magic_function": "registers a magic", "f_globals": "reads a frame",
               "f_locals": "reads a frame", "_getframe": "reads the call stack"}


_FLAG_NAMES = {"sys.modules": "edits sys.modules", "builtins": "edits builtins", "ctypes": "uses ctypes",
               "subprocess": "starts processes", "os.system": "starts processes", "os.fork": "forks",
               "os.kill": "signals processes", "os.exec": "replaces the process", "signal": "installs signal handlers",
               "gc.get_objects": "walks the heap", "gc.get_referrers": "walks the heap",
               "importlib": "imports dynamically", "pty": "opens a terminal", "socket": "opens sockets",
               "multiprocessing": "starts processes", "threading": "starts threads",
               "get_ipython": "drives IPython itself", "atexit": "registers exit hooks",
               "sys.settrace": "traces execution", "sys.setprofile": "traces execution",
               "sys.excepthook": "hooks exceptions", "sys.meta_path": "hooks imports",
               "eval": "evaluates strings", "exec": "executes strings", "compile": "compiles strings",
               "__import__": "imports dynamically", "setattr": "sets attributes dynamically",
               "open": "opens files"}


_MODULE_ATTR_WRITE = "assigns to an attribute of an imported module"


_KNOWN_MODULES = {"torch", "np", "numpy", "nn", "F", "plt", "matplotlib", "scipy", "sklearn", "captum", "lime",
                  "xaicourse", "math", "os", "sys", "builtins", "A", "L", "viz", "models", "data", "fv", "T",
                  "IPython", "nbgrader", "grading", "random", "functools", "inspect", "types", "importlib"}


def scan_answer(source: str) -> list[str]:
    """Reasons to flag one answer cell for review (monkeypatching, process, IPython hooks…).

    A static scan of the AST: it flags what an honest answer never needs. It cannot prove
    innocence (code can be obfuscated), which is why the status says "flagged" for an
    instructor to look at rather than deciding the grade.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the kernel reports it; nothing to flag
    reasons: dict[str, None] = {}
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                imported.add((a.asname or a.name).split(".")[0])
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            for a in node.names:
                full = f"{mod}.{a.name}" if mod else a.name
                for key, why in _FLAG_NAMES.items():
                    if full == key or full.startswith(key + ".") or (mod and mod == key):
                        reasons[f"{why} ({full})"] = None
        elif isinstance(node, ast.Attribute):
            if node.attr in _FLAG_ATTRS:
                reasons[f"{_FLAG_ATTRS[node.attr]} (.{node.attr})"] = None
            dotted = _dotted(node)
            for key, why in _FLAG_NAMES.items():
                if dotted and (dotted == key or dotted.startswith(key + ".")) and "." in key:
                    reasons[f"{why} ({dotted})"] = None
        elif isinstance(node, ast.Name) and node.id in ("eval", "exec", "compile", "__import__", "get_ipython",
                                                       "setattr", "globals", "vars", "breakpoint"):
            reasons[f"{_FLAG_NAMES.get(node.id, 'inspects namespaces')} ({node.id})"] = None
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                # a write into a module goes through an attribute (m.x = …, m.d[k] = …). A usual
                # module alias that this code did not import (T, A, L, F …) is then a variable: a
                # module cannot be subscripted, so `T[:, i] += …` writes into a matrix named T
                # (lecture 07's formula), never into `torchvision.transforms as T`
                base, through_attr = t, False
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    through_attr = through_attr or isinstance(base, ast.Attribute)
                    base = base.value
                if isinstance(t, (ast.Attribute, ast.Subscript)) and isinstance(base, ast.Name) \
                        and (base.id in imported or (base.id in _KNOWN_MODULES and through_attr)):
                    reasons[f"{_MODULE_ATTR_WRITE} ({_dotted(t) or base.id})"] = None
    return list(reasons)
