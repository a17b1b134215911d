import numpy as np
import pytest
import torch

from xaicourse import viz


def test_seismic_values_follow_the_notes_recipe():
    g = torch.zeros(3, 2, 2)
    g[:, 0, 0] = torch.tensor([1.0, 2.0, 2.0])  # sum of squares 9
    g[0, 1, 1] = 3.0                              # 9 too
    g[1, 0, 1] = 1.0                              # 1
    v = viz.seismic_values(g)
    assert v.shape == (2, 2)
    np.testing.assert_allclose(v, [[1.0, 0.5 + 1 / 18], [0.5, 1.0]])
    s = viz.seismic_values(torch.tensor([[[-2.0, 1.0]]]), reduce="sum")
    np.testing.assert_allclose(s, [[0.0, 0.75]])  # -max -> 0, zero -> 0.5
    assert viz.seismic_values(torch.zeros(1, 3, 3)).tolist() == [[0.5] * 3] * 3


def test_seismic_heatmap_colours():
    hm = viz.seismic_heatmap(torch.tensor([[[-1.0, 0.0, 1.0]]]), reduce="sum")
    assert hm.shape == (1, 3, 3)
    assert hm[0, 0, 2] > hm[0, 0, 0]      # negative: blue
    assert hm[0, 2, 0] > hm[0, 2, 2]      # positive: red
    assert np.allclose(hm[0, 1], 1.0, atol=0.01)  # zero: white


def test_overlay_and_errors():
    img = torch.rand(3, 8, 8)
    out = viz.overlay(img, torch.randn(3, 8, 8), alpha=0.3)
    assert out.shape == (8, 8, 3) and out.min() >= 0 and out.max() <= 1
    with pytest.raises(ValueError, match="alpha"):
        viz.overlay(img, img, alpha=2)
    with pytest.raises(ValueError, match="NaN"):
        viz.seismic_values(torch.tensor([[float("nan")]]))
    with pytest.raises(ValueError, match="reduce"):
        viz.seismic_values(img, reduce="max")


def test_image_grid_layout():
    fig = viz.image_grid(torch.rand(10, 1, 8, 8), titles=list(range(10)), ncols=4)
    assert len(fig.axes) == 12
    assert [a.get_title() for a in fig.axes[:3]] == ["0", "1", "2"]
    with pytest.raises(ValueError, match="empty"):
        viz.image_grid(torch.rand(0, 1, 8, 8))


def test_bad_arguments_are_refused_by_name():
    """Issue #25's probe on viz: NaN/inf/empty maps, alpha, reduce and mismatched sizes are refused."""
    from xaicourse import maps
    assert viz.to_numpy_image is maps.to_numpy_image      # one image-to-numpy
    a = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))
    for bad in (a.clone().fill_(float("nan")), a.clone().fill_(float("inf")), torch.zeros(0), a[None, None], None, "a"):
        with pytest.raises((ValueError, TypeError), match="attr"):
            viz.seismic_values(bad)
    with pytest.raises(ValueError, match="reduce"):
        viz.seismic_values(a, reduce="sum_square")
    assert np.array_equal(viz.seismic_values(a.numpy()), viz.seismic_values(a))
    assert np.array_equal(viz.seismic_values(a.tolist(), reduce="sum"), viz.seismic_values(a, reduce="sum"))
    img = torch.rand(3, 8, 8)
    for bad in (True, "0.5", None, float("nan"), 1.5):
        with pytest.raises((ValueError, TypeError), match="alpha"):
            viz.overlay(img, a, alpha=bad)
    with pytest.raises(ValueError, match="image"):
        viz.overlay(img.clone().fill_(float("nan")), a)
    with pytest.raises(ValueError, match="same height and width"):
        viz.overlay(torch.rand(1, 4, 4), a)
    with pytest.raises(ValueError, match="labels"):
        viz.embedding_scatter(np.zeros((5, 2)), labels=[0, 1])
    with pytest.raises(ValueError, match="Y"):
        viz.embedding_scatter(np.full((5, 2), np.nan))
    with pytest.raises(TypeError, match="n_thumbs"):
        viz.embedding_scatter(np.zeros((5, 2)), n_thumbs=2.5)
    with pytest.raises(TypeError, match="ncols"):
        viz.image_grid(torch.rand(2, 1, 4, 4), ncols=1.5)
