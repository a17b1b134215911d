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

import warnings
from collections.abc import Mapping

import torch
from torch import nn
from tqdm.auto import tqdm

from .._torch import check_inputs, check_model, eval_on, resolve_layer, resolve_target
from .._validate import check_bool, check_int, check_real
from ._base import TrainingDataAttribution, check_loss_fn, default_loss
from .curvature import check_data, check_loss
from .gradients import parameter_names, per_example_grads

__all__ = ["TracInCP", "GradDot", "GradCos", "tracin_cp", "self_influence", "grad_dot", "grad_cos",
           "as_checkpoints", "load_checkpoint"]


# ------------------------------------------------------------------ checkpoints
def as_checkpoints(checkpoints, learning_rates=None) -> list[tuple[dict, float]]:
    """Normalise ``checkpoints`` to a list of ``(state_dict, lr)``.

    Accepts what ``models.train(..., checkpoint_every=k).checkpoints`` returns (dicts with
    ``"state_dict"`` and ``"lr"``), ``(state_dict, lr)`` pairs, or — with ``learning_rates`` (a
    float for all, or one per checkpoint, overriding stored ones) — plain state dicts.
    """
    if isinstance(checkpoints, Mapping):
        raise TypeError("checkpoints must be a list of checkpoints, got one dict; wrap a single checkpoint "
                        "as [checkpoint]")
    if isinstance(checkpoints, (str, bytes)) or not hasattr(checkpoints, "__iter__"):
        raise TypeError(f"checkpoints must be a list of dicts with 'state_dict' and 'lr' (as returned by "
                        f"models.train(..., checkpoint_every=k)) or of (state_dict, lr) pairs, got "
                        f"{type(checkpoints).__name__}")
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("checkpoints is empty: train with models.train(..., checkpoint_every=k) to get some")
    lrs = None
    if learning_rates is not None:
        if isinstance(learning_rates, (list, tuple)) or (isinstance(learning_rates, torch.Tensor)
                                                         and learning_rates.dim() > 0):
            lrs = list(learning_rates)
            if len(lrs) != len(checkpoints):
                raise ValueError(f"learning_rates must be one float or one per checkpoint ({len(checkpoints)}), "
                                 f"got {len(lrs)}")
        else:
            lrs = [learning_rates] * len(checkpoints)
    out = []
    for i, c in enumerate(checkpoints):
        if isinstance(c, Mapping) and "state_dict" in c:
            if "lr" not in c and lrs is None:
                raise ValueError(f"checkpoints[{i}] has no 'lr' entry (the learning rate η_k TracIn weights "
                                 f"it by); pass learning_rates=")
            sd, lr = c["state_dict"], c.get("lr")
        elif isinstance(c, (tuple, list)) and len(c) == 2:
            sd, lr = c
        elif isinstance(c, Mapping) and lrs is not None:
            sd, lr = c, None
        else:
            raise TypeError(f"checkpoints[{i}] must be a dict with 'state_dict' and 'lr', a (state_dict, lr) "
                            f"pair, or a state dict with learning_rates=, got {type(c).__name__}")
        if not isinstance(sd, Mapping):
            raise TypeError(f"checkpoints[{i}]: the state dict must be a mapping name → tensor, got "
                            f"{type(sd).__name__}")
        if lrs is not None:
            lr = check_real(f"learning_rates[{i}]", lrs[i], min=0.0, min_inclusive=False)
        else:
            lr = check_real(f"checkpoints[{i}] learning rate", lr, min=0.0, min_inclusive=False)
        out.append((sd, lr))
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


# ------------------------------------------------------------------ the object
_CACHE_MB = 2048


