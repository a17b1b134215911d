"""Attribution methods with captum's calling convention.

Every function is ``f(model, inputs, target, **options) -> Tensor shaped like inputs``:
``inputs`` is batched (N, ...), ``target`` an int or one int per sample.
"""
from .perturbation import perturbation_scores

__all__ = ["perturbation_scores"]
