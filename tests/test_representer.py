"""Representer points (lecture 06): stationarity, exact decomposition, sklearn parity, errors."""
import pytest
import torch

from xaicourse.data import load_digits_tensors
from xaicourse.data_attribution import NotFittedError, RepresenterPoints, detection_rate, flip_labels
from xaicourse.models import SmallCNN, train


@pytest.fixture(scope="module")
def setup():
    sp = load_digits_tensors()
    model = SmallCNN(1, 10, width=4, hidden=16)
    train(model, sp.X_train[:400], sp.y_train[:400], epochs=8, lr=1e-2, progress=False, cache=False)
    return model, sp


def test_decomposition_sums_to_logits_and_alpha_definition(setup):
    model, sp = setup
    rp = RepresenterPoints(l2=1e-2).from_model(model, sp.X_train[:400], sp.y_train[:400], sp.X_test, sp.y_test)
    ft = rp.features_of(model, sp.X_test[:50])
    dec, lg = rp.decompose(ft), rp.logits(ft)
    assert dec.shape == (50, 400, 10)
    assert ((dec.sum(1) - lg).abs().max() / lg.abs().max()) < 1e-4
    assert rp.residual_ < 1e-4
    # α = −1/(2λn) ∂ℓ/∂logits, computed here with autograd
    f = (rp.features_ @ rp.weight_.T).requires_grad_(True)
    torch.nn.functional.cross_entropy(f, rp.targets_, reduction="sum").backward()
    assert torch.allclose(rp.alpha_, -f.grad / (2 * 1e-2 * 400), atol=1e-12)
    assert set(rp.report_) >= {"test_acc_model", "test_acc_refit", "residual"}
    assert abs(rp.report_["test_acc_change"]) < 0.1


def test_weights_match_sklearn_logistic_regression(setup):
    from sklearn.linear_model import LogisticRegression
    model, sp = setup
    phi = RepresenterPoints.features_of(model, sp.X_train[:400])
    lam, n = 1e-2, 400
    rp = RepresenterPoints(l2=lam, tol=1e-10).fit(phi, sp.y_train[:400])
    sk = LogisticRegression(C=1 / (2 * lam * n), fit_intercept=False, tol=1e-10, max_iter=10000)
    sk.fit(phi.numpy(), sp.y_train[:400].numpy())
    assert (torch.from_numpy(sk.coef_) - rp.weight_).abs().max() < 1e-4 * rp.weight_.abs().max()


def test_top_representers_are_extremes_of_contributions(setup):
    model, sp = setup
    rp = RepresenterPoints().from_model(model, sp.X_train[:400], sp.y_train[:400])
    ft = rp.features_of(model, sp.X_test[:5])
    c = rp.contributions(ft)
    v, i = rp.top_representers(ft, 3, "positive")
    assert torch.equal(i[:, 0], c.argmax(1)) and torch.allclose(v[:, 0], c.max(1).values)
    v, i = rp.top_representers(ft, 3, "negative")
    assert torch.equal(i[:, 0], c.argmin(1))
    # positive representers of the predicted class mostly share the predicted label
    _, i = rp.top_representers(ft, 5, "positive")
    pred = rp.predict(ft)
    assert (rp.targets_[i] == pred[:, None]).double().mean() > 0.8


def test_mislabel_detection_by_alpha(setup):
    model, sp = setup
    y, flipped = flip_labels(sp.y_train[:400], 0.1, 10, seed=0)
    m = SmallCNN(1, 10, width=4, hidden=16)
    train(m, sp.X_train[:400], y, epochs=8, lr=1e-2, progress=False, cache=False)
    rp = RepresenterPoints().from_model(m, sp.X_train[:400], y)
    assert detection_rate(rp.importance(), flipped, 0.1) >= 0.2


def test_errors(setup):
    model, sp = setup
    X3, y3 = torch.randn(30, 16), torch.arange(30) % 3
    with pytest.raises(ValueError, match="l2"):      # sklearn rule: validated by fit, not __init__
        RepresenterPoints(l2=0).fit(X3, y3)
    with pytest.raises(ValueError, match="l2"):
        RepresenterPoints(l2=-1.0).fit(X3, y3)
    rp = RepresenterPoints()
    with pytest.raises(NotFittedError, match="fit"):
        rp.decompose(torch.zeros(2, 16))
    rp.fit(torch.randn(30, 16), torch.arange(30) % 3)
    with pytest.raises(ValueError, match="features"):
        rp.decompose(torch.zeros(2, 15))
    with pytest.raises(ValueError, match="kind"):
        rp.top_representers(torch.zeros(2, 16), 2, kind="neutral")
    with pytest.raises(TypeError, match="y"):
        rp.fit(torch.randn(30, 16), [0.5] * 30)
    with pytest.raises(ValueError, match="y"):
        rp.fit(torch.randn(30, 16), torch.arange(30) % 3, n_classes=2)
