"""The grader's agent inside the sandboxed kernel: call a student's function, write back plain data.

This module runs in the *student's* kernel, so nothing here is trusted: a submission can replace
it, patch it or write its own reply files. It does not need to be trusted. The grader (outside the
sandbox, :mod:`xaicourse.checking`) only ever reads what this writes as data — JSON text and
``.npy`` arrays loaded with ``allow_pickle=False`` — and compares it with references it computed
itself, where the kernel cannot see them. Whatever the kernel says is at most the student's answer.

A request (JSON, written by the grader into the sandbox's folder) names a function of the
notebook's namespace and its arguments, each encoded as:

``{"v": json}``                       a JSON value (number, string, bool, None, list, dict)
``{"array": "f.npy", "torch": true}``  an array (a ``torch.Tensor`` when ``torch``)
``{"module": "pkg.mod:Factory", "kwargs": {...}, "state": "f.npz", "double": false}``
                                      a freshly built ``nn.Module`` with the grader's parameters
``{"global": "name"}``                an object of the notebook's namespace (e.g. the student's own function)
``{"callable": "pkg.mod:function", "kwargs": {...}}``   a library function (kwargs bound)
``{"instance": "pkg.mod:Class", "kwargs": {...}}``      an object built in the kernel (e.g. a loss)
``{"list": [...]}`` / ``{"tuple": [...]}`` / ``{"dict": {...}}``   containers of the above

The reply (JSON) is the result encoded the same way (arrays in ``.npy`` files), or the exception
the function raised (its type name and message).
"""
from __future__ import annotations

import functools
import importlib
import json
import os

MAX_LEAVES = 10_000


def _resolve(spec: str):
    mod, _, attr = spec.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _decode(node, folder, ns):
    import numpy as np

    if not isinstance(node, dict) or len(node) == 0:
        raise ValueError(f"bad argument encoding {node!r}")
    if "v" in node:
        return node["v"]
    if "array" in node:
        arr = np.load(os.path.join(folder, node["array"]), allow_pickle=False)
        if node.get("torch"):
            import torch
            return torch.from_numpy(arr.copy())
        return arr
    if "module" in node:
        import numpy as np
        import torch
        module = _resolve(node["module"])(**node.get("kwargs", {}))
        if node.get("double"):
            module = module.double()
        if node.get("state"):
            with np.load(os.path.join(folder, node["state"]), allow_pickle=False) as z:
                state = {k: torch.from_numpy(z[k].copy()) for k in z.files}
            module.load_state_dict(state)
        return module.eval()
    if "global" in node:
        return ns[node["global"]]
    if "instance" in node:
        return _resolve(node["instance"])(**node.get("kwargs", {}))
    if "callable" in node:
        fn = _resolve(node["callable"])
        return functools.partial(fn, **node["kwargs"]) if node.get("kwargs") else fn
    if "list" in node:
        return [_decode(n, folder, ns) for n in node["list"]]
    if "tuple" in node:
        return tuple(_decode(n, folder, ns) for n in node["tuple"])
    if "dict" in node:
        return {k: _decode(n, folder, ns) for k, n in node["dict"].items()}
    raise ValueError(f"bad argument encoding {node!r}")


def _encode(value, folder, prefix, counter, depth=0):
    import numpy as np

    if depth > 20 or counter[0] > MAX_LEAVES:
        return {"t": "unsupported", "type": "too deeply nested"}
    counter[0] += 1
    try:
        import torch
    except Exception:  # pragma: no cover - torch is a dependency
        torch = None
    if value is None or type(value) in (bool, int, float, str):
        if type(value) is float and value != value:
            return {"t": "float", "v": "nan"}
        if type(value) is float and value in (float("inf"), float("-inf")):
            return {"t": "float", "v": "inf" if value > 0 else "-inf"}
        return {"t": type(value).__name__ if value is not None else "none", "v": value}
    if torch is not None and isinstance(value, torch.Tensor):
        with torch._C.DisableTorchFunction():
            t = torch.Tensor.detach(value)
            meta = {"requires_grad": bool(torch.Tensor.requires_grad.__get__(value)),
                    "device": str(torch.Tensor.device.__get__(t)), "dtype": str(torch.Tensor.dtype.__get__(t))}
            arr = torch.Tensor.numpy(torch.Tensor.cpu(t).resolve_conj().resolve_neg())
        name = f"{prefix}-{counter[0]}.npy"
        np.save(os.path.join(folder, name), np.ascontiguousarray(arr), allow_pickle=False)
        kind = "tensor" if type(value) is torch.Tensor else "tensor-subclass"
        return dict(t=kind, file=name, cls=type(value).__name__, **meta)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            return {"t": "unsupported", "type": f"numpy array of dtype {value.dtype}"}
        name = f"{prefix}-{counter[0]}.npy"
        np.save(os.path.join(folder, name), np.ascontiguousarray(np.asarray(value)), allow_pickle=False)
        return {"t": "ndarray" if type(value) is np.ndarray else "ndarray-subclass", "file": name,
                "cls": type(value).__name__}
    if isinstance(value, np.generic) and value.dtype.kind in "biuf":
        return {"t": "npscalar", "v": value.item() if np.isfinite(value) else str(value.item()),
                "dtype": str(value.dtype)}
    if type(value) in (list, tuple):
        return {"t": type(value).__name__, "items": [_encode(v, folder, prefix, counter, depth + 1) for v in value]}
    if type(value) is dict:
        return {"t": "dict", "items": {str(k): _encode(v, folder, prefix, counter, depth + 1)
                                       for k, v in value.items()}}
    return {"t": "unsupported", "type": f"{type(value).__module__}.{type(value).__qualname__}"}


def call(request_file: str) -> None:
    """Serve one request: decode the arguments, call the function, write the reply file."""
    import __main__
    import time

    folder = os.path.dirname(request_file)
    with open(request_file) as fh:
        req = json.load(fh)
    ns = vars(__main__)
    reply = {"id": req["id"]}
    t0 = time.perf_counter()
    try:
        fn = ns.get(req["fn"])
        if fn is None:
            raise NameError(f"name {req['fn']!r} is not defined: run the cell that defines it")
        args = [_decode(a, folder, ns) for a in req.get("args", [])]
        kwargs = {k: _decode(v, folder, ns) for k, v in req.get("kwargs", {}).items()}
        result = fn(*args, **kwargs)
    except BaseException as err:  # the student's exception is part of the answer
        reply["error"] = {"type": type(err).__name__, "message": str(err)[:2000]}
    else:
        try:
            reply["value"] = _encode(result, folder, f"reply-{req['id']}", [0])
        except BaseException as err:
            reply["error"] = {"type": "UnencodableResult", "message": f"{type(err).__name__}: {err}"[:2000]}
    reply["seconds"] = time.perf_counter() - t0
    tmp = os.path.join(folder, f".reply-{req['id']}.json")
    with open(tmp, "w") as fh:
        json.dump(reply, fh)
    os.replace(tmp, os.path.join(folder, f"reply-{req['id']}.json"))
