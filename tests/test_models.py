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
