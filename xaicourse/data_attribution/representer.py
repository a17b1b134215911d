"""Representer points (Yeh et al., 2018): a prediction as a sum over the training points.

Take the network's penultimate features Φ(x) ∈ R^d and fit a bias-free linear last layer W (K×d)
with L2 regularisation on the n training points:

    min_W  L(W) = (1/n) Σ_i ℓ(W Φ_i, y_i) + λ ‖W‖²        (ℓ = softmax cross-entropy)

At a stationary point ∇L = 0, i.e. (1/n) Σ_i g_i Φ_iᵀ + 2λW = 0 with g_i = ∂ℓ/∂(WΦ_i) = p_i − e_{y_i},
so the weights are a combination of the training features (a representer theorem):

    W = Σ_i α_i Φ_iᵀ,   α_i = −g_i / (2λn)  ∈ R^K

and every test logit splits into one term per training point:

    f(x_t) = W Φ_t = Σ_i α_i (Φ_iᵀ Φ_t)      ← ``decompose`` returns the terms (n_test, n_train, K).

α_ic > 0 pulls the logit of class c up for test points with similar features (a *positive*
representer, an "excitatory" example), α_ic < 0 pushes it down (negative, "inhibitory"). |α_i| is
large when the model disagrees with the label y_i — a flag for mislabelled points. The identity is
exact only at stationarity, so ``fit`` runs L-BFGS in float64 to a tiny gradient and reports the
residual ‖W − Σ_i α_i Φ_iᵀ‖ / ‖W‖.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from .._torch import check_inputs, eval_on
from .._validate import as_tensor, check_choice, check_int, check_labels, check_real

__all__ = ["RepresenterPoints", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a ``RepresenterPoints`` is used before ``fit``/``from_model``."""


