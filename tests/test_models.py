import numpy as np
import pytest
import torch

from xaicourse import data, models


@pytest.fixture()
def tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("dataset", ["digits", "shapes"])
def test_course_cnn_reaches_95_percent(dataset):
    model, split, res = models.course_model(dataset, progress=False)
    acc = models.accuracy(model, split.X_test, split.y_test)
    assert acc >= 0.95, f"{dataset}: test accuracy {acc:.3f}"
    assert res.history[-1] < res.history[0]


def test_train_is_deterministic_under_seed(tmp_cache):
    s = data.load_digits_tensors()
    X, y = s.X_train[:300], s.y_train[:300]
    r1 = models.train(models.MLP(64, 10), X, y, epochs=3, seed=7, cache=False, progress=False)
    r2 = models.train(models.MLP(64, 10), X, y, epochs=3, seed=7, cache=False, progress=False)
    r3 = models.train(models.MLP(64, 10), X, y, epochs=3, seed=8, cache=False, progress=False)
    assert r1.history == r2.history
    for a, b in zip(r1.model.parameters(), r2.model.parameters()):
        assert torch.equal(a, b)
    assert r1.history != r3.history


def test_checkpoints_every_k_epochs(tmp_cache):
    s = data.load_digits_tensors()
    r = models.train(models.LogisticRegression(64, 10), s.X_train[:200], s.y_train[:200], epochs=6, lr=0.1,
                     optimizer="sgd", lr_decay=0.5, checkpoint_every=2, progress=False)
    assert [c["epoch"] for c in r.checkpoints] == [2, 4, 6]
    assert [c["lr"] for c in r.checkpoints] == pytest.approx([0.05, 0.0125, 0.003125])
    last = r.checkpoints[-1]["state_dict"]
    assert torch.equal(last["linear.weight"], r.model.linear.weight.detach().cpu())
    assert not torch.equal(r.checkpoints[0]["state_dict"]["linear.weight"], last["linear.weight"])


def _small_run(**kw):
    s = data.load_digits_tensors()
    return models.train(models.LogisticRegression(64, 10), s.X_train[:200], s.y_train[:200], epochs=2,
                        progress=False, **kw)


def test_cache_hit_returns_same_model(tmp_cache):
    r1 = _small_run(checkpoint_every=1)
    r2 = _small_run(checkpoint_every=1)
    assert not r1.from_cache and r2.from_cache
    assert torch.equal(r1.model.linear.weight, r2.model.linear.weight)
    assert r1.history == r2.history and len(r2.checkpoints) == 2
    r3 = _small_run(checkpoint_every=1, lr=0.5)  # other config: other key
    assert not r3.from_cache
    assert len(list(tmp_cache.glob("*.pt"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "garbage"])
def test_corrupted_cache_is_retrained(tmp_cache, damage):
    r1 = _small_run()
    (path,) = tmp_cache.glob("*.pt")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip_byte":
        i = len(raw) - 100
        path.write_bytes(raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:])
    else:
        path.write_bytes(b"not a model")
    r2 = _small_run()
    assert not r2.from_cache
    assert torch.equal(r1.model.linear.weight, r2.model.linear.weight)
    assert _small_run().from_cache  # the retrained file is valid again


def test_train_bad_arguments():
    X, y = torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    m = models.LogisticRegression(64, 10)
    with pytest.raises(ValueError, match="epochs"):
        models.train(m, X, y, epochs=0)
    with pytest.raises(ValueError, match="lr"):
        models.train(m, X, y, lr=0)
    with pytest.raises(ValueError, match="optimizer"):
        models.train(m, X, y, optimizer="lbfgs")
    with pytest.raises(ValueError, match="equal length"):
        models.train(m, X, y[:2])
    with pytest.raises(ValueError, match="dataset"):
        models.course_model("mnist")


