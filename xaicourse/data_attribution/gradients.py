"""Per-example gradients ∇_θ ℓ(z_i; θ) for every training or test point — the one helper that
influence functions, representer points and TracIn share.

Vectorised with ``torch.func``: ``vmap(grad(loss of one example))`` over the batch, evaluated with
``functional_call`` on the chosen parameters (all of them, or those of named layers such as the
last layer ``"fc2"``). The loss is computed on one example at a time, so ``loss_fn`` with
reduction "mean" or "sum" gives the same per-example gradient (captum's ``TracInCP`` scales by the
batch size when the reduction is "mean": a trap we avoid by construction).
"""
from __future__ import annotations

import torch
from torch import nn
from tqdm.auto import tqdm

from .._torch import eval_on, resolve_layer
from .._validate import check_int, renamed
from ._base import check_data, check_loss, check_loss_fn

__all__ = ["parameter_names", "flat_params", "per_example_grads"]


def parameter_names(model: nn.Module, layers=None) -> list[str]:
    """Names of the trainable parameters used: all of them (``layers=None``) or those of the
    given layers (a name/module or a list), e.g. ``layers="fc2"`` → ["fc2.weight", "fc2.bias"]."""
    if layers is None:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
    else:
        items = layers if isinstance(layers, (list, tuple)) else [layers]
        if not items:
            raise ValueError("layers must name at least one layer (or be None for all parameters)")
        mod_names = {id(m): n for n, m in model.named_modules()}
        names = []
        for layer in items:
            m = resolve_layer(model, layer)
            prefix = mod_names[id(m)]
            names += [f"{prefix}.{n}" for n, p in m.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError(f"no trainable parameters in layers={layers!r}")
    return list(dict.fromkeys(names))


def flat_params(model: nn.Module, names) -> torch.Tensor:
    """The named parameters concatenated into one flat vector (P,)."""
    params = dict(model.named_parameters())
    return torch.cat([params[n].detach().reshape(-1) for n in names])


@renamed(targets="labels")
def per_example_grads(model: nn.Module, loss_fn, inputs: torch.Tensor, labels: torch.Tensor, *,
                      layers=None, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """G[i] = ∇_θ ℓ(model(x_i), y_i) flattened over the chosen parameters → (N, P).

    model: evaluated in eval mode (restored afterwards). loss_fn: e.g. ``nn.CrossEntropyLoss()``
    (any reduction, "none" included: it sees one example at a time). inputs (N, ...), labels (N,) class labels
    (or any per-example target ``loss_fn`` accepts). layers: restrict θ to these layers'
    parameters (see ``parameter_names``). Columns follow ``parameter_names(model, layers)``.
    """
    from torch.func import functional_call, grad, vmap

    check_loss_fn(loss_fn)
    x, labels = check_data(model, inputs, labels, "inputs", "labels")
    check_loss(model, loss_fn, x, labels, "labels")
    batch_size = check_int("batch_size", batch_size, min=1)
    names = parameter_names(model, layers)
    params = dict(model.named_parameters())
    chosen = {n: params[n].detach() for n in names}
    fixed = {n: p.detach() for n, p in params.items() if n not in chosen}
    buffers = dict(model.named_buffers())
    y = labels.to(x.device)

    def loss_one(theta, xi, yi):
        out = functional_call(model, ({**fixed, **theta}, buffers), (xi[None],))
        loss = loss_fn(out, yi[None])
        # one example: reduction "mean", "sum" and "none" (a (1,) tensor) all give ℓ(z_i)
        return loss.sum() if loss.dim() > 0 else loss

    g = vmap(grad(loss_one), in_dims=(None, 0, 0))
    sizes = [chosen[n].numel() for n in names]
    out = None
    with eval_on(model):
        for s in tqdm(range(0, len(x), batch_size), desc="per-example gradients", disable=not progress,
                      leave=False):
            gs = g(chosen, x[s:s + batch_size], y[s:s + batch_size])
            if out is None:  # one preallocated (N, P) block: no per-batch and final concatenation
                out = torch.empty(len(x), sum(sizes), dtype=gs[names[0]].dtype, device=gs[names[0]].device)
            col = 0
            for n, size in zip(names, sizes):
                out[s:s + len(gs[n]), col:col + size] = gs[n].reshape(len(gs[n]), -1)
                col += size
    return out
