"""TracIn: trace a test loss back to the training points that moved it (Pruthi et al., 2020).

Idealised TracIn adds up, over every SGD step t that used training point z, the first-order
change of the test loss that step caused: ``η_t ∇ℓ(w_t, z)·∇ℓ(w_t, z′)``. TracInCP replaces the
steps by a handful of saved checkpoints w_1..w_K with the learning rates η_k in force there:

    TracInCP(z, z′) = Σ_k η_k ∇_θ ℓ(w_k, z) · ∇_θ ℓ(w_k, z′)

Positive scores are *proponents* (training on z lowered the loss on z′), negative scores
*opponents*. Variants: ``layers="fc2"`` keeps only the last layer's parameters (fast, what
captum's ``TracInCPFast`` does with the weight alone: ``layers="fc2.weight"``);
``normalize=True`` replaces each dot product by the cosine of the two gradients;
``self_influence`` is TracInCP(z, z), large for mislabelled or atypical points; ``grad_dot`` /
``grad_cos`` are the one-checkpoint baselines at the current (final) parameters.

**Loss reduction.** Gradients are always those of the per-example loss ℓ(z): ``loss_fn`` sees one
example at a time (the shared ``per_example_grads`` helper), so a loss with reduction "mean",
"sum" or "none" gives the same scores. (captum's TracInCP with the sample-wise trick instead
differentiates the *batch* loss; with reduction "mean" it rescales by the batch size, and a
loss without a ``reduction`` attribute is assumed to sum — pass ``reduction="sum"`` there.)
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .._torch import check_inputs, eval_on, resolve_layer
from .._validate import check_bool, check_int, check_real
from .gradients import parameter_names, per_example_grads

__all__ = ["tracin_cp", "self_influence", "grad_dot", "grad_cos", "as_checkpoints", "load_checkpoint"]


# ------------------------------------------------------------------ checkpoints
def as_checkpoints(checkpoints) -> list[tuple[dict, float]]:
    """Normalise ``checkpoints`` to a list of ``(state_dict, lr)``.

    Accepts what ``models.train(..., checkpoint_every=k).checkpoints`` returns (dicts with
    ``"state_dict"`` and ``"lr"``) or ``(state_dict, lr)`` pairs.
    """
    if isinstance(checkpoints, Mapping):
        raise TypeError("checkpoints must be a list of checkpoints, got one dict; wrap a single checkpoint "
                        "as [checkpoint]")
    if isinstance(checkpoints, (str, bytes)) or not hasattr(checkpoints, "__iter__"):
        raise TypeError(f"checkpoints must be a list of dicts with 'state_dict' and 'lr' (as returned by "
                        f"models.train(..., checkpoint_every=k)) or of (state_dict, lr) pairs, got "
                        f"{type(checkpoints).__name__}")
    out = []
    for i, c in enumerate(checkpoints):
        if isinstance(c, Mapping) and "state_dict" in c:
            if "lr" not in c:
                raise ValueError(f"checkpoints[{i}] has no 'lr' entry (the learning rate η_k TracIn weights "
                                 f"it by)")
            sd, lr = c["state_dict"], c["lr"]
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            sd, lr = c
        else:
            raise TypeError(f"checkpoints[{i}] must be a dict with 'state_dict' and 'lr' or a "
                            f"(state_dict, lr) pair, got {type(c).__name__}")
        if not isinstance(sd, Mapping):
            raise TypeError(f"checkpoints[{i}]: the state dict must be a mapping name → tensor, got "
                            f"{type(sd).__name__}")
        lr = check_real(f"checkpoints[{i}] learning rate", lr, min=0.0, min_inclusive=False)
        out.append((sd, lr))
    if not out:
        raise ValueError("checkpoints is empty: train with models.train(..., checkpoint_every=k) to get some")
    return out


def load_checkpoint(model: nn.Module, state_dict, where: str = "checkpoint") -> None:
    """``model.load_state_dict(state_dict)`` with an error naming missing/unexpected/misshapen keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        raise ValueError(f"{where} does not fit the model: missing keys {missing}, unexpected keys "
                         f"{unexpected}")
    bad = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
           if tuple(state_dict[k].shape) != tuple(v.shape)]
    if bad:
        raise ValueError(f"{where} does not fit the model: shape mismatch (checkpoint vs model) for "
                         f"{', '.join(bad)}")
    model.load_state_dict(state_dict)


