"""The course's models: ``course_model`` (the standard trained model of each dataset, cached),
``clever_hans_model`` (lectures 03 and 08), ``clone_model``, and the opt-in ``load_pretrained``.
"""
from __future__ import annotations

import copy
import os

from torch import nn

from .._validate import check_bool, check_choice, check_int
from .architectures import MLP, LogisticRegression, Normalized, SmallCNN
from .training import train

__all__ = ["COURSE_RECIPES", "course_model", "clever_hans_model", "clone_model", "load_pretrained"]


# The course's standard models: one call gives the same trained model in every lecture.
COURSE_RECIPES = {
    "digits": dict(epochs=20, lr=3e-3, batch_size=64, width=16),
    "shapes": dict(epochs=20, lr=3e-3, batch_size=64, width=16, n_train=2000, n_test=500),
}


def course_model(dataset: str = "digits", kind: str = "cnn", device=None, progress: bool = True,
                 checkpoint_every: int = 0, seed: int = 0):
    """Train (or load from cache) the course's standard model on a built-in dataset.

    dataset: "digits" (8×8, 10 classes) or "shapes" (32×32 RGB, 4 classes).
    kind: "cnn" (SmallCNN), "mlp" or "logreg". Returns ``(model, split, result)``.
    """
    from .. import data as _data

    check_choice("dataset", dataset, COURSE_RECIPES)
    check_choice("kind", kind, ("cnn", "mlp", "logreg"))
    progress = check_bool("progress", progress)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, min=0)
    seed = check_int("seed", seed, min=0)
    r = COURSE_RECIPES[dataset]
    split = (_data.load_digits_tensors() if dataset == "digits"
             else _data.load_shapes_split(r["n_train"], r["n_test"]))
    c, h, w = split.image_shape
    if kind == "cnn":
        model = SmallCNN(c, split.n_classes, width=r["width"])
    elif kind == "mlp":
        model = MLP(c * h * w, split.n_classes)
    else:
        model = LogisticRegression(c * h * w, split.n_classes)
    res = train(model, split.X_train, split.y_train, epochs=r["epochs"], lr=r["lr"],
                batch_size=r["batch_size"], seed=seed, checkpoint_every=checkpoint_every,
                device=device, progress=progress)
    return res.model, split, res


def clever_hans_model(n_train: int = 2000, seed: int = 0, device=None, epochs: int = 10):
    """The Clever-Hans CNN of lectures 03 and 08: a SmallCNN(3, 4, width=16) trained on shapes where
    90 % of the training images carry a bright corner patch whose corner is given by the class
    (``data.load_shapes_split(n_train, 300, watermark=0.9)``; the test images carry none).

    Returns ``(model, split)``; cached like ``train``. Cue-carrying test images with their cue
    and object masks: ``data.make_shapes(n, seed=..., watermark=1.0)``.
    """
    from .. import data as _data

    n_train = check_int("n_train", n_train, min=8)
    split = _data.load_shapes_split(n_train, 300, watermark=0.9, seed=0)
    res = train(SmallCNN(3, 4, width=16), split.X_train, split.y_train, epochs=epochs, lr=3e-3, seed=seed,
                device=device, progress=False)
    return res.model.eval(), split


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy (for experiments that modify weights)."""
    return copy.deepcopy(model)


_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_pretrained(name: str = "resnet18", source: str = "timm", allow_download: bool = False) -> nn.Module:
    """Opt-in: an ImageNet-pretrained model from timm or torchvision, taking inputs in [0, 1].

    The course runs offline; this path needs the weights, which are downloaded on first use
    (timm: Hugging Face Hub; torchvision: download.pytorch.org) and cached. You must opt in
    with ``allow_download=True`` (or env ``XAICOURSE_ALLOW_DOWNLOAD=1``). When the weights are
    neither cached nor downloadable a ``RuntimeError`` says so and what to do instead.
    Layer names for objectives: ``"model." + name`` from ``model.model.named_modules()``.
    """
    if source not in ("timm", "torchvision"):
        raise ValueError(f"source must be 'timm' or 'torchvision', got {source!r}")
    if not (allow_download or os.environ.get("XAICOURSE_ALLOW_DOWNLOAD", "0") == "1"):
        raise RuntimeError(
            f"load_pretrained({name!r}) needs pretrained weights from the internet, and the course "
            "is offline by default. Opt in with load_pretrained(..., allow_download=True) or set "
            "XAICOURSE_ALLOW_DOWNLOAD=1; otherwise use xaicourse.models.course_model('digits'|'shapes').")
    if source == "timm":
        import timm

        if not timm.is_model(name):
            raise ValueError(f"name {name!r} is not a timm model; see timm.list_models(pretrained=True)")
        where = "the Hugging Face Hub (huggingface.co)"

        def build():
            m = timm.create_model(name, pretrained=True)
            cfg = getattr(m, "pretrained_cfg", {}) or {}
            return m, cfg.get("mean", _IMAGENET_MEAN), cfg.get("std", _IMAGENET_STD)
    else:
        import torchvision

        if name not in torchvision.models.list_models():
            raise ValueError(f"name {name!r} is not a torchvision model; see torchvision.models.list_models()")
        where = "download.pytorch.org"

        def build():
            return torchvision.models.get_model(name, weights="DEFAULT"), _IMAGENET_MEAN, _IMAGENET_STD
    try:
        model, mean, std = build()
    except Exception as err:  # network errors come in many types (URLError, OSError, HF hub errors)
        raise RuntimeError(
            f"could not load pretrained weights for {source} model {name!r}: they are not in the local "
            f"cache and downloading from {where} failed ({type(err).__name__}: {err}). "
            "Connect to the internet once (weights are cached afterwards), or use the offline course "
            "models: xaicourse.models.course_model('digits'|'shapes').") from err
    return Normalized(model, mean, std).eval()
