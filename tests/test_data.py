import pytest
import torch

from xaicourse import data


def test_digits_split_fixed_and_scaled():
    a, b = data.load_digits_tensors(), data.load_digits_tensors()
    assert a.X_train.shape == (1347, 1, 8, 8) and a.X_test.shape == (450, 1, 8, 8)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert a.X_train.min() == 0.0 and a.X_train.max() == 1.0
    assert a.X_train.dtype == torch.float32 and a.y_train.dtype == torch.int64
    # stratified: each class keeps its share (25% of 174..183 examples)
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 43 and counts.max() <= 46


def test_shapes_deterministic_and_balanced():
    s1, s2 = data.make_shapes(40, seed=3), data.make_shapes(40, seed=3)
    assert torch.equal(s1.images, s2.images) and torch.equal(s1.masks, s2.masks)
    assert not torch.equal(s1.images, data.make_shapes(40, seed=4).images)
    assert s1.images.shape == (40, 3, 32, 32) and s1.masks.shape == (40, 32, 32)
    assert 0.0 <= s1.images.min() and s1.images.max() <= 1.0
    assert torch.bincount(s1.labels).tolist() == [10, 10, 10, 10]


def test_shapes_masks_mark_the_object():
    s = data.make_shapes(60, seed=1, noise=0.0)
    frac = s.masks.float().mean((1, 2))
    assert (frac > 0.03).all() and (frac < 0.4).all()
    # pixels inside the mask share one colour (the object's), background varies
    for i in range(10):
        inside = s.images[i][:, s.masks[i]]
        assert inside.std(1).max() < 1e-6
    # circles fill about pi/4 of their bounding box, squares about all of it
    for i in range(60):
        ys, xs = torch.nonzero(s.masks[i], as_tuple=True)
        box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
        fill = s.masks[i].sum() / box
        if s.class_names[s.labels[i]] == "circle":
            assert 0.7 < fill < 0.85


def test_watermark_is_a_perfect_cue_at_p1_and_absent_at_p0():
    s = data.make_shapes(80, seed=2, watermark=1.0, noise=0.0)
    assert s.cue_masks.flatten(1).any(1).all()
    for i in range(80):
        ys, xs = torch.nonzero(s.cue_masks[i], as_tuple=True)
        corner = (int(ys.float().mean() > 16) * 2) + int(xs.float().mean() > 16)
        assert corner == int(s.labels[i]) % 4
        assert (s.images[i][:, s.cue_masks[i]] == 1.0).all()
        assert not (s.masks[i] & s.cue_masks[i]).any()
    assert not data.make_shapes(20, seed=2).cue_masks.any()


def test_random_corner_watermark_is_uncorrelated_with_the_label():
    # the control of lecture 09: the same patch, as often, but in a corner that says nothing
    s = data.make_shapes(400, seed=1, watermark=1.0, watermark_corner="random", noise=0.0)
    corners = []
    for i in range(400):
        ys, xs = torch.nonzero(s.cue_masks[i], as_tuple=True)
        corners.append(int(ys.float().mean() > 16) * 2 + int(xs.float().mean() > 16))
        assert (s.images[i][:, s.cue_masks[i]] == 1.0).all()
    corners = torch.tensor(corners)
    assert 0.15 < (corners == s.labels % 4).float().mean().item() < 0.35     # chance is 0.25, "class" gives 1
    for k in range(4):                                                        # every corner used for every class
        assert len(set(corners[s.labels == k].tolist())) == 4
    # the default ("class") images are untouched by the option's existence: same seed, same pixels
    a = data.make_shapes(50, seed=4, watermark=0.9)
    b = data.make_shapes(50, seed=4, watermark=0.9, watermark_corner="class")
    assert torch.equal(a.images, b.images) and torch.equal(a.cue_masks, b.cue_masks)