class TracInCP(TrainingDataAttribution):
    """TracInCP (Pruthi et al., 2020) with the training gradients of every checkpoint cached.

    ``attribute(inputs, labels)[j, i] = Σ_k η_k ∇ℓ(w_k, z_i) · ∇ℓ(w_k, z′_j)`` — TracIn's own
    proponent score, which already follows the package's sign convention: **positive = training
    point i helped test point j** (a proponent: SGD steps on z_i lowered the loss on z′_j),
    negative = opponent.

    Args:
        model: the architecture the checkpoints belong to (its own parameters are restored after
            every call; evaluated in eval mode, so BatchNorm statistics and training flags are
            left as found).
        train_inputs (n, ...), train_labels (n,): the training set.
        checkpoints: list of ``{"state_dict", "lr", ...}`` (``models.train(..., checkpoint_every=k)
            .checkpoints``), ``(state_dict, lr)`` pairs, or plain state dicts with ``learning_rates``.
        learning_rates: η_k — a float for every checkpoint or one per checkpoint; overrides the
            learning rates stored with the checkpoints (needed for plain state dicts).
        loss_fn: ℓ(outputs, labels), default ``nn.CrossEntropyLoss()``; any reduction ("mean",
            "sum", "none"): it is applied to one example at a time (no batch-size rescaling).
        params: None (all trainable parameters), layer name(s) such as ``"fc2"`` (the fast last-layer
            variant) or parameter name(s) such as ``"fc2.weight"`` (captum's ``TracInCPFast``).
        normalize: replace each dot product by the cosine of the two gradients (Σ_k η_k cos).
        batch_size: examples per vectorised gradient batch.
        cache: keep the training gradients of every checkpoint (n × P × K numbers) so that later
            ``attribute`` calls only compute test gradients. Skipped with a RuntimeWarning when they
            would exceed ``cache_mb`` megabytes (then every call recomputes them).
        progress: tqdm bars.
    """

    def __init__(self, model: nn.Module, train_inputs: torch.Tensor, train_labels: torch.Tensor, *, checkpoints,
                 learning_rates=None, loss_fn=None, params=None, normalize: bool = False, batch_size: int = 256,
                 cache: bool = True, cache_mb: float = _CACHE_MB, progress: bool = False):
        check_model(model)
        self.model = model
        self.loss_fn = default_loss(loss_fn)
        self.normalize = check_bool("normalize", normalize)
        self.batch_size = check_int("batch_size", batch_size, min=1)
        self.progress = check_bool("progress", progress)
        self.cache = check_bool("cache", cache)
        self.cache_mb = check_real("cache_mb", cache_mb, min=0.0)
        self.checkpoints = as_checkpoints(checkpoints, learning_rates)
        self.x, self.y = check_data(model, train_inputs, train_labels, "train_inputs", "train_labels")
        self._train_device = train_inputs.device
        check_loss(model, self.loss_fn, self.x, self.y, "train_labels")
        self.n_train = len(self.x)
        self.params = params
        self._layers, self._cols = _resolve(model, params)
        self._head = _output_layer(model, self._layers, self.x)
        self._G = None

    # -- gradients
    def _g(self, x, y):
        g = _grads(self.model, self.loss_fn, x, y, self._layers, self._cols, self.batch_size, self._head)
        return _unit(g) if self.normalize else g

    def _each_checkpoint(self, desc):
        """Yield (k, lr) with the model holding checkpoint k; the model's own state is restored."""
        with _restored(self.model):
            for k, (sd, lr) in enumerate(tqdm(self.checkpoints, desc=desc, disable=not self.progress, leave=False)):
                if sd is not None:
                    load_checkpoint(self.model, sd, where=f"checkpoints[{k}]")
                yield k, lr

    def _train_batches(self):
        for s in range(0, self.n_train, self.batch_size):
            yield s, self._g(self.x[s:s + self.batch_size], self.y[s:s + self.batch_size])

    def train_gradients(self) -> list[torch.Tensor] | None:
        """The cached training gradients, one (n, P) tensor per checkpoint (unit rows when
        ``normalize``); None when caching is off or over budget."""
        if self._G is None and self.cache:
            P = len(self._cols) if self._cols is not None else sum(
                dict(self.model.named_parameters())[n].numel() for n in parameter_names(self.model, self._layers))
            mb = self.n_train * P * len(self.checkpoints) * self.x.element_size() / 2 ** 20
            if mb > self.cache_mb:
                warnings.warn(f"TracInCP: caching the training gradients needs {mb:.0f} MB > cache_mb={self.cache_mb:g}; "
                              f"recomputing them on every call instead (raise cache_mb, or restrict params=)",
                              RuntimeWarning, stacklevel=3)
                self.cache = False
                return None
            G = []
            for _k, _lr in self._each_checkpoint("TracInCP training gradients"):
                G.append(torch.cat([g for _, g in self._train_batches()]))
            self._G = G
        return self._G

    def _test(self, inputs, labels, names=("inputs", "labels")):
        x = check_inputs(self.model, inputs, names[0])
        if labels is None:
            labels = resolve_target(self.model, x, None)
        x, y = check_data(self.model, x, labels, *names)
        check_loss(self.model, self.loss_fn, x, y, names[1])
        return x, y

    # -- scores
    def attribute(self, inputs, labels) -> torch.Tensor:
        """TracInCP scores Σ_k η_k ∇ℓ(w_k, z_i)·∇ℓ(w_k, z′_j) → (n_test, n_train); positive =
        proponent. labels None = the model's predicted classes (at its current parameters).
        On the inputs' device, in their dtype."""
        return self._attribute(inputs, labels)

    def _attribute(self, inputs, labels, names=("inputs", "labels")):
        xt, yt = self._test(inputs, labels, names)
        G = self.train_gradients()
        out = None
        for k, lr in self._each_checkpoint("TracInCP checkpoints"):
            g_t = self._g(xt, yt)
            if out is None:
                out = torch.zeros(len(g_t), self.n_train, dtype=g_t.dtype, device=g_t.device)
            if G is not None:
                out += lr * (g_t @ G[k].T)
            else:
                for s, g_tr in self._train_batches():
                    out[:, s:s + len(g_tr)] += lr * (g_t @ g_tr.T)
        return _on_inputs(out.detach(), inputs)

    def self_influence(self) -> torch.Tensor:
        """Σ_k η_k ‖∇ℓ(w_k, z_i)‖² → (n_train,) (with ``normalize``: Σ_k η_k, the cosine of a gradient
        with itself). Large for mislabelled and atypical points: rank by it to find them."""
        out = torch.zeros(self.n_train, dtype=self.x.dtype, device=self.x.device)
        G = self._G
        if G is not None:
            for (sd, lr), g in zip(self.checkpoints, G):
                out += lr * (g * g).sum(1)
        else:
            for _k, lr in self._each_checkpoint("self-influence checkpoints"):
                for s, g in self._train_batches():
                    out[s:s + len(g)] += lr * (g * g).sum(1).detach()
        return out.to(self._train_device)