class _restored:
    """Context: snapshot the model's state dict, restore it on exit (even after an error)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return self

    def __exit__(self, *exc):
        self.model.load_state_dict(self.saved)
        return False


# ------------------------------------------------------------------ gradients
def _resolve(model: nn.Module, layers):
    """(layers for per_example_grads, column index or None). ``layers`` may name layers ("fc2")
    or single parameters ("fc2.weight"); parameters are taken as columns of their layer's block."""
    if layers is None:
        return None, None
    items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    if not any(isinstance(i, str) and i in params and i not in modules for i in items):
        parameter_names(model, layers)  # validates (clear error for an unknown layer)
        return layers, None
    owner_layers, wanted = [], []
    for item in items:
        if isinstance(item, str) and item in params and item not in modules:
            owner = item.rsplit(".", 1)[0] if "." in item else ""
            if owner == "":
                raise ValueError(f"layers: parameter {item!r} does not belong to a submodule")
            owner_layers.append(owner)
            wanted.append(item)
        else:
            names = parameter_names(model, item)
            owner_layers.append(item)
            wanted += names
    owner_layers = list(dict.fromkeys(owner_layers))
    cols = parameter_names(model, owner_layers)
    sizes = [params[n].numel() for n in cols]
    starts = torch.tensor([0] + sizes).cumsum(0)
    idx = torch.cat([torch.arange(starts[cols.index(n)], starts[cols.index(n)] + params[n].numel())
                     for n in dict.fromkeys(wanted)])
    return owner_layers, idx


def _output_layer(model, layers, x):
    """The module named by ``layers`` when it is a single layer whose output *is* the model's
    output (e.g. ``"fc2"``), else None. Its parameters' gradients then need only its input."""
    if layers is None or (isinstance(layers, (list, tuple)) and len(layers) != 1):
        return None
    layer = resolve_layer(model, layers[0] if isinstance(layers, (list, tuple)) else layers)
    seen = {}
    handle = layer.register_forward_hook(lambda m, i, o: seen.update(out=o))
    try:
        with torch.no_grad(), eval_on(model):
            out = model(check_inputs(model, x[:1]))
    finally:
        handle.remove()
    return layer if seen.get("out") is out else None


def _grads(model, loss_fn, x, y, layers, cols, batch_size, head=None):
    def per_example_loss(out, t):  # loss of one example; "none"/"mean"/"sum" all give ℓ(z)
        return loss_fn(out, t).sum()

    if head is None:
        g = per_example_grads(model, per_example_loss, x, y, layers=layers, batch_size=batch_size)
    else:  # last layer: one batched forward pass to its input, then per-example grads of the head alone
        seen = {}
        handle = head.register_forward_hook(lambda m, i, o: seen.update(inp=i[0].detach()))
        try:
            with torch.no_grad(), eval_on(model):
                model(check_inputs(model, x))
        finally:
            handle.remove()
        g = _head_grads(head, per_example_loss, seen["inp"], y, batch_size, loss_fn)
    return g if cols is None else g[:, cols.to(g.device)]


def _batch_delta(loss_fn, z, y):
    """∂ℓ(z_i, y_i)/∂z_i for every row from ONE backward pass of the batch loss, when the loss is
    known to be a plain sum (or a mean over the batch) of per-example terms; else None."""
    red = getattr(loss_fn, "reduction", None)
    if red in ("sum", "none"):
        scale = 1.0
    elif (red == "mean" and isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and loss_fn.weight is None
          and not y.dtype.is_floating_point and loss_fn.ignore_index < 0 and bool((y >= 0).all())):
        scale = float(len(z))  # unweighted mean over the batch
    else:
        return None
    with torch.enable_grad():
        zz = z.detach().requires_grad_(True)
        (d,) = torch.autograd.grad(loss_fn(zz, y).sum() * scale, zz)
    return d


def _head_grads(head, per_example_loss, inp, y, batch_size, loss_fn=None):
    """Per-example gradients of an output layer's parameters from its input ``inp`` (B, D).

    For ``nn.Linear`` in closed form: with δ = ∂ℓ/∂(output) (B, K) (one cheap vmap over the K
    outputs), ∇_W ℓ = δ xᵀ (an outer product) and ∇_b ℓ = δ — no vmap through the layer. Other
    layers fall back to ``per_example_grads``. Columns follow ``head.named_parameters()``."""
    names = [n for n, p in head.named_parameters() if p.requires_grad]
    if not isinstance(head, nn.Linear) or inp.ndim != 2 or not names:
        return per_example_grads(head, per_example_loss, inp, y, batch_size=batch_size)
    from torch.func import grad, vmap

    y = y.to(inp.device)
    with torch.no_grad():
        z = head(inp)
    delta = _batch_delta(loss_fn, z, y) if loss_fn is not None else None
    if delta is None:  # any other loss: one small vmap over the (B, K) outputs
        delta = vmap(grad(lambda o, t: per_example_loss(o[None], t[None])))(z, y)  # (B, K)
    parts = {"weight": (delta[:, :, None] * inp[:, None, :]).reshape(len(inp), -1), "bias": delta}
    return torch.cat([parts[n] for n in names], 1) if len(names) > 1 else parts[names[0]]


