"""Curvature of the training objective: Hessian-vector products and the explicit Hessian.

The training objective over the chosen parameters θ (all of them, or named layers, see
``parameter_names``) is

    R(θ) = (1/n) Σ_i ℓ(z_i; θ) + (λ/2) ‖θ‖²        (λ = ``l2``)

and its Hessian, with an optional damping term δ added to the diagonal,

    H = (1/n) Σ_i ∇²ℓ(z_i; θ) + (λ + δ) I          shape (P, P).

Hessian-vector products are computed by double backprop (Pearlmutter's trick): first
g(θ) = ∇R(θ) with ``create_graph=True``, then ∇_θ (g(θ)·v) = H v — a cost of about two
backward passes, never forming H. ``TrainingObjective`` keeps the graph of g when the whole
training set fits in one batch, so repeated products (conjugate gradient, LiSSA, Arnoldi) only
pay for the second backward pass. Used by ``influence`` (lecture 05).
"""
from __future__ import annotations

import torch
from torch import nn

from .._torch import eval_on
from .._validate import as_tensor, check_int, check_real, renamed
from ._base import check_data, check_loss, n_outputs  # noqa: F401 — re-exported (their old home)
from .gradients import flat_params, parameter_names

__all__ = ["TrainingObjective", "hessian_vector_product", "hessian_matrix", "mean_loss",
           "check_data", "check_loss", "n_outputs"]