class GradDot(TracInCP):
    """Grad-Dot: ∇ℓ(w, z_i) · ∇ℓ(w, z′_j) at the model's current parameters w — TracInCP with one
    checkpoint (the final weights) and η = 1. Same methods and sign (positive = proponent)."""

    _normalize = False

    def __init__(self, model: nn.Module, train_inputs, train_labels, *, loss_fn=None, params=None,
                 batch_size: int = 256, cache: bool = True, progress: bool = False):
        check_model(model)
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        super().__init__(model, train_inputs, train_labels, checkpoints=[(state, 1.0)], loss_fn=loss_fn,
                         params=params, normalize=self._normalize, batch_size=batch_size, cache=cache,
                         progress=progress)


class GradCos(GradDot):
    """Grad-Cos: cos(∇ℓ(w, z_i), ∇ℓ(w, z′_j)) at the current parameters w (GradDot with unit gradients)."""

    _normalize = True


def _on_inputs(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    dtype = like.dtype if like.dtype.is_floating_point else t.dtype
    return t.to(device=like.device, dtype=dtype)


# ------------------------------------------------------------------ functions (thin wrappers)
def _require_labels(labels, name="test_labels"):
    if labels is None:
        raise TypeError(f"{name} must be the labels of the test points (n_test,) — the functions need them; "
                        f"TracInCP(...).attribute(inputs, None) explains the predicted classes")


def tracin_cp(model: nn.Module, checkpoints, loss_fn, train_inputs: torch.Tensor, train_labels: torch.Tensor,
              test_inputs: torch.Tensor, test_labels: torch.Tensor, *, layers=None, normalize: bool = False,
              batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """TracInCP scores S[j, i] = Σ_k η_k ∇ℓ(w_k, z_i) · ∇ℓ(w_k, z′_j) → (n_test, n_train);
    positive = proponent (the package's convention). One call of
    ``TracInCP(model, train_inputs, train_labels, checkpoints=..., params=layers, ...).attribute(test_inputs, test_labels)``
    (use the object for several test batches: it caches the training gradients).

    model: the architecture the checkpoints belong to; its own parameters are restored on exit.
    checkpoints: list of ``{"state_dict", "lr", ...}`` (``models.train(..., checkpoint_every=k)
    .checkpoints``) or ``(state_dict, lr)`` pairs; η_k is the learning rate stored with w_k.
    loss_fn: ``ℓ(outputs, labels)``, e.g. ``nn.CrossEntropyLoss()`` — any reduction ("mean", "sum",
    "none"): it is applied to one example at a time.
    layers: None (all trainable parameters), layer name(s) such as ``"fc2"`` or parameter name(s)
    such as ``"fc2.weight"``. normalize: cosines instead of dot products. Options are keyword-only.
    Returns (M, N) on the test inputs' device, in their dtype (it was always a CPU tensor before).
    """
    _require_labels(test_labels)
    obj = TracInCP(model, train_inputs, train_labels, checkpoints=checkpoints, loss_fn=check_loss_fn(loss_fn),
                   params=layers, normalize=normalize, batch_size=batch_size, cache=False, progress=progress)
    return obj._attribute(test_inputs, test_labels, ("test_inputs", "test_labels"))


def self_influence(model: nn.Module, checkpoints, loss_fn, inputs: torch.Tensor, labels: torch.Tensor, *,
                   layers=None, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Self-influence s_i = TracInCP(z_i, z_i) = Σ_k η_k ‖∇ℓ(w_k, z_i)‖² → (N,), in O(N)
    (``TracInCP(...).self_influence()``). Mislabelled and atypical points have large self-influence:
    rank by it to find them. Arguments as in ``tracin_cp``; on the inputs' device."""
    return TracInCP(model, inputs, labels, checkpoints=checkpoints, loss_fn=check_loss_fn(loss_fn), params=layers,
                    batch_size=batch_size, cache=False, progress=progress).self_influence()


def grad_dot(model: nn.Module, loss_fn, train_inputs, train_labels, test_inputs, test_labels, *, layers=None,
             batch_size: int = 256) -> torch.Tensor:
    """Grad-Dot baseline: ∇ℓ(w, z_i) · ∇ℓ(w, z′_j) at the model's current parameters w → (M, N)
    (``GradDot(...).attribute``)."""
    _require_labels(test_labels)
    return GradDot(model, train_inputs, train_labels, loss_fn=check_loss_fn(loss_fn), params=layers,
                   batch_size=batch_size, cache=False)._attribute(test_inputs, test_labels, ("test_inputs", "test_labels"))


def grad_cos(model: nn.Module, loss_fn, train_inputs, train_labels, test_inputs, test_labels, *, layers=None,
             batch_size: int = 256) -> torch.Tensor:
    """Grad-Cos baseline: cos(∇ℓ(w, z_i), ∇ℓ(w, z′_j)) at the current parameters w → (M, N)
    (``GradCos(...).attribute``)."""
    _require_labels(test_labels)
    return GradCos(model, train_inputs, train_labels, loss_fn=check_loss_fn(loss_fn), params=layers,
                   batch_size=batch_size, cache=False)._attribute(test_inputs, test_labels, ("test_inputs", "test_labels"))
