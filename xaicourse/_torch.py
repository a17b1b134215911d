"""Torch plumbing every topic shares: layers by name, hooks, eval mode, threads, targets.

* ``resolve_layer(model, layer)`` — a module of ``model`` from itself or its dotted name.
* ``capture(model, layers)`` — record layer outputs during forward passes (forward hooks,
  always removed), optionally replacing them (``replace=``).
* ``hooks(modules, forward=, backward=)`` — register hooks for the duration of a block.
* ``eval_on(model, to=None, freeze=False)`` — eval mode (and a device, frozen parameters) for a
  block; mode, device and ``requires_grad`` are restored afterwards, whatever happens.
* ``torch_threads(k)`` / ``threads_for(device, numel)`` — intra-op CPU threads for a block.
* ``model_device``, ``check_model``, ``check_inputs`` (inputs checked at the door: type, dtype,
  batch rank, finite values, then one probe forward pass of the first sample — the model itself
  says whether it takes this shape) and target selection ``target_index`` / ``select``.
* the one gradient primitive and its helpers (every attribution method uses them):
  ``resolve_target`` (``target=None`` = the predicted class), ``target_gradient`` (∂f_t/∂inputs or
  ∂f_t/∂layer output, ``create_graph=``), ``resolve_baselines`` (the reference input: a number, a
  tensor or "zero" / "blur" / "noise" / "mean"), ``interpolation_path`` and ``quadrature``
  (points and weights in the inputs' dtype), ``layer_activations``.
"""
from __future__ import annotations

import contextlib
import functools
import warnings

import numpy as np
import torch
from torch import nn

from ._validate import as_tensor, check_bool, check_choice, check_int, check_real, rename_kwargs

# ------------------------------------------------------------------ layers
def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of every submodule (what ``layer=`` accepts)."""
    return [n for n, _ in model.named_modules() if n]


def resolve_layer(model: nn.Module, layer) -> nn.Module:
    """``layer`` as a submodule of ``model``: the module itself or its dotted name."""
    if isinstance(layer, str):
        named = dict(model.named_modules())
        if layer == "" or layer not in named:
            raise ValueError(f"layer {layer!r} is not in the model; valid layer names: "
                             f"{', '.join(layer_names(model))}")
        return named[layer]
    if not isinstance(layer, nn.Module):
        raise TypeError(f"layer must be a submodule of the model or its dotted name (str), "
                        f"got {type(layer).__name__}")
    if not any(m is layer for m in model.modules()) or layer is model:
        raise ValueError(f"layer {layer.__class__.__name__} is not a submodule of the model; valid layer "
                         f"names: {', '.join(layer_names(model))}")
    return layer


def last_layer_of_type(model: nn.Module, types) -> str:
    """Name of the last submodule of ``types`` (e.g. the last ``nn.Conv2d`` for Grad-CAM)."""
    found = [n for n, m in model.named_modules() if n and isinstance(m, types)]
    if not found:
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise ValueError(f"the model has no {names} layer; pass layer= explicitly "
                         f"(valid layer names: {', '.join(layer_names(model))})")
    return found[-1]


# ------------------------------------------------------------------ hooks
@contextlib.contextmanager
def hooks(modules, forward=None, backward=None):
    """Register ``forward(module, inputs, output)`` and/or full ``backward(module, grad_in,
    grad_out)`` hooks on each module for the duration of the block; always removed."""
    handles = []
    try:
        for m in modules:
            if forward is not None:
                handles.append(m.register_forward_hook(forward))
            if backward is not None:
                handles.append(m.register_full_backward_hook(backward))
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture(model: nn.Module, layers, replace: dict | None = None):
    """Record the outputs of ``layers`` during the forward passes run inside the block.

    layers: a layer (module or dotted name) or a list of them. Yields a dict filled by each
    forward pass: ``{key: output}``, key = the name given (or the module). The outputs keep
    their autograd graph, so ``torch.autograd.grad(score, captured[key])`` gives gradients at
    the layer. replace: ``{key: tensor or fn(output) -> tensor}`` substitutes a layer's output
    (the rest of the network then sees the substitute: how layer-wise methods evaluate g∘h at a
    chosen activation). The hooks are removed on exit.
    """
    items = layers if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("layers must name at least one layer")
    replace = replace or {}
    store: dict = {}
    handles = []
    try:
        for key in items:
            module = resolve_layer(model, key)

            def hook(_m, _inp, out, key=key):
                if key in replace:
                    r = replace[key]
                    out = r(out) if callable(r) else r
                store[key] = out
                return out if key in replace else None
            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------ model state
def model_device(model: nn.Module) -> torch.device:
    """Device of the model's first parameter (or buffer); CPU for a model without either."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    for t in model.parameters():
        if t.dtype.is_floating_point:
            return t.dtype
    return None