def test_add_watermark_stamps_the_datasets_patch():
    s = data.make_shapes(40, seed=6, watermark=1.0, noise=0.0)
    for k in range(4):
        i = int(torch.nonzero(s.labels == k)[0])
        stamped = data.add_watermark(s.images[i:i + 1], k)
        changed = (stamped[0] == 1.0).all(0) & s.cue_masks[i]
        assert torch.equal(changed, s.cue_masks[i])            # exactly make_shapes' cue pixels are white
        assert torch.equal(stamped[0][:, ~s.cue_masks[i]], s.images[i][:, ~s.cue_masks[i]])
    clean = data.make_shapes(3, seed=0).images
    assert torch.equal(data.add_watermark(clean, 2)[..., 27:31, 1:5], torch.ones(3, 3, 4, 4))
    assert not torch.equal(data.add_watermark(clean, 0), clean) and clean.max() < 1.0 + 1e-6   # a copy
    with pytest.raises(ValueError, match="corner"):
        data.add_watermark(clean, 4)
    with pytest.raises(ValueError, match="inputs must have 4 dimensions"):
        data.add_watermark(clean[0], 0)


def test_label_flips_reported():
    s = data.make_shapes(100, seed=0, flip_fraction=0.2)
    assert int(s.flipped.sum()) == 20
    assert (s.labels[s.flipped] != s.clean_labels[s.flipped]).all()
    assert (s.labels[~s.flipped] == s.clean_labels[~s.flipped]).all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "n must be positive"),
    (dict(n=-3), "n must be positive"),
    (dict(n=10, flip_fraction=1.5), "flip_fraction"),
    (dict(n=10, flip_fraction=-0.1), "flip_fraction"),
    (dict(n=10, watermark=2.0), "watermark"),
    (dict(n=10, watermark=0.5, watermark_corner="left"), "watermark_corner"),
    (dict(n=10, classes=("circle", "hexagon")), "classes: unknown shape 'hexagon'"),
    (dict(n=10, size=4), "size"),
])
def test_shapes_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.make_shapes(**kwargs)


def test_shapes_n_type():
    with pytest.raises(TypeError, match="n must be an int"):
        data.make_shapes(2.5)


def test_bad_arguments_are_refused_by_name():
    """The probe's findings (issue #25): every option checked, the message names the argument."""
    import numpy as np
    x = data.make_shapes(2, size=16, seed=0).images
    for bad, exc in ((x[:0], ValueError), (x.clone().fill_(float("nan")), ValueError), (None, TypeError),
                     ("images", TypeError)):
        with pytest.raises(exc, match="inputs"):
            data.add_watermark(bad, 0)
    with pytest.raises(ValueError, match="corner"):
        data.add_watermark(x, "top-rigth")                 # a typo is refused, not read as top-left
    assert torch.equal(data.add_watermark(x, "bottom-left"), data.add_watermark(x, 2))
    assert torch.equal(data.add_watermark(x.numpy(), 1), data.add_watermark(x, 1))
    with pytest.warns(DeprecationWarning):
        assert torch.equal(data.add_watermark(images=x, corner=3), data.add_watermark(x, 3))
    for name, kw in (("seed", dict(seed=-1)), ("seed", dict(seed=1.5)), ("seed", dict(seed=True))):
        with pytest.raises((ValueError, TypeError), match=name):
            data.load_digits_tensors(**kw)
        with pytest.raises((ValueError, TypeError), match=name):
            data.make_shapes(4, **kw)
        with pytest.raises((ValueError, TypeError), match=name):
            data.make_sentiment(4, **kw)
    with pytest.raises(ValueError, match="test_size"):
        data.load_digits_tensors(test_size=0.001)
    for n in (10 ** 7, 10 ** 12):                          # refused up front, not a MemoryError
        with pytest.raises(ValueError, match="n"):
            data.make_shapes(n)
        with pytest.raises(ValueError, match="n_train"):
            data.load_shapes_split(n_train=n, n_test=4)
        with pytest.raises(ValueError, match="n_test"):
            data.load_shapes_split(n_train=4, n_test=n)
    with pytest.raises(ValueError, match="n"):
        data.make_sentiment(10 ** 12)
    with pytest.raises(TypeError, match="n_test"):
        data.load_shapes_split(n_train=4, n_test=2.5)
    with pytest.raises(TypeError, match="classes"):
        data.make_shapes(4, classes="circle")
    with pytest.raises(ValueError, match="watermark_corner"):
        data.make_shapes(4, watermark=0.5, watermark_corner="randm")
    with pytest.raises(TypeError, match="unexpected"):
        data.load_shapes_split(n_train=4, n_test=4, watermrk=0.5)
    assert np.int64(3) and len(data.make_shapes(np.int64(3), size=16)) == 3
