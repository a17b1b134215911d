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


def _boxes(fig):
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    return r


def _gallery(k, **kw):
    imgs = torch.rand(k, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    titles = [f"+ #{100 * i} y={i % 10}\n{0.0123 * i:+.3g}" for i in range(k)]
    return viz.gallery(torch.rand(1, 8, 8), [("positive", imgs, titles, "tab:green"),
                                             ("negative", imgs, [t.replace("+", "−") for t in titles], "tab:red")],
                       query_title="test #3\nlabel 3, pred 5", hist=torch.randn(500), hist_title="all terms",
                       hist_xlabel="contribution", suptitle="a long explanation of the figure " * 4, **kw)


@pytest.mark.parametrize("k", [1, 5, 10])
def test_gallery_titles_never_overlap_the_row_above(k):
    """Issue #26: the galleries of 05–07 drew the second row's two-line titles over the first row's
    images (tight_layout on a fixed 3.6-inch figure), unreadable at k = 10. Every image title must lie
    outside every other image's axes, and no two titles may overlap."""
    import matplotlib.pyplot as plt

    fig = _gallery(k)
    r = _boxes(fig)
    image_axes = [a for a in fig.axes if a.images][1:]          # the query image is first
    assert len(image_axes) == 2 * k
    for a in image_axes:
        tb = a.title.get_window_extent(r)
        for b in image_axes:
            if b is not a:
                assert not tb.overlaps(b.get_window_extent(r)), (a.get_title(), b.get_title())
        for b in image_axes:
            if b is not a:
                assert not tb.overlaps(b.title.get_window_extent(r)), (a.get_title(), b.get_title())
    plt.close(fig)


def test_gallery_is_readable_on_a_page_at_k10():
    """Titles ≥ 8 pt, and the figure no wider than ~11 in (the old 21-image row at 1.3 in per image was
    27 in wide: a site that fits it to the page shrank 7-pt titles to ≈ 5 px). Height grows with rows."""
    import matplotlib.pyplot as plt

    small, big = _gallery(3), _gallery(10)
    for fig in (small, big):
        assert fig.get_size_inches()[0] <= 11
        for a in fig.axes:
            if a.get_title():
                assert a.title.get_fontsize() >= 8, a.get_title()
    assert big.get_size_inches()[1] > small.get_size_inches()[1]
    with pytest.raises(ValueError, match="fontsize"):
        viz.gallery(torch.rand(1, 8, 8), [], fontsize=5)
    with pytest.raises(ValueError, match="groups"):
        viz.gallery(torch.rand(1, 8, 8), [("a", torch.rand(2, 1, 8, 8), ["x", "y"])])
    with pytest.raises(ValueError, match="titles"):
        viz.gallery(torch.rand(1, 8, 8), [("a", torch.rand(2, 1, 8, 8), ["x"], "k")])
    plt.close("all")


def test_gallery_histogram_has_ticks_and_labels():
    """Issue #26: the histogram of all scores had no readable ticks (5-pt labels or none)."""
    import matplotlib.pyplot as plt

    fig = _gallery(4)
    fig.canvas.draw()
    h = next(a for a in fig.axes if a.patches)
    xt = [t.get_text() for t in h.get_xticklabels() if t.get_text()]
    yt = [t.get_text() for t in h.get_yticklabels() if t.get_text()]
    assert len(xt) >= 2 and len(yt) >= 2
    assert all(t.get_fontsize() >= 8 for t in h.get_xticklabels())
    assert h.get_xlabel() == "contribution" and h.get_ylabel() == "count"
    plt.close(fig)


def test_image_grid_titles_wrap_and_rows_do_not_overlap():
    import matplotlib.pyplot as plt

    fig = viz.image_grid(torch.rand(10, 1, 8, 8), titles=[f"a rather long title for image {i}" for i in range(10)],
                         ncols=5, suptitle="a grid")
    r = _boxes(fig)
    axes = [a for a in fig.axes if a.images]
    assert all("\n" in a.get_title() for a in axes)               # wrapped to the image width
    for a in axes[5:]:
        for b in axes[:5]:
            assert not a.title.get_window_extent(r).overlaps(b.get_window_extent(r))
    assert all(a.title.get_fontsize() >= 8 for a in axes)
    plt.close(fig)
