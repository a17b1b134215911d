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

from sklearn.base import BaseEstimator

from .._torch import check_inputs, eval_on, resolve_target, target_index
from .._validate import as_tensor, check_choice, check_int, check_labels, check_real
from ._base import TrainingDataAttribution
from .curvature import check_data

__all__ = ["RepresenterPoints", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """Raised when a ``RepresenterPoints`` is used before ``fit``/``from_model``."""


class RepresenterPoints(BaseEstimator, TrainingDataAttribution):
    """Representer-point decomposition of a bias-free linear last layer — a scikit-learn estimator.

    ``__init__`` only stores its parameters (``sklearn.base.clone`` and ``get_params`` /
    ``set_params`` work); ``fit`` validates them. l2: λ > 0 in L(W) = mean_i ℓ(WΦ_i, y_i) + λ‖W‖².
    max_iter, tol: L-BFGS iterations and gradient tolerance (float64).

    After ``fit(X, y)`` (X = features Φ (n, d)) or ``from_model(model, inputs, labels)``:
    ``weight_`` (K, d) float64, ``alpha_`` (n, K) (the paper's α), ``features_`` (n, d), ``targets_``
    (n,), ``residual_`` (relative ‖W − αᵀΦ‖), ``grad_norm_`` (max |∇L|), ``n_iter_``,
    ``fit_seconds_``; after ``from_model`` also ``model_`` and ``report_`` (accuracies before/after the
    refit).

    The common training-data-attribution methods ``attribute(inputs, labels)`` (the terms
    α_{i,c} k(x_i, x_t), positive = excitatory = the training point raised the logit of class c, i.e.
    it helped that prediction), ``self_influence()`` and ``top_k(...)`` take **model inputs** after
    ``from_model`` and **features** after ``fit``; the feature-level methods (``logits``,
    ``decompose``, ``contributions``, ``top_representers``, ...) always take features.
    """

    def __init__(self, l2: float = 1e-2, max_iter: int = 1000, tol: float = 1e-8):
        self.l2 = l2
        self.max_iter = max_iter
        self.tol = tol

    def _checked_params(self):
        return (check_real("l2", self.l2, min=0.0, min_inclusive=False), check_int("max_iter", self.max_iter, min=1),
                check_real("tol", self.tol, min=0.0, min_inclusive=False))

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y, n_classes: int | None = None, init=None):
        """Fit W on features X (n, d) and integer labels y (n,) by L-BFGS to stationarity.

        n_classes: K (default: max label + 1, or init's rows). init: optional (K, d) start (e.g. the
        trained model's last-layer weight). Returns self. (X, y: scikit-learn's names; tensors or arrays.)
        """
        l2, max_iter, tol = self._checked_params()
        self.model_ = None
        phi = as_tensor("X", X, ndim=2, floating=True, finite=True, non_empty=True).detach()
        phi = phi.to(torch.float64)
        n, d = phi.shape
        if init is not None:
            init = as_tensor("init", init, ndim=2, floating=True, finite=True).detach().to(phi)
            if init.shape[1] != d:
                raise ValueError(f"init has {init.shape[1]} features per class but X has {d}")
            n_classes = init.shape[0] if n_classes is None else n_classes
        y = check_labels("y", y, n)
        if n_classes is None:
            n_classes = int(y.max()) + 1
        n_classes = check_int("n_classes", n_classes, min=2)
        y = check_labels("y", y, n, n_classes).to(phi.device)
        if init is not None and init.shape[0] != n_classes:
            raise ValueError(f"init has {init.shape[0]} rows but n_classes={n_classes}")
        W = (torch.zeros(n_classes, d, dtype=torch.float64, device=phi.device) if init is None
             else init.clone()).requires_grad_(True)
        opt = torch.optim.LBFGS([W], lr=1, max_iter=max_iter, tolerance_grad=tol,
                                tolerance_change=0.0, history_size=20, line_search_fn="strong_wolfe")

        def objective():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(phi @ W.T, y) + l2 * (W * W).sum()
            loss.backward()
            return loss

        t0 = time.perf_counter()
        with torch.enable_grad():
            opt.step(objective)
        self.fit_seconds_ = time.perf_counter() - t0
        self.n_iter_ = opt.state[opt._params[0]]["n_iter"]
        W = W.detach()
        self._set(phi, y, W, l2)
        return self

    def _set(self, phi, y, W, l2):
        n = len(phi)
        with torch.no_grad():
            g = torch.softmax(phi @ W.T, 1)
            g[torch.arange(n), y] -= 1  # ∂ℓ/∂logits = p − e_y
            grad = g.T @ phi / n + 2 * l2 * W
        self.features_, self.targets_, self.weight_ = phi, y, W
        self.alpha_ = -g / (2 * l2 * n)
        self.grad_norm_ = grad.abs().max().item()
        self.residual_ = ((W - self.alpha_.T @ phi).norm() / W.norm().clamp_min(1e-300)).item()
        self.n_features_in_, self.n_classes_ = phi.shape[1], W.shape[0]

    def from_model(self, model: nn.Module, train_inputs, train_labels, test_inputs=None, test_labels=None, *,
                   batch_size: int = 512):
        """Refit the model's last layer on its penultimate features ``model.features(x)``.

        As in the paper the last layer is re-trained bias-free with the L2 penalty (starting from
        ``model.head.weight``), so the representer identity holds exactly; the refit changes the
        classifier a little: ``report_`` gives train (and, with test data, test) accuracy of the
        model and of the refit layer. The model is evaluated in eval mode and left as found.
        Returns self; ``attribute``/``top_k`` then take model inputs.
        """
        if not hasattr(model, "features") or not hasattr(model, "head"):
            raise TypeError("model must expose features(x) (penultimate activations) and head (the last "
                            "nn.Linear), like the course models")
        batch_size = check_int("batch_size", batch_size, min=1)
        x, y = check_data(model, train_inputs, train_labels, "train_inputs", "train_labels")
        if y.dtype.is_floating_point:
            raise TypeError(f"train_labels must hold integer class labels (torch.long), got dtype {y.dtype}; "
                            f"convert with train_labels.long()")
        phi = self.features_of(model, x, batch_size)
        self.fit(phi, y.cpu(), init=model.head.weight.detach().to(torch.float64).cpu())
        self.model_ = model
        rep = {"train_acc_model": _acc(model, x, y, batch_size),
               "train_acc_refit": (self.predict(phi) == y.cpu()).double().mean().item()}
        if test_inputs is not None:
            if test_labels is None:
                raise ValueError("test_labels are needed with test_inputs (for the test accuracies in report_)")
            xt, yt = check_data(model, test_inputs, test_labels, "test_inputs", "test_labels")
            phit = self.features_of(model, xt, batch_size)
            rep["test_acc_model"] = _acc(model, xt, yt, batch_size)
            rep["test_acc_refit"] = (self.predict(phit) == yt.cpu()).double().mean().item()
            rep["test_acc_change"] = rep["test_acc_refit"] - rep["test_acc_model"]
        rep.update(residual=self.residual_, grad_norm=self.grad_norm_, fit_seconds=self.fit_seconds_)
        self.report_ = rep
        return self

    @staticmethod
    def features_of(model: nn.Module, inputs, batch_size: int = 512) -> torch.Tensor:
        """``model.features(inputs)`` in eval mode, batched, as a CPU float64 tensor (n, d)."""
        batch_size = check_int("batch_size", batch_size, min=1)
        x = check_inputs(model, inputs, "inputs")
        with torch.no_grad(), eval_on(model):
            return torch.cat([model.features(x[s:s + batch_size]).cpu() for s in range(0, len(x), batch_size)]
                             ).to(torch.float64)

    # ------------------------------------------------------------------ the common TDA interface
    @property
    def n_train(self) -> int:
        self._fitted()
        return len(self.alpha_)

    def _fitted(self):
        if not hasattr(self, "alpha_"):
            raise NotFittedError("this RepresenterPoints is not fitted yet: call fit(X, y) or "
                                 "from_model(model, inputs, labels) first")

    def _phi(self, inputs):
        """Features of ``inputs``: model inputs after from_model, features after fit."""
        self._fitted()
        if getattr(self, "model_", None) is not None:
            return self.features_of(self.model_, inputs)
        return self._check(inputs)

    def kernel(self, inputs) -> torch.Tensor:
        """k(x_i, x_t) = Φ(x_i)ᵀΦ(x_t) → (n_test, n_train) (the paper's similarity term)."""
        return self._phi(inputs) @ self.features_.T

    def attribute(self, inputs, labels=None) -> torch.Tensor:
        """α_{i,c} k(x_i, x_t) for the class c = ``labels`` of each test point (None = the predicted
        class: the model's after ``from_model``, the fitted layer's after ``fit``) → (n_test, n_train); positive = training point i raised that logit (helped), and the
        row sums to the logit. On the inputs' device, in their float dtype."""
        phi = self._phi(inputs)
        if labels is None and getattr(self, "model_", None) is not None:
            labels = resolve_target(self.model_, check_inputs(self.model_, inputs), None)  # the model's prediction
        elif labels is not None:
            labels = check_labels("labels", labels if isinstance(labels, torch.Tensor) else
                                  as_tensor("labels", labels, floating=False), len(phi), self.n_classes_)
        c = self.contributions(phi, labels)
        return _on_inputs(c, inputs)

    def self_influence(self) -> torch.Tensor:
        """α_{i,y_i} ‖Φ_i‖² → (n_train,): each training point's term in its own label's logit
        (negative and large for points the model disagrees with — mislabels). CPU float64."""
        self._fitted()
        return self.alpha_[torch.arange(len(self.alpha_)), self.targets_] * (self.features_ ** 2).sum(1)

    # ------------------------------------------------------------------ using the fit
    def _check(self, test_features):
        self._fitted()
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
        t = (f @ self.weight_.T).argmax(1) if target is None else target_index(target, len(f), self.n_classes_)
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
        self._fitted()
        return self.alpha_[torch.arange(len(self.alpha_)), self.targets_].abs()


def _on_inputs(t: torch.Tensor, like) -> torch.Tensor:
    if isinstance(like, torch.Tensor):
        return t.to(device=like.device, dtype=like.dtype if like.dtype.is_floating_point else t.dtype)
    return t


def _acc(model, x, y, batch_size):
    xx = check_inputs(model, x)
    with torch.no_grad(), eval_on(model):
        pred = torch.cat([model(xx[s:s + batch_size]).argmax(1).cpu() for s in range(0, len(xx), batch_size)])
    return (pred == y.cpu()).double().mean().item()
