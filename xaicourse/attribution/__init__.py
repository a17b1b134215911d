"""Attribution methods with captum's calling convention.

Every function is ``f(model, inputs, target, **options) -> Tensor shaped like inputs``:
``inputs`` is batched (N, ...), ``target`` an int or one int per sample.
(``grad_cam`` takes the layer second: ``grad_cam(model, layer, inputs, target)``.)
"""
from .grad_cam import grad_cam
from .guided_backprop import guided_backprop
from .input_x_gradient import input_x_gradient
from .lime import LimeExplanation, lime_attribution, lime_explain, lime_stability
from .occlusion import occlusion
from .perturbation import perturbation_scores
from .saliency import gradient, saliency
from .smoothgrad import smoothgrad
from .squared_gradient import squared_gradient

METHODS = ("gradient", "saliency", "squared_gradient", "input_x_gradient", "smoothgrad",
           "guided_backprop", "grad_cam", "occlusion", "lime")


def attribute(method: str, model, inputs, target, layer="relu3", **options):
    """Run one lecture-03 method by name (for pickers and loops): ``method`` in ``METHODS``.

    ``layer`` is used by "grad_cam" only; ``options`` go to the method (e.g. sigma,
    n_samples for "smoothgrad"; window, stride for "occlusion"; num_samples, kernel_width
    for "lime").
    """
    fns = {"gradient": gradient, "saliency": saliency, "squared_gradient": squared_gradient,
           "input_x_gradient": input_x_gradient, "smoothgrad": smoothgrad,
           "guided_backprop": guided_backprop, "occlusion": occlusion, "lime": lime_attribution}
    if method == "grad_cam":
        return grad_cam(model, layer, inputs, target, **options)
    if method not in fns:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return fns[method](model, inputs, target, **options)


__all__ = ["attribute", "METHODS", "perturbation_scores", "gradient", "saliency", "squared_gradient", "input_x_gradient",
           "smoothgrad", "guided_backprop", "grad_cam", "occlusion", "lime_explain",
           "lime_attribution", "lime_stability", "LimeExplanation"]
