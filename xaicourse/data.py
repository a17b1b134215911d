"""Offline, deterministic datasets for the course.

* ``load_digits_tensors()`` — scikit-learn's bundled 8×8 digits as torch tensors with a
  fixed stratified train/test split (no download).
* ``make_shapes(n, ...)`` — procedurally drawn RGB images of simple shapes on textured
  backgrounds, each with a per-pixel ground-truth mask of the object; optionally a
  spurious corner "watermark" correlated with the label (for Clever-Hans lessons) and a
  fraction of flipped labels (for data-attribution lessons).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ._validate import as_tensor, check_choice, check_int, check_real, renamed

SHAPE_CLASSES = ("circle", "square", "triangle", "cross")
MAX_IMAGES = 200_000  # make_shapes / load_shapes_split: more would not fit in memory at size 32
MAX_SENTENCES = 10_000_000
WATERMARK_CORNERS = ("class", "random")


@dataclass
class Split:
    """A train/test split of image tensors (N, C, H, W) in [0, 1] with int64 labels."""
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple
    extras: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.X_train.shape[1:])


def load_digits_tensors(test_size: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's digits (1,797 images, 8×8, 10 classes) as ``Split`` tensors.

    Images are scaled from 0..16 to [0, 1] and shaped (N, 1, 8, 8). The split is
    stratified and fixed by ``seed`` (default split: 1,347 train / 450 test).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    test_size = check_real("test_size", test_size, min=0.0, max=1.0, min_inclusive=False, max_inclusive=False)
    seed = check_int("seed", seed, min=0, max=2 ** 32 - 1)
    d = load_digits()
    if not 10 <= round(test_size * len(d.target)) <= len(d.target) - 10:
        raise ValueError(f"test_size={test_size} leaves fewer than 10 images (one per class) on one side of "
                         f"the split; use a value in [0.01, 0.99]")
    X = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)
    return Split(torch.from_numpy(Xtr), torch.from_numpy(ytr), torch.from_numpy(Xte),
                 torch.from_numpy(yte), tuple(str(c) for c in range(10)))


@dataclass
class Shapes:
    """Output of ``make_shapes``.

    images: (n, 3, size, size) float32 in [0, 1]; labels: (n,) int64 (after any flips);
    masks: (n, size, size) bool, True on the object's pixels; clean_labels: labels before
    flipping; flipped: (n,) bool; cue_masks: (n, size, size) bool, True on the watermark.
    """
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    clean_labels: torch.Tensor
    flipped: torch.Tensor
    cue_masks: torch.Tensor
    class_names: tuple

    def __len__(self):
        return len(self.labels)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth random background: low-frequency noise plus faint stripes, (3, size, size)."""
    coarse = rng.random((3, 4, 4))
    t = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None].float(), size=(size, size),
                                        mode="bicubic", align_corners=True)[0].numpy()
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(3, 7)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    bg = 0.25 + 0.35 * t + 0.1 * stripes[None]
    bg += rng.normal(0, 0.03, size=bg.shape)
    return bg


def _shape_mask(kind: str, size: int, cx: float, cy: float, r: float, rot: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    dx, dy = xx - cx, yy - cy
    c, s = np.cos(rot), np.sin(rot)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotated coordinates
    if kind == "circle":
        return dx**2 + dy**2 <= r**2
    if kind == "square":
        h = r * 0.85
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    if kind == "triangle":
        # equilateral triangle with circumradius r, pointing "up" in (u, v)
        pts = [(r * np.cos(a), r * np.sin(a)) for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6)]
        inside = np.ones_like(u, dtype=bool)
        for i in range(3):
            (x1, y1), (x2, y2) = pts[i], pts[(i + 1) % 3]
            inside &= (x2 - x1) * (v - y1) - (y2 - y1) * (u - x1) >= 0
        return inside
    if kind == "cross":
        w = r * 0.35
        return ((np.abs(u) <= w) & (np.abs(v) <= r)) | ((np.abs(v) <= w) & (np.abs(u) <= r))
    raise ValueError(f"classes: unknown shape {kind!r}; choose from {SHAPE_CLASSES}")


def make_shapes(n: int, size: int = 32, seed: int = 0, classes=SHAPE_CLASSES,
                watermark: float = 0.0, flip_fraction: float = 0.0,
                noise: float = 0.03, watermark_corner: str = "class") -> Shapes:
    """Draw ``n`` RGB images of shapes with ground-truth object masks.

    n: number of images (> 0); size: side in pixels (≥ 16); seed: fixes everything.
    classes: subset of ``SHAPE_CLASSES`` (label k = classes[k]); labels are balanced.
    watermark: probability in [0, 1] that an image carries a small bright patch in the
        corner belonging to its class (corner k % 4). 0 = no cue at all; 1 = a perfectly
        predictive spurious cue. Images without the class cue get none.
    watermark_corner: ``"class"`` (default) — the patch sits in the corner of the image's class,
        a spurious cue; ``"random"`` — the same patch, as often, in a corner drawn independently
        of the label: the images look alike but the cue predicts nothing (the control network of
        lecture 09, which sees watermarks in training and has no reason to use them).
    flip_fraction: fraction in [0, 1] of labels replaced by a different random class;
        ``flipped`` says which, ``clean_labels`` keeps the truth.
    """
    return _make_shapes(n, size, seed, classes, watermark, flip_fraction, noise, watermark_corner)


