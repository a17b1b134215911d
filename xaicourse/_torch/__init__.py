"""Torch plumbing every topic shares: layers by name, hooks, eval mode, threads, targets.

* ``resolve_layer(model, layer)`` — a module of ``model`` from itself or its dotted name.
* ``capture(model, layers)`` — record layer outputs during forward passes (forward hooks,
  always removed), optionally replacing them (``replace=``).
* ``hooks(modules, forward=, backward=)`` — register hooks for the duration of a block.
* ``eval_on(model, to=None, freeze=False)`` — eval mode (and a device, frozen parameters) for a
  block; mode, device and ``requires_grad`` are restored afterwards, whatever happens.
* ``torch_threads(k)`` / ``threads_for(device, numel)`` — intra-op CPU threads for a block.
* ``model_device``, ``check_model``, ``check_inputs`` (inputs checked at the door: type, dtype,
  batch rank, finite values, then one probe forward pass of the first sample — the model itself
  says whether it takes this shape) and target selection ``target_index`` / ``select``.
* the one gradient primitive and its helpers (every attribution method uses them):
  ``resolve_target`` (``target=None`` = the predicted class), ``target_gradient`` (∂f_t/∂inputs or
  ∂f_t/∂layer output, ``create_graph=``), ``resolve_baselines`` (the reference input: a number, a
  tensor or "zero" / "blur" / "noise" / "mean"), ``interpolation_path`` and ``quadrature``
  (points and weights in the inputs' dtype), ``layer_activations``.
"""
from __future__ import annotations

# The plumbing is split by concern; everything stays importable from ``xaicourse._torch``.
from .gradients import *  # noqa: F401,F403
from .gradients import _layer_output  # noqa: F401
from .inputs import *  # noqa: F401,F403
from .inputs import _as_scores, _first_layer_hint  # noqa: F401
from .modules import *  # noqa: F401,F403