def _unit(g: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return g / g.norm(dim=1, keepdim=True).clamp_min(eps)


def _check_common(model, loss_fn, normalize, batch_size):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable (e.g. nn.CrossEntropyLoss()), got {type(loss_fn).__name__}")
    return check_bool("normalize", normalize), check_int("batch_size", batch_size, min=1)


def _scores(model, ckpts, loss_fn, train_inputs, train_targets, test_inputs, test_targets, layers,
            normalize, batch_size, progress, desc):
    layers_, cols = _resolve(model, layers)
    head = _output_layer(model, layers_, test_inputs)
    n_train = len(train_inputs)
    out = None
    with _restored(model):
        for k, (sd, lr) in enumerate(tqdm(ckpts, desc=desc, disable=not progress, leave=False)):
            if sd is not None:
                load_checkpoint(model, sd, where=f"checkpoints[{k}]")
            g_test = _grads(model, loss_fn, test_inputs, test_targets, layers_, cols, batch_size, head)
            if normalize:
                g_test = _unit(g_test)
            if out is None:
                out = torch.zeros(len(g_test), n_train, dtype=g_test.dtype, device=g_test.device)
            for s in range(0, n_train, batch_size):
                g_tr = _grads(model, loss_fn, train_inputs[s:s + batch_size], train_targets[s:s + batch_size],
                              layers_, cols, batch_size, head)
                if normalize:
                    g_tr = _unit(g_tr)
                out[:, s:s + len(g_tr)] += lr * (g_test @ g_tr.T)
    return out.detach().cpu()


# ------------------------------------------------------------------ public API
def tracin_cp(model: nn.Module, checkpoints, loss_fn, train_inputs: torch.Tensor, train_targets: torch.Tensor,
              test_inputs: torch.Tensor, test_targets: torch.Tensor, layers=None, normalize: bool = False,
              batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """TracInCP scores S[j, i] = Σ_k η_k ∇ℓ(w_k, z_i) · ∇ℓ(w_k, z′_j) → (n_test, n_train).

    model: the architecture the checkpoints belong to; its own parameters are restored on exit.
    checkpoints: list of ``{"state_dict", "lr", ...}`` (``models.train(..., checkpoint_every=k)
    .checkpoints``) or ``(state_dict, lr)`` pairs; η_k is the learning rate stored with w_k.
    loss_fn: ``ℓ(outputs (1, K), targets (1,))``, e.g. ``nn.CrossEntropyLoss()`` — any reduction
    ("mean", "sum", "none"): it is applied to one example at a time.
    train_inputs (N, ...), train_targets (N,); test_inputs (M, ...), test_targets (M,).
    layers: None (all trainable parameters), layer name(s) such as ``"fc2"`` (the fast last-layer
    variant) or parameter name(s) such as ``"fc2.weight"``.
    normalize: replace each dot product by the cosine of the two gradients (Σ_k η_k cos).
    batch_size: examples per vectorised gradient batch. Returns a CPU tensor (M, N).
    """
    normalize, batch_size = _check_common(model, loss_fn, normalize, batch_size)
    ckpts = as_checkpoints(checkpoints)
    return _scores(model, ckpts, loss_fn, train_inputs, train_targets, test_inputs, test_targets, layers,
                   normalize, batch_size, progress, "TracInCP checkpoints")


def self_influence(model: nn.Module, checkpoints, loss_fn, inputs: torch.Tensor, targets: torch.Tensor,
                   layers=None, batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """Self-influence s_i = TracInCP(z_i, z_i) = Σ_k η_k ‖∇ℓ(w_k, z_i)‖² → (N,).

    The diagonal of ``tracin_cp(..., inputs, targets, inputs, targets)`` computed in O(N)
    instead of O(N²). Mislabelled and atypical points have large self-influence: rank by it to
    find them. Arguments as in ``tracin_cp``.
    """
    _, batch_size = _check_common(model, loss_fn, False, batch_size)
    ckpts = as_checkpoints(checkpoints)
    layers_, cols = _resolve(model, layers)
    head = _output_layer(model, layers_, inputs)
    out = torch.zeros(len(inputs))
    with _restored(model):
        for k, (sd, lr) in enumerate(tqdm(ckpts, desc="self-influence checkpoints", disable=not progress,
                                          leave=False)):
            load_checkpoint(model, sd, where=f"checkpoints[{k}]")
            for s in range(0, len(inputs), batch_size):
                g = _grads(model, loss_fn, inputs[s:s + batch_size], targets[s:s + batch_size], layers_, cols,
                           batch_size, head)
                out[s:s + len(g)] += lr * (g * g).sum(1).detach().cpu()
    return out


def grad_dot(model: nn.Module, loss_fn, train_inputs, train_targets, test_inputs, test_targets, layers=None,
             batch_size: int = 256) -> torch.Tensor:
    """Grad-Dot baseline: ∇ℓ(w, z_i) · ∇ℓ(w, z′_j) at the model's current parameters w → (M, N)."""
    _, batch_size = _check_common(model, loss_fn, False, batch_size)
    return _scores(model, [(None, 1.0)], loss_fn, train_inputs, train_targets, test_inputs, test_targets,
                   layers, False, batch_size, False, "")


def grad_cos(model: nn.Module, loss_fn, train_inputs, train_targets, test_inputs, test_targets, layers=None,
             batch_size: int = 256) -> torch.Tensor:
    """Grad-Cos baseline: cos(∇ℓ(w, z_i), ∇ℓ(w, z′_j)) at the current parameters w → (M, N)."""
    _, batch_size = _check_common(model, loss_fn, False, batch_size)
    return _scores(model, [(None, 1.0)], loss_fn, train_inputs, train_targets, test_inputs, test_targets,
                   layers, True, batch_size, False, "")