def _make_shapes(n, size, seed, classes, watermark, flip_fraction, noise, watermark_corner, n_name="n"):
    n = check_int(n_name, n, min=1, max=MAX_IMAGES)
    size = check_int("size", size, min=16, max=1024)
    if n * size * size > MAX_IMAGES * 32 * 32:
        raise ValueError(f"{n_name}={n} images of size={size} would need "
                         f"{n * 3 * size * size * 4 / 2 ** 30:.1f} GiB; make {n_name} or size smaller")
    seed = check_int("seed", seed, min=0)
    noise = check_real("noise", noise, min=0.0)
    if isinstance(classes, (str, bytes)) or not hasattr(classes, "__iter__"):
        raise TypeError(f"classes must be a sequence of shape names from {SHAPE_CLASSES}, got {classes!r}")
    classes = tuple(classes)
    if len(classes) < 2:
        raise ValueError(f"classes must name at least two shapes, got {classes}")
    for c in classes:
        if c not in SHAPE_CLASSES:
            raise ValueError(f"classes: unknown shape {c!r}; choose from {SHAPE_CLASSES}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes must not repeat, got {classes}")
    watermark = check_real("watermark", watermark, min=0.0, max=1.0)
    flip_fraction = check_real("flip_fraction", flip_fraction, min=0.0, max=1.0)
    if not isinstance(watermark_corner, str) or watermark_corner not in WATERMARK_CORNERS:
        raise ValueError(f"watermark_corner must be 'class' (the cue of the label) or 'random' "
                         f"(uncorrelated with it), got {watermark_corner!r}")

    rng = np.random.default_rng(seed)
    k = len(classes)
    labels = np.arange(n) % k
    rng.shuffle(labels)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    cues = np.zeros((n, size, size), dtype=bool)
    for i in range(n):
        bg = _texture(rng, size)
        r = rng.uniform(0.2, 0.32) * size
        cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
        m = _shape_mask(classes[labels[i]], size, cx, cy, r, rng.uniform(0, 2 * np.pi))
        colour = rng.uniform(0.0, 1.0, size=3)
        colour[rng.integers(3)] = rng.uniform(0.85, 1.0)  # keep the object visible
        img = bg.copy()
        img[:, m] = colour[:, None] * 0.9 + 0.05
        if watermark > 0 and rng.random() < watermark:
            # "random" draws one extra number only in that mode: the default images stay identical
            corner = labels[i] % 4 if watermark_corner == "class" else int(rng.integers(4))
            y0, x0, patch = _watermark_box(corner, size)
            cues[i, y0:y0 + patch, x0:x0 + patch] = True
            img[:, cues[i]] = 1.0
        img += rng.normal(0, noise, size=img.shape)
        images[i] = np.clip(img, 0.0, 1.0)
        masks[i] = m & ~cues[i]

    clean = labels.copy()
    flipped = np.zeros(n, dtype=bool)
    n_flip = int(round(float(flip_fraction) * n))
    if n_flip:
        idx = rng.choice(n, size=n_flip, replace=False)
        labels[idx] = (labels[idx] + rng.integers(1, k, size=n_flip)) % k
        flipped[idx] = True
    return Shapes(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)),
                  torch.from_numpy(masks), torch.from_numpy(clean.astype(np.int64)),
                  torch.from_numpy(flipped), torch.from_numpy(cues), classes)