def test_model_shapes_and_features():
    cnn = models.SmallCNN(3, 4)
    x = torch.rand(2, 3, 32, 32)
    assert cnn(x).shape == (2, 4) and cnn.features(x).shape == (2, 64)
    assert torch.allclose(cnn.head(cnn.features(x)), cnn(x))
    assert models.SmallCNN(1, 10)(torch.rand(5, 1, 8, 8)).shape == (5, 10)


def test_fine_tuning_keeps_weights_and_has_its_own_cache_key(tmp_cache):
    s = data.load_digits_tensors()
    X, y = s.X_train[:200], s.y_train[:200]
    base = models.train(models.LogisticRegression(64, 10), X, y, epochs=3, lr=0.05, progress=False).model
    w0 = base.linear.weight.detach().clone()
    # zero learning-rate-like check: one epoch of fine-tuning starts from w0, not from a fresh init
    ft = models.train(base, X, y, epochs=1, lr=1e-6, reinit=False, progress=False)
    assert not ft.from_cache
    assert torch.allclose(ft.model.linear.weight, w0, atol=1e-4)
    fresh = models.train(models.LogisticRegression(64, 10), X, y, epochs=1, lr=1e-6, progress=False)
    assert not torch.allclose(fresh.model.linear.weight, w0, atol=1e-2)


# ------------------------------------------------------------------ the package split (issue #25)
def test_models_package_keeps_every_public_name_and_the_cache_keys(tmp_cache):
    """``models.py`` became ``models/`` (architectures, training, zoo, text): the same names from
    ``xaicourse.models``, and cache files named as before the split (measured with the old module:
    these three names), so every cached course model stays valid."""
    from xaicourse.models import architectures, text, training, zoo
    for name in models.__all__:
        assert hasattr(models, name), name
    assert models.SmallCNN is architectures.SmallCNN and models.train is training.train
    assert models.course_model is zoo.course_model and models.TextClassifier is text.TextClassifier
    X = torch.linspace(0, 1, 20 * 64).reshape(20, 1, 8, 8)
    y = torch.arange(20) % 10
    for m in (models.LogisticRegression(64, 10), models.SmallCNN(1, 10, width=4), models.MLP(64, 10)):
        models.train(m, X, y, epochs=1, progress=False, device="cpu")
    assert sorted(p.name for p in tmp_cache.iterdir()) == [
        "LogisticRegression-0dcacf36dc55bc3b93ea.pt", "MLP-1bf4c236d16fa2c35c04.pt", "SmallCNN-f647ba6e8b479a584375.pt"]


def test_course_model_validates_its_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        models.course_model("mnist")
    with pytest.raises(ValueError, match="kind must be one of"):
        models.course_model("digits", kind="resnet")
    with pytest.raises(TypeError, match="progress"):
        models.course_model("digits", progress="no")
    with pytest.raises(TypeError, match="seed"):
        models.course_model("digits", seed=1.5)


# ------------------------------------------------------------------ the bad-input probe's findings (issue #25)
def _bn_mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                               torch.nn.Linear(8, 3)).train()


