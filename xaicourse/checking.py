"""The trusted side of grading: hidden checks that call the student's functions through the sandbox.

A graded exercise keeps its *visible* tests in the notebook (the student's sanity checks) and its
hidden checks in ``solutions/NN_topic/checks.py``, which never enters the sandbox. The grader
runs the student's notebook in a sandboxed kernel, then runs each check here, in its own process:

    from xaicourse.checking import task, close

    FORBIDDEN = {"ig_answer": ["captum", "xaicourse.attribution", "torch.func"]}   # imports → flagged

    @task("ig_tests")                       # the grade_id of the test cell that carries the points
    def ig(k):                              # k: a Remote bound to one student's kernel
        x = torch.randn(4, 3, generator=k.generator())   # per-student inputs
        model = nn.Linear(3, 2)
        ref = my_reference(model, x)                       # computed HERE, never seen by the kernel
        got = k.call("riemann_ig", k.module(model), x, 0, torch.zeros_like(x), n_steps=k.choice([5, 7]))
        close(got, ref, atol=1e-5, what="riemann_ig on a linear model")

A check passes when it returns; ``AssertionError`` (or :class:`Failed`) fails it with its message
(shown in the student's feedback). ``k.call`` sends the arguments as ``.npy`` files (models as
their parameters plus a factory name), asks the kernel to call the student's function
(:mod:`xaicourse._kernel_side`) and decodes the reply as *plain data*: ``np.load(allow_pickle=False)``
arrays turned into fresh ``torch.Tensor``/``ndarray`` objects, JSON numbers and strings. A tensor
subclass, an object array or any other object is refused (the task fails), so nothing the student's
code builds can take part in a comparison; references never leave this process.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["task", "Remote", "Failed", "StudentError", "close", "check_file", "load_checks",
           "scan_imports", "Checks"]

MAX_REPLY_BYTES = 64 * 2 ** 20
MAX_JSON_BYTES = 4 * 2 ** 20


class Failed(AssertionError):
    """A hidden check failed (its message is shown to the student)."""


class StudentError(Failed):
    """The student's function raised (``kind`` is the exception's type name)."""

    def __init__(self, kind: str, message: str, fn: str):
        self.kind, self.message, self.fn = kind, message, fn
        super().__init__(f"{fn}(...) raised {kind}: {message[:300]}")


# ----------------------------------------------------------------------------- the check registry
@dataclass
class Check:
    grade_id: str
    fn: object
    timeout: float = 60.0


@dataclass
class Checks:
    """One exercise's hidden checks (the ``checks.py`` next to the solution)."""
    exercise: str
    tasks: dict = field(default_factory=dict)          # grade_id → Check
    forbidden: dict = field(default_factory=dict)      # answer grade_id → [module prefixes]
    prepare: object = None                             # warms caches before any sandbox starts
    source: str = ""


_COLLECTING: list | None = None


def task(grade_id: str, timeout: float = 60.0):
    """Register a hidden check for the test cell ``grade_id`` (decorator)."""
    def deco(fn):
        if _COLLECTING is not None:
            _COLLECTING.append(Check(grade_id, fn, timeout))
        fn.grade_id = grade_id
        return fn
    return deco


def check_file(root: Path, exercise: str) -> Path:
    return Path(root) / "solutions" / exercise / "checks.py"


def load_checks(root: Path, exercise: str) -> Checks:
    """Import ``solutions/<exercise>/checks.py`` (instructor code, trusted) as a private module."""
    global _COLLECTING
    path = check_file(root, exercise)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: every graded exercise needs its hidden checks there "
                                "(see the README, 'Writing a new exercise')")
    name = f"_xaicourse_checks_{exercise}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    _COLLECTING = []
    try:
        spec.loader.exec_module(mod)
        found = list(_COLLECTING)
    finally:
        _COLLECTING = None
    checks = Checks(exercise, {c.grade_id: c for c in found}, dict(getattr(mod, "FORBIDDEN", {})),
                    getattr(mod, "prepare", None), path.read_text())
    return checks


# ----------------------------------------------------------------------------- comparisons
def _as_array(x, what: str) -> np.ndarray:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (int, float, np.generic)) and not isinstance(x, bool):
        return np.asarray(x)
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x, dtype=float)
        except (TypeError, ValueError):
            pass
    raise Failed(f"{what}: expected numbers (a tensor, an array or a float), got {type(x).__name__}")


