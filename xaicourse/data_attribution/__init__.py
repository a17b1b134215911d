"""Training-data attribution: which training points made this prediction?

One shape for every method: ``(model, train data, test data) → scores (n_test, n_train)``.
Shared part: ``per_example_grads`` (vectorised ∇_θ ℓ(z_i; θ), optionally restricted to named
layers) in ``gradients``. TracIn (``tracin``): ``tracin_cp``, ``self_influence``, ``grad_dot``,
``grad_cos``. Representer points (``representer``): ``RepresenterPoints``. Planted ground truth (``poison``): flipped labels, backdoor triggers, detection curves.
"""
from .gradients import flat_params, parameter_names, per_example_grads
from .poison import add_trigger, detection_curve, detection_rate, flip_labels, plant_backdoor, recall_at_k
from .representer import NotFittedError, RepresenterPoints
from .tracin import grad_cos, grad_dot, self_influence, tracin_cp

__all__ = ["per_example_grads", "parameter_names", "flat_params",
           "RepresenterPoints", "NotFittedError",
           "tracin_cp", "self_influence", "grad_dot", "grad_cos",
           "flip_labels", "detection_curve", "detection_rate", "add_trigger", "plant_backdoor", "recall_at_k"]
