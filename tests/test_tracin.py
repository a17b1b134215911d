"""TracIn (lecture 07): parity with captum, the variants' definitions, errors, detection."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import (detection_rate, flip_labels, grad_cos, grad_dot, per_example_grads,
                                        self_influence, tracin_cp)
from xaicourse.data_attribution.poison import add_trigger, detection_curve, plant_backdoor, recall_at_k
from xaicourse.models import MLP, SmallCNN, train

CE = nn.CrossEntropyLoss()


@pytest.fixture(scope="module")
def digits():
    return load_digits_tensors()


@pytest.fixture(scope="module")
def run(digits):
    torch.manual_seed(0)
    model = SmallCNN(1, 10, width=4, hidden=16)
    X, y = digits.X_train[:120], digits.y_train[:120]
    res = train(model, X, y, epochs=4, lr=1e-2, batch_size=32, checkpoint_every=2, progress=False, cache=False)
    return model, res.checkpoints, X, y, digits.X_test[:10], digits.y_test[:10]


def _load(model, c):
    model.load_state_dict(c["state_dict"])
    return c["lr"]


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# captum marks the inputs as requiring gradients itself and says so with a UserWarning
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients:UserWarning")
def test_matches_captum_tracincp(run):
    from captum.influence import TracInCP
    model, ck, X, y, Xt, yt = run
    ours = tracin_cp(model, ck, CE, X, y, Xt, yt, progress=False)
    ref = TracInCP(copy.deepcopy(model), TensorDataset(X, y), ck, checkpoints_load_func=_load,
                   loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=50,
                   sample_wise_grads_per_batch=True).influence((Xt, yt))
    assert ours.shape == (10, 120)
    assert rel(ours, ref) < 1e-5


def test_last_layer_matches_captum_fast(run):
    from captum.influence import TracInCPFast
    model, ck, X, y, Xt, yt = run
    ours = tracin_cp(model, ck, CE, X, y, Xt, yt, layers="fc2.weight", progress=False)
    ref = TracInCPFast(copy.deepcopy(model), "fc2", TensorDataset(X, y), ck, checkpoints_load_func=_load,
                       loss_fn=nn.CrossEntropyLoss(reduction="sum"), batch_size=50).influence((Xt, yt))
    assert rel(ours, ref) < 1e-5


def test_layer_fast_path_equals_full_gradient_restricted(run):
    # "fc2" uses the head-only fast path; per_example_grads on the whole model restricted to fc2 is the reference
    model, ck, X, y, Xt, yt = run
    ours = tracin_cp(model, ck, CE, X, y, Xt, yt, layers="fc2", progress=False)
    ref = torch.zeros(10, 120)
    saved = copy.deepcopy(model.state_dict())
    for c in ck:
        model.load_state_dict(c["state_dict"])
        ref += c["lr"] * per_example_grads(model, CE, Xt, yt, layers="fc2") @ \
            per_example_grads(model, CE, X, y, layers="fc2").T
    model.load_state_dict(saved)
    assert rel(ours, ref) < 1e-5
    # fc1 is not the output layer: the general path, must agree with its own definition too
    s1 = tracin_cp(model, ck[:1], CE, X, y, Xt, yt, layers="fc1", progress=False)
    model.load_state_dict(ck[0]["state_dict"])
    r1 = ck[0]["lr"] * per_example_grads(model, CE, Xt, yt, layers="fc1") @ \
        per_example_grads(model, CE, X, y, layers="fc1").T
    model.load_state_dict(saved)
    assert rel(s1, r1) < 1e-5


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reduction_does_not_change_scores(run, reduction):
    model, ck, X, y, Xt, yt = run
    base = tracin_cp(model, ck[:1], nn.CrossEntropyLoss(reduction="mean"), X, y, Xt, yt, progress=False)
    other = tracin_cp(model, ck[:1], nn.CrossEntropyLoss(reduction=reduction), X, y, Xt, yt, progress=False,
                      batch_size=50)
    assert torch.allclose(base, other, rtol=1e-5, atol=1e-7 * base.abs().max())


def test_normalize_is_sum_of_lr_weighted_cosines(run):
    model, ck, X, y, Xt, yt = run
    ours = tracin_cp(model, ck, CE, X, y, Xt, yt, normalize=True, progress=False)
    saved = copy.deepcopy(model.state_dict())
    ref = torch.zeros(10, 120)
    for c in ck:
        model.load_state_dict(c["state_dict"])
        gt, gx = per_example_grads(model, CE, Xt, yt), per_example_grads(model, CE, X, y)
        ref += c["lr"] * torch.nn.functional.cosine_similarity(gt[:, None], gx[None], dim=-1)
    model.load_state_dict(saved)
    assert (ours - ref).abs().max() < 1e-5 * sum(c["lr"] for c in ck)
    assert ours.abs().max() <= sum(c["lr"] for c in ck) * (1 + 1e-5)


def test_self_influence_is_diagonal_and_pairs_accepted(run):
    model, ck, X, y, _, _ = run
    full = tracin_cp(model, ck, CE, X[:30], y[:30], X[:30], y[:30], progress=False)
    si = self_influence(model, [(c["state_dict"], c["lr"]) for c in ck], CE, X[:30], y[:30], progress=False)
    assert torch.allclose(si, full.diagonal(), rtol=1e-5)
    assert (si > 0).all()


def test_grad_dot_and_cos_at_final_parameters(run):
    model, ck, X, y, Xt, yt = run
    final = [(copy.deepcopy(model.state_dict()), 1.0)]
    assert rel(grad_dot(model, CE, X, y, Xt, yt), tracin_cp(model, final, CE, X, y, Xt, yt, progress=False)) < 1e-6
    gc = grad_cos(model, CE, X, y, Xt, yt)
    gt, gx = per_example_grads(model, CE, Xt, yt), per_example_grads(model, CE, X, y)
    ref = torch.nn.functional.cosine_similarity(gt[:, None], gx[None], dim=-1)
    assert (gc - ref).abs().max() < 1e-5


def test_model_state_restored(run):
    model, ck, X, y, Xt, yt = run
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    tracin_cp(model, ck, CE, X[:20], y[:20], Xt, yt, progress=False)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    bad = [{"state_dict": {k: v for k, v in ck[0]["state_dict"].items() if k != "fc2.bias"}, "lr": 0.1}]
    with pytest.raises(ValueError):
        tracin_cp(model, ck + bad, CE, X[:20], y[:20], Xt, yt, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_errors(run):
    model, ck, X, y, Xt, yt = run
    args = (CE, X[:10], y[:10], Xt, yt)
    with pytest.raises(ValueError, match="empty"):
        tracin_cp(model, [], *args)
    sd = dict(ck[0]["state_dict"])
    sd.pop("fc2.bias")
    sd["extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing keys \['fc2.bias'\].*unexpected keys \['extra.weight'\]"):
        tracin_cp(model, [(sd, 0.1)], *args)
    other = SmallCNN(1, 10, width=8, hidden=16).state_dict()
    with pytest.raises(ValueError, match="shape mismatch"):
        tracin_cp(model, [(other, 0.1)], *args)
    with pytest.raises(ValueError, match="layer 'nope' is not in the model"):
        tracin_cp(model, ck, *args, layers="nope")
    with pytest.raises(TypeError, match="checkpoints"):
        tracin_cp(model, ck[0], *args)
    with pytest.raises(ValueError, match="learning rate"):
        tracin_cp(model, [(ck[0]["state_dict"], -1.0)], *args)
    with pytest.raises(TypeError, match="loss_fn"):
        tracin_cp(model, ck, "ce", *args[1:])
    with pytest.raises(TypeError, match="normalize"):
        tracin_cp(model, ck, *args, normalize="yes")


def test_detection_curve_and_recall():
    flagged = torch.tensor([True, False, False, True, False])
    fr, found = detection_curve(torch.tensor([5.0, 4, 3, 2, 1]), flagged, [0.0, 0.2, 0.4, 0.8, 1.0])
    assert found.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert recall_at_k(torch.tensor([0.0, 9, 8, 1, 0]), flagged) == 0.0
    assert recall_at_k(torch.tensor([9.0, 0, 0, 8, 0]), flagged) == 1.0
    y, f = flip_labels(torch.arange(100) % 10, 0.1, 10, seed=3)
    assert f.sum() == 10 and ((y != torch.arange(100) % 10) == f).all()


def test_mislabel_detection_beats_random_small_run(digits):
    X, y0 = digits.X_train[:300], digits.y_train[:300]
    y, flipped = flip_labels(y0, 0.1, 10, seed=0)
    model = MLP(64, 10, hidden=32)
    res = train(model, X, y, epochs=30, lr=1e-2, batch_size=32, checkpoint_every=5, progress=False, cache=False)
    si = self_influence(model, res.checkpoints, CE, X, y, progress=False)
    assert detection_rate(si, flipped, 0.1) >= 2 * 0.1


def test_backdoor_helpers(digits):
    bd = plant_backdoor(digits.X_train, digits.y_train, 10, target_class=0, size=2, seed=1)
    assert bd.poisoned.sum() == 10 and (bd.labels[bd.poisoned] == 0).all()
    assert (digits.y_train[bd.poisoned] != 0).all()
    assert (bd.inputs[bd.poisoned][..., -2:, -2:] == 1).all()
    assert torch.equal(bd.inputs[~bd.poisoned], digits.X_train[~bd.poisoned])
    assert torch.equal(add_trigger(digits.X_test[:2], 3)[..., :5, :5], digits.X_test[:2][..., :5, :5])