def check_model(model, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


@contextlib.contextmanager
def eval_on(model: nn.Module, to=None, freeze: bool = False):
    """Run the block with ``model`` in eval mode (on device ``to`` if given).

    Dropout is off and BatchNorm uses (and does not update) its running statistics, so an
    explanation is deterministic and leaves the model unchanged. ``freeze=True`` also sets
    ``requires_grad=False`` on every parameter for the block (gradients w.r.t. the *input* need
    no graph through the weights, and no ``.grad`` can be left behind). On exit the training
    mode of every submodule, the device and each parameter's ``requires_grad`` are restored.
    """
    check_model(model)
    modes = [(m, m.training) for m in model.modules()]
    old_dev = model_device(model)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        if to is not None:
            model.to(to)
        if freeze:
            for p, _ in flags:
                p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)
        if to is not None and torch.device(to) != old_dev:
            model.to(old_dev)


# ------------------------------------------------------------------ threads
@contextlib.contextmanager
def torch_threads(k: int | None):
    """Temporarily set torch's intra-op CPU threads to ``k`` (None: leave as is)."""
    old = torch.get_num_threads()
    if k is not None and k != old:
        torch.set_num_threads(int(k))
    try:
        yield
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)


SMALL_PROBLEM = 200_000


def threads_for(device: torch.device, numel: int, limit: int = SMALL_PROBLEM) -> int | None:
    """1 for a small CPU problem, else None (torch's default).

    Each op on a small tensor is microseconds of work; splitting it over threads only adds
    synchronisation, which becomes very slow (10–50× measured) when other processes compete for
    the cores — the normal state of a 2-core laptop running a notebook.
    """
    return 1 if torch.device(device).type == "cpu" and numel <= limit else None


# ------------------------------------------------------------------ deprecation helpers
# Old keyword names → new ones, with a DeprecationWarning (one implementation: _validate's).
deprecated_kwargs = rename_kwargs


def layer_keyword(old_order: tuple):
    """Decorator: accept the old call with ``layer`` as a positional argument.

    ``old_order`` names the old positional parameters after ``model`` (e.g. ``("inputs", "target",
    "layer", "distribution")``). When the argument at the old position of ``layer`` is a str or a
    module (which no other argument there can be), the call is mapped to keywords and a
    DeprecationWarning says to pass ``layer=``."""
    at = old_order.index("layer")

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(model, *args, **kwargs):
            if len(args) > at and "layer" not in kwargs and isinstance(args[at], (str, nn.Module)):
                warnings.warn(f"{fn.__name__}: the layer is a keyword argument now: "
                              f"{fn.__name__}(model, ..., layer={args[at]!r})", DeprecationWarning, stacklevel=2)
                if len(args) > len(old_order):
                    raise TypeError(f"{fn.__name__} got {len(args) + 1} positional arguments")
                for name, value in zip(old_order, args):
                    if name in kwargs:
                        raise TypeError(f"{fn.__name__} got multiple values for {name!r}")
                    kwargs[name] = value
                return fn(model, **kwargs)
            return fn(model, *args, **kwargs)
        return wrapper
    return deco


# ------------------------------------------------------------------ inputs and targets
def is_module(model) -> bool:
    return isinstance(model, nn.Module)


def check_forward(model, name: str = "model"):
    """A model for a method that only *evaluates* it: an nn.Module or any callable
    (a plain function, ``lambda x: torch.as_tensor(clf.predict_proba(x.numpy()))``)."""
    if not callable(model):
        raise TypeError(f"{name} must be a torch.nn.Module or a callable inputs -> (N, n_outputs) scores, "
                        f"got {type(model).__name__}")
    return model


def maybe_eval(model, freeze: bool = False):
    """``eval_on(model)`` for a module, nothing for a plain callable."""
    return eval_on(model, freeze=freeze) if isinstance(model, nn.Module) else contextlib.nullcontext()


