"""Small models for the course and a deterministic, cached ``train``.

Models keep every ReLU as its own ``nn.ReLU`` module (captum's GuidedBackprop and our
hooks need that) and expose ``features(x)`` (penultimate layer) and ``head`` (the last
linear layer) for the data-attribution lectures.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .device import current_device, get_device


class SmallCNN(nn.Module):
    """(x − 0.5) → conv1 → relu1 → pool1 → conv2 → relu2 → pool2 → conv3 → relu3 → global max
    pool → fc1 → relu4 → fc2 (logits).

    Works on any image size ≥ 4. Named layers: ``conv1``, ``conv2``, ``conv3`` (inner units
    for feature visualisation; ``conv3`` is the last conv layer, for Grad-CAM), ``fc1``,
    ``fc2`` (= ``head``). Inputs are expected in [0, 1]; the model centres them itself.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 10, width: int = 16, hidden: int = 64):
        super().__init__()
        self.config = dict(in_channels=in_channels, n_classes=n_classes, width=width, hidden=hidden)
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.relu3 = nn.ReLU()
        self.gmp = nn.AdaptiveMaxPool2d(1)
        self.fc1 = nn.Linear(4 * width, hidden)
        self.relu4 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.fc2

    def conv_features(self, x: torch.Tensor) -> torch.Tensor:
        """Activations of ``relu3`` (the last conv block), shape (N, 4·width, H/4, W/4)."""
        x = self.pool1(self.relu1(self.conv1(x - 0.5)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.relu3(self.conv3(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (after fc1's ReLU), shape (N, hidden)."""
        return self.relu4(self.fc1(self.gmp(self.conv_features(x)).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.features(x))


class MLP(nn.Module):
    """flatten → fc1 → relu1 → fc2 → relu2 → fc3 (logits)."""

    def __init__(self, in_features: int = 64, n_classes: int = 10, hidden: int = 64):
        super().__init__()
        self.config = dict(in_features=in_features, n_classes=n_classes, hidden=hidden)
        self.fc1 = nn.Linear(in_features, hidden)
        self.relu1 = nn.ReLU()
        self.fc2 = nn.Linear(hidden, hidden)
        self.relu2 = nn.ReLU()
        self.fc3 = nn.Linear(hidden, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.fc3

    def features(self, x):
        return self.relu2(self.fc2(self.relu1(self.fc1(x.flatten(1)))))

    def forward(self, x):
        return self.fc3(self.features(x))


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: one linear layer on the flattened input."""

    def __init__(self, in_features: int = 64, n_classes: int = 10):
        super().__init__()
        self.config = dict(in_features=in_features, n_classes=n_classes)
        self.linear = nn.Linear(in_features, n_classes)

    @property
    def head(self) -> nn.Linear:
        return self.linear

    def features(self, x):
        return x.flatten(1)

    def forward(self, x):
        return self.linear(x.flatten(1))


class TextClassifier(nn.Module):
    """A tiny text classifier over token ids (N, L): embedding → ``body``.

    ``body`` (an ``nn.Sequential`` taking embeddings channels-first, (N, dim, L) → logits): conv1d
    over positions (kernel 3) → ReLU → max over positions → linear. Attribution methods explain
    ``body`` on ``embed(tokens)`` (float inputs), then reduce over the embedding axis (dim 1) per token.
    """

    def __init__(self, vocab_size: int, n_classes: int = 2, dim: int = 16, channels: int = 32):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, n_classes=n_classes, dim=dim, channels=channels)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.body = nn.Sequential(nn.Conv1d(dim, channels, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(channels, n_classes))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (N, L) → embeddings, channels first: (N, dim, L)."""
        return self.embedding(tokens).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(tokens))


def train_text_classifier(tokens: torch.Tensor, labels: torch.Tensor, vocab_size: int, *, epochs: int = 15,
                          lr: float = 1e-2, batch_size: int = 64, seed: int = 0, **model_options) -> "TextClassifier":
    """A ``TextClassifier`` trained with Adam and cross-entropy on token ids (N, L) (``train`` takes
    float inputs only), deterministically under ``seed`` (local RNG), on the CPU; returned in eval mode."""
    from ._validate import check_int, check_labels, check_real

    tokens = torch.as_tensor(tokens)
    if tokens.dtype != torch.int64 or tokens.dim() != 2:
        raise TypeError(f"tokens must be an int64 tensor (N, L) of token ids, got {tokens.dtype} {tuple(tokens.shape)}")
    vocab_size = check_int("vocab_size", vocab_size, min=1)
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise ValueError(f"tokens must lie in [0, vocab_size={vocab_size})")
    epochs, batch_size = check_int("epochs", epochs, min=1), check_int("batch_size", batch_size, min=1)
    lr = check_real("lr", lr, min=0.0, min_inclusive=False)
    y = check_labels("labels", labels, len(tokens), model_options.get("n_classes", 2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed))
        model = TextClassifier(vocab_size, **model_options)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(tokens), generator=g)
            for i in range(0, len(tokens), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(model(tokens[idx]), y[idx]).backward()
                opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()


@dataclass
class TrainResult:
    """What ``train`` returns. ``checkpoints`` is a list of dicts
    ``{"epoch", "state_dict", "lr"}`` (empty unless ``checkpoint_every`` was set)."""
    model: nn.Module
    history: list
    checkpoints: list = field(default_factory=list)
    from_cache: bool = False

    def __iter__(self):  # allows: model, history, ckpts = train(...)
        return iter((self.model, self.history, self.checkpoints))


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Fraction of ``X`` classified as ``y``."""
    dev = next(model.parameters()).device
    was = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            correct += (model(X[i:i + batch_size].to(dev)).argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    model.train(was)
    return correct / len(X)


def _tensor_digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def cache_dir() -> Path:
    """Where trained models are cached: ``$XAICOURSE_CACHE`` or ``~/.cache/xaicourse``."""
    return Path(os.environ.get("XAICOURSE_CACHE", Path.home() / ".cache" / "xaicourse"))


_MAGIC = b"XAIC2"


def _cache_key() -> bytes:
    """This machine's secret for signing cache files (created once, readable only by you).

    A cache file is trusted only if it carries an HMAC made with this key, so a file planted by
    anything that does not know the key — e.g. code run during grading, which sees the cache
    read-only — is ignored and the model retrained. ``XAICOURSE_CACHE_KEY`` overrides the file.
    """
    env = os.environ.get("XAICOURSE_CACHE_KEY")
    if env:
        return env.encode()
    path = Path(os.environ.get("XAICOURSE_KEY_FILE", Path.home() / ".config" / "xaicourse" / "cache.key"))
    try:
        return path.read_bytes()
    except OSError:
        pass
    key = os.urandom(32).hex().encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
    except FileExistsError:
        return path.read_bytes()
    except OSError:
        pass  # read-only home (e.g. inside the grading sandbox): this process signs with a throw-away key
    return key


def _sign(payload: bytes) -> bytes:
    import hmac

    return hmac.new(_cache_key(), payload, hashlib.sha256).hexdigest().encode()


def _save_verified(obj, path: Path) -> None:
    """Write ``obj`` with a magic header and an HMAC; atomically. A read-only cache is not an error."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        tmp.write_bytes(_MAGIC + _sign(payload) + payload)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache file
    except OSError as err:
        import warnings

        warnings.warn(f"could not write the model cache {path.parent} ({err.strerror}); the model is not cached")


def _load_verified(path: Path):
    """The cached object, or None when the file is missing, truncated, corrupted or not signed here."""
    import hmac

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + 64
    if len(raw) < head or not raw.startswith(_MAGIC):
        return None
    if not hmac.compare_digest(_sign(raw[head:]), raw[len(_MAGIC):head]):
        return None
    try:
        return torch.load(io.BytesIO(raw[head:]), map_location="cpu", weights_only=True)
    except Exception:
        return None


def _check_training_data(model: nn.Module, X, y) -> tuple[torch.Tensor, torch.Tensor]:
    """X, y checked against the model before anything is trained or cached."""
    from ._torch import check_inputs, model_device
    from ._validate import check_labels

    if not isinstance(X, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"X and y must be torch tensors, got {type(X).__name__} and {type(y).__name__}")
    if len(X) == 0:
        raise ValueError("X is empty: nothing to train on")
    if len(X) != len(y):
        raise ValueError(f"X and y must be of equal length, got {len(X)} and {len(y)}")
    X = check_inputs(model, X, name="X").to(X.device)
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            n_out = model(X[:1].to(model_device(model))).shape[-1]
        finally:
            model.train(was)
    y = check_labels("y", y, len(X), n_out)
    return X, y


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 10, lr: float = 1e-2,
          batch_size: int = 64, optimizer: str = "adam", weight_decay: float = 0.0,
          lr_decay: float = 1.0, seed: int = 0, checkpoint_every: int = 0, device=None,
          cache: bool = True, progress: bool = True, tag: str = "", reinit: bool = True) -> TrainResult:
    """Train ``model`` with cross-entropy on (X, y), deterministically under ``seed``.

    X: (N, ...) float tensor of the model's dtype; y: (N,) int64 class labels in [0, n_outputs).
    The model's initial weights are re-drawn from ``seed`` so the same call gives the same
    numbers; ``reinit=False`` keeps the current weights instead (fine-tuning). ``optimizer`` is
    "adam" or "sgd" (momentum 0.9); the learning rate is multiplied by ``lr_decay`` after each
    epoch. ``checkpoint_every=k`` keeps a copy of the state dict and the current learning rate
    every k epochs (TracIn needs them). ``device=None`` means ``current_device()`` (the toggle).
    Returns ``TrainResult(model, history, checkpoints)``; ``history`` holds the mean training
    loss of each epoch.

    Seeding is local: training runs inside ``torch.random.fork_rng``, so the global RNG state
    after ``train`` is the same whether the model came from the cache or was trained.
    With ``cache=True`` the result is stored under ``cache_dir()`` keyed by a hash of the
    architecture, data and hyper-parameters; a re-run loads it instead of training. A truncated
    or corrupted cache file is detected (SHA-256) and the model retrained.
    """
    from ._torch import check_model
    from ._validate import check_choice, check_int, check_real

    check_model(model)
    epochs = check_int("epochs", epochs, min=1)
    lr = check_real("lr", lr, min=0.0, min_inclusive=False)
    batch_size = check_int("batch_size", batch_size, min=1)
    check_choice("optimizer", optimizer, ("adam", "sgd"))
    weight_decay = check_real("weight_decay", weight_decay, min=0.0)
    lr_decay = check_real("lr_decay", lr_decay, min=0.0, min_inclusive=False)
    seed = check_int("seed", seed)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, min=0)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (all have requires_grad=False): unfreeze some "
                         "with p.requires_grad_(True) before training")
    dev = current_device() if device is None else get_device(device)
    X, y = _check_training_data(model, X, y)
    config = dict(arch=type(model).__name__, repr=repr(model), cfg=getattr(model, "config", None),
                  X=_tensor_digest(X), y=_tensor_digest(y), epochs=epochs, lr=lr, batch_size=batch_size,
                  optimizer=optimizer, weight_decay=weight_decay, lr_decay=lr_decay, seed=seed,
                  checkpoint_every=checkpoint_every, tag=tag,
                  frozen=[n for n, p in model.named_parameters() if not p.requires_grad] or None,
                  start=None if reinit else _tensor_digest(torch.cat([p.detach().flatten().cpu()
                                                                      for p in model.parameters()])))
    key = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:20]
    path = cache_dir() / f"{config['arch']}-{key}.pt"
    if cache:
        blob = _load_verified(path)
        if blob is not None:
            model.load_state_dict(blob["state_dict"])
            model.to(dev).eval()
            return TrainResult(model, blob["history"], blob["checkpoints"], from_cache=True)

    devices = [dev] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        history, checkpoints = _fit(model, X, y, dev, epochs, lr, batch_size, optimizer, weight_decay,
                                    lr_decay, seed, checkpoint_every, progress, reinit, config["arch"])
    if cache:
        _save_verified({"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                        "history": history, "checkpoints": checkpoints}, path)
    return TrainResult(model, history, checkpoints)


def _fit(model, X, y, dev, epochs, lr, batch_size, optimizer, weight_decay, lr_decay, seed, checkpoint_every,
         progress, reinit, arch):
    """The training loop of ``train`` (runs under its forked, seeded RNG)."""
    if reinit:
        for m in model.modules():  # fresh, seeded initial weights
            if hasattr(m, "reset_parameters") and m is not model:
                m.reset_parameters()
    model.to(dev).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.Adam(params, lr=lr, weight_decay=weight_decay) if optimizer == "adam"
           else torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay))
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    history, checkpoints = [], []
    bar = tqdm(range(epochs), desc=f"train {arch}", disable=not progress, leave=False)
    for epoch in bar:
        perm = torch.randperm(len(X), generator=gen)
        total = 0.0
        for i in range(0, len(X), batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = X[idx].to(dev), y[idx].to(dev)
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            if not torch.isfinite(loss):
                model.eval()
                raise FloatingPointError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                         f"lower lr (now {lr})")
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(X))
        bar.set_postfix(loss=f"{history[-1]:.4f}")
        if checkpoint_every and (epoch + 1) % checkpoint_every == 0:
            checkpoints.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                                "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}})
        for g in opt.param_groups:
            g["lr"] *= lr_decay
    model.eval()
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        raise FloatingPointError(f"training produced non-finite weights; lower lr (now {lr})")
    opt.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.grad = None
    return history, checkpoints


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
    from . import data as _data

    if dataset not in COURSE_RECIPES:
        raise ValueError(f"dataset must be one of {tuple(COURSE_RECIPES)}, got {dataset!r}")
    if kind not in ("cnn", "mlp", "logreg"):
        raise ValueError(f"kind must be 'cnn', 'mlp' or 'logreg', got {kind!r}")
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
    from . import data as _data
    from ._validate import check_int

    n_train = check_int("n_train", n_train, min=8)
    split = _data.load_shapes_split(n_train, 300, watermark=0.9, seed=0)
    res = train(SmallCNN(3, 4, width=16), split.X_train, split.y_train, epochs=epochs, lr=3e-3, seed=seed,
                device=device, progress=False)
    return res.model.eval(), split


def clone_model(model: nn.Module) -> nn.Module:
    """A deep copy (for experiments that modify weights)."""
    return copy.deepcopy(model)


# ------------------------------------------------------------------ opt-in pretrained models
class Normalized(nn.Module):
    """Wrap an ImageNet model so that it takes inputs in [0, 1]: (x − mean)/std → model."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.model((x - self.mean) / self.std)


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
