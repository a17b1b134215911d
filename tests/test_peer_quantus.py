"""Quantus's localisation tests, ported to ``xaicourse.evaluation`` (issue #25).

Source: understandable-machine-intelligence-lab/Quantus, ``tests/metrics/test_localisation_metrics.py``
(fixtures ``all_in_gt_*``, ``none_in_gt_*``, ``half_in_gt_*``, ``all_in_gt_seg_bigger_*`` with the
same geometry, and the expected numbers of its parametrisations) and
``quantus/metrics/localisation/*.py`` (the definitions). Each case checks our counterpart against
the number Quantus's test expects, and — when quantus is installed — against quantus itself on the
same arrays. The counterparts:

* ``PointingGame`` ↔ ``pointing_game(absolute=False)`` (Quantus takes the map as given). Ties:
  Quantus counts a hit if *any* maximal location is on the mask, we score the *share* of maximal
  locations on it (a random tie break's expected hit), so a tied map half on the object scores
  1 there and 0.5 here (``half_in_gt``): a documented difference; without ties they agree exactly.
* ``TopKIntersection(k)`` = |top-k ∩ M| / k ↔ ``mask_iou(top_fraction=k/D)`` = |T ∩ M| / |T ∪ M|
  with the same top-k set T: IoU = r / (k + |M| − r), r = TKI · k.
* ``RelevanceRankAccuracy`` = |top-|M| ∩ M| / |M| ↔ ``mask_iou()`` (k = |M|): IoU = RRA / (2 − RRA).
* ``RelevanceMassAccuracy`` and ``AttributionLocalisation(weighted=False)`` (Kohlbrenner et al.:
  inside / total of |A|, + 1e-9 in the denominator) ↔ ``mass_on_mask``.

Quantus's ``Focus`` and ``AUC`` have no counterpart here (not part of lecture 08).
"""
import numpy as np
import pytest
import torch
from torch import nn

from xaicourse.evaluation import mask_iou, mass_on_mask, pointing_game

try:  # the comparison with quantus itself runs where it is installed (the test extra)
    import quantus
except ImportError:  # pragma: no cover
    quantus = None

N = 3


def case(name: str, seed: int = 0):
    """Quantus's fixture ``name`` (same slices, same value ranges), N samples: (a, s) of shape
    (N, 1, L) or (N, 1, H, W), float64, and x for quantus's call."""
    rng = np.random.default_rng(seed)
    two_d = name.endswith(("2d_3ch", "2d"))
    shape = (N, 1, 224, 224) if two_d else (N, 1, 224)
    zeros = "zeros" in name or "fourth" in name
    a = np.zeros(shape) if zeros else rng.uniform(0, 0.1, size=shape)
    s = np.zeros(shape)
    sl = {  # (mask slice, attribution slice) per fixture family: 1-D, 2-D
        "all_in_gt": ((np.s_[50:150], np.s_[50:150]), (np.s_[50:150, 50:150], np.s_[50:150, 50:150])),
        "all_in_gt_seg_bigger": ((np.s_[0:150], np.s_[50:150]), (np.s_[0:150, 0:150], np.s_[50:150, 50:150])),
        "none_in_gt": ((np.s_[0:100], np.s_[100:200]), (np.s_[0:100, 0:100], np.s_[100:200, 100:200])),
        "none_in_gt_fourth": ((np.s_[0:112], np.s_[112:224]), (np.s_[0:112, 0:112], np.s_[112:224, 112:224])),
        "half_in_gt_zeros": ((np.s_[50:100], np.s_[0:100]), (np.s_[0:50, 50:100], np.s_[0:100, 75:100])),
        "half_in_gt": ((np.s_[50:100], np.s_[0:100]), (np.s_[50:100, 50:100], np.s_[0:100, 75:100])),
    }
    family = name.replace("_zeros", "") if not name.startswith("half_in_gt_zeros") else "half_in_gt_zeros"
    family = family.rsplit("_1d", 1)[0].rsplit("_2d", 1)[0]
    ms, as_ = sl[family][1 if two_d else 0]
    s[(slice(None), slice(None), *np.index_exp[ms])] = 1.0
    a[(slice(None), slice(None), *np.index_exp[as_])] = 1.0
    x = rng.standard_normal((N, 3, *shape[2:])).astype(np.float32)
    return a, s, x