def close(got, want, atol: float = 1e-5, rtol: float = 0.0, what: str = "the answer", shape: bool = True) -> None:
    """``got`` equals ``want`` elementwise within ``atol + rtol·|want|``, whatever the float dtype
    (both are compared in float64), with the same shape (a scalar may be a 0-d or 1-element array
    when ``shape=False``). NaN or inf in the answer fails with a clear message."""
    g = _as_array(got, what).astype(np.float64) if _as_array(got, what).dtype.kind != "c" else _as_array(got, what)
    w = np.asarray(_as_array(want, "reference"), dtype=g.dtype)
    if shape and g.shape != w.shape:
        raise Failed(f"{what}: shape {tuple(g.shape)}, expected {tuple(w.shape)}")
    if not shape:
        g, w = g.reshape(-1), w.reshape(-1)
        if g.shape != w.shape:
            raise Failed(f"{what}: {g.size} numbers, expected {w.size}")
    if not np.all(np.isfinite(g)):
        raise Failed(f"{what}: contains NaN or inf")
    err = np.abs(g - w)
    tol = atol + rtol * np.abs(w)
    if not np.all(err <= tol):
        k = int(np.argmax(err - tol))
        raise Failed(f"{what}: off by up to {float(err.reshape(-1)[k]):.3g} (tolerance "
                     f"{float(np.broadcast_to(tol, err.shape).reshape(-1)[k]):.1g})")


# ----------------------------------------------------------------------------- the proxy
class Spec(dict):
    """An argument the kernel builds itself (a model, a library callable, a notebook global)."""


