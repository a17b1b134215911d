"""Training-data attribution: which training points made this prediction?

One shape for every method: ``(model, train data, test data) → scores (n_test, n_train)``.
Shared part: ``per_example_grads`` (vectorised ∇_θ ℓ(z_i; θ), optionally restricted to named
layers) in ``gradients``; Hessian-vector products of the training objective in ``curvature``.
Influence functions and leave-one-out retraining (lecture 05) in ``influence_functions``.
"""
from .curvature import TrainingObjective, hessian_matrix, hessian_vector_product
from .gradients import flat_params, parameter_names, per_example_grads
from .influence_functions import fit, influence, inverse_hvp, leave_one_out

__all__ = ["per_example_grads", "parameter_names", "flat_params",
           "TrainingObjective", "hessian_vector_product", "hessian_matrix",
           "influence", "inverse_hvp", "leave_one_out", "fit"]
