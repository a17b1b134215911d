"""Shapley values (lecture 04): sampling = captum's with the same permutations, exact values
satisfy the Shapley axioms, masks, errors."""
import warnings

import pytest
import torch
from torch import nn

from xaicourse import attribution as A
from xaicourse.attribution.shapley import patch_mask, superpixel_mask
from conftest import maxdiff

captum_attr = pytest.importorskip("captum.attr")
warnings.filterwarnings("ignore", category=UserWarning)
TOL = 1e-5


@pytest.fixture(scope="module")
def digits(digits):
    """conftest's course model with a batch of 6 test digits."""
    model, split = digits
    return model.eval(), split.X_test[:6], split.y_test[:6]


def per_feature(attr, mask, d):
    """(N, d) feature values read back from a map with a (H, W) mask."""
    return torch.stack([attr[:, 0][:, mask == k][:, 0] for k in range(d)], 1)


def test_sampling_matches_captum_with_the_same_permutations(digits):
    model, x, t = digits
    ours = A.shapley_sampling(model, x, t, n_samples=3, seed=3)             # every pixel a feature
    torch.manual_seed(3)
    ref = captum_attr.ShapleyValueSampling(model).attribute(x, target=t, n_samples=3)
    assert maxdiff(ours, ref) <= TOL
    pm = patch_mask(8, 8, 2)
    ours = A.shapley_sampling(model, x, t, baselines=0.2, n_samples=10, feature_mask=pm, seed=1)
    torch.manual_seed(1)
    ref = captum_attr.ShapleyValueSampling(model).attribute(x, baselines=0.2, target=t, n_samples=10,
                                                            feature_mask=pm[None, None])
    assert maxdiff(ours, ref) <= TOL
    # another seed, other permutations, another estimate
    assert maxdiff(A.shapley_sampling(model, x, t, baselines=0.2, n_samples=10, feature_mask=pm, seed=2), ours) > 1e-4


def test_exact_matches_captum_shapley_values(digits):
    model, x, t = digits
    pm = patch_mask(8, 8, 4)                                                  # 4 features: 24 permutations
    ref = captum_attr.ShapleyValues(model).attribute(x, target=t, feature_mask=pm[None, None])
    assert maxdiff(A.shapley_exact(model, x, t, feature_mask=pm), ref) <= TOL


def test_exact_efficiency_in_float64_and_sampling_converges(digits):
    model, x, t = digits
    md, xd = model.double(), x.double()
    try:
        pm = patch_mask(8, 8, 3)                                              # 9 features
        phi = A.shapley_exact(md, xd, t, feature_mask=pm)
        with torch.no_grad():
            gap = md(xd)[torch.arange(6), t] - md(torch.zeros_like(xd))[torch.arange(6), t]
        assert maxdiff(per_feature(phi, pm, 9).sum(1), gap) <= 1e-9
        # sampling: efficiency holds per permutation; the estimate approaches the exact values
        s_few = A.shapley_sampling(md, xd, t, feature_mask=pm, n_samples=5, seed=0)
        s_many = A.shapley_sampling(md, xd, t, feature_mask=pm, n_samples=400, seed=0)
        assert maxdiff(per_feature(s_few, pm, 9).sum(1), gap) <= 1e-9
        assert maxdiff(s_many, phi) < maxdiff(s_few, phi)
        assert maxdiff(s_many, phi) < 0.1 * phi.abs().max()
    finally:
        model.float()


def test_exact_shapley_axioms_on_a_constructed_game():
    # f(x) = 2·x0·x1 + 3·x2 (x3 ignored): x0 and x1 symmetric, x3 a dummy, x2 linear
    class Game(nn.Module):
        def forward(self, x):
            return (2 * x[:, 0] * x[:, 1] + 3 * x[:, 2] + 0 * x[:, 3])[:, None]
    x = torch.tensor([[1.0, 1.0, 2.0, 5.0]], dtype=torch.float64)
    phi = A.shapley_exact(Game(), x, 0)
    assert maxdiff(phi, torch.tensor([[1.0, 1.0, 6.0, 0.0]], dtype=torch.float64)) <= 1e-12


def test_superpixel_and_patch_masks():
    pm = patch_mask(8, 8, 3)
    assert pm.shape == (8, 8) and pm.max() == 8 and pm[0, 0] == 0 and pm[7, 7] == 8
    img = torch.zeros(3, 16, 16)
    img[:, :, 8:] = 1.0
    sp = superpixel_mask(img, n_segments=4)
    assert sp.shape == (16, 16) and sp.min() == 0
    # no superpixel straddles the edge between the two halves
    assert set(sp[:, :8].unique().tolist()).isdisjoint(sp[:, 8:].unique().tolist())


def test_bad_input(digits):
    model, x, t = digits
    with pytest.raises(ValueError, match="d must be ≤ 12"):
        A.shapley_exact(model, x, t)
    with pytest.raises(ValueError, match="feature_mask.*broadcast"):
        A.shapley_sampling(model, x, t, feature_mask=torch.zeros(7, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="every id"):
        A.shapley_sampling(model, x, t, feature_mask=patch_mask(8, 8, 4) * 2)
    with pytest.raises(TypeError, match="feature_mask"):
        A.shapley_sampling(model, x, t, feature_mask=torch.zeros(8, 8))
    with pytest.raises(ValueError, match="n_samples"):
        A.shapley_sampling(model, x, t, n_samples=0)
    with pytest.raises(ValueError, match="baselines.*shape"):
        A.shapley_sampling(model, x, t, baselines=torch.zeros(2, 1, 8, 8))
    assert "shapley_sampling" in A.METHODS and "shapley_exact" in A.METHODS