class Remote:
    """One student's sandboxed kernel, as the hidden checks see it.

    ``run(code, timeout)`` executes code in the kernel (raises :class:`KernelGone`); ``folder`` is
    the sandbox's writable folder (seen at the same path inside and outside).
    """

    def __init__(self, run, folder: Path, student: str, exercise: str):
        self._run, self.folder, self.student, self.exercise = run, Path(folder), student, exercise
        self._n = 0
        self.timeout = 60.0
        self.calls: list[tuple[str, float]] = []

    # per-student randomness, drawn here (the kernel never sees the seed)
    def rng(self, salt: str = "") -> np.random.Generator:
        seed = int.from_bytes(hashlib.sha256(f"check:{self.exercise}:{self.student}:{salt}".encode())
                              .digest()[:8], "little")
        return np.random.default_rng(seed)

    def generator(self, salt: str = ""):
        import torch
        return torch.Generator().manual_seed(int(self.rng(salt).integers(2 ** 62)))

    def choice(self, options, salt: str = ""):
        return options[int(self.rng("choice:" + salt).integers(len(options)))]

    # argument wrappers
    def module(self, module, factory: str | None = None, **kwargs) -> dict:
        """A model argument: the kernel builds ``factory(**kwargs)`` and loads ``module``'s parameters.
        ``factory`` defaults to the module's own class (importable by its module path)."""
        import torch

        cls = type(module)
        if factory is None:
            factory = f"{cls.__module__}:{cls.__qualname__}"
            kwargs = kwargs or dict(getattr(module, "config", {}) or {})
        if factory.startswith("__main__") or "<locals>" in factory:
            raise TypeError(f"{cls.__qualname__} is not importable; give factory='pkg.module:Class'")
        state = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        name = self._file("npz")
        np.savez(self.folder / name, **state)
        double = any(v.dtype == torch.float64 for v in module.state_dict().values())
        return Spec({"module": factory, "kwargs": kwargs, "state": name, "double": double})

    def sequential(self, *layers) -> dict:
        """A ``nn.Sequential`` of ``nn.Linear``/activations, rebuilt in the kernel from its spec."""
        import torch.nn as nn

        spec = []
        for m in layers:
            if isinstance(m, nn.Linear):
                spec.append(["Linear", m.in_features, m.out_features])
            else:
                spec.append([type(m).__name__])
        seq = nn.Sequential(*layers)
        return self.module(seq, factory="xaicourse.checking:build_sequential", spec=spec)

    def global_(self, name: str) -> dict:
        """An object of the notebook's namespace, e.g. the student's own function from another task."""
        return Spec({"global": name})

    def library(self, spec: str, **kwargs) -> dict:
        """A function ``"pkg.module:name"`` (with ``kwargs`` bound), e.g. an attribution method."""
        return Spec({"callable": spec, "kwargs": kwargs})

    def instance(self, spec: str, **kwargs) -> dict:
        """An object ``pkg.module:Class(**kwargs)`` built in the kernel, e.g. ``torch.nn:CrossEntropyLoss``."""
        return Spec({"instance": spec, "kwargs": kwargs})

    def _file(self, ext: str) -> str:
        self._n += 1
        return f"arg-{os.getpid()}-{self._n}.{ext}"

    def _encode(self, value):
        import torch

        if isinstance(value, Spec):
            return dict(value)
        if isinstance(value, dict):
            return {"dict": {str(k): self._encode(v) for k, v in value.items()}}
        if isinstance(value, torch.Tensor):
            name = self._file("npy")
            np.save(self.folder / name, value.detach().cpu().numpy(), allow_pickle=False)
            return {"array": name, "torch": True}
        if isinstance(value, np.ndarray):
            name = self._file("npy")
            np.save(self.folder / name, value, allow_pickle=False)
            return {"array": name, "torch": False}
        if isinstance(value, tuple):
            return {"tuple": [self._encode(v) for v in value]}
        if isinstance(value, list):
            return {"list": [self._encode(v) for v in value]}
        if isinstance(value, (np.integer, np.floating)):
            return {"v": value.item()}
        json.dumps(value)  # anything else must be JSON
        return {"v": value}

    def call(self, fn: str, *args, timeout: float | None = None, meta: bool = False, **kwargs):
        """Call the student's ``fn(*args, **kwargs)`` in the kernel; return its result as plain data.

        Raises :class:`StudentError` when the function raised, :class:`Failed` when the result is
        not plain data, ``sandbox.KernelProblem`` on a timeout or a dead kernel. With ``meta=True``
        returns ``(value, info)`` where ``info`` lists each tensor leaf's dtype / requires_grad."""
        import secrets

        self._n += 1
        rid = secrets.token_hex(8)   # unguessable and never reused: a stale or planted reply cannot match
        req = {"id": rid, "fn": fn, "args": [self._encode(a) for a in args],
               "kwargs": {k: self._encode(v) for k, v in kwargs.items()}}
        path = self.folder / f"request-{rid}.json"
        path.write_text(json.dumps(req))
        code = f"__import__('xaicourse._kernel_side', fromlist=['call']).call({str(path)!r})"
        self._run(code, timeout or self.timeout)
        reply_path = self.folder / f"reply-{rid}.json"
        reply = _read_json(reply_path)
        if not isinstance(reply, dict) or reply.get("id") != rid:
            raise Failed(f"{fn}: no answer came back from the notebook")
        try:
            self.calls.append((fn, float(reply.get("seconds", 0.0))))
        except (TypeError, ValueError):
            pass
        if "error" in reply:
            e = reply["error"] if isinstance(reply["error"], dict) else {}
            raise StudentError(str(e.get("type", "Exception"))[:80], str(e.get("message", ""))[:2000], fn)
        info = []
        value = _decode_reply(reply.get("value"), self.folder, fn, info)
        return (value, info) if meta else value

    def raises(self, error: type[BaseException], fn: str, *args, **kwargs) -> None:
        """The student's ``fn`` raises ``error`` (by name, or a subclass of a built-in error)."""
        try:
            self.call(fn, *args, **kwargs)
        except StudentError as err:
            names = {c.__name__ for c in error.__mro__}
            builtin = getattr(__import__("builtins"), err.kind, None)
            if err.kind in names or (isinstance(builtin, type) and issubclass(builtin, error)):
                return
            raise Failed(f"{fn}(...) raised {err.kind}, expected {error.__name__}") from None
        raise Failed(f"{fn}(...) returned instead of raising {error.__name__} for {kwargs or args}")


def read_plain_file(path: Path, limit: int) -> bytes:
    """The bytes of a file the sandbox wrote — only a regular file, never through a symlink (the
    sandbox could point one at a host file or a FIFO), at most ``limit`` bytes."""
    import stat

    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise Failed("the reply is not a regular file")
    if st.st_size > limit:
        raise Failed("the answer is too large to grade")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise Failed("the answer is too large to grade")
    return data