def mean_loss(loss_fn, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The batch mean of ``loss_fn`` whatever its reduction ("mean", "sum" or "none")."""
    loss = loss_fn(outputs, targets)
    if loss.dim() > 0:
        return loss.mean()
    if getattr(loss_fn, "reduction", "mean") == "sum":
        return loss / len(targets)
    return loss


class TrainingObjective:
    """R(θ) = mean loss over (inputs, targets) + (l2/2)‖θ‖² as a function of the flat vector θ
    of the chosen parameters (``names``); the other parameters and buffers stay fixed.

    ``theta`` (P,) is a detached copy of the model's current values. ``hvp(V)`` gives
    (H + damping·I) V for V of shape (P,) or (k, P) (rows = vectors). ``batch_size=None``
    evaluates the whole training set at once and caches ∇R's graph; otherwise the products are
    summed over chunks (less memory, one extra backward pass per chunk and call).
    """

    def __init__(self, model: nn.Module, loss_fn, inputs: torch.Tensor, targets: torch.Tensor, *,
                 layers=None, l2: float = 0.0, damping: float = 0.0, batch_size: int | None = None):
        self.model = model
        self.loss_fn = loss_fn
        self.x, self.y = inputs, targets
        self.n = len(inputs)
        self.l2 = check_real("l2", l2, min=0.0)
        self.damping = check_real("damping", damping, min=0.0)
        self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, min=1)
        self.names = parameter_names(model, layers)
        params = dict(model.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        self.theta = flat_params(model, self.names)
        self.fixed = {n: p.detach() for n, p in params.items() if n not in self.names}
        self.buffers = dict(model.named_buffers())
        self._graph = None

    @property
    def dim(self) -> int:
        return self.theta.numel()

    def unflatten(self, theta: torch.Tensor) -> dict:
        out, start = {}, 0
        for n, s in zip(self.names, self.shapes):
            k = s.numel()
            out[n] = theta[start:start + k].view(s)
            start += k
        return out

    def outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        from torch.func import functional_call
        return functional_call(self.model, ({**self.fixed, **self.unflatten(theta)}, self.buffers), (x,))

    def data_loss(self, theta: torch.Tensor, idx=None) -> torch.Tensor:
        """(1/n) Σ_{i ∈ idx} ℓ(z_i; θ) (all points when idx is None) — without the l2 term."""
        x, y = (self.x, self.y) if idx is None else (self.x[idx], self.y[idx])
        return mean_loss(self.loss_fn, self.outputs(theta, x), y) * (len(x) / self.n)

    def value(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """R(θ) (at the current parameters by default)."""
        theta = self.theta if theta is None else theta
        with eval_on(self.model):
            return self._total(theta, None) + 0.5 * self.l2 * theta.pow(2).sum()

    def _total(self, theta, chunks):
        if chunks is None:
            return self.data_loss(theta)
        return sum(self.data_loss(theta, idx) for idx in chunks)

    def _chunks(self):
        if self.batch_size is None or self.batch_size >= self.n:
            return [None]
        return [torch.arange(s, min(s + self.batch_size, self.n), device=self.x.device)
                for s in range(0, self.n, self.batch_size)]

    def gradient(self) -> torch.Tensor:
        """∇R(θ) at the current parameters, (P,)."""
        theta = self.theta.clone().requires_grad_(True)
        with eval_on(self.model), torch.enable_grad():
            g = sum(torch.autograd.grad(self.data_loss(theta, idx), theta)[0] for idx in self._chunks())
        return g + self.l2 * self.theta

    def _hv_chunk(self, theta, g, V, retain):
        if V.dim() == 1:
            return torch.autograd.grad(g, theta, grad_outputs=V, retain_graph=retain)[0]
        try:
            return torch.autograd.grad(g, theta, grad_outputs=V, retain_graph=retain,
                                       is_grads_batched=True)[0]
        except RuntimeError:  # an op without a batching rule: one vector at a time
            return torch.stack([torch.autograd.grad(g, theta, grad_outputs=v, retain_graph=True)[0]
                                for v in V])

    def hvp(self, V: torch.Tensor, idx=None) -> torch.Tensor:
        """(H + damping·I) V by double backprop; V (P,) or (k, P). ``idx`` restricts the data
        term to those training points, rescaled to a mean (a stochastic estimate of H)."""
        V = V.to(self.theta)
        with eval_on(self.model), torch.enable_grad():
            if idx is not None:
                theta = self.theta.clone().requires_grad_(True)
                g = torch.autograd.grad(self.data_loss(theta, idx) * (self.n / len(idx)), theta,
                                        create_graph=True)[0]
                hv = self._hv_chunk(theta, g, V, retain=False)
            elif self.batch_size is None or self.batch_size >= self.n:
                if self._graph is None:
                    theta = self.theta.clone().requires_grad_(True)
                    g = torch.autograd.grad(self.data_loss(theta), theta, create_graph=True)[0]
                    self._graph = (theta, g)
                theta, g = self._graph
                hv = self._hv_chunk(theta, g, V, retain=True)
            else:
                hv = 0
                for chunk in self._chunks():
                    theta = self.theta.clone().requires_grad_(True)
                    g = torch.autograd.grad(self.data_loss(theta, chunk), theta, create_graph=True)[0]
                    hv = hv + self._hv_chunk(theta, g, V, retain=False)
        return hv.detach() + (self.l2 + self.damping) * V

    def hessian(self, block: int = 256) -> torch.Tensor:
        """The explicit (P, P) matrix H + damping·I, assembled from batched products with the
        identity's rows (``block`` at a time) and symmetrised."""
        P = self.dim
        eye = torch.eye(P, dtype=self.theta.dtype, device=self.theta.device)
        H = torch.cat([self.hvp(eye[s:s + block]) for s in range(0, P, block)])
        return 0.5 * (H + H.T)

    def release(self):
        """Drop the cached graph of ∇R."""
        self._graph = None


@renamed(targets="labels")
def hessian_vector_product(model: nn.Module, loss_fn, inputs: torch.Tensor, labels: torch.Tensor,
                           vectors: torch.Tensor, *, layers=None, l2: float = 0.0, damping: float = 0.0,
                           batch_size: int | None = None) -> torch.Tensor:
    """(H + damping·I) v by double backprop, H the Hessian of the mean training loss over
    (inputs, labels) plus (l2/2)‖θ‖², at the model's current parameters.

    vectors: (P,) or (k, P) in the order of ``parameter_names(model, layers)``. Returns the same
    shape. The model is evaluated in eval mode and left as found.
    """
    x, y = check_data(model, inputs, labels, "inputs", "labels")
    check_loss(model, loss_fn, x, y, "labels")
    obj = TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2, damping=damping,
                            batch_size=batch_size)
    if not isinstance(vectors, torch.Tensor):
        raise TypeError(f"vectors must be a torch.Tensor, got {type(vectors).__name__}")
    as_tensor("vectors", vectors)
    if vectors.dim() not in (1, 2) or vectors.shape[-1] != obj.dim:
        raise ValueError(f"vectors must have shape ({obj.dim},) or (k, {obj.dim}) (one entry per "
                         f"parameter in {layers!r}), got {tuple(vectors.shape)}")
    return obj.hvp(vectors)


@renamed(targets="labels")
def hessian_matrix(model: nn.Module, loss_fn, inputs: torch.Tensor, labels: torch.Tensor, *,
                   layers=None, l2: float = 0.0, damping: float = 0.0, max_params: int = 10_000
                   ) -> torch.Tensor:
    """The explicit Hessian (P, P) of the training objective (see the module docstring).
    Refuses more than ``max_params`` parameters (P² numbers); restrict ``layers`` instead."""
    x, y = check_data(model, inputs, labels, "inputs", "labels")
    check_loss(model, loss_fn, x, y, "labels")
    max_params = check_int("max_params", max_params, min=1)
    obj = TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2, damping=damping)
    if obj.dim > max_params:
        raise ValueError(f"the Hessian would be {obj.dim}×{obj.dim}: more than max_params={max_params} "
                         f"parameters; restrict layers= (e.g. the last layer) or raise max_params")
    return obj.hessian()