def _as_scores(out, n: int, what: str = "model") -> torch.Tensor:
    if not isinstance(out, torch.Tensor):
        if isinstance(out, np.ndarray):
            out = torch.as_tensor(out)
        else:
            raise TypeError(f"{what} must return a tensor of scores (N, n_outputs), got {type(out).__name__}")
    if out.dim() != 2 or out.shape[0] != n:
        raise ValueError(f"{what} must return (N, n_outputs) scores for a batch of N = {n}, got shape "
                         f"{tuple(out.shape)} (inputs with an extra or missing dimension?)")
    return out


def _first_layer_hint(model) -> str:
    """A hint for an error message only (never used to refuse inputs: a forward may reorder layers)."""
    if not isinstance(model, nn.Module):
        return ""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            return f" (the first Linear layer in module order takes {m.in_features} features per sample)"
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return f" (the first {type(m).__name__} layer in module order takes {m.in_channels} channels)"
    return ""


def check_inputs(model, inputs, name: str = "inputs", *, allow_int: bool = False, probe: bool = True
                 ) -> torch.Tensor:
    """Check a batch for ``model`` at the door; return it on the model's device.

    Raises TypeError for a non-tensor, an integer tensor (int images would be scored as garbage;
    ``allow_int=True`` for methods that only evaluate the model: then integer inputs pass for a
    plain callable, as bool features, or for a module with an Embedding — token ids) or a dtype different from the
    model's (float64 inputs for a float32 model), and ValueError for an empty batch, NaN/inf or a
    missing batch dimension. Then (``probe=True``) the model is run once on the first sample, in
    eval mode without gradients: a shape it cannot take is reported with the model's own error,
    and its output must be (1, n_outputs) — so an extra leading dimension cannot slip through.
    ``model`` may be any callable (no dtype check, inputs stay where they are).
    """
    check_forward(model)
    if not isinstance(model, nn.Module) and isinstance(inputs, (np.ndarray, list, tuple)):
        inputs = as_tensor(name, inputs, floating=not allow_int)   # a plain callable: array-likes are fine
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor batch (N, ...), got {type(inputs).__name__}; "
                        f"convert with torch.as_tensor(x, dtype=torch.float32)")
    if allow_int and not inputs.dtype.is_floating_point and inputs.dtype != torch.bool \
            and isinstance(model, nn.Module) and not any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()):
        allow_int = False      # integer *images* for a float network would be scored as garbage
    if allow_int and not inputs.dtype.is_floating_point:
        if inputs.is_complex():
            raise TypeError(f"{name} must hold real numbers, got dtype {inputs.dtype}")
        x = as_tensor(name, inputs, min_ndim=2, floating=False)     # integer or bool: evaluated as given
    else:
        x = as_tensor(name, inputs, min_ndim=2)
    if len(x) == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    if isinstance(model, nn.Module):
        want = model_dtype(model)
        if want is not None and x.dtype.is_floating_point and x.dtype != want:
            raise TypeError(f"{name} has dtype {x.dtype} but the model's parameters are {want}; convert with "
                            f"{name}.to({want}) (or the model with model.to({x.dtype}))")
        x = x.to(model_device(model))
    if probe:
        with maybe_eval(model), torch.no_grad():
            try:
                out = model(x[:1])
            except Exception as err:  # noqa: BLE001 — the model's own message, with the shape it got
                raise ValueError(f"the model cannot take {name} of shape {tuple(x.shape)} (per sample "
                                 f"{tuple(x.shape[1:])}): {type(err).__name__}: {err} — {name} must be batched "
                                 f"(N, ...); for a single sample add the batch dimension with {name}[None]"
                                 f"{_first_layer_hint(model)}") from err
        _as_scores(out, 1, f"the model (given {name}[:1] of shape {tuple(x[:1].shape)})")
    return x


def target_index(target, n: int, n_outputs: int) -> torch.Tensor:
    """``target`` (int, sequence or tensor of ints) → LongTensor of shape (n,), range-checked.

    A float such as 3.7 is refused (TypeError), never rounded to a class. (``None`` is resolved
    by ``resolve_target``, which needs the model's prediction.)
    """
    if isinstance(target, bool) or target is None:
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}")
    if isinstance(target, (str, bytes)):
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}")
    try:
        t = target if isinstance(target, torch.Tensor) else torch.as_tensor(target)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}") from None
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r} "
                        f"(dtype {t.dtype})")
    if t.dim() > 1:
        raise ValueError(f"target must be an int or a 1-D sequence of ints, got shape {tuple(t.shape)}")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be an int or have one entry per sample ({n}), got {t.numel()}")
    if (t < 0).any() or (t >= n_outputs).any():
        raise ValueError(f"target out of range: the model has {n_outputs} outputs (classes 0 … {n_outputs - 1}), "
                         f"got {t.unique().tolist()[:10]}")
    return t


