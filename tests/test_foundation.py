"""The foundation every lecture builds on: model state left untouched by every registered
attribution method, a table of bad calls that must fail clearly, the device rule, local
seeding, the grading helper, and the package's naming rule."""
import importlib
import pkgutil

import numpy as np
import pytest
import torch
from torch import nn

import xaicourse
from xaicourse import attribution as A
from xaicourse import data, device, models
from xaicourse.grading import ForbiddenCall, forbid

from xaicourse.attribution.shapley import patch_mask

OPTIONS = {"smoothgrad": dict(n_samples=3), "occlusion": dict(window=4, stride=4),
           "lime": dict(num_samples=30, segmentation="grid", cell=4),
           "integrated_gradients": dict(n_steps=8), "shapley_sampling": dict(n_samples=2),
           "shapley_exact": dict(feature_mask=patch_mask(16, 16, 8)),
           "meaningful_perturbation": dict(n_steps=5)}
# the bad-input table uses 8×8 digits
BAD_OPTIONS = OPTIONS | {"shapley_exact": dict(feature_mask=patch_mask(8, 8, 4))}
# propagation rules are defined for the course's sequential ReLU models only (no BatchNorm/Dropout)
SEQUENTIAL_ONLY = {"deeplift", "lrp"}


class BNDropNet(nn.Module):
    """Conv → BatchNorm → ReLU → Dropout → linear: the state an explanation must not disturb."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.5)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 4)

    def forward(self, x):
        return self.fc(self.pool(self.drop(self.relu(self.bn(self.conv(x))))).flatten(1))


def _state(model):
    return dict(
        modes=[m.training for m in model.modules()],
        sd={k: v.clone() for k, v in model.state_dict().items()},
        grads=[p.grad for p in model.parameters()],
        req=[p.requires_grad for p in model.parameters()],
        hooks=sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
                  for m in model.modules()),
        dev=[p.device for p in model.parameters()])


@pytest.mark.parametrize("method", list(A.METHODS))
def test_every_method_leaves_the_model_as_it_found_it(method):
    torch.manual_seed(0)
    if method in SEQUENTIAL_ONLY:
        model = models.SmallCNN(3, 4, width=4)
        model.conv1.bias.requires_grad_(False)
    else:
        model = BNDropNet()
        model.bn.running_mean.uniform_(0, 0.2)
        model.conv.bias.requires_grad_(False)  # a mixed requires_grad pattern must survive
    model.train()
    x, t = torch.rand(2, 3, 16, 16), [1, 3]
    before = _state(model)
    a1 = A.attribute(method, model, x, t, **OPTIONS.get(method, {}))
    a2 = A.attribute(method, model, x, t, **OPTIONS.get(method, {}))
    after = _state(model)
    assert a1.shape == x.shape and torch.isfinite(a1).all()
    assert torch.equal(a1, a2), "two identical calls on a train-mode model with dropout differ"
    assert after["modes"] == before["modes"] and all(before["modes"])
    for k in before["sd"]:  # BatchNorm running statistics and weights unchanged
        assert torch.equal(before["sd"][k], after["sd"][k]), k
    assert all(g is None for g in after["grads"]), "a .grad was left on the model"
    assert after["req"] == before["req"] and after["hooks"] == before["hooks"] == 0
    assert after["dev"] == before["dev"]
    # explained in eval mode: the map equals the eval-mode model's map
    ref = A.attribute(method, model.eval(), x, t, **OPTIONS.get(method, {}))
    assert torch.allclose(a1, ref, atol=1e-6)


def test_registry_and_attribute_errors():
    assert all(callable(f) for f in A.METHODS.values())
    model = BNDropNet().eval()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="method must be one of"):
        A.attribute("deeplift_typo", model, x, 0)
    with pytest.raises(TypeError, match="takes no option 'layer'"):
        A.attribute("gradient", model, x, 0, layer="conv")
    with pytest.raises(TypeError, match="layer as a keyword"):
        A.grad_cam(model, "conv", x, 0)
    assert torch.equal(A.grad_cam(model, x, 0), A.grad_cam(model, x, 0, layer="conv"))  # last Conv2d


# ------------------------------------------------------------------ bad input, table-driven
_cnn = models.SmallCNN(1, 10).eval()
_x = torch.rand(2, 1, 8, 8)
_y = torch.tensor([1, 2])

ATTRIBUTION_BAD = [
    ("float64 input for a float32 model", dict(inputs=_x.double()), TypeError, "dtype"),
    ("int64 images", dict(inputs=(_x * 16).long()), TypeError, "floating"),
    ("uint8 images", dict(inputs=(_x * 255).to(torch.uint8)), TypeError, "floating"),
    ("wrong channel count", dict(inputs=torch.rand(2, 3, 8, 8)), ValueError, "channels"),
    ("empty batch", dict(inputs=torch.rand(0, 1, 8, 8)), ValueError, "empty"),
    ("numpy array", dict(inputs=_x.numpy()), TypeError, "torch.Tensor"),
    ("NaN input", dict(inputs=torch.full((1, 1, 8, 8), float("nan"))), ValueError, "NaN"),
    ("unbatched image", dict(inputs=_x[0]), ValueError, "batched"),
    ("float target", dict(target=3.7), TypeError, "target"),
    ("target out of range", dict(target=10), ValueError, "target out of range"),
    ("bool target", dict(target=True), TypeError, "target"),
]


@pytest.mark.parametrize("method", list(A.METHODS) + ["perturbation_scores"])
@pytest.mark.parametrize("case", ATTRIBUTION_BAD, ids=[c[0] for c in ATTRIBUTION_BAD])
def test_attribution_bad_input(method, case):
    _, override, exc, match = case
    fn = A.perturbation_scores if method == "perturbation_scores" else A.METHODS[method]
    kw = dict(inputs=_x, target=1) | override
    with pytest.raises(exc, match=match):
        fn(_cnn, kw["inputs"], kw["target"], **BAD_OPTIONS.get(method, {}))


def _frozen():
    m = models.LogisticRegression(64, 10)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


TRAIN_BAD = [
    ("labels out of range", dict(y=torch.tensor([0, 10])), ValueError, r"y must lie in \[0, 10\)"),
    ("negative labels", dict(y=torch.tensor([-1, 0])), ValueError, "y must lie"),
    ("float labels", dict(y=torch.tensor([0.0, 1.0])), TypeError, "integer class labels"),
    ("labels of shape (N, 1)", dict(y=torch.tensor([[0], [1]])), ValueError, r"shape \(2,\)"),
    ("float64 X", dict(X=_x.double()), TypeError, "dtype"),
    ("uint8 X", dict(X=(_x * 255).to(torch.uint8)), TypeError, "floating"),
    ("wrong-size X", dict(X=torch.rand(2, 1, 5, 5)), ValueError, "features"),
    ("NaN in X", dict(X=torch.full((2, 1, 8, 8), float("nan"))), ValueError, "NaN"),
    ("numpy X", dict(X=_x.numpy()), TypeError, "torch tensors"),
    ("all parameters frozen", dict(model=_frozen), ValueError, "no trainable parameters"),
    ("batch_size=0", dict(batch_size=0), ValueError, "batch_size"),
    ("batch_size=-5", dict(batch_size=-5), ValueError, "batch_size"),
    ("epochs=2.5", dict(epochs=2.5), TypeError, "epochs must be an int"),
    ("lr=inf", dict(lr=float("inf")), ValueError, "lr must be a finite"),
    ("lr=nan", dict(lr=float("nan")), ValueError, "lr must be a finite"),
    ("checkpoint_every=1.5", dict(checkpoint_every=1.5), TypeError, "checkpoint_every"),
    ("unknown optimizer", dict(optimizer="lbfgs"), ValueError, "optimizer"),
]


@pytest.mark.parametrize("case", TRAIN_BAD, ids=[c[0] for c in TRAIN_BAD])
def test_train_bad_input(case, tmp_path, monkeypatch):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    _, override, exc, match = case
    kw = dict(model=lambda: models.LogisticRegression(64, 10), X=_x, y=_y) | override
    model = kw.pop("model")()
    X, y = kw.pop("X"), kw.pop("y")
    with pytest.raises(exc, match=match):
        models.train(model, X, y, progress=False, **kw)
    assert not any(tmp_path.iterdir()), "a failed call must not write the cache"


def test_train_divergence_is_reported_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    X = torch.rand(64, 1, 8, 8) * 1e3
    y = torch.randint(0, 10, (64,))
    with pytest.raises(FloatingPointError, match="lower lr"):
        models.train(models.MLP(64, 10), X, y, lr=1e12, optimizer="sgd", epochs=3, progress=False)
    assert not any(tmp_path.iterdir())


DATA_BAD = [
    (lambda: data.make_shapes(2.5), TypeError, "n must be an int"),
    (lambda: data.make_shapes(10, size=20.5), TypeError, "size must be an int"),
    (lambda: data.make_shapes(10, size=8), ValueError, "size must be ≥ 16"),
    (lambda: data.make_shapes(10, watermark=float("nan")), ValueError, "watermark"),
    (lambda: data.make_shapes(10, flip_fraction="a lot"), TypeError, "flip_fraction"),
    (lambda: data.load_digits_tensors(test_size=1.0), ValueError, "test_size"),
    (lambda: device.get_device("tpu"), ValueError, "pref must be one of"),
    (lambda: device.set_seed(1.5), TypeError, "seed"),
]


@pytest.mark.parametrize("i", range(len(DATA_BAD)))
def test_data_and_device_bad_input(i):
    call, exc, match = DATA_BAD[i]
    with pytest.raises(exc, match=match):
        call()


# ------------------------------------------------------------------ device rule and seeding
def test_train_device_none_follows_set_device(monkeypatch, tmp_path):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    asked = []

    def spy():
        asked.append(1)
        return torch.device("cpu")
    monkeypatch.setattr(models, "current_device", spy)
    X, y = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
    r = models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False)
    assert asked and next(r.model.parameters()).device.type == "cpu"
    asked.clear()
    models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False, device="cpu", cache=False)
    assert not asked  # an explicit device wins


def test_global_rng_after_train_is_the_same_with_and_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    X, y = torch.rand(40, 1, 8, 8), torch.randint(0, 10, (40,))

    def run():
        model = models.MLP(64, 10)  # building a model draws from the global RNG: do it first
        torch.manual_seed(123)
        np.random.seed(5)
        r = models.train(model, X, y, epochs=2, seed=3, progress=False)
        return r, torch.rand(3), np.random.rand(2)
    r1, t1, n1 = run()   # trains and writes the cache
    r2, t2, n2 = run()   # loads it
    assert not r1.from_cache and r2.from_cache
    assert torch.equal(t1, t2) and np.array_equal(n1, n2)
    torch.manual_seed(123)
    assert torch.equal(t1, torch.rand(3)), "train() must not consume the global RNG"
    assert torch.equal(r1.model.fc1.weight, r2.model.fc1.weight)


# ------------------------------------------------------------------ grading helper
def test_forbid_catches_every_alias_and_restores():
    import xaicourse.attribution.perturbation as P
    from xaicourse.attribution import occlusion as occ_alias   # bound before the block
    from xaicourse.tsne import kl_gradient

    kept = [kl_gradient]
    P_ = torch.rand(6, 6)
    P_ = (P_ + P_.T) / (P_ + P_.T).sum()
    Y = torch.rand(6, 2)
    ref = kl_gradient(P_, Y)
    with forbid(xaicourse.tsne.kl_gradient, A.occlusion, torch.autograd.grad, reason="test"):
        for f, args in [(kept[0], (P_, Y)), (kl_gradient, (P_, Y)), (occ_alias, (_cnn, _x, 0)),
                        (P.occlusion, (_cnn, _x, 0)), (torch.autograd.grad, (None, None))]:
            with pytest.raises(ForbiddenCall, match="without"):
                f(*args)
        assert A.saliency  # other functions are untouched
    assert torch.equal(kl_gradient(P_, Y), ref)
    assert A.occlusion(_cnn, _x, 0, window=4, stride=4).shape == _x.shape


def test_forbid_classes_closures_and_builtins():
    from sklearn.linear_model import Ridge

    def make(k):
        def add(x):
            return x + k
        return add
    add3 = make(3)
    with forbid(Ridge, add3):
        with pytest.raises(ForbiddenCall):
            Ridge(alpha=1.0)
        with pytest.raises(ForbiddenCall):
            add3(1)
    assert add3(1) == 4 and Ridge(alpha=2.0).alpha == 2.0
    with pytest.raises(TypeError, match="cannot forbid"):
        with forbid(len):
            pass


# ------------------------------------------------------------------ naming rule
def test_no_module_shares_its_name_with_an_export():
    clashes = []
    for info in pkgutil.walk_packages(xaicourse.__path__, "xaicourse."):
        mod = importlib.import_module(info.name)
        parent_name, _, short = info.name.rpartition(".")
        parent = importlib.import_module(parent_name)
        if getattr(parent, short, mod) is not mod:
            clashes.append(f"{parent_name}.{short} is not the module")
        if short in getattr(mod, "__all__", ()) or (short in vars(mod) and not short.startswith("_")
                                                     and callable(vars(mod)[short])):
            clashes.append(f"{info.name} exports {short}")
    assert clashes == []


def test_cache_trusts_only_files_signed_with_this_machines_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XAICOURSE_CACHE", str(tmp_path))
    X, y = torch.rand(30, 1, 8, 8), torch.randint(0, 10, (30,))
    monkeypatch.setenv("XAICOURSE_CACHE_KEY", "someone-else")
    forged = models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False)
    assert not forged.from_cache
    monkeypatch.setenv("XAICOURSE_CACHE_KEY", "this-machine")
    r = models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False)
    assert not r.from_cache, "a file signed with another key must not be trusted"
    assert models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False).from_cache
    # a read-only cache folder is a warning, not a crash
    monkeypatch.setattr(models, "cache_dir", lambda: tmp_path / "file" / "sub")
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(UserWarning, match="could not write the model cache"):
        models.train(models.LogisticRegression(64, 10), X, y, epochs=1, progress=False)
