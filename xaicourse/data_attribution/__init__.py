"""Training-data attribution: which training points made this prediction?

One shape for every method: ``(model, train data, test data) → scores (n_test, n_train)``.
Shared part: ``per_example_grads`` (vectorised ∇_θ ℓ(z_i; θ), optionally restricted to named
layers) in ``gradients``.
"""
from .gradients import flat_params, parameter_names, per_example_grads

__all__ = ["per_example_grads", "parameter_names", "flat_params"]