def scores(model, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, checked to be (N, n_outputs) scores (numpy output of a callable converted)."""
    return _as_scores(model(x), len(x))


def resolve_target(model, inputs: torch.Tensor, target, *, outputs: torch.Tensor | None = None) -> torch.Tensor:
    """The one rule for ``target``: → LongTensor (N,) of class indices on the inputs' device.

    target: an int, a sequence/tensor of N ints, or None = the model's predicted class (argmax of
    ``model(inputs)``, computed once, model in eval mode, no gradients; a model with one output
    column: class 0). Out-of-range classes and floats are refused. ``outputs`` (N, K): scores
    already computed for ``inputs`` (saves the forward pass).
    """
    if outputs is None:
        inputs = check_inputs(model, inputs, allow_int=True)   # a public entry point: checked like a method
    n = len(inputs)
    if outputs is None:
        with maybe_eval(model), torch.no_grad():
            outputs = scores(model, inputs if target is None else inputs[:1])
    k = outputs.shape[1]
    if target is None:
        if len(outputs) != n:
            with maybe_eval(model), torch.no_grad():
                outputs = scores(model, inputs)
        t = outputs.detach().argmax(1) if k > 1 else torch.zeros(n, dtype=torch.long, device=outputs.device)
        return t.to(inputs.device if isinstance(inputs, torch.Tensor) else t.device)
    return target_index(target, n, k).to(inputs.device if isinstance(inputs, torch.Tensor) else "cpu")


def select(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """outputs[i, target[i]] for each i."""
    return outputs.gather(1, target.to(outputs.device)[:, None])[:, 0]


def target_scores(model, x: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """(f_t(x) of shape (N,), t of shape (N,)): the scores being explained and their classes."""
    out = scores(model, x)
    t = resolve_target(model, x, target, outputs=out)
    return select(out, t), t


# ------------------------------------------------------------------ the gradient primitive
@contextlib.contextmanager
def _layer_output(model: nn.Module, layer, replace=None, leaf: bool = False):
    """Record ``layer``'s output in ``store["out"]`` during the block; downstream modules get a
    clone, so an in-place op after the layer (``ReLU(inplace=True)``) cannot modify the recorded
    tensor (captum does the same). ``replace``: a tensor used as the layer's output instead."""
    module = resolve_layer(model, layer)
    store: dict = {}

    def hook(_m, _inp, out):
        if not isinstance(out, torch.Tensor):
            raise ValueError(f"layer {layer!r} returns {type(out).__name__}, not a tensor; pick a layer with "
                             f"one tensor output")
        if replace is not None:
            if replace.shape != out.shape:
                raise ValueError(f"replacement for layer {layer!r} has shape {tuple(replace.shape)}, the layer "
                                 f"gives {tuple(out.shape)}")
            out = replace
        elif leaf and not out.requires_grad:
            out = out.detach().requires_grad_(True)     # differentiate the rest of the network only
        store["out"] = out
        return out.clone()
    handle = module.register_forward_hook(hook)
    try:
        yield store
    finally:
        handle.remove()


