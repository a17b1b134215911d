"""Small models for the course and a deterministic, cached ``train`` (layer 1: data & models).

* ``architectures`` — ``SmallCNN``, ``MLP``, ``LogisticRegression``, ``Normalized``;
* ``training`` — ``train`` (seeded, cached under ``cache_dir()`` with signed files), ``TrainResult``,
  ``accuracy``;
* ``zoo`` — the course's models: ``course_model``, ``clever_hans_model``, ``clone_model`` and the
  opt-in ``load_pretrained``;
* ``text`` — ``TextClassifier`` and ``train_text_classifier``.

Every public name is importable from ``xaicourse.models`` as before the split.
"""
from ..device import current_device, get_device  # noqa: F401  (``train`` looks current_device up here)
from .architectures import MLP, LogisticRegression, Normalized, SmallCNN
from .text import TextClassifier, train_text_classifier
from .training import (TrainResult, _cache_key, _check_training_data, _load_verified, _save_verified, _sign,
                       _tensor_digest, accuracy, cache_dir, train)
from .zoo import COURSE_RECIPES, clever_hans_model, clone_model, course_model, load_pretrained

__all__ = ["SmallCNN", "MLP", "LogisticRegression", "Normalized", "TextClassifier", "train_text_classifier",
           "TrainResult", "train", "accuracy", "cache_dir", "COURSE_RECIPES", "course_model", "clever_hans_model",
           "clone_model", "load_pretrained"]
