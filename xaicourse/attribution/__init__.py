"""Feature attribution: which parts of the input made the model say ``target``?

One signature for every method — ``f(model, inputs, target=None, **options)`` → a tensor shaped
like ``inputs`` — captum's convention: ``inputs`` is a batch (N, ...), ``target`` an int, one int
per sample, or None = the model's predicted class (``_torch.resolve_target``). The reference input
is ``baselines`` everywhere (a number, a tensor broadcastable to the inputs, or "zero" / "blur" /
"noise" / "mean": ``_torch.resolve_baselines``). Layer methods take ``layer=`` as a keyword (a
module of the model or its dotted name). Counts are ``n_samples`` / ``n_steps`` / ``batch_size``,
randomness ``seed``. Every gradient goes through ``_torch.target_gradient`` (which takes
``create_graph=``). Every method explains the model in eval mode and leaves it exactly as it found
it; the perturbation methods (occlusion, LIME, Shapley) take any callable model.

``METHODS`` is the registry (name → function) and ``attribute(name, ...)`` looks a method up:
adding a method is one function in its family module plus one entry here.

Families (modules): ``gradients`` (gradient, saliency, squared gradient, input × gradient,
SmoothGrad, guided backprop), ``cam`` (Grad-CAM), ``perturbation`` (perturbation scores,
occlusion), ``lime`` (LIME from scratch); lecture 04 adds integrated gradients to ``gradients``,
``propagation`` (DeepLIFT, LRP), ``shapley`` (sampled and exact Shapley values) and ``internal``
(internal influence, conductance: per-unit, so not in ``METHODS``); lecture 08 adds ``masks``
(meaningful perturbation, Fong & Vedaldi 2017).
"""
from __future__ import annotations

import inspect

from .cam import grad_cam
from .gradients import (blurred_baseline, gradient, guided_backprop, input_x_gradient, integrated_gradients, saliency,
                        sample_baselines, smoothgrad, squared_gradient, uniform_noise_baseline)
from .masks import meaningful_perturbation, total_variation
from .lime import LimeExplanation, lime_attribution, lime_explain, lime_stability
from .perturbation import occlusion, perturbation_scores
from .propagation import deeplift, lrp
from .internal import internal_influence, layer_activations, layer_conductance, unit_attribution
from .shapley import patch_mask, shapley_exact, shapley_sampling, superpixel_mask

METHODS = {
    "gradient": gradient,
    "saliency": saliency,
    "squared_gradient": squared_gradient,
    "input_x_gradient": input_x_gradient,
    "smoothgrad": smoothgrad,
    "guided_backprop": guided_backprop,
    "grad_cam": grad_cam,
    "occlusion": occlusion,
    "lime": lime_attribution,
    "integrated_gradients": integrated_gradients,
    "deeplift": deeplift,
    "lrp": lrp,
    "shapley_sampling": shapley_sampling,
    "shapley_exact": shapley_exact,
    "meaningful_perturbation": meaningful_perturbation,
}
"""name → attribution function; every entry is ``f(model, inputs, target=None, **options)``."""


def attribute(method: str, model, inputs, target=None, **options):
    """Run the attribution method called ``method`` (a key of ``METHODS``) — for pickers and loops.

    ``options`` go to the method, e.g. ``layer=`` for "grad_cam", ``sigma``/``n_samples`` for
    "smoothgrad", ``window``/``stride`` for "occlusion", ``n_samples``/``kernel_width`` for "lime".
    An option the method does not take raises a TypeError listing the ones it does.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    fn = METHODS[method]
    params = inspect.signature(fn).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        allowed = [n for n, p in list(params.items())[3:]]
        unknown = [k for k in options if k not in allowed]
        if unknown:
            raise TypeError(f"method {method!r} takes no option {', '.join(map(repr, unknown))}; "
                            f"its options: {', '.join(allowed) or 'none'}")
    return fn(model, inputs, target, **options)


__all__ = ["attribute", "METHODS", "perturbation_scores", "gradient", "saliency", "squared_gradient",
           "input_x_gradient", "smoothgrad", "guided_backprop", "grad_cam", "occlusion", "lime_explain",
           "lime_attribution", "lime_stability", "LimeExplanation",
           "integrated_gradients", "blurred_baseline", "uniform_noise_baseline", "sample_baselines",
           "deeplift", "lrp", "shapley_sampling", "shapley_exact", "patch_mask", "superpixel_mask",
           "internal_influence", "layer_conductance", "unit_attribution", "layer_activations",
           "meaningful_perturbation", "total_variation"]