def target_gradient(model: nn.Module, inputs: torch.Tensor, target, *, layer=None, create_graph: bool = False,
                    contrast=None, layer_value: torch.Tensor | None = None, return_outputs: bool = False):
    """∂ Σ_n f_{t_n}(x_n) / ∂ inputs (shape of ``inputs``), or ∂ / ∂(``layer``'s output) when
    ``layer=`` is given (shape of the layer output) — the one place the package differentiates a
    target score. Samples do not interact in eval mode, so row n is the gradient of sample n's score.

    target: as ``resolve_target`` (None = the predicted class). contrast: a second class per
    sample; the quantity is then f_t − f_contrast. create_graph: keep the graph (gradients of
    gradients, attacks); if ``inputs`` already requires grad it is differentiated as given.
    layer_value: a tensor used as the layer's output instead of the computed one (the gradient
    of the rest of the network g at that activation: internal influence).
    return_outputs: also return (model outputs, resolved targets[, layer output]).
    The model runs in eval mode with frozen parameters; its state is restored afterwards.
    """
    check_model(model)
    check_bool("create_graph", create_graph)
    with eval_on(model, freeze=True), torch.enable_grad():
        if inputs.requires_grad and create_graph:
            x = inputs
        else:
            x = inputs.detach().clone().requires_grad_(layer is None)
        if layer_value is not None and not layer_value.requires_grad:
            layer_value = layer_value.detach().clone().requires_grad_(True)
        ctx = (_layer_output(model, layer, layer_value, leaf=True) if layer is not None
               else contextlib.nullcontext({}))
        with ctx as store:
            out = scores(model, x)
        t = resolve_target(model, x, target, outputs=out)
        q = select(out, t)
        if contrast is not None:
            q = q - select(out, target_index(contrast, len(x), out.shape[1]))
        wrt = store["out"] if layer is not None else x
        (g,) = torch.autograd.grad(q.sum(), wrt, create_graph=create_graph)
    if return_outputs:
        return (g, out, t, store["out"]) if layer is not None else (g, out, t)
    return g


def layer_activations(model: nn.Module, inputs, *, layer, batch_size: int | None = None) -> torch.Tensor:
    """h(x): the output of ``layer`` for ``inputs`` (N, ...) → (N, *layer output shape), detached,
    on the inputs' device. batch_size: samples per forward pass (None: all at once)."""
    check_model(model)
    resolve_layer(model, layer)
    x = check_inputs(model, inputs)
    bs = len(x) if batch_size is None else check_int("batch_size", batch_size, min=1)
    out = []
    with eval_on(model, freeze=True), torch.no_grad():
        for s in range(0, len(x), bs):
            with _layer_output(model, layer) as store:
                model(x[s:s + bs])
            out.append(store["out"].detach())
    dev = inputs.device if isinstance(inputs, torch.Tensor) else torch.device("cpu")
    return torch.cat(out).to(dev)


# ------------------------------------------------------------------ baselines and paths
BASELINE_NAMES = ("zero", "blur", "noise", "mean")


def resolve_baselines(inputs: torch.Tensor, baselines, *, sigma: float = 2.0, seed: int = 0,
                      name: str = "baselines") -> torch.Tensor:
    """The reference input x′ for ``inputs`` (N, ...) → a tensor shaped like ``inputs``.

    baselines: None or "zero" (zeros); a number (a constant input); a tensor / array broadcastable
    to ``inputs`` (one input (C, H, W), a batch of one (1, ...), one per sample (N, ...), per channel
    (C, 1, 1), …); "blur" (``maps.gaussian_blur`` of std ``sigma`` px, images (N, C, H, W)); "noise"
    (U(0, 1), ``seed``ed, drawn on the CPU so every device gives the same numbers); "mean" (each
    sample's mean per channel for images, each sample's mean for other inputs).
    Same dtype and device as ``inputs``; integer inputs take integral baselines only.
    """
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"inputs must be a torch.Tensor batch (N, ...), got {type(inputs).__name__}")
    x = as_tensor("inputs", inputs, min_ndim=2, floating=False)
    integer = not x.dtype.is_floating_point
    seed = check_int("seed", seed, min=0)
    if baselines is None:
        baselines = "zero"
    if isinstance(baselines, str):
        check_choice(name, baselines, BASELINE_NAMES)
        if baselines == "zero":
            return torch.zeros_like(x)
        if integer:
            raise TypeError(f"{name}={baselines!r} needs floating-point inputs, got dtype {x.dtype}; pass an "
                            f"integer constant or tensor")
        if baselines == "blur":
            from .maps import gaussian_blur
            if x.dim() != 4:
                raise ValueError(f"{name}='blur' needs images (N, C, H, W), got inputs of shape {tuple(x.shape)}")
            return gaussian_blur(x.detach(), check_real("sigma", sigma, min=0.0, min_inclusive=False))
        if baselines == "noise":
            g = torch.Generator(device="cpu").manual_seed(check_int("seed", seed, min=0))
            return torch.rand(x.shape, generator=g, dtype=x.dtype).to(x.device)
        dims = tuple(range(2, x.dim())) if x.dim() >= 3 else tuple(range(1, x.dim()))
        return x.detach().mean(dims, keepdim=True).expand_as(x).clone()
    if isinstance(baselines, bool):
        if x.dtype == torch.bool:
            return torch.full_like(x, baselines)
        raise TypeError(f"{name} must be a number, a tensor or one of {BASELINE_NAMES}, got {baselines!r}")
    if isinstance(baselines, (int, float, np.integer, np.floating)):
        v = check_real(name, baselines)
        if integer and v != int(v):
            raise ValueError(f"{name}={v} is not an integer but inputs are {x.dtype}")
        return torch.full_like(x, int(v) if integer else v)
    if isinstance(baselines, (list, tuple)):
        raise TypeError(f"{name} must be one number, tensor or name here, got a {type(baselines).__name__} "
                        f"(a list of baselines — expected gradients — is for integrated_gradients)")
    b = as_tensor(name, baselines, floating=not integer, non_empty=True)
    if b.dim() == x.dim() - 1 and b.shape == x.shape[1:]:
        b = b[None]
    if b.dim() > x.dim() or (b.dim() == x.dim() and len(b) not in (1, len(x))):
        raise ValueError(f"{name} of shape {tuple(b.shape)} does not fit inputs {tuple(x.shape)}: give one input "
                         f"{tuple(x.shape[1:])}, a batch of one, one per sample or a number")
    try:
        b = torch.broadcast_to(b.to(device=x.device), x.shape)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(b.shape)} does not broadcast to inputs {tuple(x.shape)}; give one "
                         f"input {tuple(x.shape[1:])}, a batch of one, one per sample or a number") from None
    if integer:
        if b.dtype.is_floating_point and not torch.equal(b, b.round()):
            raise ValueError(f"{name} holds non-integer values but inputs are {x.dtype}")
    return b.to(x.dtype).contiguous()