class RepresenterPoints:
    """Representer-point decomposition of a bias-free linear last layer.

    l2: λ > 0 in L(W) = mean_i ℓ(WΦ_i, y_i) + λ‖W‖². max_iter, tol: L-BFGS iterations and
    gradient tolerance (float64). After ``fit``: ``weight_`` (K, d) float64, ``alpha_`` (n, K),
    ``features_`` (n, d), ``residual_`` (relative ‖W − αᵀΦ‖), ``grad_norm_`` (max |∇L|),
    ``n_iter_``, ``fit_seconds_``; after ``from_model`` also ``report_`` (accuracies before/after
    the refit).
    """

    def __init__(self, l2: float = 1e-2, max_iter: int = 1000, tol: float = 1e-8):
        self.l2 = check_real("l2", l2, min=0.0, min_inclusive=False)
        self.max_iter = check_int("max_iter", max_iter, min=1)
        self.tol = check_real("tol", tol, min=0.0, min_inclusive=False)

    # ------------------------------------------------------------------ fitting
    def fit(self, features: torch.Tensor, targets: torch.Tensor, n_classes: int | None = None, init=None):
        """Fit W on features (n, d) and integer labels (n,) by L-BFGS to stationarity.

        n_classes: K (default: max label + 1, or init's rows). init: optional (K, d) start (e.g. the
        trained model's last-layer weight). Returns self.
        """
        phi = as_tensor("features", features, ndim=2, floating=True, finite=True, non_empty=True).detach()
        phi = phi.to(torch.float64)
        n, d = phi.shape
        if init is not None:
            init = as_tensor("init", init, ndim=2, floating=True, finite=True).detach().to(phi)
            if init.shape[1] != d:
                raise ValueError(f"init has {init.shape[1]} features per class but features have {d}")
            n_classes = init.shape[0] if n_classes is None else n_classes
        if not isinstance(targets, torch.Tensor):
            raise TypeError(f"targets must be a torch.Tensor of class labels (n,), got {type(targets).__name__}")
        if n_classes is None:
            n_classes = int(targets.max()) + 1
        n_classes = check_int("n_classes", n_classes, min=2)
        y = check_labels("targets", targets, n, n_classes).to(phi.device)
        W = (torch.zeros(n_classes, d, dtype=torch.float64, device=phi.device) if init is None
             else init.clone()).requires_grad_(True)
        if init is not None and init.shape[0] != n_classes:
            raise ValueError(f"init has {init.shape[0]} rows but n_classes={n_classes}")
        opt = torch.optim.LBFGS([W], lr=1, max_iter=self.max_iter, tolerance_grad=self.tol,
                                tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

        def objective():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(phi @ W.T, y) + self.l2 * (W * W).sum()
            loss.backward()
            return loss

        t0 = time.perf_counter()
        opt.step(objective)
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_iter_ = opt.state[opt._params[0]]["n_iter"]
        W = W.detach()
        self._set(phi, y, W)
        return self

    def _set(self, phi, y, W):
        n = len(phi)
        with torch.no_grad():
            g = torch.softmax(phi @ W.T, 1)
            g[torch.arange(n), y] -= 1  # ∂ℓ/∂logits = p − e_y
            grad = g.T @ phi / n + 2 * self.l2 * W
        self.features_, self.targets_, self.weight_ = phi, y, W
        self.alpha_ = -g / (2 * self.l2 * n)
        self.grad_norm_ = grad.abs().max().item()
        self.residual_ = ((W - self.alpha_.T @ phi).norm() / W.norm().clamp_min(1e-300)).item()
        self.n_features_in_, self.n_classes_ = phi.shape[1], W.shape[0]

    def from_model(self, model: nn.Module, train_inputs, train_targets, test_inputs=None, test_targets=None,
                   batch_size: int = 512):
        """Refit the model's last layer on its penultimate features ``model.features(x)``.

        As in the paper the last layer is re-trained bias-free with the L2 penalty (starting from
        ``model.head.weight``), so the representer identity holds exactly; the refit changes the
        classifier a little: ``report_`` gives train (and, with test data, test) accuracy of the
        model and of the refit layer. Returns self.
        """
        if not hasattr(model, "features") or not hasattr(model, "head"):
            raise TypeError("model must expose features(x) (penultimate activations) and head (the last "
                            "nn.Linear), like the course models")
        phi = self.features_of(model, train_inputs, batch_size)
        self.fit(phi, train_targets, init=model.head.weight.detach().to(torch.float64).cpu())
        rep = {"train_acc_model": _acc(model, train_inputs, train_targets, batch_size),
               "train_acc_refit": (self.predict(phi) == train_targets.cpu()).double().mean().item()}
        if test_inputs is not None:
            phit = self.features_of(model, test_inputs, batch_size)
            rep["test_acc_model"] = _acc(model, test_inputs, test_targets, batch_size)
            rep["test_acc_refit"] = (self.predict(phit) == test_targets.cpu()).double().mean().item()
            rep["test_acc_change"] = rep["test_acc_refit"] - rep["test_acc_model"]
        rep.update(residual=self.residual_, grad_norm=self.grad_norm_, fit_seconds=self.fit_seconds_)
        self.report_ = rep
        return self

    @staticmethod
    def features_of(model: nn.Module, inputs, batch_size: int = 512) -> torch.Tensor:
        """``model.features(inputs)`` in eval mode, batched, as a CPU float64 tensor (n, d)."""
        x = check_inputs(model, inputs, "inputs")
        with torch.no_grad(), eval_on(model):
            return torch.cat([model.features(x[s:s + batch_size]).cpu() for s in range(0, len(x), batch_size)]
                             ).to(torch.float64)

    # ------------------------------------------------------------------ using the fit
    def _check(self, test_features):
        if not hasattr(self, "alpha_"):
            raise NotFittedError("this RepresenterPoints is not fitted yet: call fit(features, targets) or "
                                 "from_model(model, inputs, targets) first")
        f = as_tensor("test_features", test_features, ndim=2, floating=True, finite=True).detach()
        if f.shape[1] != self.n_features_in_:
            raise ValueError(f"test_features have {f.shape[1]} features but the fit used {self.n_features_in_}")
        return f.to(self.features_)

    def logits(self, test_features) -> torch.Tensor:
        """W Φ_t → (n_test, K)."""
        return self._check(test_features) @ self.weight_.T

    def predict(self, test_features) -> torch.Tensor:
        return self.logits(test_features).argmax(1)

    def similarity(self, test_features) -> torch.Tensor:
        """Φ_t · Φ_i → (n_test, n_train)."""
        return self._check(test_features) @ self.features_.T

    def decompose(self, test_features) -> torch.Tensor:
        """Terms α_i (Φ_iᵀΦ_t) → (n_test, n_train, K); summed over training points they give ``logits``."""
        return self.similarity(test_features)[:, :, None] * self.alpha_[None]

    def contributions(self, test_features, target=None) -> torch.Tensor:
        """α_{i,c} Φ_iᵀΦ_t for one class per test point → (n_test, n_train). target: int, (n_test,)
        labels, or None for the predicted class."""
        f = self._check(test_features)
        sim = f @ self.features_.T
        if target is None:
            t = (f @ self.weight_.T).argmax(1)
        else:
            t = torch.as_tensor(target).long().flatten()
            t = t.expand(len(f)) if t.numel() == 1 else t
            if len(t) != len(f) or (t < 0).any() or (t >= self.n_classes_).any():
                raise ValueError(f"target must be a class in 0..{self.n_classes_ - 1} (one or one per test point)")
        return sim * self.alpha_[:, t.to(sim.device)].T

    def top_representers(self, test_features, k: int = 5, kind: str = "positive", target=None):
        """The k training points with the largest (``kind="positive"``) or most negative
        (``"negative"``) contribution to the target (default: predicted) class logit.
        Returns ``(values, indices)``, each (n_test, k)."""
        kind = check_choice("kind", kind, ("positive", "negative"))
        c = self.contributions(test_features, target)
        k = check_int("k", k, min=1, max=c.shape[1])
        v, i = torch.topk(c, k, dim=1, largest=kind == "positive")
        return v, i

    def importance(self) -> torch.Tensor:
        """|α_{i, y_i}|, the weight of each training point on its own label's logit → (n,)."""
        if not hasattr(self, "alpha_"):
            raise NotFittedError("call fit or from_model first")
        return self.alpha_[torch.arange(len(self.alpha_)), self.targets_].abs()


def _acc(model, x, y, batch_size):
    xx = check_inputs(model, x)
    with torch.no_grad(), eval_on(model):
        pred = torch.cat([model(xx[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(xx), batch_size)])
    return (pred == y.cpu()).double().mean().item()
