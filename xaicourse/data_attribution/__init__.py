"""Training-data attribution: which training points made this prediction?

One shape for every method: ``(model, train data, test data) → scores (n_test, n_train)``.

* ``gradients`` — the shared part: ``per_example_grads`` (vectorised ∇_θ ℓ(z_i; θ), optionally
  restricted to named layers).
* ``curvature`` — the training objective and its Hessian-vector products / explicit Hessian.
* ``influence_functions`` (lecture 05) — ``influence`` (exact, CG, LiSSA, Arnoldi),
  ``leave_one_out`` retraining (the ground truth), ``fit`` to the optimum.
* ``representer`` (lecture 06) — ``RepresenterPoints``.
* ``tracin`` (lecture 07) — ``tracin_cp``, ``self_influence``, ``grad_dot``, ``grad_cos``.
* ``poison`` — planted ground truth: flipped labels, backdoor triggers, detection curves.
"""
from .curvature import TrainingObjective, hessian_matrix, hessian_vector_product
from .gradients import flat_params, parameter_names, per_example_grads
from .influence_functions import fit, influence, inverse_hvp, leave_one_out
from .poison import add_trigger, detection_curve, detection_rate, flip_labels, plant_backdoor, recall_at_k
from .representer import NotFittedError, RepresenterPoints
from .tracin import grad_cos, grad_dot, self_influence, tracin_cp

__all__ = ["per_example_grads", "parameter_names", "flat_params",
           "TrainingObjective", "hessian_vector_product", "hessian_matrix",
           "influence", "inverse_hvp", "leave_one_out", "fit",
           "RepresenterPoints", "NotFittedError",
           "tracin_cp", "self_influence", "grad_dot", "grad_cos",
           "flip_labels", "detection_curve", "detection_rate", "add_trigger", "plant_backdoor", "recall_at_k"]
