"""The ipywidget panels the lectures use — one module per lecture.

Layout (a module never shares its name with a function it exports):

* ``introduction`` (lecture 00): ``perturbation_panel`` — R_i = f(x) − f(x + δe_i) vs the gradient.
* ``activation_maximization`` (lecture 01): ``featurevis_panel`` — unit picker + regularisers.
* ``tsne`` (lecture 02): ``tsne_panel`` — perplexity / iteration sliders over t-SNE maps.
* ``gradients_vs_lime`` (lecture 03): ``attribution_panel`` (method picker over
  ``attribution.METHODS``) and ``lime_panel`` (kernel width, samples, stability meter).
* ``integrated_gradients`` (lecture 04): ``convergence_panel`` (rule × steps → completeness gap),
  ``baseline_panel`` (black / blurred / noise / expected gradients), ``internal_panel`` (layer and
  quantity of interest).
* ``propagation`` (lecture 04b): ``propagation_panel`` (DeepLIFT / LRP rules and ε → the map and how
  much of f it accounts for), ``influence_panel`` (layer, distribution and quantity of interest).
* ``influence_functions`` (lecture 05): ``influence_gallery_panel``, ``lissa_panel``.
* ``representer_points`` (lecture 06): ``representer_gallery_panel``, ``mislabel_panel``.
* ``tracin`` (lecture 07): ``proponents_panel``, ``detection_panel``.
* ``evaluation`` (lecture 08): ``evaluation_panel`` (method × metric pickers), ``mask_panel`` (λ₁/λ₂
  sliders of the meaningful-perturbation mask).
* ``concepts`` (lecture 09): ``tcav_panel`` (model, concept, layer, class → TCAV scores and
  p-value), ``attack_panel`` (method, attack kind, ε → the map before and after).
* ``device`` (every lecture's set-up cell): ``device_toggle`` — auto / cpu / cuda buttons over
  ``device.set_device`` (it used to live in ``xaicourse.device``, which is foundation code).
* ``_panel``: ``Panel``, the shared base — a dict of named controls, ``draw(**values)`` that calls
  the tested package functions and draws with matplotlib, ``redraw()``, ``state`` (the numbers
  the last draw showed) and ``enable(name, flag)``.

Every ``*_panel`` function returns a ``Panel``; tests drive them all the same way
(``panel.controls[name].value = ...`` → ``panel.state``) and compare the numbers in ``state``
with the package functions. Panels compute on ``current_device()`` inside
``_torch.eval_on(model, to=...)``, so the caller's model keeps its device and mode.
A new lecture adds ``widgets/<topic>.py`` and one re-export line here.
"""
from __future__ import annotations

from ._panel import Panel, State
from .activation_maximization import featurevis_panel
from .gradients_vs_lime import attribution_panel, lime_panel
from .influence_functions import influence_gallery_panel, lissa_panel
from .integrated_gradients import baseline_panel, convergence_panel, internal_panel
from .propagation import influence_panel, propagation_panel
from .introduction import perturbation_panel
from .representer_points import mislabel_panel, representer_gallery_panel
from .tracin import detection_panel, proponents_panel
from .concepts import attack_panel, tcav_panel
from .tsne import tsne_panel
from .evaluation import evaluation_panel, mask_panel
from .device import device_toggle

__all__ = ["Panel", "State", "perturbation_panel", "featurevis_panel", "tsne_panel", "attribution_panel",
           "lime_panel", "convergence_panel", "baseline_panel", "internal_panel", "propagation_panel",
           "influence_panel", "influence_gallery_panel",
           "lissa_panel", "representer_gallery_panel", "mislabel_panel", "proponents_panel", "detection_panel",
           "evaluation_panel", "mask_panel", "tcav_panel", "attack_panel", "device_toggle"]
