"""Deprecated: ``xaicourse.metrics`` is now the package ``xaicourse.evaluation`` (split by concern:
``axioms``, ``faithfulness``, ``localisation``, ``sanity``, ``benchmark``).

This module only re-exports the old names so that existing notebooks and exercises keep working;
nothing in the package imports it. Changes of the split: ``fill=``/``value=`` are ``baselines=``
(deprecated aliases remain), ``steps=`` is ``n_steps=``, the perturbation metrics fill with a
blurred copy by default, ``pointing_game`` / ``mask_iou`` use |r| by default, and
``rank_correlation`` is ``maps.rank_correlation`` (two constant maps: ρ = 1).
"""
from .evaluation import *  # noqa: F401,F403
from .evaluation import __all__, _attribute, feature_map  # noqa: F401
from .evaluation._common import map_and_mask as _map_and_mask  # noqa: F401
