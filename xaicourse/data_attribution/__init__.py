"""Training-data attribution: which training points made this prediction?

The objects (captum / dattri style) hold model + loss + training data (+ checkpoints) once, cache
the training side, and share one interface:

    obj = InfluenceFunction(model, train_inputs, train_labels, loss_fn=..., solver="exact")
    obj = TracInCP(model, train_inputs, train_labels, checkpoints=..., learning_rates=...)
    obj = RepresenterPoints(l2=...).from_model(model, train_inputs, train_labels)   # scikit-learn estimator
    obj.attribute(inputs, labels)   → (n_test, n_train)
    obj.self_influence()            → (n_train,)
    obj.top_k(inputs, labels, k, proponents=True) → (indices (n_test, k), scores (n_test, k))

**One sign convention:** a positive score means the training point *helped* the test prediction
(lowered its loss; for representer points, raised the explained logit). The papers' quantities
stay available by name: ``InfluenceFunction.i_up_loss`` and the function ``i_up_loss`` (Koh &
Liang's I_up,loss, positive = harmful), TracIn's proponent score (= ``TracInCP.attribute``),
representer ``alpha_`` and ``kernel``.

Modules:
* ``gradients`` — ``per_example_grads`` (vectorised ∇_θ ℓ(z_i; θ), optionally restricted to layers).
* ``curvature`` — the training objective and its Hessian-vector products / explicit Hessian.
* ``influence_functions`` (lecture 05) — ``InfluenceFunction`` (exact, CG, LiSSA, Arnoldi), the
  function ``i_up_loss`` (I_up,loss; ``influence`` is its deprecated old name), ``inverse_hvp``, ``leave_one_out`` retraining (the ground
  truth), ``fit`` to the optimum.
* ``representer`` (lecture 06) — ``RepresenterPoints``.
* ``tracin`` (lecture 07) — ``TracInCP``, ``GradDot``, ``GradCos`` and the functions ``tracin_cp``,
  ``self_influence``, ``grad_dot``, ``grad_cos``.
* ``poison`` — planted ground truth: flipped labels, backdoor triggers, detection curves.
"""
from ._base import TrainingDataAttribution
from .curvature import TrainingObjective, hessian_matrix, hessian_vector_product
from .gradients import flat_params, parameter_names, per_example_grads
from .influence_functions import InfluenceFunction, fit, i_up_loss, influence, inverse_hvp, leave_one_out
from .poison import add_trigger, detection_curve, detection_rate, flip_labels, plant_backdoor, recall_at_k
from .representer import NotFittedError, RepresenterPoints
from .tracin import GradCos, GradDot, TracInCP, grad_cos, grad_dot, self_influence, tracin_cp

METHODS = {"influence": InfluenceFunction, "tracin_cp": TracInCP, "grad_dot": GradDot, "grad_cos": GradCos,
           "representer_points": RepresenterPoints}
"""Name → attribution class (all share ``attribute`` / ``self_influence`` / ``top_k``)."""

__all__ = ["TrainingDataAttribution", "METHODS",
           "InfluenceFunction", "TracInCP", "GradDot", "GradCos", "RepresenterPoints", "NotFittedError",
           "per_example_grads", "parameter_names", "flat_params",
           "TrainingObjective", "hessian_vector_product", "hessian_matrix",
           "i_up_loss", "influence", "inverse_hvp", "leave_one_out", "fit",
           "tracin_cp", "self_influence", "grad_dot", "grad_cos",
           "flip_labels", "detection_curve", "detection_rate", "add_trigger", "plant_backdoor", "recall_at_k"]
