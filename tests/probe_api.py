"""The bad-input probe of the public API (issue #25).

Every public function is called once validly on tiny data (a tiny CNN / MLP / BatchNorm net built
here; no course models), then once per *mutation* of one argument: wrong ndim, extra leading dim,
empty batch, NaN, inf, int dtype, numpy array, list, wrong length, out-of-range target / label /
index, negative / zero / float / bool / huge ints, typo strings, None, a train-mode BatchNorm model.
Each mutation declares whether it must be refused (``refuse``) or may be accepted (``either``).

Outcome classes:
  clear     ValueError/TypeError whose message names the argument (or, for ``either``, any such refusal)
  sensible  accepted where acceptance is fine, the result finite and — for numpy / list / numpy-int /
            None-target / train-mode-model mutations — equal to the reference call's
  raw       any other exception, or a ValueError/TypeError that does not name the argument
  silent    returned for a ``refuse`` mutation, returned NaN/inf, a result that differs from the
            reference, or a model whose state (parameters, buffers, .training flags, hooks) changed
  missing   the function could not be resolved (reported, never a crash)

Functions are resolved by their new names first, falling back to the old ones, and arguments by
their new names first (``inputs``, ``baselines``, ``n_steps``, ...), falling back to the old ones —
the probe follows the API while it moves. ``run()`` returns the list of ``Result``; the command
``python benchmarks/probe_api.py`` prints the table.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import signal
import time
import warnings
from collections import OrderedDict
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

TIMEOUT = 20.0  # seconds per call; a call that takes longer is a raw outcome ("timeout")
N = 4  # test batch
N_TRAIN = 10
N_CLASSES = 3
IMG = (1, 8, 8)
D = 16


# ------------------------------------------------------------------ tiny data and models
def _seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def tiny_cnn(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3, padding=1), relu1=nn.ReLU(), pool=nn.MaxPool2d(2),
                                  flatten=nn.Flatten(), fc=nn.Linear(4 * 4 * 4, N_CLASSES)))
    return m.eval()


def tiny_bn_cnn(seed=0):
    """A CNN with BatchNorm in **train mode** with non-trivial running statistics."""
    torch.manual_seed(seed)
    m = nn.Sequential(OrderedDict(conv1=nn.Conv2d(1, 4, 3, padding=1), bn1=nn.BatchNorm2d(4), relu1=nn.ReLU(),
                                  pool=nn.MaxPool2d(2), flatten=nn.Flatten(), fc=nn.Linear(4 * 4 * 4, N_CLASSES)))
    with torch.no_grad():
        m.train()
        m(torch.rand(16, *IMG, generator=_seeded(5)))  # running stats away from 0/1
    return m.train()


def tiny_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(D, 8), relu1=nn.ReLU(), fc2=nn.Linear(8, N_CLASSES))).eval()


def tiny_bn_mlp(seed=0):
    torch.manual_seed(seed)
    m = nn.Sequential(OrderedDict(fc1=nn.Linear(D, 8), bn1=nn.BatchNorm1d(8), relu1=nn.ReLU(),
                                  fc2=nn.Linear(8, N_CLASSES)))
    with torch.no_grad():
        m.train()
        m(torch.rand(16, D, generator=_seeded(6)))
    return m.train()


class FeatureMLP(nn.Module):
    """An MLP with ``features`` (penultimate activations) and a bias-free ``head``, like the course models."""

    def __init__(self, bn=False):
        super().__init__()
        layers = [nn.Linear(D, 8)] + ([nn.BatchNorm1d(8)] if bn else []) + [nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(8, N_CLASSES, bias=False)

    def forward(self, x):
        return self.head(self.features(x))


def tiny_feature_mlp(seed=0):
    torch.manual_seed(seed)
    return FeatureMLP().eval()


def tiny_bn_feature_mlp(seed=0):
    torch.manual_seed(seed)
    m = FeatureMLP(bn=True)
    with torch.no_grad():
        m.train()
        m(torch.rand(16, D, generator=_seeded(6)))
    return m.train()


def images(n=N, seed=1):
    return torch.rand(n, *IMG, generator=_seeded(seed))


def vectors(n=N, seed=2):
    return torch.rand(n, D, generator=_seeded(seed))


def labels(n=N, seed=3):
    return torch.arange(n) % N_CLASSES


# ------------------------------------------------------------------ mutations
REFUSE, EITHER = "refuse", "either"


@dataclasses.dataclass
class Mutation:
    label: str
    value: Any  # the new value, or a callable(base_value) -> new value
    expect: str = REFUSE
    compare: str | None = None  # "same": must equal the base call; "ref": must equal ``reference`` call
    reference: Any = None  # callable(args dict) -> args dict for the reference call


def _nan(x):
    x = x.clone().double() if not x.dtype.is_floating_point else x.clone()
    x.view(-1)[0] = float("nan")
    return x


def _inf(x):
    x = x.clone()
    x.view(-1)[-1] = float("inf")
    return x


def batch_mutations(x: torch.Tensor, model_input: bool = True, shape_free: bool = False, nobatch_ok: bool = False):
    """Mutations of a batch (N, ...). shape_free: the function takes any (N, ...) so a missing or
    an extra leading dim cannot be told from a legal shape (may be accepted)."""
    lead = EITHER if shape_free else REFUSE
    muts = [
        Mutation("no batch dim", lambda v: v[0], EITHER if nobatch_ok else lead),
        Mutation("extra leading dim", lambda v: v[None], lead),
        Mutation("empty batch", lambda v: v[:0]),
        Mutation("NaN", _nan),
        Mutation("inf", _inf),
        Mutation("int dtype", lambda v: (v * 255).round().long(), EITHER),
        Mutation("numpy", lambda v: v.numpy(), EITHER, "same"),
        Mutation("list", lambda v: v.tolist(), EITHER, "same"),
        Mutation("float64", lambda v: v.double(), EITHER),
        Mutation("None", None),
        Mutation("string", "inputs"),
    ]
    if not model_input:
        muts = [m for m in muts if m.label != "float64"]
    return muts


def tensor_mutations(shape_hint=""):
    """Mutations of a non-batch tensor argument (maps, masks, vectors)."""
    return [
        Mutation("wrong ndim", lambda v: v.reshape(-1)[:, None, None, None] if v.dim() < 4 else v.reshape(-1)),
        Mutation("empty", lambda v: v.reshape(-1)[:0]),
        Mutation("NaN", _nan),
        Mutation("inf", _inf),
        Mutation("numpy", lambda v: v.numpy(), EITHER, "same"),
        Mutation("list", lambda v: v.tolist(), EITHER, "same"),
        Mutation("None", None),
        Mutation("string", "x"),
    ]


def target_mutations(n=N, n_classes=N_CLASSES, none_ok=True):
    muts = [
        Mutation("out of range", n_classes),
        Mutation("negative", -1),
        Mutation("float", 1.5),
        Mutation("bool", True),
        Mutation("huge", 10 ** 12),
        Mutation("wrong length", torch.arange(n + 1) % n_classes),
        Mutation("float tensor", lambda v: torch.as_tensor(v).float() if torch.as_tensor(v).dim() else
                 torch.full((n,), float(v))),
        Mutation("2-D", lambda v: torch.as_tensor(v).reshape(-1, 1) if torch.as_tensor(v).dim() else
                 torch.full((n, 1), int(v))),
        Mutation("string", "1"),
        Mutation("list", lambda v: torch.as_tensor(v).tolist(), EITHER, "same"),
        Mutation("numpy", lambda v: torch.as_tensor(v).numpy(), EITHER, "same"),
    ]
    if none_ok:
        muts.append(Mutation("None (predicted class)", None, EITHER, "ref",
                             reference=lambda a, name: {**a, name: _predicted(a)}))
    else:
        muts.append(Mutation("None", None))
    return muts


def _predicted(args):
    model = next(v for v in args.values() if isinstance(v, nn.Module))
    x = next(v for k, v in args.items() if isinstance(v, torch.Tensor) and k in
             ("inputs", "x", "X", "images", "test_inputs", "data"))
    was = [m.training for m in model.modules()]
    model.eval()
    with torch.no_grad():
        out = model(x).argmax(1)
    for m, t in zip(model.modules(), was):
        m.training = t
    return out


def label_mutations(n, n_classes=N_CLASSES, *, alone=False, inferred=False):
    """``alone``: no other argument fixes the number of labels (a shorter vector is legal);
    ``inferred``: the class count is read off the labels, as scikit-learn does (a larger label is a class)."""
    return [
        Mutation("wrong length", lambda v: v[:-1], EITHER if alone else REFUSE),
        Mutation("out of range", lambda v: torch.where(torch.arange(len(v)) == 0, torch.tensor(n_classes), v),
                 EITHER if inferred else REFUSE),
        Mutation("negative", lambda v: torch.where(torch.arange(len(v)) == 0, torch.tensor(-1), v)),
        Mutation("float dtype", lambda v: v.float() + 0.5),
        Mutation("2-D", lambda v: v[:, None]),
        Mutation("empty", lambda v: v[:0]),
        Mutation("numpy", lambda v: v.numpy(), EITHER, "same"),
        Mutation("list", lambda v: v.tolist(), EITHER, "same"),
        Mutation("None", None),
    ]


def count_mutations(none_ok=False, huge_ok=False):
    muts = [
        Mutation("zero", 0), Mutation("negative", -1), Mutation("float", 2.5), Mutation("bool", True),
        Mutation("string", "3"),
        Mutation("numpy int", lambda v: np.int64(v), EITHER, "same"),
        Mutation("None", None, EITHER if none_ok else REFUSE),
    ]
    if huge_ok:
        muts.append(Mutation("huge", 10 ** 9, EITHER))
    return muts


def bounded_int_mutations(upper, none_ok=False, zero_ok=False):
    """An int in [lo, upper] (k, index, class, patch size): upper+1 and huge must be refused.
    upper=None: no upper bound known at call time (a large value may be accepted)."""
    hi = EITHER if upper is None else REFUSE
    muts = [Mutation("negative", -1), Mutation("float", 1.5), Mutation("bool", True), Mutation("string", "1"),
            Mutation("above range", 10 ** 6 if upper is None else upper + 1, hi), Mutation("huge", 10 ** 12, hi),
            Mutation("numpy int", lambda v: np.int64(v), EITHER, "same"),
            Mutation("None", None, EITHER if none_ok else REFUSE)]
    if not zero_ok:
        muts.insert(0, Mutation("zero", 0))
    return muts


def seed_mutations():
    return [Mutation("negative", -1), Mutation("float", 1.5), Mutation("bool", True), Mutation("string", "0"),
            Mutation("numpy int", lambda v: np.int64(v), EITHER, "same")]


def real_mutations(positive=True, none_ok=False, unit=False):
    muts = [Mutation("NaN", float("nan")), Mutation("inf", float("inf")), Mutation("string", "0.1"),
            Mutation("bool", True), Mutation("None", None, EITHER if none_ok else REFUSE)]
    if positive:
        muts.append(Mutation("negative", -0.5))
    if unit:
        muts.append(Mutation("above 1", 1.5))
    return muts


def choice_mutations(none_ok=False):
    return [Mutation("typo", lambda v: (v[:-1] + "x") if isinstance(v, str) and v else "typo"),
            Mutation("int", 3), Mutation("None", None, EITHER if none_ok else REFUSE)]


def bool_mutations():
    return [Mutation("string", "yes"), Mutation("None", None, EITHER), Mutation("int 2", 2)]


def model_mutations(bn_factory, none_ok=False):
    return [
        Mutation("train-mode BatchNorm", lambda v: bn_factory(), EITHER, "ref",
                 reference=None),  # reference: same call with the BN model in eval mode (filled in by the runner)
        Mutation("not a module", "model"),
        Mutation("None", None, EITHER if none_ok else REFUSE),
    ]


def layer_mutations(none_ok=False):
    return [Mutation("typo", "conv9"), Mutation("int", 3), Mutation("None", None, EITHER if none_ok else REFUSE)]


def index_mutations(n):
    return [Mutation("float", [1.5]), Mutation("out of range", [n]), Mutation("negative", [-1]),
            Mutation("bool", [True]), Mutation("string", "0"), Mutation("2-D", [[0, 1]]),
            Mutation("numpy", lambda v: np.asarray(v), EITHER, "same"), Mutation("None", None, EITHER)]


# ------------------------------------------------------------------ specs
@dataclasses.dataclass
class Arg:
    names: tuple  # candidate parameter names, new first
    value: Any  # a value or a zero-argument factory (``Fresh``)
    mutations: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Fresh:
    """A factory: a fresh value per call (models, anything the callee could modify)."""
    make: Callable

    def __call__(self):
        return self.make()


@dataclasses.dataclass
class Spec:
    funcs: tuple  # candidate "module:attr" (attr may be dotted: "Class.method" is not used; see call)
    args: list
    label: str | None = None
    call: Callable | None = None  # call(f, **kwargs) -> result for classes (names used as given); default f(**kwargs)
    post: Callable | None = None  # applied to the result before it is checked (e.g. keep .history)
    mutates_model: bool = False  # the function trains / edits the model on purpose
    finite: bool = True  # the result must be finite
    positional: tuple = ()  # names passed positionally (in this order) before the keywords


def A(names, value, mutations=()):
    names = (names,) if isinstance(names, str) else tuple(names)
    return Arg(names, value, list(mutations))


@dataclasses.dataclass
class Result:
    module: str
    function: str
    argument: str
    mutation: str
    expect: str
    outcome: str  # clear / sensible / raw / silent / missing
    detail: str = ""
    seconds: float = 0.0


# ------------------------------------------------------------------ resolution
def resolve(candidates):
    for c in candidates:
        mod, _, attr = c.partition(":")
        try:
            obj = importlib.import_module(mod)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj, c
        except (ImportError, AttributeError):
            continue
    return None, candidates[0]


def _why_missing(candidates):
    why = []
    for c in candidates:
        mod, _, attr = c.partition(":")
        try:
            importlib.import_module(mod)
            why.append(f"{c}: no such attribute")
        except Exception as e:  # noqa: BLE001
            why.append(f"{c}: import fails ({type(e).__name__}: {str(e)[:120]})")
    return "; ".join(why)


def _params(f):
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None, True
    kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return sig.parameters, kw


def _arg_name(arg: Arg, params, var_kw):
    if params is None:
        return arg.names[0]
    for n in arg.names:
        if n in params and params[n].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            return n
    return arg.names[0] if var_kw else None


# ------------------------------------------------------------------ running one call
class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds):
    if not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise _Timeout(f"no answer after {seconds:.0f} s")

    # an outer timer (pytest-timeout's signal method) is put back with its remaining time afterwards
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer > 0 else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        if outer > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - t0), 1e-3))


def _model_state(m: nn.Module):
    return ({k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
            [mod.training for mod in m.modules()],
            [p.requires_grad for p in m.parameters()],
            sum(len(mod._forward_hooks) + len(mod._forward_pre_hooks) + len(mod._backward_hooks)
                + len(getattr(mod, "_full_backward_hooks", {}) or {}) for mod in m.modules()))


def _same_state(a, b):
    sa, ta, ra, ha = a
    sb, tb, rb, hb = b
    if ta != tb:
        return "the .training flags changed"
    if ra != rb:
        return "requires_grad flags changed"
    if ha != hb:
        return f"hooks left behind ({ha} → {hb})"
    if sa.keys() != sb.keys():
        return "the state dict's keys changed"
    for k in sa:
        if sa[k].shape != sb[k].shape or not torch.equal(sa[k], sb[k]):
            return f"{k} changed"
    return None


def _leaves(obj, depth=0):
    """Every number array in a result (tensors, arrays, floats; dataclasses, dicts, sequences)."""
    if depth > 4:
        return
    if isinstance(obj, torch.Tensor):
        if obj.dtype.is_floating_point or obj.is_complex():
            yield obj.detach().cpu().double().numpy()
        elif obj.dtype != torch.bool:
            yield obj.detach().cpu().numpy().astype(np.float64)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind in "fiub":
            yield obj.astype(np.float64)
    elif isinstance(obj, (bool, np.bool_)):
        return
    elif isinstance(obj, (int, float, np.number)):
        yield np.asarray(float(obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, str) and ("second" in k or "time" in k):
                continue  # wall-clock measurements differ from call to call
            yield from _leaves(v, depth + 1)
    elif isinstance(obj, (list, tuple)):
        if len(obj) <= 64:
            for v in obj:
                yield from _leaves(v, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            yield from _leaves(getattr(obj, f.name), depth + 1)
    elif isinstance(obj, nn.Module):
        return


def _finite(result):
    for a in _leaves(result):
        if not np.all(np.isfinite(a)):
            return False
    return True


def _equal(r1, r2, rtol=1e-4, atol=1e-5):
    a, b = list(_leaves(r1)), list(_leaves(r2))
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape or not np.allclose(x, y, rtol=rtol, atol=atol, equal_nan=True):
            return False
    return True


def _materialise(args: dict):
    return {k: (v() if isinstance(v, Fresh) else v) for k, v in args.items()}


def _invoke(spec: Spec, f, kwargs: dict):
    kwargs = dict(kwargs)
    pos = [kwargs.pop(n) for n in spec.positional if n in kwargs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with _time_limit(TIMEOUT):
            if spec.call is not None:
                res = spec.call(f, *pos, **kwargs)
            else:
                res = f(*pos, **kwargs)
            return spec.post(res) if spec.post is not None else res


def _names_argument(msg: str, names) -> bool:
    """The message names the argument (or one of its aliases; a plural name also by its singular:
    "layer 'fc9' is not in the model" names ``layers``)."""
    low = msg.lower()
    forms = {n.lower() for n in names if n} | {n.lower()[:-1] for n in names if n and len(n) > 3 and n.endswith("s")}
    return any(f in low for f in forms)


# ------------------------------------------------------------------ running a spec
def run_spec(spec: Spec, out: list, only_valid=False):
    f, where = resolve(spec.funcs)
    fname = spec.label or where.partition(":")[2]
    if f is None:
        out.append(Result(where.partition(":")[0], fname, "-", "resolve", "-", "missing",
                          _why_missing(spec.funcs)))
        return
    module = getattr(f, "__module__", None) or where.partition(":")[0]
    params, var_kw = _params(f if spec.call is None else (f.__init__ if inspect.isclass(f) else f))
    if spec.call is not None:  # custom calls take the spec's names as they are
        params, var_kw = None, True
    names, base = {}, {}
    for arg in spec.args:
        n = _arg_name(arg, params, var_kw)
        if n is None:
            continue
        names[arg.names[0]] = n
        base[n] = arg.value

    def call(kwargs):
        kw = _materialise(kwargs)
        models = [v for v in kw.values() if isinstance(v, nn.Module)]
        before = [_model_state(m) for m in models] if not spec.mutates_model else []
        t0 = time.perf_counter()
        try:
            res = _invoke(spec, f, kw)
            err = None
        except _Timeout as e:
            res, err = None, e
        except Exception as e:  # noqa: BLE001 — classified below
            res, err = None, e
        dt = time.perf_counter() - t0
        changed = None
        for m, b in zip(models, before):
            changed = changed or _same_state(b, _model_state(m))
        return res, err, dt, changed, kw

    # the valid call
    res0, err0, dt, changed, _ = call(base)
    if err0 is not None:
        out.append(Result(module, fname, "-", "valid call", "accept", "raw",
                          f"{type(err0).__name__}: {str(err0)[:300]}", dt))
        return
    if changed:
        out.append(Result(module, fname, "-", "valid call", "accept", "silent", f"model state: {changed}", dt))
    elif spec.finite and not _finite(res0):
        out.append(Result(module, fname, "-", "valid call", "accept", "silent", "NaN/inf in the result", dt))
    else:
        out.append(Result(module, fname, "-", "valid call", "accept", "sensible", "", dt))
    if only_valid:
        return

    for arg in spec.args:
        key = arg.names[0]
        if key not in names:
            continue
        pname = names[key]
        for mut in arg.mutations:
            base_val = base[pname]
            try:
                v = base_val() if isinstance(base_val, Fresh) else base_val
                new = mut.value(v) if callable(mut.value) and not isinstance(mut.value, (nn.Module, type)) else mut.value
            except Exception:  # noqa: BLE001
                continue  # the mutation does not apply to this value
            kwargs = {**base, pname: new}
            res, err, dt, changed, kw = call(kwargs)
            r = Result(module, fname, pname, mut.label, mut.expect, "", "", dt)
            allowed = set(arg.names) | {pname}
            if err is not None:
                msg = str(err)
                if isinstance(err, (ValueError, TypeError)) and not isinstance(err, _Timeout) \
                        and _names_argument(msg, allowed):
                    r.outcome = "clear"
                else:
                    r.outcome = "raw"
                r.detail = f"{type(err).__name__}: {msg[:240]}"
                if changed:
                    r.outcome, r.detail = "silent", f"raised, and model state: {changed}; {r.detail}"
            elif changed:
                r.outcome, r.detail = "silent", f"model state: {changed}"
            elif mut.expect == REFUSE:
                r.outcome, r.detail = "silent", "accepted a value that must be refused"
            elif spec.finite and not _finite(res):
                r.outcome, r.detail = "silent", "NaN/inf in the result"
            elif mut.compare == "same" and not _equal(res, res0):
                r.outcome, r.detail = "silent", "result differs from the tensor call's"
            elif mut.compare == "ref":
                if mut.reference is not None:
                    ref_kwargs = mut.reference(_materialise(base), pname)
                else:  # train-mode model: the same call with the same model in eval mode
                    m_eval = kw[pname]
                    ref_kwargs = {**base, pname: _eval_copy(m_eval)}
                ref, ref_err, *_ = call(ref_kwargs)
                if ref_err is None and not _equal(res, ref):
                    r.outcome, r.detail = "silent", "result differs from the reference call's"
                else:
                    r.outcome = "sensible"
            else:
                r.outcome = "sensible"
            out.append(r)


def _eval_copy(model):
    import copy
    m = copy.deepcopy(model)
    return m.eval()


# ------------------------------------------------------------------ the specs of the package
def _att(name):
    return (f"xaicourse.attribution:{name}",)


def _ev(name):
    return (f"xaicourse.evaluation:{name}", f"xaicourse.metrics:{name}")


def _da(name):
    return (f"xaicourse.data_attribution:{name}",)


def model_args(kind="cnn", n=N, target=True, none_ok=True, inputs_names=("inputs", "x", "X", "images")):
    """model, inputs, target for a model method."""
    if kind == "cnn":
        m, bn, x = Fresh(tiny_cnn), tiny_bn_cnn, images(n)
    else:
        m, bn, x = Fresh(tiny_mlp), tiny_bn_mlp, vectors(n)
    args = [A("model", m, model_mutations(bn)), A(inputs_names, x, batch_mutations(x))]
    if target:
        args.append(A("target", labels(n), target_mutations(n, none_ok=none_ok)))
    return args


ATTRIBUTION_OPTIONS = {  # small settings per METHODS entry, and the mutations of its options
    "smoothgrad": [A("n_samples", 3, count_mutations()), A("seed", 0, seed_mutations()),
                   A("sigma", 0.1, real_mutations()), A("batch_size", 2, count_mutations(none_ok=True, huge_ok=True)),
                   A("base", "gradient", choice_mutations())],
    "saliency": [A(("absolute", "abs"), True, bool_mutations())],
    "grad_cam": [A("layer", "conv1", layer_mutations(none_ok=True)),
                 A("interpolate_mode", "bilinear", choice_mutations())],
    "occlusion": [A("window", 2, bounded_int_mutations(8)), A("stride", 2, bounded_int_mutations(8)),
                  A(("baselines", "baseline"), 0.0, [Mutation("NaN", float("nan")), Mutation("typo", "zeroo"),
                                                     Mutation("wrong shape", torch.zeros(2, 3))]),
                  A("batch_size", 8, count_mutations(huge_ok=True))],
    "lime": [A(("n_samples", "num_samples"), 20, count_mutations()), A("seed", 0, seed_mutations()),
             A("n_segments", 4, count_mutations()), A("segmentation", "grid", choice_mutations()),
             A("cell", 4, bounded_int_mutations(8)), A("batch_size", 8, count_mutations(huge_ok=True)),
             # a number is a legal constant fill ("mean", "zero", "blur" or a value), so only typos must fail
             A("hide", "mean", [m for m in choice_mutations() if m.label != "int"])],
    "integrated_gradients": [A("n_steps", 8, count_mutations()), A("method", "gausslegendre", choice_mutations()),
                             A("baselines", 0.0, [Mutation("NaN", float("nan")), Mutation("typo", "zeroo"),
                                                  Mutation("wrong shape", torch.zeros(2, 3)),
                                                  Mutation("None", None, EITHER),
                                                  Mutation("tensor", lambda v: torch.zeros(*IMG), EITHER)]),
                             A(("batch_size", "internal_batch_size"), 4, count_mutations(none_ok=True, huge_ok=True))],
    "deeplift": [A("baselines", 0.0, [Mutation("NaN", float("nan")), Mutation("typo", "zeroo"),
                                      Mutation("wrong shape", torch.zeros(2, 3)), Mutation("None", None, EITHER)])],
    "lrp": [A("rule", "epsilon", choice_mutations()), A("epsilon", 1e-2, real_mutations())],
    "shapley_sampling": [A("n_samples", 2, count_mutations()), A("seed", 0, seed_mutations()),
                         A("feature_mask", torch.arange(64).reshape(1, 1, 8, 8) // 16,
                           [Mutation("wrong shape", torch.zeros(3, 3, dtype=torch.long)),
                            Mutation("float", lambda v: v.float() + 0.5), Mutation("negative", lambda v: v - 5)]),
                         A("baselines", 0.0, [Mutation("NaN", float("nan")), Mutation("typo", "zeroo")]),
                         A("batch_size", 16, count_mutations(huge_ok=True))],
    "shapley_exact": [A("feature_mask", torch.arange(64).reshape(1, 1, 8, 8) // 16,
                        [Mutation("wrong shape", torch.zeros(3, 3, dtype=torch.long)),
                         Mutation("float", lambda v: v.float() + 0.5),
                         Mutation("too many features", torch.arange(64).reshape(1, 1, 8, 8))]),
                      A("baselines", 0.0, [Mutation("NaN", float("nan")), Mutation("typo", "zeroo")]),
                      A("batch_size", 16, count_mutations(huge_ok=True))],
    "meaningful_perturbation": [A("n_steps", 3, count_mutations()), A("mode", "delete", choice_mutations()),
                                A(("baselines", "baseline"), "blur", [Mutation("typo", "blurr"),
                                                                      Mutation("NaN", float("nan"))]),
                                A("seed", 0, seed_mutations()), A("lr", 0.1, real_mutations()),
                                A("mask_size", 4, bounded_int_mutations(8, none_ok=True))],
}


def attribution_specs():
    specs = []
    methods, _ = resolve(("xaicourse.attribution:METHODS",))
    names = list(methods) if isinstance(methods, dict) else list(ATTRIBUTION_OPTIONS) + [
        "gradient", "input_x_gradient", "squared_gradient", "guided_backprop"]
    for name in names:
        f = methods[name] if isinstance(methods, dict) else None
        mod = getattr(f, "__module__", "xaicourse.attribution")
        attr = getattr(f, "__name__", name)
        specs.append(Spec((f"{mod}:{attr}",) + _att(attr), model_args() + ATTRIBUTION_OPTIONS.get(name, []),
                          label=f"METHODS[{name!r}]"))
    # the registry front door
    specs.append(Spec(_att("attribute"), [A("method", "gradient", choice_mutations())] + model_args(),
                      positional=("method",)))
    # the same methods on an MLP (Linear-first models: extra leading dims must not slip through)
    for name in ("gradient", "integrated_gradients", "occlusion", "shapley_sampling", "deeplift", "lrp"):
        f = methods.get(name) if isinstance(methods, dict) else None
        if f is None:
            continue
        opts = {"integrated_gradients": [A("n_steps", 8)], "occlusion": [A("window", 1)],
                "shapley_sampling": [A("n_samples", 2)]}.get(name, [])
        specs.append(Spec((f"{f.__module__}:{f.__name__}",), model_args("mlp") + opts, label=f"{name} (MLP)"))
    # helpers of the families
    x = images()
    specs += [
        Spec(_att("internal_influence"), model_args() + [A("layer", "conv1", layer_mutations()),
                                                          A("n_steps", 4, count_mutations())]),
        Spec(_att("layer_conductance"), model_args() + [A("layer", "conv1", layer_mutations()),
                                                         A("n_steps", 4, count_mutations())]),
        Spec(_att("unit_attribution"), model_args(target=False) + [
            A("layer", "fc", layer_mutations()), A("unit", 1, bounded_int_mutations(N_CLASSES - 1, zero_ok=True)),
            A("n_steps", 4, count_mutations())]),
        Spec(("xaicourse._torch:layer_activations", "xaicourse.attribution:layer_activations"),
             model_args(target=False) + [A("layer", "conv1", layer_mutations()),
                                         A("batch_size", 2, count_mutations(none_ok=True, huge_ok=True))],
             label="layer_activations"),
        Spec(_att("patch_mask"), [A("height", 8, bounded_int_mutations(10 ** 4)),
                                  A("width", 8, bounded_int_mutations(10 ** 4)), A("patch", 2, bounded_int_mutations(8))]),
        Spec(_att("superpixel_mask"), [A(("image", "inputs"), x[0], tensor_mutations()),
                                       A("n_segments", 4, count_mutations())]),
        Spec(_att("sample_baselines"), [A(("inputs", "data"), x, batch_mutations(x, False)),
                                        A(("n_samples", "k"), 2, bounded_int_mutations(N)),
                                        A("seed", 0, seed_mutations())]),
        Spec(_att("blurred_baseline"), [A(("inputs", "x"), x, batch_mutations(x, False)),
                                        A("sigma", 1.0, real_mutations())]),
        Spec(_att("uniform_noise_baseline"), [A(("inputs", "x"), x, batch_mutations(x, False)),
                                              A("seed", 0, seed_mutations())]),
        Spec(("xaicourse._torch:resolve_baselines",), [
            A("inputs", x, batch_mutations(x, False)),
            A("baselines", "blur", [Mutation("typo", "blurr"), Mutation("NaN", float("nan")),
                                    Mutation("wrong shape", torch.zeros(2, 3)), Mutation("int", 0, EITHER),
                                    Mutation("tensor", torch.zeros(*IMG), EITHER)]),
            A("seed", 0, seed_mutations())]),
        Spec(("xaicourse._torch:resolve_target",), model_args()),
        Spec(_att("lime_explain"), model_args(n=1) + [A(("n_samples", "num_samples"), 20, count_mutations()),
                                                     A("segmentation", "grid", choice_mutations()),
                                                     A("cell", 4, bounded_int_mutations(8))]),
    ]
    return specs


def _ckpts(model_factory=tiny_mlp):
    m = model_factory()
    sd = {k: v.clone() for k, v in m.state_dict().items()}
    sd2 = {k: v + 0.01 for k, v in sd.items()}
    return [{"state_dict": sd, "lr": 0.1}, {"state_dict": sd2, "lr": 0.05}]


def data_attribution_specs():
    Xtr, ytr = vectors(N_TRAIN, seed=11), labels(N_TRAIN)
    Xte, yte = vectors(N, seed=12), labels(N)
    ce = nn.CrossEntropyLoss()
    mlp_model = [A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp))]
    loss = [A("loss_fn", ce, [Mutation("string", "ce"), Mutation("None", None)])]
    train = [A(("train_inputs",), Xtr, batch_mutations(Xtr)),
             A(("train_labels", "train_targets"), ytr, label_mutations(N_TRAIN))]
    test = [A(("inputs", "test_inputs"), Xte, batch_mutations(Xte)),
            A(("labels", "test_labels", "test_targets"), yte, label_mutations(N))]
    specs = [
        Spec(_da("i_up_loss"), mlp_model + loss + train + test + [
            A("method", "cg", choice_mutations()), A("l2", 0.5, real_mutations()),
            A("damping", 0.1, real_mutations()), A("seed", 0, seed_mutations()),
            A("batch_size", None, count_mutations(none_ok=True, huge_ok=True))]),
        Spec(_da("i_up_loss"), mlp_model + loss + train + test + [
            A("method", "lissa", []), A("l2", 0.5), A("damping", 0.1), A("depth", 5, count_mutations()),
            A("scale", 10.0, real_mutations(none_ok=True)), A("repeats", 1, count_mutations())],
             label="i_up_loss(method='lissa')"),
        Spec(_da("i_up_loss"), mlp_model + loss + train + test + [
            A("method", "arnoldi", []), A("l2", 0.5), A("damping", 0.1), A("arnoldi_dim", 8, count_mutations(none_ok=True)),
            A("rank", 4, count_mutations(none_ok=True))], label="i_up_loss(method='arnoldi')"),
        Spec(_da("leave_one_out"), mlp_model + loss + train + test + [
            A("indices", [1, 2], index_mutations(N_TRAIN)), A("l2", 0.01, real_mutations()),
            A("max_iter", 50, count_mutations()), A("progress", False, bool_mutations())]),
        Spec(_da("inverse_hvp"), [A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp)[1:])] + loss + train + [
            A("vectors", torch.ones(2, 8 * D + 8 + 3 * 8 + 3),
              [Mutation("wrong length", torch.ones(2, 5)), Mutation("NaN", _nan), Mutation("empty", torch.ones(0, 5)),
               Mutation("numpy", lambda v: v.numpy(), EITHER, "same")]),
            A("l2", 0.5, real_mutations()), A("damping", 0.1, real_mutations()),
            A("method", "cg", choice_mutations()), A("seed", 0, seed_mutations())]),
        # fit trains the model: a train-mode BatchNorm model's statistics change by design
        Spec(_da("fit"), [A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp)[1:])] + loss + [A(("train_inputs", "inputs"), Xtr, batch_mutations(Xtr)),
                                             A(("train_labels", "targets", "labels"), ytr, label_mutations(N_TRAIN)),
                                             A("l2", 0.01, real_mutations()), A("max_iter", 20, count_mutations())],
             mutates_model=True),
        Spec(_da("tracin_cp"), mlp_model + [A("checkpoints", _ckpts(), [Mutation("empty", []), Mutation("None", None),
                                                                         Mutation("one dict", lambda v: v[0])])]
             + loss + train + test + [A("batch_size", 4, count_mutations(huge_ok=True)),
                                      A("normalize", False, bool_mutations()), A("progress", False, bool_mutations())]),
        Spec(_da("self_influence"), mlp_model + [A("checkpoints", _ckpts())] + loss + [
            A(("train_inputs", "inputs"), Xtr, batch_mutations(Xtr)),
            A(("train_labels", "targets", "labels"), ytr, label_mutations(N_TRAIN)),
            A("batch_size", 4, count_mutations(huge_ok=True)), A("progress", False)]),
        Spec(_da("grad_dot"), mlp_model + loss + train + test + [A("batch_size", 4, count_mutations(huge_ok=True))]),
        Spec(_da("grad_cos"), mlp_model + loss + train + test),
        Spec(_da("per_example_grads"), mlp_model + loss + [
            A("inputs", Xtr, batch_mutations(Xtr)), A(("labels", "targets"), ytr, label_mutations(N_TRAIN)),
            A("layers", None, [Mutation("typo", ["fc9"]), Mutation("int", 3)]),
            A("batch_size", 4, count_mutations(huge_ok=True))]),
        Spec(_da("hessian_vector_product"), [A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp)[1:])] + loss + [
            A("inputs", Xtr, batch_mutations(Xtr)), A(("labels", "targets"), ytr, label_mutations(N_TRAIN)),
            A("vectors", torch.ones(2, 8 * D + 8 + 3 * 8 + 3),
              [Mutation("wrong length", torch.ones(2, 5)), Mutation("NaN", _nan), Mutation("empty", torch.ones(0, 5))])]),
        Spec(_da("hessian_matrix"), mlp_model + loss + [
            A("inputs", Xtr, batch_mutations(Xtr)), A(("labels", "targets"), ytr, label_mutations(N_TRAIN)),
            A("max_params", 10000, count_mutations())]),
        Spec(_da("flip_labels"), [A("labels", ytr, label_mutations(N_TRAIN, alone=True)),
                                  A("fraction", 0.3, real_mutations(unit=True)),
                                  A("n_classes", N_CLASSES, [Mutation("too small", 2), Mutation("zero", 0),
                                                             Mutation("float", 3.5), Mutation("bool", True)]),
                                  A("seed", 0, seed_mutations())]),
        Spec(_da("detection_curve"), [A("scores", torch.linspace(0, 1, N_TRAIN), tensor_mutations()),
                                      A("flagged", torch.arange(N_TRAIN) < 3,
                                        [Mutation("wrong length", torch.ones(3, dtype=torch.bool)),
                                         Mutation("float", torch.rand(N_TRAIN)), Mutation("None", None)]),
                                      A("fractions", None, [Mutation("above 1", [0.5, 1.5]),
                                                            Mutation("NaN", [float("nan")])])]),
        Spec(_da("detection_rate"), [A("scores", torch.linspace(0, 1, N_TRAIN), tensor_mutations()),
                                     A("flagged", torch.arange(N_TRAIN) < 3,
                                       [Mutation("wrong length", torch.ones(3, dtype=torch.bool))]),
                                     A("fraction", 0.3, real_mutations(unit=True))]),
        Spec(_da("recall_at_k"), [A("scores", torch.linspace(0, 1, N_TRAIN), tensor_mutations()),
                                  A("flagged", torch.arange(N_TRAIN) < 3,
                                    [Mutation("wrong length", torch.ones(3, dtype=torch.bool))]),
                                  A("k", 3, bounded_int_mutations(N_TRAIN, none_ok=True))]),
        Spec(_da("add_trigger"), [A(("inputs", "images"), images(), batch_mutations(images(), False)),
                                  A("size", 2, bounded_int_mutations(8)), A("value", 1.0, real_mutations(positive=False)),
                                  A("corner", "bottom-right", choice_mutations())]),
        Spec(_da("plant_backdoor"), [A(("inputs", "train_inputs"), images(N_TRAIN), batch_mutations(images(N_TRAIN), False)
                                       + [Mutation("flat (N, d) data", lambda v: v.flatten(1), EITHER)]),
                                     A(("labels", "train_labels", "targets"), ytr, label_mutations(N_TRAIN, inferred=True)),
                                     A("n_poison", 3, bounded_int_mutations(N_TRAIN)),
                                     A("target_class", 1, bounded_int_mutations(N_CLASSES - 1, zero_ok=True) +
                                       [Mutation("nonexistent class", 10 ** 3)]),
                                     A("size", 2, bounded_int_mutations(8)), A("seed", 0, seed_mutations())]),
        Spec(_da("RepresenterPoints"), [A(("features", "X"), vectors(N_TRAIN, seed=13), batch_mutations(vectors(N_TRAIN), False)),
                                        A(("labels", "y", "train_labels", "targets"), ytr,
                                          label_mutations(N_TRAIN, inferred=True)),
                                        A("l2", 0.01, real_mutations()), A("max_iter", 50, count_mutations())],
             call=lambda cls, features, l2, max_iter, **kw: cls(l2=l2, max_iter=max_iter).fit(
                 features, *kw.values()).alpha_, label="RepresenterPoints.fit"),
    ]
    specs += tda_object_specs(Xtr, ytr, Xte, yte, ce)
    return specs


def _tda(method):
    """call(cls, model, train_inputs, train_labels, [inputs, labels, k, proponents], **options)."""
    def call(cls, model, train_inputs, train_labels, inputs=None, labels=None, k=None, proponents=True, **options):
        if cls.__name__ == "RepresenterPoints":
            obj = cls(**options).from_model(model, train_inputs, train_labels)
        else:
            obj = cls(model, train_inputs, train_labels, **options)
        if method == "attribute":
            return obj.attribute(inputs, labels)
        if method == "self_influence":
            return obj.self_influence()
        return obj.top_k(inputs, labels, k, proponents=proponents)
    return call


def tda_object_specs(Xtr, ytr, Xte, yte, ce):
    """The captum/dattri-style objects: build once (model + training data), then attribute / self_influence / top_k."""
    def base(bn=True, rep=False):
        make, make_bn = (tiny_feature_mlp, tiny_bn_feature_mlp) if rep else (tiny_mlp, tiny_bn_mlp)
        return [A("model", Fresh(make), model_mutations(make_bn) if bn else model_mutations(make_bn)[1:]),
                A("train_inputs", Xtr, batch_mutations(Xtr)), A("train_labels", ytr, label_mutations(N_TRAIN))]
    test_labels = [m for m in label_mutations(N) if m.label != "None"] + [
        Mutation("None (predicted class)", None, EITHER, "ref", reference=lambda a, name: {**a, name: _predicted(a)})]
    test = [A("inputs", Xte, batch_mutations(Xte)), A("labels", yte, test_labels)]
    specs = []
    options = {
        "InfluenceFunction": [A("loss_fn", ce, [Mutation("string", "ce")]), A("solver", "cg", choice_mutations()),
                              A("l2", 0.5, real_mutations()), A("damping", 0.1, real_mutations()),
                              A("seed", 0, seed_mutations()), A("progress", False, bool_mutations())],
        "TracInCP": [A("checkpoints", _ckpts(), [Mutation("empty", []), Mutation("None", None)]),
                     A("loss_fn", ce, [Mutation("string", "ce")]),
                     A("batch_size", 4, count_mutations(huge_ok=True)), A("normalize", False, bool_mutations())],
        "GradDot": [A("loss_fn", ce, [Mutation("string", "ce")]), A("batch_size", 4, count_mutations(huge_ok=True))],
        "GradCos": [A("loss_fn", ce, [])],
        "RepresenterPoints": [A("l2", 0.01, real_mutations())],
    }
    for name, opts in options.items():
        cand, rp = _da(name), name == "RepresenterPoints"
        plain = [A(a.names, a.value) for a in opts]
        specs.append(Spec(cand, base(rep=rp) + test + opts, call=_tda("attribute"), label=f"{name}.attribute"))
        specs.append(Spec(cand, base(rep=rp) + plain, call=_tda("self_influence"), label=f"{name}.self_influence"))
        specs.append(Spec(cand, base(bn=False, rep=rp) + [A("inputs", Xte), A("labels", yte)] + plain +
                          [A("k", 3, bounded_int_mutations(N_TRAIN)), A("proponents", True, bool_mutations())],
                          call=_tda("top_k"), label=f"{name}.top_k"))
    return specs


def evaluation_specs():
    x = images()
    attr = torch.rand(N, *IMG, generator=_seeded(21))
    masks = (torch.rand(N, 8, 8, generator=_seeded(22)) > 0.6).float()
    masks[:, 2, 2] = 1
    curve = [A("n_steps", 4, count_mutations()),
             A(("baselines", "fill"), "blur", [Mutation("typo", "blurr"), Mutation("NaN", float("nan"))]),
             A("seed", 0, seed_mutations()), A("batch_size", 8, count_mutations(huge_ok=True)),
             A("absolute", False, bool_mutations()), A("output", "prob", choice_mutations())]
    attr_arg = [A("attributions", attr, tensor_mutations())]
    maps = [A("attributions", attr, tensor_mutations()),
            A("masks", masks, [Mutation("wrong shape", torch.ones(N, 3, 3)), Mutation("NaN", _nan),
                               Mutation("empty", torch.ones(0, 8, 8)), Mutation("numpy", lambda v: v.numpy(), EITHER, "same")])]
    specs = [
        Spec(_ev("deletion_curve"), model_args() + attr_arg + curve),
        Spec(_ev("insertion_curve"), model_args() + attr_arg + curve),
        Spec(_ev("aopc"), model_args() + attr_arg + curve + [A("order", "morf", choice_mutations())]),
        Spec(_ev("curve_auc"), [A("fractions", torch.linspace(0, 1, 5),
                                  [Mutation("reversed", torch.linspace(1, 0, 5)), Mutation("NaN", _nan),
                                   Mutation("wrong length", torch.linspace(0, 1, 4)), Mutation("empty", torch.ones(0)),
                                   Mutation("above 1", torch.linspace(0, 2, 5))]),
                                A("scores", torch.rand(N, 5, generator=_seeded(23)),
                                  [Mutation("NaN", _nan), Mutation("inf", _inf), Mutation("3-D", lambda v: v[None, None]),
                                   Mutation("numpy", lambda v: v.numpy(), EITHER, "same")])]),
        Spec(_ev("pointing_game"), maps + [A("tolerance", 1, bounded_int_mutations(8, zero_ok=True))]),
        Spec(_ev("mask_iou"), maps + [A("top_fraction", 0.3, real_mutations(unit=True, none_ok=True))]),
        Spec(_ev("mass_on_mask"), maps + [A("absolute", True, bool_mutations())]),
        Spec(("xaicourse.maps:rank_correlation",), [A("a", attr.reshape(N, -1), tensor_mutations()),
                                                    A("b", torch.rand(N, 64, generator=_seeded(24)), tensor_mutations())]),
        Spec(_ev("feature_map"), [A("attributions", attr, tensor_mutations()), A("absolute", False, bool_mutations())]),
        Spec(_ev("random_attribution"), model_args() + [A("seed", 0, seed_mutations())]),
        Spec(_ev("input_reduction"), model_args() + attr_arg + [
            A(("baselines", "fill"), "blur", [Mutation("typo", "blurr")]), A("step", 8, bounded_int_mutations(64)),
            A("batch_size", 8, count_mutations(huge_ok=True))]),
        Spec(_ev("cascading_randomization"), model_args() + [
            A("method", "gradient", choice_mutations()), A("seed", 0, seed_mutations()),
            A("layers", None, [Mutation("typo", ["conv9"]), Mutation("int", 3)])]),
        Spec(_ev("label_randomization"), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)[1:]),
                                          A(("train_inputs", "X_train"), images(8, seed=27), batch_mutations(images(8))),
                                          A(("train_labels", "y_train"), labels(8), label_mutations(8)),
                                          A("inputs", x, batch_mutations(x)),
                                          A("target", labels(N), target_mutations()),
                                          A("method", "gradient", choice_mutations()),
                                          A("seed", 0, seed_mutations()),
                                          A("train_options", {"epochs": 1, "cache": False, "progress": False},
                                            [Mutation("typo", {"epochz": 1}), Mutation("not a dict", 1)])],
             finite=False),
        Spec(_ev("check_axioms"), [A("method", "gradient", choice_mutations()),
                                   A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp, none_ok=True)),
                                   A("inputs", vectors(2), batch_mutations(vectors(2))),
                                   A("target", 0, target_mutations(2, none_ok=True)),
                                   A("tol", 0.02, real_mutations())]),
        Spec(_ev("evaluate_methods"), model_args() + [
            A("masks", masks, [Mutation("wrong shape", torch.ones(N, 3, 3)), Mutation("NaN", _nan)]),
            A("methods", {"gradient": ("gradient", {})}, [Mutation("typo", {"g": ("gradiant", {})}), Mutation("empty", {}),
                                                           Mutation("not a dict", "gradient")]),
            A("n_steps", 3, count_mutations()), A("sanity_n", 2, count_mutations()),
            A("sanity_layers", 1, count_mutations()), A("progress", False, bool_mutations())]),
        Spec(_ev("fill_baseline") + ("xaicourse._torch:resolve_baselines",),
             [A("inputs", x, batch_mutations(x, False)),
              A(("baselines", "fill"), "noise", [Mutation("typo", "noize")]), A("seed", 0, seed_mutations())],
             label="fill_baseline / resolve_baselines"),
    ]
    return specs


def concepts_specs():
    x = images(8, seed=31)
    cx, rx = images(8, seed=32) * 0.5 + 0.5, images(8, seed=33) * 0.5
    C = "xaicourse.concepts"
    layer = [A("layer", "relu1", layer_mutations())]

    def cav_args():
        return [A("concept_inputs", cx, batch_mutations(cx)), A("random_inputs", rx, batch_mutations(rx)),
                A("seed", 0, seed_mutations())]

    def a_cav():
        from xaicourse.concepts import concept_activation_vector
        try:
            return concept_activation_vector(tiny_cnn(), concept_inputs=cx, random_inputs=rx, layer="relu1")
        except TypeError:
            return concept_activation_vector(tiny_cnn(), "relu1", cx, rx)

    try:
        cav = a_cav()
    except Exception:  # noqa: BLE001 — reported by the spec of concept_activation_vector
        cav = None
    cav_mut = [Mutation("NaN vector", lambda v: v._replace(vector=torch.full_like(v.vector, float("nan")))),
               Mutation("wrong length", lambda v: v._replace(vector=v.vector[:3])),
               Mutation("None", None), Mutation("string", "cav")]
    specs = [
        Spec((f"{C}:concept_activation_vector",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn))] + layer
             + cav_args()),
        Spec((f"{C}:linear_probe",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn))] + layer +
             [A("inputs", torch.cat([cx, rx]), batch_mutations(torch.cat([cx, rx]))),
              A("labels", torch.arange(16) % 2, label_mutations(16, 2)), A("seed", 0, seed_mutations()),
              A("test_fraction", 0.33, real_mutations(unit=True))]),
        Spec((f"{C}:layer_activations",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn))] + layer +
             [A("inputs", x, batch_mutations(x)),     # batch_size=None: the whole batch at once
              A("batch_size", 4, count_mutations(none_ok=True, huge_ok=True))],
             label="concepts.layer_activations"),
    ]
    if cav is not None:
        specs += [
            Spec((f"{C}:directional_derivatives",), model_args(n=8) + layer +
                 [A("cav", cav, cav_mut), A("batch_size", 4, count_mutations(huge_ok=True))]),
            Spec((f"{C}:tcav_score",), model_args(n=8) + layer + [A("cav", cav, cav_mut)]),
        ]
    specs += [
        Spec((f"{C}:tcav",), model_args(n=8) + layer + [
            A("concepts", {"bright": cx}, [Mutation("empty", {}), Mutation("not a dict", "bright"),
                                           Mutation("NaN set", {"bright": _nan(cx)})]),
            A("random_sets", [rx, images(8, seed=34) * 0.5, images(8, seed=35) * 0.5], [Mutation("empty", []), Mutation("None", None)]),
            A("n_random", 2, count_mutations()), A("seed", 0, seed_mutations())], finite=False),
        Spec((f"{C}:intervention_effect",), model_args(n=8) + [
            A("apply_concept", lambda v: v.clamp(0, 1) * 0.5, [Mutation("not callable", "stamp"), Mutation("None", None)]),
            A("batch_size", 4, count_mutations(huge_ok=True))]),
    ]
    return specs


def robustness_specs():
    R = "xaicourse.robustness"
    x = images()
    return [
        Spec((f"{R}:attack_attribution",), model_args() + [A("attribution_fn", "grad_cam", []), A("layer", "conv1"),
                                                          A("kind", "center", []), A("eps", 0.05),
                                                          A(("n_iter", "steps"), 2)], label="attack_attribution (grad_cam)"),
        Spec((f"{R}:attack_attribution",), model_args() + [
            A("attribution_fn", "gradient", choice_mutations()), A("kind", "topk", choice_mutations()),
            A("eps", 0.05, real_mutations()), A(("n_iter", "steps"), 2, count_mutations()),
            A("k", 5, bounded_int_mutations(64)), A("seed", 0, seed_mutations())]),
        Spec((f"{R}:attribution_map",), [A("method", "gradient", choice_mutations())] + model_args() +
             [A("n_samples", 2, count_mutations()), A("n_steps", 4, count_mutations())]),
        Spec((f"{R}:topk_intersection",), [A("a", x[:, 0], tensor_mutations()), A("b", images(seed=41)[:, 0], tensor_mutations()),
                                           A("k", 5, bounded_int_mutations(64))]),
        Spec((f"{R}:center_of_mass",), [A("maps", x[:, 0], tensor_mutations())]),
        Spec((f"{R}:random_sign",), [A(("inputs", "x"), x, batch_mutations(x, False, shape_free=True)), A("eps", 0.05, real_mutations()),
                                     A("seed", 0, seed_mutations())]),
        Spec((f"{R}:smooth_surrogate",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)),
                                          A("beta", 10.0, real_mutations())], post=lambda m: m(images())),
    ]


def featurevis_specs():
    F = "xaicourse.featurevis"
    x = images(8, seed=51)

    def obj():
        from xaicourse.featurevis import channel
        return channel("conv1", 1)
    o = obj()
    obj_mut = [Mutation("channel out of range", lambda v: dataclasses.replace(v, channel=99)),
               Mutation("layer typo", lambda v: dataclasses.replace(v, layer="conv9")),
               Mutation("None", None), Mutation("string", "conv1")]
    return [
        Spec((f"{F}:activation_maximization",), [
            A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)), A("objective", o, obj_mut),
            A("shape", (1, 1, 8, 8), [Mutation("no batch dim", (1, 8, 8), EITHER), Mutation("zero", (0, 1, 8, 8)),
                                       Mutation("float", (1, 1, 8.5, 8)), Mutation("negative", (1, 1, -8, 8))]),
            A(("n_steps", "steps"), 3, count_mutations()), A("lr", 0.05, real_mutations()),
            A("p", 2, [Mutation("unsupported", 3), Mutation("string", "two")]),
            A("radius", 1.0, real_mutations()), A("tv_weight", 0.1, real_mutations()),
            A("tv_kind", "isotropic", choice_mutations()), A("jitter", 1, bounded_int_mutations(None, zero_ok=True)),
            A("blur_every", 2, bounded_int_mutations(None, zero_ok=True)), A("seed", 0, seed_mutations()),
            A("progress", False, bool_mutations())]),
        Spec((f"{F}:top_activating_examples",), [
            A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)), A("objective", o, obj_mut),
            A(("inputs", "dataset"), x, batch_mutations(x)), A("k", 3, bounded_int_mutations(8)),
            A("batch_size", 4, count_mutations(huge_ok=True))]),
        Spec((f"{F}:evaluate_objective",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)),
                                            A("objective", o, obj_mut), A(("inputs", "x"), x, batch_mutations(x))]),
        Spec((f"{F}:layer_sizes",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)),
                                     A(("example", "inputs"), x[0], tensor_mutations())], finite=False),
        Spec((f"{F}:class_logit",), [A("k", 1, bounded_int_mutations(None, zero_ok=True))]),
        Spec((f"{F}:channel",), [A("layer", "conv1", [Mutation("int", 3), Mutation("None", None, EITHER)]),
                                 A("c", 1, bounded_int_mutations(None, zero_ok=True)),
                                 A("reduce", "mean", choice_mutations())]),
        Spec((f"{F}:neuron",), [A("layer", "conv1", [Mutation("int", 3)]),
                                A("c", 1, bounded_int_mutations(None, zero_ok=True)),
                                A("i", 2, bounded_int_mutations(None, zero_ok=True, none_ok=True)),
                                A("j", 2, bounded_int_mutations(None, zero_ok=True, none_ok=True))]),
        Spec((f"{F}:total_variation",), [A(("inputs", "x"), x, batch_mutations(x, False, nobatch_ok=True)),
                                         A("kind", "isotropic", choice_mutations())]),
        Spec((f"{F}:gaussian_blur",), [A(("inputs", "x"), x, batch_mutations(x, False, nobatch_ok=True)),
                                       A("sigma", 1.0, real_mutations())]),
        Spec((f"{F}:data_radius",), [A(("inputs", "X"), x, batch_mutations(x, False, shape_free=True)),
                                     A("p", 2, [Mutation("unsupported", 3), Mutation("string", "two")]),
                                     A("quantile", 0.5, real_mutations(unit=True))]),
        Spec((f"{F}:course_settings",), [A("dataset", "digits", choice_mutations())], positional=("dataset",),
             finite=False),
        Spec((f"{F}:tv_sweep",), [A("model", Fresh(tiny_cnn), model_mutations(tiny_bn_cnn)), A("objective", o, obj_mut),
                                  A("shape", (1, 1, 8, 8), [Mutation("no batch dim", (1, 8, 8), EITHER),
                                                            Mutation("2-D", (8, 8))]),
                                  A("tv_weights", [0.0, 0.1], [Mutation("NaN", [float("nan")]), Mutation("empty", []),
                                                               Mutation("negative", [-1.0]), Mutation("string", "0.1")]),
                                  A(("n_steps", "steps"), 2, count_mutations())]),
    ]


def tsne_specs():
    T = "xaicourse.tsne"
    X = torch.rand(12, 5, generator=_seeded(61), dtype=torch.float64)
    Dm = torch.cdist(X, X) ** 2
    Y = torch.rand(12, 2, generator=_seeded(62), dtype=torch.float64)
    dist = [Mutation("not square", lambda v: v[:, :-1]), Mutation("NaN", _nan), Mutation("negative", lambda v: v - 5),
            Mutation("empty", torch.zeros(0, 0)), Mutation("numpy", lambda v: v.numpy(), EITHER, "same"),
            Mutation("None", None), Mutation("1-D", lambda v: v[0])]

    Pc = torch.full((12, 12), 1 / 11.0, dtype=torch.float64).fill_diagonal_(0)
    Pj = Pc / 12
    try:
        from xaicourse.tsne import conditional_probabilities, joint_probabilities
        Pc = conditional_probabilities(Dm, perplexity=3.0)
        Pj = joint_probabilities(Pc)
    except Exception:  # noqa: BLE001 — reported by the specs below
        pass
    pm = [Mutation("NaN", _nan), Mutation("negative", lambda v: v - 1), Mutation("not square", lambda v: v[:, :-1]),
          Mutation("wrong size", lambda v: v[:-1, :-1])]
    ym = [Mutation("NaN", _nan), Mutation("inf", _inf), Mutation("1-D", lambda v: v[:, 0]),
          Mutation("numpy", lambda v: v.numpy(), EITHER, "same"), Mutation("wrong length", lambda v: v[:-1])]
    ym_alone = ym[:-1] + [Mutation("fewer points", lambda v: v[:-1], EITHER)]
    tsne_call = lambda cls, X, **kw: cls(**kw).fit_transform(X)  # noqa: E731
    return [
        Spec((f"{T}:squared_distances",), [A(("inputs", "X"), X, batch_mutations(X, False))]),
        Spec((f"{T}:conditional_probabilities",), [A("D", Dm, dist), A("perplexity", 3.0, real_mutations() +
                                                                     [Mutation("too large", 50.0)]),
                                                   A("tol", 1e-5, real_mutations()), A(("n_steps", "max_steps"), 50, count_mutations())]),
        Spec((f"{T}:joint_probabilities",), [A("P_cond", Pc, pm)]),
        Spec((f"{T}:student_t_probabilities",), [A("Y", Y, ym_alone)]),
        Spec((f"{T}:kl_divergence",), [A("P", Pj, pm), A("Y", Y, ym)]),
        Spec((f"{T}:kl_gradient",), [A("P", Pj, pm), A("Y", Y, ym), A("exaggeration", 4.0, real_mutations())]),
        Spec((f"{T}:pca_init",), [A(("inputs", "X"), X, batch_mutations(X, False)),
                                  A("n_components", 2, bounded_int_mutations(5))]),
        Spec((f"{T}:TSNE",), [A("X", X, batch_mutations(X, False)), A("perplexity", 3.0, real_mutations()),
                              A("max_iter", 260, count_mutations(none_ok=True)), A("random_state", 0, seed_mutations()),
                              A("n_components", 2, bounded_int_mutations(5)), A("init", "pca", choice_mutations()),
                              A("learning_rate", "auto", [Mutation("typo", "autoo"), Mutation("NaN", float("nan")),
                                                          Mutation("negative", -1.0)])],
             call=tsne_call, label="TSNE.fit_transform"),
    ]


def data_specs():
    Dd = "xaicourse.data"
    x = images(seed=71)
    return [
        Spec((f"{Dd}:make_shapes",), [A("n", 8, bounded_int_mutations(10 ** 7)), A("size", 16, count_mutations()),
                                      A("seed", 0, seed_mutations()),
                                      A("watermark", 0.5, real_mutations(unit=True)),
                                      A("flip_fraction", 0.1, real_mutations(unit=True)),
                                      A("noise", 0.03, real_mutations()),
                                      A("watermark_corner", "random", choice_mutations()),
                                      A("classes", ("circle", "square"), [Mutation("typo", ("circle", "sqare")),
                                                                          Mutation("empty", ()), Mutation("string", "circle"),
                                                                          Mutation("duplicate", ("circle", "circle"))])]),
        Spec((f"{Dd}:add_watermark",), [A(("inputs", "images"), x, batch_mutations(x, False)),
                                        A("corner", 1, bounded_int_mutations(3, zero_ok=True) +
                                          [Mutation("typo string", "top-rigth")])]),
        Spec((f"{Dd}:load_shapes_split",), [A("n_train", 8, bounded_int_mutations(10 ** 7)),
                                            A("n_test", 4, bounded_int_mutations(10 ** 7)),
                                            A("size", 16, count_mutations()), A("seed", 0, seed_mutations())]),
        Spec((f"{Dd}:load_digits_tensors",), [A("test_size", 0.25, real_mutations(unit=True) +
                                                [Mutation("zero", 0.0), Mutation("one", 1.0)]),
                                              A("seed", 0, seed_mutations())]),
        Spec((f"{Dd}:make_sentiment",), [A("n", 8, bounded_int_mutations(10 ** 7)), A("seed", 0, seed_mutations()),
                                         A("length", 12, count_mutations()), A("max_cues", 3, bounded_int_mutations(12))]),
    ]


def constraints_specs():
    Cc = "xaicourse.constraints"
    x = images(seed=81) - 0.5
    g = images(seed=82) - 0.5
    pm = [Mutation("unsupported", 3), Mutation("string", "two"), Mutation("NaN", float("nan")), Mutation("None", None),
          Mutation("string inf", "inf", EITHER)]
    return [
        Spec((f"{Cc}:lp_norm",), [A(("inputs", "x"), x, batch_mutations(x, False, shape_free=True)), A("p", 2, pm),
                                  A("center", 0.0, [Mutation("NaN", float("nan")), Mutation("wrong shape", torch.zeros(3, 2))])]),
        Spec((f"{Cc}:project_lp",), [A(("inputs", "x"), x, batch_mutations(x, False, shape_free=True)), A("radius", 1.0, real_mutations()),
                                     A("p", 2, pm), A("clamp", (-1.0, 1.0), [Mutation("reversed", (1.0, -1.0)),
                                                                             Mutation("NaN", (float("nan"), 1.0)),
                                                                             Mutation("one number", 1.0)])]),
        Spec((f"{Cc}:steepest_direction",), [A(("grad",), g, batch_mutations(g, False, shape_free=True)), A("p", 2, pm)]),
        Spec((f"{Cc}:ascent_step",), [A(("inputs", "x"), x, batch_mutations(x, False, shape_free=True)),
                                      A("grad", g, [Mutation("wrong shape", lambda v: v[:2]), Mutation("NaN", _nan)]),
                                      A("step_size", 0.1, real_mutations()), A("radius", 1.0, real_mutations()),
                                      A("p", 2, pm)]),
    ]


def maps_specs():
    M = "xaicourse.maps"
    x = images(seed=91)
    return [
        Spec((f"{M}:gaussian_blur",), [A("x", x, batch_mutations(x, False, nobatch_ok=True)), A("sigma", 1.0, real_mutations()),
                                       A("truncate", 3.0, real_mutations())]),
        Spec((f"{M}:total_variation",), [A("x", x, batch_mutations(x, False, nobatch_ok=True)), A("kind", "isotropic", choice_mutations()),
                                         A("beta", 2.0, real_mutations()), A("reduction", "mean", choice_mutations())]),
        Spec((f"{M}:to_numpy_image",), [A("img", x[0], [Mutation("NaN", _nan, EITHER), Mutation("empty", torch.zeros(0)),
                                                        Mutation("4-D", lambda v: v[None]), Mutation("None", None),
                                                        Mutation("string", "img")])], finite=False),
    ]


def viz_specs():
    V = "xaicourse.viz"
    attr = images(seed=95) - 0.5
    am = [Mutation("NaN", _nan), Mutation("inf", _inf), Mutation("empty", torch.zeros(0)),
          Mutation("5-D", lambda v: v[None, None]), Mutation("None", None), Mutation("string", "attr"),
          Mutation("numpy", lambda v: v.numpy(), EITHER, "same"), Mutation("list", lambda v: v.tolist(), EITHER, "same")]
    return [
        Spec((f"{V}:seismic_values",), [A("attr", attr[0], am), A("reduce", "sum_squares", choice_mutations())]),
        Spec((f"{V}:seismic_heatmap",), [A("attr", attr[0], am), A("reduce", "sum", choice_mutations())]),
        Spec((f"{V}:overlay",), [A("image", images(seed=96)[0], [Mutation("NaN", _nan), Mutation("wrong size", torch.rand(1, 4, 4)),
                                                                 Mutation("None", None)]),
                                 A("attr", attr[0], am[:4]), A("alpha", 0.5, real_mutations(unit=True)),
                                 A("reduce", "sum", choice_mutations())]),
        Spec((f"{V}:to_numpy_image",), [A("img", attr[0], [Mutation("empty", torch.zeros(0)), Mutation("None", None)])],
             finite=False),
    ]


def models_specs():
    Mo = "xaicourse.models"
    X, y = vectors(8, seed=101), labels(8)

    return [
        Spec((f"{Mo}:train",), [A("model", Fresh(tiny_mlp), [Mutation("not a module", "model"), Mutation("None", None)]),
                                A(("inputs", "X"), X, batch_mutations(X)),
                                A(("labels", "y"), y, label_mutations(8)),
                                A("epochs", 1, count_mutations()), A("lr", 0.01, real_mutations()),
                                A("batch_size", 4, count_mutations(huge_ok=True)), A("seed", 0, seed_mutations()),
                                A("optimizer", "adam", choice_mutations()),
                                A("checkpoint_every", 0, bounded_int_mutations(None, zero_ok=True)),
                                A("cache", False, bool_mutations()), A("progress", False, bool_mutations())],
             post=lambda r: r.history, mutates_model=True, positional=("model",)),
        Spec((f"{Mo}:accuracy",), [A("model", Fresh(tiny_mlp), model_mutations(tiny_bn_mlp)),
                                   A(("inputs", "X"), X, batch_mutations(X)), A(("labels", "y"), y, label_mutations(8)),
                                   A("batch_size", 4, count_mutations(huge_ok=True))]),
    ]


SPEC_GROUPS = {
    "attribution": attribution_specs, "data_attribution": data_attribution_specs, "evaluation": evaluation_specs,
    "concepts": concepts_specs, "robustness": robustness_specs, "featurevis": featurevis_specs,
    "tsne": tsne_specs, "data": data_specs, "constraints": constraints_specs, "maps": maps_specs,
    "viz": viz_specs, "models": models_specs,
}


def run(groups=None, progress=None) -> list[Result]:
    """Run the probe (all groups, or the named ones); returns one ``Result`` per call."""
    out: list[Result] = []
    torch.set_num_threads(1)
    for g in (groups or SPEC_GROUPS):
        try:
            specs = SPEC_GROUPS[g]()
        except Exception as e:  # noqa: BLE001 — a group whose setup fails is reported
            out.append(Result(g, "(setup)", "-", "setup", "-", "raw", f"{type(e).__name__}: {e}"))
            continue
        for spec in specs:
            try:
                run_spec(spec, out)
            except Exception as e:  # noqa: BLE001 — a probe bug must not stop the rest
                out.append(Result(g, spec.label or spec.funcs[0], "-", "probe", "-", "raw",
                                  f"probe error {type(e).__name__}: {e}"))
            if progress:
                progress(g, spec, out)
    return out


def summarise(results):
    classes = ("clear", "sensible", "raw", "silent", "missing")
    total = {c: 0 for c in classes}
    per = {}
    for r in results:
        total[r.outcome] = total.get(r.outcome, 0) + 1
        per.setdefault(r.module, {c: 0 for c in classes})[r.outcome] += 1
    return total, per


def report_markdown(results, seconds=None) -> str:
    total, per = summarise(results)
    lines = ["# API probe report (issue #25)", "",
             "Written by `nice python benchmarks/probe_api.py --report /tmp/briefs/probe_report.md` (the probe: "
             "tests/probe_api.py). clear = ValueError/TypeError naming the argument; sensible = accepted, finite, "
             "equal to the tensor / eval-mode / predicted-class reference; raw = another exception or a message "
             "that does not name the argument; silent = accepted a must-refuse value, NaN/inf, a result that "
             "differs from the reference, or a changed model state. Grouped by outcome, then module.", "",
             f"{len(results)} probes: " + ", ".join(f"{v} {k}" for k, v in total.items())
             + (f" — {seconds:.0f} s" if seconds else ""), "",
             "| module | clear | sensible | raw | silent | missing |", "|---|---|---|---|---|---|"]
    for m, c in sorted(per.items()):
        lines.append(f"| {m} | {c['clear']} | {c['sensible']} | {c['raw']} | {c['silent']} | {c['missing']} |")
    for cls in ("silent", "raw", "missing"):
        rows = [r for r in results if r.outcome == cls]
        lines += ["", f"## {cls} ({len(rows)})", ""]
        if rows:
            lines += ["| module | function | argument | mutation | detail |", "|---|---|---|---|---|"]
            for r in sorted(rows, key=lambda r: (r.module, r.function, r.argument)):
                d = r.detail.replace("|", "\\|").replace("\n", " ")[:200]
                lines.append(f"| {r.module} | {r.function} | {r.argument} | {r.mutation} | {d} |")
    return "\n".join(lines) + "\n"