def ours(a, s):
    """Our inputs: maps (N, ...) without the channel axis, boolean masks."""
    return torch.from_numpy(a[:, 0]), torch.from_numpy(s[:, 0].astype(bool))


def run_quantus(metric, a, s, x):
    torch.manual_seed(0)
    if a.ndim == 4:
        model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    else:
        model = nn.Sequential(nn.Conv1d(3, 2, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten()).eval()
    return np.asarray(metric(model=model, x_batch=x, y_batch=np.zeros(len(x), dtype=int), a_batch=a, s_batch=s,
                             device="cpu"), dtype=float)


needs_quantus = pytest.mark.skipif(quantus is None, reason="quantus is not installed (pip install quantus)")


# ------------------------------------------------------------------ pointing game
@pytest.mark.parametrize("name, expected_quantus, expected_ours", [
    ("all_in_gt_1d_3ch", 1.0, 1.0), ("all_in_gt_2d_3ch", 1.0, 1.0),
    ("none_in_gt_1d_3ch", 0.0, 0.0), ("none_in_gt_2d_3ch", 0.0, 0.0),
    # 100 (1-D) / 2500 (2-D) tied maxima, half of them on the mask: any-hit 1, expected hit 0.5
    ("half_in_gt_1d_3ch", 1.0, 0.5), ("half_in_gt_2d_3ch", 1.0, 0.5),
])
def test_pointing_game(name, expected_quantus, expected_ours):
    a, s, x = case(name)
    got = pointing_game(*ours(a, s), absolute=False).numpy()
    assert np.array_equal(got, np.full(N, expected_ours))
    if quantus is not None:
        q = run_quantus(quantus.PointingGame(disable_warnings=True), a, s, x)
        assert np.array_equal(q, np.full(N, expected_quantus))


@needs_quantus
@pytest.mark.parametrize("name", ["all_in_gt_2d_3ch", "none_in_gt_2d_3ch", "half_in_gt_2d_3ch", "half_in_gt_1d_3ch"])
def test_pointing_game_equals_quantus_without_ties(name):
    a, s, x = case(name)
    a = a + 1e-6 * np.random.default_rng(1).uniform(size=a.shape)     # one maximum per map
    q = run_quantus(quantus.PointingGame(disable_warnings=True), a, s, x)
    assert np.array_equal(pointing_game(*ours(a, s), absolute=False).numpy(), q)


# ------------------------------------------------------------------ top-k intersection ↔ mask IoU
@pytest.mark.parametrize("name, k, expected", [
    ("all_in_gt_1d_3ch", 100, 1.0), ("all_in_gt_2d_3ch", 10000, 1.0),
    ("all_in_gt_1d_3ch", 200, 0.5), ("all_in_gt_2d_3ch", 40000, 0.25),
    ("none_in_gt_1d_3ch", 100, 0.0), ("none_in_gt_2d_3ch", 10000, 0.0),
    ("half_in_gt_zeros_2d_3ch", 2500, 0.5), ("half_in_gt_zeros_1d_3ch", 125, 0.4),
    ("none_in_gt_zeros_2d_3ch", 40000, (0.1, 0.25)), ("half_in_gt_zeros_2d_3ch", 1250, (0.5, 1.0)),
])
def test_top_k_intersection(name, k, expected):
    a, s, x = case(name)
    amap, m = ours(a, s)
    D, M = amap[0].numel(), m.flatten(1).sum(1).double()
    iou = mask_iou(amap, m, top_fraction=k / D, absolute=False)
    tki = (iou * (k + M) / (1 + iou) / k).numpy()            # r = IoU (k + |M|) / (1 + IoU); TKI = r / k
    if isinstance(expected, tuple):
        assert ((tki >= expected[0]) & (tki <= expected[1])).all(), tki
    else:
        assert np.allclose(tki, expected, atol=1e-12), tki
    if quantus is not None and not isinstance(expected, tuple):   # the ranged case depends on tie order
        q = run_quantus(quantus.TopKIntersection(k=k, disable_warnings=True), a, s, x)
        assert np.allclose(q, tki, atol=1e-12), (q, tki)


@needs_quantus
@pytest.mark.parametrize("name, k", [("half_in_gt_2d_3ch", 1250), ("all_in_gt_seg_bigger_2d_3ch", 15000),
                                     ("half_in_gt_1d_3ch", 60)])
def test_mask_iou_equals_quantus_top_k_without_ties(name, k):
    a, s, x = case(name)
    a = a + 1e-6 * np.random.default_rng(2).uniform(size=a.shape)
    amap, m = ours(a, s)
    q = run_quantus(quantus.TopKIntersection(k=k, disable_warnings=True), a, s, x)
    r = q * k
    expect = r / (k + m.flatten(1).sum(1).numpy() - r)
    assert np.allclose(mask_iou(amap, m, top_fraction=k / amap[0].numel(), absolute=False).numpy(), expect,
                       atol=1e-12)


# ------------------------------------------------------------------ relevance rank accuracy ↔ mask IoU (k = |M|)
@pytest.mark.parametrize("name, expected", [
    ("all_in_gt_1d_3ch", 1.0), ("all_in_gt_2d_3ch", 1.0),
    ("all_in_gt_seg_bigger_1d_3ch", (0.5, 1.0)), ("all_in_gt_seg_bigger_2d_3ch", (0.5, 1.0)),
    ("none_in_gt_1d_3ch", 0.0), ("none_in_gt_2d_3ch", 0.0),
    ("half_in_gt_2d_3ch", 0.5),
])
def test_relevance_rank_accuracy(name, expected):
    a, s, x = case(name)
    iou = mask_iou(*ours(a, s), absolute=False).numpy()
    rra = 2 * iou / (1 + iou)                               # IoU = RRA / (2 − RRA)
    if isinstance(expected, tuple):
        assert ((rra > expected[0]) & (rra < expected[1])).all(), rra
    else:
        assert np.allclose(rra, expected, atol=1e-12), rra
    if quantus is not None:
        q = run_quantus(quantus.RelevanceRankAccuracy(abs=False, disable_warnings=True), a, s, x)
        assert np.allclose(q, rra, atol=1e-12), (q, rra)


# ------------------------------------------------------------------ relevance mass accuracy, attribution localisation
@pytest.mark.parametrize("name, expected", [
    ("all_in_gt_zeros_1d_3ch", 1.0), ("all_in_gt_zeros_2d_3ch", 1.0),
    ("all_in_gt_seg_bigger_1d_3ch", (0.5, 1.0)), ("all_in_gt_seg_bigger_2d_3ch", (0.5, 1.0)),
    ("none_in_gt_zeros_1d_3ch", 0.0), ("none_in_gt_zeros_2d_3ch", 0.0),
    ("half_in_gt_zeros_1d_3ch", 0.5), ("half_in_gt_zeros_2d_3ch", 0.5),
    ("all_in_gt_2d_3ch", (0.8, 0.85)),           # AttributionLocalisation's case: 10⁴ / (10⁴ + 40176 · 0.05)
])
def test_relevance_mass_accuracy_and_attribution_localisation(name, expected):
    a, s, x = case(name)
    got = mass_on_mask(*ours(a, s)).numpy()
    assert np.allclose(got, mass_on_mask(*ours(a, s), absolute=False).numpy())   # non-negative maps
    if isinstance(expected, tuple):
        assert ((got > expected[0]) & (got < expected[1])).all(), got
    else:
        assert np.allclose(got, expected, atol=1e-12), got
    if quantus is not None:
        q = run_quantus(quantus.RelevanceMassAccuracy(disable_warnings=True), a, s, x)
        assert np.allclose(q, got, atol=1e-12), (q, got)
        q = run_quantus(quantus.AttributionLocalisation(weighted=False, disable_warnings=True), a, s, x)
        assert np.allclose(q, got, atol=1e-8), (q, got)          # quantus adds 1e-9 to the total


@needs_quantus
def test_mass_with_negative_relevance_matches_quantus_abs():
    a, s, x = case("half_in_gt_2d_3ch")
    a = a - 0.05                                               # negative background
    q = run_quantus(quantus.RelevanceMassAccuracy(abs=True, normalise=False, disable_warnings=True), a, s, x)
    assert np.allclose(mass_on_mask(*ours(a, s)).numpy(), q, atol=1e-12)


def test_empty_masks_are_refused_where_quantus_returns_nan():
    a, s, _ = case("all_in_gt_1d_3ch")
    s[0] = 0
    for f in (pointing_game, mask_iou, mass_on_mask):
        with pytest.raises(ValueError, match="empty"):
            f(*ours(a, s))
