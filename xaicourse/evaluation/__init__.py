"""Checks on explanations (layer 3: evaluation). Lecture 04: do the attribution axioms hold,
numerically? Lecture 08: is an explanation faithful to the model, does it agree with the ground
truth, does it depend on the model at all?

* ``axioms`` — ``check_axioms``, ``axioms_table``, ``format_axioms_table``, ``toy_networks``;
* ``faithfulness`` — ``deletion_curve``, ``insertion_curve``, ``curve_auc``, ``aopc``,
  ``input_reduction``, ``iterative_input_reduction`` (Feng et al.'s re-ranking), ``random_attribution``;
* ``localisation`` — ``pointing_game``, ``mask_iou``, ``mass_on_mask`` (|r| by default);
* ``sanity`` — ``cascading_randomization``, ``label_randomization``, ``randomized_layers``;
* ``benchmark`` — ``evaluate_methods``, ``format_evaluation_table``.

Shared: ``feature_map`` (one relevance value per feature), ``explain`` (a method by name or as a
function), ``rank_correlation`` (= ``maps.rank_correlation``) and ``resolve_baselines`` (=
``_torch.resolve_baselines``: the reference x₀ that replaces removed features, ``baselines=``).
Vocabulary as everywhere: ``inputs``, ``target`` (None = the predicted class), ``baselines``,
``n_steps``, ``absolute``, ``seed``, ``progress=False``. Models may be any callable inputs → scores
for the perturbation metrics; the sanity checks need an ``nn.Module`` (they re-initialise layers).
"""
from .._torch import resolve_baselines
from ..maps import rank_correlation
from ._common import FILLS, explain, feature_map
from .axioms import AXIOMS, BASELINE_METHODS, DEFAULT_OPTIONS, EXPECTED, axioms_table, check_axioms, \
    format_axioms_table, toy_networks
from .benchmark import EVALUATION_COLUMNS, evaluate_methods, format_evaluation_table
from .faithfulness import aopc, curve_auc, deletion_curve, fill_baseline, input_reduction, insertion_curve, \
    iterative_input_reduction, random_attribution
from .localisation import mask_iou, mass_on_mask, pointing_game
from .sanity import cascading_randomization, label_randomization, randomized_layers



def _attribute(method, model, inputs, target, options=None):
    """The old private helper (options as one dict): use ``explain(method, model, inputs, target, **options)``."""
    return explain(method, model, inputs, target, **dict(options or {}))


__all__ = ["check_axioms", "axioms_table", "format_axioms_table", "toy_networks", "AXIOMS", "EXPECTED",
           "feature_map", "explain", "resolve_baselines", "deletion_curve", "insertion_curve", "curve_auc", "aopc",
           "pointing_game", "mask_iou", "mass_on_mask", "rank_correlation", "randomized_layers",
           "cascading_randomization", "label_randomization", "input_reduction", "iterative_input_reduction", "random_attribution",
           "evaluate_methods", "format_evaluation_table", "EVALUATION_COLUMNS", "fill_baseline", "FILLS"]
