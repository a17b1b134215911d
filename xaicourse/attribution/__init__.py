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

__all__ = ["perturbation_scores", "gradient", "saliency", "squared_gradient", "input_x_gradient",
           "smoothgrad", "guided_backprop", "grad_cam", "occlusion", "lime_explain",
           "lime_attribution", "lime_stability", "LimeExplanation"]