def _read_json(path: Path):
    try:
        return json.loads(read_plain_file(path, MAX_JSON_BYTES).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _decode_reply(node, folder: Path, fn: str, info: list, depth: int = 0):
    """Plain data from the kernel's reply: fresh tensors/arrays, numbers, strings, containers."""
    import torch

    if depth > 20 or not isinstance(node, dict):
        raise Failed(f"{fn}: returned something that is not plain data")
    t = node.get("t")
    if t in ("none", "bool", "int", "float", "str", "npscalar"):
        v = node.get("v")
        if t == "float" and isinstance(v, str):
            v = float(v)
        if t == "npscalar":
            v = float(v) if isinstance(v, str) else v
        if not isinstance(v, (type(None), bool, int, float, str)):
            raise Failed(f"{fn}: bad scalar in the reply")
        return v
    if t in ("tensor", "ndarray"):
        name = str(node.get("file", ""))
        if "/" in name or name.startswith("."):
            raise Failed(f"{fn}: bad reply")
        p = folder / name
        try:
            import io
            arr = np.load(io.BytesIO(read_plain_file(p, MAX_REPLY_BYTES)), allow_pickle=False)
        except Failed:
            raise
        except Exception as err:
            raise Failed(f"{fn}: the returned array could not be read ({type(err).__name__})") from None
        if type(arr) is not np.ndarray or arr.dtype.kind not in "biufc" or arr.dtype.hasobject:
            raise Failed(f"{fn}: returned an array of unsupported dtype")
        arr = np.array(arr, copy=True)
        info.append({"kind": t, "dtype": str(node.get("dtype", arr.dtype)),
                     "requires_grad": bool(node.get("requires_grad", False)), "shape": arr.shape})
        return torch.from_numpy(arr) if t == "tensor" else arr
    if t in ("tensor-subclass", "ndarray-subclass"):
        raise Failed(f"{fn}: returned a {node.get('cls', 'subclass')!s:.60} — return a plain "
                     f"torch.Tensor / numpy array, not a subclass")
    if t in ("list", "tuple"):
        items = node.get("items")
        if not isinstance(items, list):
            raise Failed(f"{fn}: bad reply")
        out = [_decode_reply(n, folder, fn, info, depth + 1) for n in items]
        return out if t == "list" else tuple(out)
    if t == "dict":
        items = node.get("items")
        if not isinstance(items, dict):
            raise Failed(f"{fn}: bad reply")
        return {str(k): _decode_reply(n, folder, fn, info, depth + 1) for k, n in items.items()}
    what = str(node.get("type", "an object"))[:80]
    raise Failed(f"{fn}: returned {what}; return plain numbers (a torch.Tensor, a numpy array, a float, "
                 f"an int, or a list/tuple/dict of them)")


def build_sequential(spec):
    """``nn.Sequential`` from ``[["Linear", in, out], ["ReLU"], …]`` (the kernel builds checks' nets)."""
    import torch.nn as nn

    layers = []
    for item in spec:
        if item[0] == "Linear":
            layers.append(nn.Linear(int(item[1]), int(item[2])))
        elif item[0] in ("ReLU", "Tanh", "Sigmoid", "Softplus", "Identity", "Flatten"):
            layers.append(getattr(nn, item[0])())
        else:
            raise ValueError(f"unsupported layer {item[0]!r}")
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- import scan
def _aliases(tree) -> dict:
    """name → dotted module path bound by the imports of ``tree``."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def scan_imports(answer: str, forbidden: list[str], context: str = "") -> list[str]:
    """The forbidden modules an answer cell uses: imported in the answer, or reached through a
    name that ``context`` (the notebook's locked cells) or the answer bound to such a module."""
    if not forbidden:
        return []
    try:
        tree = ast.parse(answer)
    except SyntaxError:
        return []
    try:
        ctx = _aliases(ast.parse(context)) if context else {}
    except SyntaxError:
        ctx = {}
    names = {**ctx, **_aliases(tree), "torch": "torch", "scipy": "scipy", "captum": "captum",
             "sklearn": "sklearn", "xaicourse": "xaicourse", "lime": "lime", "numpy": "numpy"}

    def bad(path: str) -> str | None:
        for f in forbidden:
            if path == f or path.startswith(f + "."):
                return f
        return None

    hits: dict[str, None] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if bad(a.name):
                    hits[f"imports {a.name}"] = None
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if bad(node.module) or bad(full):
                    hits[f"imports {full}"] = None
        elif isinstance(node, (ast.Attribute, ast.Name)):
            d = _dotted(node)
            if not d:
                continue
            head, _, rest = d.partition(".")
            if head in names:
                full = names[head] + ("." + rest if rest else "")
                if bad(full):
                    hits[f"uses {full}"] = None
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if bad(node.value.strip()):
                hits[f"names {node.value.strip()!r} in a string"] = None
    # a dotted use like torch.func.grad also walks torch.func: keep the longest of each chain, and
    # "uses X" only when X was not imported by name
    keys = list(hits)
    keys = [k for k in keys if not any(o != k and o.startswith(k + ".") for o in keys)]
    imported = {k.split(" ", 1)[1] for k in keys if k.startswith("imports ")}
    return [k for k in keys if not (k.startswith("uses ") and k.split(" ", 1)[1] in imported)]


def grad_x_input(model, inputs, target):
    """gradient × input (a small attribution method the checks hand to the student's code)."""
    import torch

    z = inputs.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(model(z)[:, target].sum(), z)
    return (g * z).detach()
