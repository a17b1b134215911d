"""Layers, hooks, model state (eval mode, device, frozen parameters), thread counts and the
deprecation helpers: how the package handles a model without changing it."""
from __future__ import annotations

import contextlib
import functools
import warnings

import torch
from torch import nn

from .._validate import rename_kwargs

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