ACCURACY_BAD = [
    ("NaN in X", dict(X=lambda X: torch.where(torch.arange(16) == 0, float("nan"), X)), ValueError, "X contains NaN"),
    ("inf in X", dict(X=lambda X: X + float("inf")), ValueError, "X contains NaN or inf"),
    ("X without a batch dim", dict(X=lambda X: X[0]), ValueError, "X and y must be of equal length"),
    ("X with an extra leading dim", dict(X=lambda X: X[None]), ValueError, "X and y must be of equal length"),
    ("empty X", dict(X=lambda X: X[:0]), ValueError, "X is empty"),
    ("int X", dict(X=lambda X: (X * 255).long()), TypeError, "X must be a floating-point tensor"),
    ("float64 X", dict(X=lambda X: X.double()), TypeError, "X has dtype torch.float64"),
    ("numpy X", dict(X=lambda X: X.numpy()), TypeError, "X and y must be torch tensors"),
    ("X=None", dict(X=lambda X: None), TypeError, "X and y must be torch tensors"),
    ("wrong-size X", dict(X=lambda X: X[:, :5]), ValueError, "the model cannot take X"),
    ("labels out of range", dict(y=lambda y: torch.where(torch.arange(8) == 0, 3, y)), ValueError,
     r"y must lie in \[0, 3\)"),
    ("negative labels", dict(y=lambda y: torch.where(torch.arange(8) == 0, -1, y)), ValueError, "y must lie in"),
    ("float labels", dict(y=lambda y: y.float() + 0.5), TypeError, "y must hold integer class labels"),
    ("labels of shape (N, 1)", dict(y=lambda y: y[:, None]), ValueError, r"y must have shape \(8,\)"),
    ("too few labels", dict(y=lambda y: y[:-1]), ValueError, "X and y must be of equal length"),
    ("batch_size=0", dict(batch_size=0), ValueError, "batch_size must be positive"),
    ("batch_size=-1", dict(batch_size=-1), ValueError, "batch_size must be positive"),
    ("batch_size=2.5", dict(batch_size=2.5), TypeError, "batch_size must be an int"),
    ("batch_size=True", dict(batch_size=True), TypeError, "batch_size must be an int"),
    ("batch_size=None", dict(batch_size=None), TypeError, "batch_size must be an int"),
    ("model a string", dict(model="model"), TypeError, "model must be a torch.nn.Module"),
]


@pytest.mark.parametrize("case", ACCURACY_BAD, ids=[c[0] for c in ACCURACY_BAD])
def test_accuracy_bad_input(case):
    _, override, exc, match = case
    X, y = torch.rand(8, 16, generator=torch.Generator().manual_seed(1)), torch.arange(8) % 3
    kw = dict(model=_bn_mlp(), X=X, y=y, batch_size=4)
    for k, v in override.items():
        kw[k] = v(kw[k]) if callable(v) else v
    with pytest.raises(exc, match=match):
        models.accuracy(kw.pop("model"), kw.pop("X"), kw.pop("y"), **kw)


def test_accuracy_is_the_eval_mode_hit_rate_and_leaves_a_batchnorm_model_as_found():
    m = _bn_mlp()
    X = torch.rand(8, 16, generator=torch.Generator().manual_seed(1))
    m(torch.rand(32, 16))                                   # running statistics ≠ the fresh ones
    state = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        pred = m.eval()(X).argmax(1)
    m.train()
    y = pred.clone()
    y[:3] = (y[:3] + 1) % 3                                  # exactly 3 of 8 wrong
    assert models.accuracy(m, X, y, batch_size=3) == 5 / 8
    assert models.accuracy(m, X, y, batch_size=np.int64(8)) == 5 / 8           # a numpy int batch size
    with pytest.raises(TypeError, match=r"convert y with torch.as_tensor\(y\)"):   # as train: tensors only
        models.accuracy(m, X, y.tolist())
    assert m.training and all(mod.training for mod in m.modules())
    assert all(torch.equal(state[k], v) for k, v in m.state_dict().items())


@pytest.mark.parametrize("kw, exc, match", [
    (dict(cache="yes"), TypeError, "cache must be True or False"),
    (dict(cache=2), TypeError, "cache must be True or False"),
    (dict(progress="no"), TypeError, "progress must be True or False"),
    (dict(progress=2), TypeError, "progress must be True or False"),
    (dict(reinit=1), TypeError, "reinit must be True or False"),
    (dict(seed=-1), ValueError, "seed must be ≥ 0"),
    (dict(tag=3), TypeError, "tag must be a string"),
])
def test_train_refuses_non_bool_flags_and_negative_seeds(tmp_cache, kw, exc, match):
    X, y = torch.rand(8, 16), torch.arange(8) % 3
    with pytest.raises(exc, match=match):
        models.train(models.MLP(16, 3), X, y, epochs=1, **({"progress": False} | kw))
    assert not any(tmp_cache.iterdir()), "a refused call must not write the cache"