def _watermark_box(corner: int, size: int) -> tuple[int, int, int]:
    """Top-left (y0, x0) and side of the watermark patch in ``corner`` (0 TL, 1 TR, 2 BL, 3 BR)."""
    patch = max(2, size // 8)
    y0 = 1 if corner in (0, 1) else size - patch - 1
    x0 = 1 if corner in (0, 2) else size - patch - 1
    return y0, x0, patch


CORNER_NAMES = ("top-left", "top-right", "bottom-left", "bottom-right")


@renamed(images="inputs")
def add_watermark(inputs: torch.Tensor, corner) -> torch.Tensor:
    """A copy of (N, C, H, W) images in [0, 1] with ``make_shapes``' white watermark patch stamped
    in ``corner`` (0 or "top-left", 1 "top-right", 2 "bottom-left", 3 "bottom-right") — the concept
    examples and the intervention of lecture 09. ``images=`` is the deprecated name of ``inputs``.
    numpy arrays / lists are accepted; the result is a tensor in the inputs' float dtype."""
    images = as_tensor("inputs", inputs, ndim=4)
    if isinstance(corner, str):
        corner = CORNER_NAMES.index(check_choice("corner", corner, CORNER_NAMES))
    corner = check_int("corner", corner, min=0, max=3)
    y0, x0, patch = _watermark_box(corner, images.shape[-1])
    if min(images.shape[-2:]) < patch + 2:
        raise ValueError(f"inputs must be at least {patch + 2}×{patch + 2} pixels for the watermark, got "
                         f"{tuple(images.shape[-2:])}")
    out = images.clone()
    out[..., y0:y0 + patch, x0:x0 + patch] = 1.0
    return out


def load_shapes_split(n_train: int = 2000, n_test: int = 500, size: int = 32, seed: int = 0,
                      **kwargs) -> Split:
    """Train/test ``Split`` of ``make_shapes`` images (test drawn with another seed).

    Extra keyword arguments go to ``make_shapes`` for the training set only (so a
    watermark or label noise in training can be tested on clean images); the test set's
    masks are in ``split.extras['test_masks']``, training masks/flips in ``extras`` too.
    """
    n_train = check_int("n_train", n_train, min=1, max=MAX_IMAGES)
    n_test = check_int("n_test", n_test, min=1, max=MAX_IMAGES)
    seed = check_int("seed", seed, min=0)
    allowed = {"classes", "watermark", "flip_fraction", "noise", "watermark_corner"}
    unknown = set(kwargs) - allowed
    if unknown:
        raise TypeError(f"load_shapes_split got unexpected keyword arguments {sorted(unknown)}; make_shapes "
                        f"options are {sorted(allowed)}")
    opts = dict(classes=SHAPE_CLASSES, watermark=0.0, flip_fraction=0.0, noise=0.03, watermark_corner="class")
    tr = _make_shapes(n_train, size, seed, **{**opts, **kwargs}, n_name="n_train")
    te_kwargs = {**opts, "classes": kwargs.get("classes", SHAPE_CLASSES)}
    te = _make_shapes(n_test, size, seed + 10_007, **te_kwargs, n_name="n_test")
    return Split(tr.images, tr.labels, te.images, te.labels, tr.class_names,
                 extras={"train_masks": tr.masks, "test_masks": te.masks,
                         "flipped": tr.flipped, "clean_labels": tr.clean_labels,
                         "train_cue_masks": tr.cue_masks})


# ------------------------------------------------------------------ a text task with known rationales
POSITIVE_WORDS = ("good", "great", "superb", "lovely", "excellent", "enjoyable", "brilliant", "wonderful")
NEGATIVE_WORDS = ("bad", "awful", "boring", "dull", "terrible", "poor", "horrible", "weak")
NEUTRAL_WORDS = ("the", "a", "film", "movie", "plot", "actor", "scene", "story", "was", "is", "and", "it",
                 "this", "that", "of", "with", "director", "music", "ending", "very", "quite", "rather",
                 "cast", "script", "camera", "night", "city", "time", "really", "just", "its", "then")


@dataclass
class Sentiment:
    """Output of ``make_sentiment``: tokens (n, length) int64 ids into ``vocab``; labels (n,) int64
    (1 = positive); rationales (n, length) bool, True on the lexicon tokens that decide the label."""
    tokens: torch.Tensor
    labels: torch.Tensor
    rationales: torch.Tensor
    vocab: tuple

    def __len__(self):
        return len(self.labels)

    def text(self, i: int) -> str:
        return " ".join(self.vocab[int(t)] for t in self.tokens[i])


def make_sentiment(n: int, seed: int = 0, length: int = 12, max_cues: int = 3) -> Sentiment:
    """A synthetic sentiment task whose label is decided by lexicon tokens (the true rationale).

    Each sentence: ``length`` tokens of neutral filler with 1 … ``max_cues`` words of one polarity
    (``POSITIVE_WORDS`` or ``NEGATIVE_WORDS``) at random positions; the label is that polarity
    (balanced), and the rationale marks those words. vocab = neutral + positive + negative words.
    """
    n = check_int("n", n, min=1, max=MAX_SENTENCES)
    seed = check_int("seed", seed, min=0)
    length = check_int("length", length, min=2, max=10_000)
    max_cues = check_int("max_cues", max_cues, min=1, max=length)
    vocab = NEUTRAL_WORDS + POSITIVE_WORDS + NEGATIVE_WORDS
    n_neu, n_pos = len(NEUTRAL_WORDS), len(POSITIVE_WORDS)
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    rng.shuffle(labels)
    tokens = rng.integers(0, n_neu, size=(n, length))
    rationales = np.zeros((n, length), dtype=bool)
    for i in range(n):
        k = rng.integers(1, max_cues + 1)
        pos = rng.choice(length, size=k, replace=False)
        lex = rng.integers(0, n_pos, size=k) + (n_neu if labels[i] == 1 else n_neu + n_pos)
        tokens[i, pos] = lex
        rationales[i, pos] = True
    return Sentiment(torch.from_numpy(tokens.astype(np.int64)), torch.from_numpy(labels.astype(np.int64)),
                     torch.from_numpy(rationales), vocab)
