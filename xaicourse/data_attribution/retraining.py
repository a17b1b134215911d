"""The ground truth of influence functions: training to the optimum (``fit``) and actual
leave-one-out retraining (``leave_one_out``) — lecture 05.
"""
from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from tqdm.auto import tqdm

from .._torch import eval_on
from .._validate import as_tensor, check_bool, check_int, check_real
from .curvature import TrainingObjective, check_data, check_loss, mean_loss

__all__ = ["fit", "leave_one_out", "check_indices"]


def fit(model: nn.Module, loss_fn, inputs: torch.Tensor, labels: torch.Tensor, *, l2: float = 0.0,
        layers=None, drop=None, damping: float = 0.0, tol: float | None = None, max_iter: int = 1000) -> dict:
    """Minimise (1/n) Σ_{i ∉ drop} ℓ(z_i; θ) + (l2/2)‖θ‖² [+ (damping/2)‖θ − θ₀‖²] over the chosen
    parameters in place, full-batch L-BFGS (strong-Wolfe line search) from the current values θ₀.

    ``drop``: indices whose weight is set to 0 (the others keep weight 1/n: exactly the ε = −1/n
    perturbation of influence functions; this is *not* the same as deleting the rows, which would
    give the others weight 1/(n−1) and so change the balance with the l2 term).
    ``damping`` δ: a proximal term anchored at the starting parameters — the objective whose
    Hessian at θ₀ is H + δI, i.e. the retraining that an influence computed with ``damping=δ``
    linearises. Stops when max |∂R/∂θ| ≤ tol (default 1e-9 in float64, 1e-5 in float32) or after
    max_iter iterations. Returns {"grad_max", "objective", "iterations"}.
    """
    x, y = check_data(model, inputs, labels, "inputs", "labels")
    check_loss(model, loss_fn, x, y, "labels")
    obj = TrainingObjective(model, loss_fn, x, y, layers=layers, l2=l2)
    if tol is None:
        tol = 1e-9 if obj.theta.dtype == torch.float64 else 1e-5
    tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    max_iter = check_int("max_iter", max_iter, min=1)
    damping = check_real("damping", damping, min=0.0)
    keep = None
    if drop is not None:
        mask = torch.ones(obj.n, dtype=torch.bool)
        mask[check_indices("drop", drop, obj.n)] = False
        keep = mask.nonzero().squeeze(1).to(x.device)
    theta = obj.theta.clone().requires_grad_(True)
    anchor = obj.theta.clone()
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=max_iter, history_size=50, tolerance_grad=tol,
                            tolerance_change=0.0, line_search_fn="strong_wolfe")

    def objective():
        out = obj.data_loss(theta, keep) + 0.5 * obj.l2 * theta.pow(2).sum()
        return out + 0.5 * damping * (theta - anchor).pow(2).sum() if damping else out

    def closure():
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with eval_on(model):
        opt.step(closure)
        loss = objective()
        g = torch.autograd.grad(loss, theta)[0]
    state = opt.state[opt._params[0]]
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, v in obj.unflatten(theta.detach()).items():
            params[n].copy_(v)
    return {"grad_max": g.abs().max().item(), "objective": loss.detach().item(), "iterations": int(state.get("n_iter", 0))}


