"""Torch plumbing every topic shares: layers by name, hooks, eval mode, threads, targets.

* ``resolve_layer(model, layer)`` — a module of ``model`` from itself or its dotted name.
* ``capture(model, layers)`` — record layer outputs during forward passes (forward hooks,
  always removed), optionally replacing them (``replace=``).
* ``hooks(modules, forward=, backward=)`` — register hooks for the duration of a block.
* ``eval_on(model, to=None, freeze=False)`` — eval mode (and a device, frozen parameters) for a
  block; mode, device and ``requires_grad`` are restored afterwards, whatever happens.
* ``torch_threads(k)`` / ``threads_for(device, numel)`` — intra-op CPU threads for a block.
* ``model_device``, ``check_model``, ``check_inputs`` (inputs checked at the door against the
  model: type, dtype, batch rank, channels) and target selection ``target_index`` / ``select``.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from ._validate import as_tensor

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


# ------------------------------------------------------------------ inputs and targets
_CONV = {nn.Conv1d: 3, nn.Conv2d: 4, nn.Conv3d: 5}


def _first_layer(model: nn.Module):
    for m in model.modules():
        if isinstance(m, (nn.Linear, *_CONV)):
            return m
    return None


def check_inputs(model: nn.Module, inputs, name: str = "inputs") -> torch.Tensor:
    """Check a batch for ``model`` at the door; return it on the model's device.

    Raises TypeError for a non-tensor, an integer tensor (int images would be scored as
    garbage) or a dtype different from the model's (float64 inputs for a float32 model), and
    ValueError for an empty batch, NaN/inf, a missing batch dimension or a channel count the
    first layer cannot take — each naming the argument and the fix.
    """
    check_model(model)
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor batch (N, ...), got {type(inputs).__name__}; "
                        f"convert a numpy array with torch.as_tensor(x, dtype=torch.float32)")
    x = as_tensor(name, inputs, min_ndim=2)
    if len(x) == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    want = model_dtype(model)
    if want is not None and x.dtype != want:
        raise TypeError(f"{name} has dtype {x.dtype} but the model's parameters are {want}; convert with "
                        f"{name}.to({want}) (or the model with model.to({x.dtype}))")
    first = _first_layer(model)
    if first is not None:
        for cls, rank in _CONV.items():
            if isinstance(first, cls):
                if x.dim() != rank:
                    raise ValueError(f"{name} must be batched with {rank} dims (N, C, ...) for this model's "
                                     f"{cls.__name__}, got shape {tuple(x.shape)}; add a batch dim with "
                                     f"{name}[None]")
                if x.shape[1] != first.in_channels:
                    raise ValueError(f"{name} has {x.shape[1]} channels but the model's first layer takes "
                                     f"{first.in_channels} (shape (N, {first.in_channels}, ...)), got shape "
                                     f"{tuple(x.shape)}")
        if isinstance(first, nn.Linear) and x.shape[-1] != first.in_features \
                and math.prod(x.shape[1:]) != first.in_features:
            raise ValueError(f"{name} has {math.prod(x.shape[1:])} features per sample but the model's first "
                             f"layer takes {first.in_features}, got shape {tuple(x.shape)}")
    return x.to(model_device(model))


def target_index(target, n: int, n_outputs: int) -> torch.Tensor:
    """``target`` (int, sequence or tensor of ints) → LongTensor of shape (n,), range-checked.

    A float such as 3.7 is refused (TypeError), never rounded to a class.
    """
    if isinstance(target, bool) or target is None:
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r}")
    t = target if isinstance(target, torch.Tensor) else torch.as_tensor(target)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"target must be a class index (int) or one int per sample, got {target!r} "
                        f"(dtype {t.dtype})")
    t = t.long().reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"target must be an int or have one entry per sample ({n}), got {t.numel()}")
    if (t < 0).any() or (t >= n_outputs).any():
        raise ValueError(f"target out of range: model has {n_outputs} outputs, got {t.tolist()}")
    return t


def scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)``, checked to be (N, n_outputs) finite scores."""
    out = model(x)
    if out.dim() != 2:
        raise ValueError(f"model must return (N, n_outputs) scores, got shape {tuple(out.shape)}")
    return out


def select(outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """outputs[i, target[i]] for each i."""
    return outputs.gather(1, target.to(outputs.device)[:, None])[:, 0]


def target_scores(model: nn.Module, x: torch.Tensor, target) -> tuple[torch.Tensor, torch.Tensor]:
    """(f_t(x) of shape (N,), t of shape (N,)): the scores being explained and their classes."""
    out = scores(model, x)
    t = target_index(target, len(x), out.shape[1])
    return select(out, t), t