QUADRATURE_RULES = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def quadrature(n_steps: int, method: str = "gausslegendre", *, dtype: torch.dtype = torch.float64,
               device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points α_k ∈ [0, 1] and weights w_k for ∫₀¹ g(α) dα ≈ Σ_k w_k g(α_k), as tensors of ``dtype``
    (pass the inputs' dtype: float64 inputs get float64 weights, so a 64-point Gauss–Legendre rule
    is exact to ~1e-16, not to float32's 1e-9).

    The same numbers as captum's ``approximation_methods``: ``riemann_left`` α_k = k/n,
    ``riemann_right`` (k+1)/n, ``riemann_middle`` (k+½)/n, all w_k = 1/n; ``riemann_trapezoid``
    α_k = k/(n−1) (n ≥ 2) with w = 1/n, the two end weights halved (captum's weights, which sum to
    (n−1)/n); ``gausslegendre`` the n-point Gauss–Legendre rule mapped to [0, 1].
    """
    check_choice("method", method, QUADRATURE_RULES)
    n = check_int("n_steps", n_steps, min=2 if method == "riemann_trapezoid" else 1)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        a = torch.as_tensor(0.5 * (1 + nodes), dtype=torch.float64)
        w = torch.as_tensor(0.5 * weights, dtype=torch.float64)
    elif method == "riemann_trapezoid":
        w = torch.full((n,), 1 / n, dtype=torch.float64)
        w[0] /= 2
        w[-1] /= 2
        a = torch.linspace(0, 1, n, dtype=dtype if dtype == torch.float32 else torch.float64)
    else:
        start, stop = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
                       "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[method]
        a = torch.linspace(start, stop, n, dtype=dtype if dtype == torch.float32 else torch.float64)
        w = torch.full((n,), 1 / n, dtype=torch.float64)
    return a.to(dtype=dtype, device=device), w.to(dtype=dtype, device=device)


def interpolation_path(inputs: torch.Tensor, baselines: torch.Tensor, alphas) -> torch.Tensor:
    """x′ + α_k (x − x′) for every α_k, stacked step-major: (K·N, ...) (captum's layout).

    baselines: a tensor shaped like ``inputs`` (``resolve_baselines``). Built with ``cat`` of
    copies so the batch keeps the inputs' memory layout: conv kernels then round alike, and so do
    ties in max-pooling (on digits, with many equal zero pixels, a tie decides a gradient).
    """
    if isinstance(alphas, torch.Tensor):
        alphas = alphas.tolist()
    diff = inputs - baselines
    return torch.cat([torch.empty_like(inputs).copy_(baselines + a * diff) for a in alphas])