def leave_one_out(model: nn.Module, loss_fn, train_inputs: torch.Tensor, train_labels: torch.Tensor,
                  test_inputs: torch.Tensor, test_labels: torch.Tensor, indices, *, l2: float = 0.0,
                  layers=None, damping: float = 0.0, refit: bool = False, tol: float | None = 1e-9,
                  max_iter: int = 1000, dtype: torch.dtype | None = torch.float64,
                  progress: bool = False) -> torch.Tensor:
    """The actual change of each test loss when training point i is removed and the model
    retrained: ΔL[k, j] = ℓ(z_test_k; θ̂_{−i_j}) − ℓ(z_test_k; θ̂) → (n_test, len(indices)).

    The ground truth influence functions approximate (ΔL ≈ −I_up,loss / n), computed **at the
    model's own parameters θ̂** — the same θ̂ at which you computed the influence (so train the
    model to the optimum once, e.g. with ``fit``, and pass it to both). For each i a copy (cast to
    ``dtype``, float64 by default: the changes are O(1/n) and need the precision) is refit from θ̂
    (warm start) with z_i's weight set to 0 — objective (1/n) Σ_{j≠i} ℓ(z_j) + (l2/2)‖θ‖² — by
    full-batch L-BFGS until max |∂R/∂θ| ≤ ``tol`` or ``max_iter`` iterations (see ``fit``). Only the
    parameters of ``layers`` are retrained. The model itself is unchanged.

    ``damping`` δ > 0 adds (δ/2)‖θ − θ̂‖² to the retraining objective: the retraining whose
    linearisation has Hessian H + δI, i.e. what an influence computed with ``damping=δ`` predicts
    (a damped influence is *not* an estimate of plain leave-one-out; compare like with like).

    If θ̂ is not stationary (max |∇R(θ̂)| > 100·tol: a non-convex model stopped early), retraining
    from θ̂ moves θ even when nothing is removed; the baseline is then that retraining without
    removing anything (same objective, same budget), so ΔL measures the effect of z_i alone.
    ``refit=True`` restores the old behaviour (refit the copy to the optimum first and measure
    from there) — then compute the influence at that refit model, not at ``model``.
    """
    x, y = check_data(model, train_inputs, train_labels, "train_inputs", "train_labels")
    xt, yt = check_data(model, test_inputs, test_labels, "test_inputs", "test_labels")
    check_loss(model, loss_fn, x, y, "train_labels")
    check_loss(model, loss_fn, xt, yt, "test_labels")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64) or None, got {dtype!r}")
    m = copy.deepcopy(model)
    if dtype is not None:
        m = m.to(dtype)
    wdt = next(m.parameters()).dtype
    x, xt = x.to(wdt), xt.to(wdt)
    idx = check_indices("indices", indices, len(x))
    progress = check_bool("progress", progress)
    refit = check_bool("refit", refit)
    damping = check_real("damping", damping, min=0.0)
    if tol is not None:
        tol = check_real("tol", tol, min=0.0, min_inclusive=False)
    max_iter = check_int("max_iter", max_iter, min=1)
    loss_none = _per_example_loss(loss_fn)
    tol_eff = tol if tol is not None else (1e-9 if wdt == torch.float64 else 1e-5)
    if refit:
        info = fit(m, loss_fn, x, y, l2=l2, layers=layers, tol=tol, max_iter=max_iter)
        if info["grad_max"] > 100 * tol_eff:
            warnings.warn(f"leave_one_out: the full refit reached max|grad| = {info['grad_max']:.2g} only "
                          f"(tol={tol}); raise max_iter", RuntimeWarning, stacklevel=2)
    base_state = copy.deepcopy(m.state_dict())
    with eval_on(m):
        grad_max = float(TrainingObjective(m, loss_fn, x, y, layers=layers, l2=l2).gradient().abs().max())
    if grad_max > 100 * tol_eff:    # not stationary: the baseline is the same retraining without removal
        fit(m, loss_fn, x, y, l2=l2, layers=layers, damping=damping, tol=tol, max_iter=max_iter)
    with torch.no_grad(), eval_on(m):
        base = loss_none(m(xt), yt)
    out = torch.empty(len(xt), len(idx), dtype=wdt)
    for j, i in enumerate(tqdm(idx.tolist(), desc="leave-one-out retraining", disable=not progress,
                               leave=False)):
        m.load_state_dict(base_state)
        fit(m, loss_fn, x, y, l2=l2, layers=layers, drop=[i], damping=damping, tol=tol, max_iter=max_iter)
        with torch.no_grad(), eval_on(m):
            out[:, j] = (loss_none(m(xt), yt) - base).cpu()
    return out


def _per_example_loss(loss_fn):
    def f(out, y):
        return torch.stack([mean_loss(loss_fn, out[k:k + 1], y[k:k + 1]) for k in range(len(y))])
    return f


def check_indices(name: str, indices, n: int) -> torch.Tensor:
    """Training-point indices: ints (a list, an int, a 1-D integer tensor/array) in [0, n) → LongTensor.
    Floats are refused (1.5 is not point 1), as are booleans, negative / out-of-range values and
    nested lists."""
    if isinstance(indices, bool):
        raise TypeError(f"{name} must be integer indices of training points, got {indices!r}")
    t = as_tensor(name, indices, floating=False, non_empty=False) if not isinstance(indices, torch.Tensor) \
        else indices
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"{name} must be integer indices of training points, got dtype {t.dtype} "
                        f"({indices!r:.60}); a float such as 1.5 names no point")
    if t.dim() > 1:
        raise ValueError(f"{name} must be an int or a 1-D list of indices, got shape {tuple(t.shape)}")
    t = t.reshape(-1).long().cpu()
    if len(t) and (int(t.min()) < 0 or int(t.max()) >= n):
        raise ValueError(f"{name} must lie in [0, {n}) (training points), got values from "
                         f"{int(t.min())} to {int(t.max())}")
    return t
