"""Lecture 08's metrics against ground truth (hand-computed values, models whose relevant features
are known by construction), the known sanity-check result, Quantus where definitions coincide,
and bad input."""
import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from xaicourse import attribution as A
from xaicourse import data, evaluation as M, models


class Linear2(nn.Module):
    """logits = [w·x + b, 0]: the target-0 score is a known sum of per-pixel contributions."""

    def __init__(self, w, b=0.0):
        super().__init__()
        self.lin = nn.Linear(w.numel(), 2).double()
        with torch.no_grad():
            self.lin.weight.zero_()
            self.lin.weight[0] = w.flatten()
            self.lin.bias.copy_(torch.tensor([b, 0.0]))

    def forward(self, x):
        return self.lin(x.flatten(1))


@pytest.fixture(scope="module")
def tiny():
    """A small CNN trained (1 thread, seconds) on 16×16 shapes; test images, labels, masks."""
    torch.set_num_threads(1)
    tr = data.make_shapes(600, size=16, seed=1)
    te = data.make_shapes(24, size=16, seed=2)
    m = train_tiny(tr)
    return m, te.images, te.labels, te.masks


def train_tiny(tr):
    return models.train(models.SmallCNN(3, 4, width=8), tr.images, tr.labels, epochs=8, lr=3e-3, progress=False,
                        device="cpu").model.eval()


# ------------------------------------------------------------------ deletion / insertion / AOPC
def test_deletion_curve_of_a_linear_model_is_the_sum_of_the_remaining_contributions():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 4, 4, generator=g, dtype=torch.float64)
    x = torch.rand(1, 1, 4, 4, generator=g, dtype=torch.float64)
    model = Linear2(w, b=0.3)
    contrib = (w * x[0]).flatten()
    fr, s = M.deletion_curve(model, x, 0, contrib.reshape(1, 1, 4, 4), n_steps=16, output="logit", baselines=0.0)
    expect = 0.3 + torch.cat([contrib.sum()[None], contrib.sum() - torch.sort(contrib, descending=True).values.cumsum(0)])
    assert torch.allclose(fr, torch.arange(17, dtype=torch.float64) / 16, atol=0) and torch.allclose(s[0], expect, atol=1e-12)
    fr, s = M.insertion_curve(model, x, 0, contrib.reshape(1, 1, 4, 4), n_steps=16, output="logit", baselines=0.0)
    assert torch.allclose(s[0], 0.3 + torch.cat([torch.zeros(1), torch.sort(contrib, descending=True).values.cumsum(0)]))
    assert torch.allclose(M.aopc(model, x, 0, contrib.reshape(1, 1, 4, 4), n_steps=16, output="logit", baselines=0.0),
                          (expect[0] - expect).mean()[None])


def test_perfect_attribution_beats_every_random_order_on_deletion_and_insertion():
    g = torch.Generator().manual_seed(1)
    w = torch.zeros(1, 8, 8, dtype=torch.float64)
    w[0, 2:5, 3:6] = torch.rand(3, 3, generator=g, dtype=torch.float64) + 0.5      # 9 relevant pixels
    x = torch.rand(4, 1, 8, 8, generator=g, dtype=torch.float64)
    model = Linear2(w, b=-2.0)
    perfect = w * x
    d_p = M.curve_auc(*M.deletion_curve(model, x, 0, perfect, n_steps=64, baselines=0.0))
    i_p = M.curve_auc(*M.insertion_curve(model, x, 0, perfect, n_steps=64, baselines=0.0))
    for seed in range(10):
        r = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed + 10), dtype=torch.float64)
        assert (d_p < M.curve_auc(*M.deletion_curve(model, x, 0, r, n_steps=64, baselines=0.0))).all()
        assert (i_p > M.curve_auc(*M.insertion_curve(model, x, 0, r, n_steps=64, baselines=0.0))).all()
    # LeRF removes the irrelevant pixels first: the score does not move until 55 of 64 are gone
    lerf = M.aopc(model, x, 0, perfect, order="lerf", n_steps=64, baselines=0.0)
    morf = M.aopc(model, x, 0, perfect, order="morf", n_steps=64, baselines=0.0)
    assert (morf > 0.1).all() and (lerf < 0.1 * morf).all()


def test_curve_fills():
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(M.resolve_baselines(x, 0.5), torch.full_like(x, 0.5))
    assert torch.equal(M.resolve_baselines(x, "noise", seed=3), M.resolve_baselines(x, "noise", seed=3))
    b = M.resolve_baselines(x, "blur", sigma=1.0)
    assert b.shape == x.shape and b.std() < x.std()
    with pytest.warns(DeprecationWarning, match="resolve_baselines"):
        assert torch.equal(M.fill_baseline(x, "constant", 0.5), torch.full_like(x, 0.5))
    assert torch.allclose(M.curve_auc(torch.tensor([0.0, 0.5, 1.0]), torch.tensor([[1.0, 1.0, 0.0]])),
                          torch.tensor([0.75], dtype=torch.float64))


# ------------------------------------------------------------------ agreement with ground truth
def test_pointing_game_and_iou_hand_examples():
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, 1:3, 1:3] = True
    assert M.pointing_game(m.float(), m).tolist() == [1.0, 1.0]            # attribution = the mask
    assert M.pointing_game((~m).float(), m).tolist() == [0.0, 0.0]
    assert M.pointing_game(torch.ones(2, 4, 4), m).tolist() == [0.25, 0.25]  # ties: the mask's area share
    a = torch.zeros(2, 4, 4)
    a[:, 0, 0] = 1.0                                                          # max one pixel off the mask
    assert M.pointing_game(a, m).tolist() == [0.0, 0.0] and M.pointing_game(a, m, tolerance=1).tolist() == [1.0, 1.0]
    # IoU: a = [4, 3, 2, 1], mask = {0, 2}; top-2 = {0, 1}: |∩| = 1, |∪| = 3
    a1, m1 = torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([[True, False, True, False]])
    assert M.mask_iou(a1, m1).item() == pytest.approx(1 / 3)
    assert M.mask_iou(a1, m1, top_fraction=0.75).item() == pytest.approx(2 / 3)   # top-3 = {0,1,2}: 2 / 3
    assert M.mask_iou(a1, m1, top_fraction=0.25).item() == pytest.approx(1 / 2)   # top-1 = {0}: 1 / 2
    assert M.mask_iou(m.float() + 0.01 * torch.rand(2, 4, 4), m).tolist() == [1.0, 1.0]
    # channel attributions are summed over channels (|·| with absolute=True)
    a3 = torch.zeros(1, 3, 4)
    a3[0, :, 1] = torch.tensor([1.0, -3.0, 1.0])
    a3[0, 0, 2] = 0.5
    assert M.pointing_game(a3, torch.tensor([[False, False, True, False]]), absolute=False).item() == 1.0
    assert M.pointing_game(a3, torch.tensor([[False, True, False, False]]), absolute=True).item() == 1.0
    assert M.pointing_game(a3, torch.tensor([[False, True, False, False]])).item() == 1.0     # |r| by default
    assert M.mass_on_mask(torch.tensor([[1.0, -3.0, 0.0, 4.0]]), torch.tensor([[1, 1, 0, 0]])).item() == pytest.approx(0.5)
    assert M.mass_on_mask(torch.tensor([[1.0, -3.0, 0.0, 4.0]]), torch.tensor([[1, 1, 0, 0]]),
                          absolute=False).item() == pytest.approx(0.2)


def test_rank_correlation_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(5, 30, generator=g), torch.rand(5, 30, generator=g)
    b[0] = a[0] ** 3                      # monotone: ρ = 1
    b[1] = torch.round(b[1] * 3)          # ties
    ref = [spearmanr(a[i], b[i])[0] for i in range(5)]
    assert np.allclose(M.rank_correlation(a, b).numpy(), ref, atol=1e-12)
    assert M.rank_correlation(a[:1], torch.ones(1, 30)).item() == 0.0
    assert M.rank_correlation(torch.ones(1, 30), torch.ones(1, 30)).item() == 1.0     # maps.rank_correlation
    from xaicourse.maps import rank_correlation
    assert M.rank_correlation is rank_correlation


# ------------------------------------------------------------------ sanity checks
def test_cascading_randomization_gradient_falls_guided_backprop_stays(tiny):
    model, x, y, _ = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = M.cascading_randomization(model, x[:12], None, "gradient", absolute=False)
    gb = M.cascading_randomization(model, x[:12], None, "guided_backprop", absolute=False)
    assert g["layers"] == ["(trained)", "fc2", "fc1", "conv3", "conv2", "conv1"]
    assert torch.equal(g["rho"][0], torch.ones(12, dtype=torch.float64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the known result (Adebayo et al. 2018): after the top three layers are random, the gradient
    # has decorrelated from the trained map, guided backprop has not
    assert g["rho"][3].mean() < 0.2, g["rho"].mean(1)
    assert gb["rho"][3].mean() > 0.5, gb["rho"].mean(1)


def test_label_randomization_decorrelates_the_gradient(tiny):
    model, x, y, _ = tiny
    tr = data.make_shapes(600, size=16, seed=1)
    r = M.label_randomization(model, tr.images, tr.labels, x[:12], None, "gradient", absolute=False,
                              train_options=dict(epochs=4, lr=3e-3, device="cpu"))
    assert r["rho"].shape == (12,) and r["rho"].mean().abs() < 0.3
    assert 0 <= r["train_accuracy"] <= 1 and len(r["history"]) == 4


def test_label_randomization_memorises_with_a_wider_model_and_its_own_seed():
    torch.set_num_threads(1)
    model = models.SmallCNN(3, 4, width=4).eval()
    tr = data.make_shapes(64, size=16, seed=2)
    x = tr.images[:4]
    wide = models.SmallCNN(3, 4, width=8, hidden=128)
    r = M.label_randomization(model, tr.images, tr.labels, x, 0, "gradient", random_model=wide,
                              train_options=dict(epochs=60, lr=1e-2, seed=7, cache=False, device="cpu"))
    assert r["random_model"].config["hidden"] == 128 and wide.fc1.weight.requires_grad
    assert r["train_accuracy"] > 0.6, r["train_accuracy"]      # memorised (chance 0.25)
    assert r["history"][-1] < r["history"][0]
    with pytest.raises(TypeError, match="model"):
        M.label_randomization(model, tr.images, tr.labels, x, 0, "gradient", random_model="wide")


# ------------------------------------------------------------------ input reduction
@pytest.mark.parametrize("b, remaining", [(-4.5, 1), (-6.5, 3), (-11.9, 8), (-13.9, 11)])
def test_input_reduction_on_a_linear_model(b, remaining):
    # x = 1; contributions w = [5, 1, …, 1, −2]: the prediction holds while 5 + Σ(kept 1s) + (−2 if kept) + b > 0;
    # −2 goes first, then the 1s, then 5. b = −13.9: not predicted at all → nothing removed (all 11 remain)
    w = torch.tensor([[5.0] + [1.0] * 9 + [-2.0]], dtype=torch.float64)
    model = Linear2(w.reshape(1, 11), b=b)
    x = torch.ones(1, 11, dtype=torch.float64)
    r = M.input_reduction(model, x, 0, w * x, absolute=False, baselines=0.0)
    if b == -4.5:   # by |contribution| the 1s go first: 5 − 2 + 2·1 − 4.5 > 0 but 5 − 2 + 1 − 4.5 < 0
        assert M.input_reduction(model, x, 0, w * x, baselines=0.0)["remaining"].tolist() == [4]
    assert r["remaining"].tolist() == [remaining], r["remaining"]
    assert r["n_features"] == 11
    assert model(r["reduced"]).argmax(1).item() == (0 if remaining < 11 else 1)


class _MinNet(nn.Module):
    """logits = [3·min(x0, x1) + x2 + x3/10 − 2.5, 0]: x0 and x1 only count together."""

    def forward(self, x):
        x = x.flatten(1)
        f = 3 * torch.minimum(x[:, 0], x[:, 1]) + x[:, 2] + x[:, 3] / 10 - 2.5
        return torch.stack([f, torch.zeros_like(f)], 1)


def test_iterative_input_reduction_removes_the_least_important_feature_and_re_ranks():
    # linear: the −2 goes first (its removal *raises* p), then the 1s, never the 5; the same count as
    # the one-shot signed ranking
    w = torch.tensor([[5.0] + [1.0] * 9 + [-2.0]], dtype=torch.float64)
    model = Linear2(w.reshape(1, 11), b=-6.5)
    x = torch.ones(1, 11, dtype=torch.float64)
    r = M.iterative_input_reduction(model, x, 0, baselines=0.0)
    assert r["remaining"].tolist() == [3] and r["n_features"] == 11
    assert r["kept"][0, 0] and not r["kept"][0, 10] and int(r["kept"][0, 1:10].sum()) == 2
    assert model(r["reduced"]).argmax(1).item() == 0
    path = r["prob_path"][0]
    assert len(path) == 9 and path[1] > path[0] and abs(path[-1] - float(r["prob"][0])) < 1e-12
    # x3 goes first (least important), then x2 (its removal leaves 3 − 2.5 > 0); x0 or x1 would flip it
    r = M.iterative_input_reduction(_MinNet(), torch.ones(2, 4, dtype=torch.float64), 0, baselines=0.0)
    assert r["remaining"].tolist() == [2, 2] and r["kept"][:, :2].all() and not r["kept"][:, 2:].any()
    # not predicted at all: nothing removed
    r = M.iterative_input_reduction(_MinNet(), torch.zeros(1, 4, dtype=torch.float64), 0, baselines=0.0)
    assert r["remaining"].tolist() == [4] and len(r["prob_path"][0]) == 1


def test_iterative_input_reduction_on_image_patches():
    torch.manual_seed(0)
    model = models.SmallCNN(3, 4, width=4).eval()
    x = torch.rand(2, 3, 8, 8)
    groups = (torch.arange(8)[:, None] // 4) * 4 + torch.arange(8)[None] // 2     # 8 patches of 4×2
    r = M.iterative_input_reduction(model, x, None, feature_mask=groups, baselines=0.5, batch_size=3)
    assert r["n_features"] == 8 and r["kept"].shape == (2, 8)
    with torch.no_grad():
        pred = model(x).argmax(1)
        assert torch.equal(model(r["reduced"]).argmax(1), pred)
    for n in range(2):   # removed groups are grey in every channel, kept groups untouched
        gone = ~r["kept"][n][groups]
        assert torch.all(r["reduced"][n][:, gone] == 0.5) and torch.equal(r["reduced"][n][:, ~gone], x[n][:, ~gone])
    with pytest.raises(ValueError, match="feature_mask"):
        M.iterative_input_reduction(model, x, None, feature_mask=groups[:4])
    with pytest.raises(ValueError, match="0, 1"):
        M.iterative_input_reduction(model, x, None, feature_mask=groups * 2)
    with pytest.raises(TypeError, match="integer"):
        M.iterative_input_reduction(model, x, None, feature_mask=groups.float())


# ------------------------------------------------------------------ meaningful perturbation
def test_meaningful_perturbation_finds_the_relevant_block():
    w = torch.zeros(1, 12, 12, dtype=torch.float64)
    w[0, 2:6, 6:10] = 1.0                                          # only this 4×4 block matters
    model = Linear2(w.expand(3, 12, 12) / 8, b=-3.0)
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.5 + 0.5
    block = torch.zeros(2, 12, 12, dtype=torch.bool)
    block[:, 2:6, 6:10] = True
    a = A.meaningful_perturbation(model, x, 0, baselines=0.0, n_steps=200, l1=0.5, tv=0.1, mask_size=12)
    assert a.shape == x.shape and (a >= 0).all() and (a <= 1).all()
    assert (M.mass_on_mask(a, block) > 0.6).all(), M.mass_on_mask(a, block)      # block = 11 % of the image
    p = A.meaningful_perturbation(model, x, 0, mode="preserve", baselines=0.0, n_steps=200, l1=0.5, tv=0.1,
                                  mask_size=12)
    assert (M.mass_on_mask(p, block) > 0.6).all(), M.mass_on_mask(p, block)
    assert torch.equal(a, A.meaningful_perturbation(model, x, 0, baselines=0.0, n_steps=200, l1=0.5,
                                                   tv=0.1, mask_size=12))


# ------------------------------------------------------------------ text task
def test_sentiment_task_and_token_attributions():
    torch.set_num_threads(1)
    s = data.make_sentiment(600, seed=0)
    lex = torch.tensor([w in data.POSITIVE_WORDS + data.NEGATIVE_WORDS for w in s.vocab])
    assert torch.equal(s.rationales, lex[s.tokens])
    pos = torch.tensor([w in data.POSITIVE_WORDS for w in s.vocab])
    assert torch.equal(s.labels.bool(), pos[s.tokens].any(1)) and s.labels.float().mean() == 0.5
    assert torch.equal(data.make_sentiment(50, seed=3).tokens, data.make_sentiment(50, seed=3).tokens)
    m = models.train_text_classifier(s.tokens[:500], s.labels[:500], len(s.vocab), epochs=15)
    assert models.accuracy(m, s.tokens[500:], s.labels[500:]) > 0.95
    E = m.embed(s.tokens[500:]).detach()
    ig = A.integrated_gradients(m.body, E, s.labels[500:]).sum(1)              # per-token IG
    agree = M.mask_iou(ig, s.rationales[500:])
    rnd = M.mask_iou(torch.rand(ig.shape, generator=torch.Generator().manual_seed(0)), s.rationales[500:])
    assert agree.mean() > 0.7 and agree.mean() > rnd.mean() + 0.4, (agree.mean(), rnd.mean())


# ------------------------------------------------------------------ Quantus (where definitions coincide)
def _quantus():
    return pytest.importorskip("quantus", reason="quantus is not installed (pip install quantus)")


def test_pointing_game_iou_and_mass_match_quantus(tiny):
    quantus = _quantus()
    model, x, y, masks = tiny
    a = A.integrated_gradients(model, x, y, n_steps=16).sum(1, keepdim=True)
    a = a + 1e-6 * torch.rand(a.shape, generator=torch.Generator().manual_seed(0))   # no ties
    xs, ys, an, sn = x.numpy(), y.numpy(), a.detach().numpy(), masks[:, None].numpy().astype(float)
    q_pg = quantus.PointingGame(disable_warnings=True)(model=model, x_batch=xs, y_batch=ys, a_batch=an, s_batch=sn,
                                                       device="cpu")
    assert np.array_equal(np.asarray(q_pg, dtype=float), M.pointing_game(a, masks, absolute=False).numpy())
    k = 40
    q_top = np.asarray(quantus.TopKIntersection(k=k, disable_warnings=True)(
        model=model, x_batch=xs, y_batch=ys, a_batch=an, s_batch=sn, device="cpu"))
    inter = q_top * k                       # quantus: |top-k ∩ mask| / k; ours: IoU with the same top-k
    ours = M.mask_iou(a, masks, top_fraction=k / 256, absolute=False).numpy()
    assert np.allclose(ours, inter / (k + masks.flatten(1).sum(1).numpy() - inter), atol=1e-9)
    q_mass = np.asarray(quantus.RelevanceMassAccuracy(abs=True, normalise=False, disable_warnings=True)(
        model=model, x_batch=xs, y_batch=ys, a_batch=an, s_batch=sn, device="cpu"))
    assert np.allclose(M.mass_on_mask(a, masks).numpy(), q_mass, atol=1e-6)


def test_deletion_curve_matches_quantus_pixel_flipping(tiny):
    quantus = _quantus()
    model, x, y, _ = tiny
    x, y = x[:6], y[:6]
    a = A.gradient(model, x, y).sum(1, keepdim=True)
    a = a + 1e-7 * torch.rand(a.shape, generator=torch.Generator().manual_seed(1))
    # Quantus flips ``features_in_step`` entries of the (C·H·W) array per step (it must divide H·W);
    # a pixel's C entries tie and sit together in its order, so after 3 steps of 64 entries exactly 64
    # pixels are gone: its steps 3, 6, 9, 12 are our 4-step deletion curve
    q = quantus.PixelFlipping(features_in_step=64, perturb_baseline=0.0, disable_warnings=True)(
        model=model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.detach().expand_as(x).numpy().copy(),
        device="cpu", softmax=True)
    fr, s = M.deletion_curve(model, x, y, a, n_steps=4, baselines=0.0, output="prob")
    q = np.asarray(q)[:, [2, 5, 8, 11]]
    assert np.allclose(q, s[:, 1:].numpy(), atol=1e-5), np.abs(q - s[:, 1:].numpy()).max()


# ------------------------------------------------------------------ bad input
def test_metric_bad_input():
    model = Linear2(torch.ones(1, 4, 4, dtype=torch.float64))
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, 0, 0] = True
    with pytest.raises(ValueError, match="attributions"):
        M.deletion_curve(model, x, 0, torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match="do not match masks"):
        M.pointing_game(torch.rand(2, 5, 5), m)
    with pytest.raises(ValueError, match="do not match masks"):
        M.mask_iou(torch.rand(3, 4, 4), m)
    with pytest.raises(ValueError, match="empty"):
        M.pointing_game(torch.rand(2, 4, 4), torch.zeros(2, 4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        M.mask_iou(torch.rand(2, 4, 4), m & False)
    with pytest.raises(ValueError, match="masks must be boolean"):
        M.pointing_game(torch.rand(2, 4, 4), m.float() * 0.5)
    with pytest.raises(ValueError, match="fill"), pytest.warns(DeprecationWarning):
        M.deletion_curve(model, x, 0, x, fill="gray")
    with pytest.raises(ValueError, match="baselines"):
        M.deletion_curve(model, x, 0, x, baselines="gray")
    with pytest.raises(ValueError, match="baselines='blur' needs images"):
        M.deletion_curve(model, x.flatten(1), 0, x.flatten(1))       # the blur default needs images
    with pytest.raises(TypeError, match="n_steps"):
        M.deletion_curve(model, x, 0, x, n_steps=2.5)
    with pytest.raises(ValueError, match="order"):
        M.aopc(model, x, 0, x, order="random")
    with pytest.raises(ValueError, match="top_fraction"):
        M.mask_iou(torch.rand(2, 4, 4), m, top_fraction=0.0)
    with pytest.raises(ValueError, match="no mass"):
        M.mass_on_mask(torch.zeros(2, 4, 4), m)
    with pytest.raises(ValueError, match="method must be"):
        M.cascading_randomization(model, x, 0, "no_such_method")
    with pytest.raises(ValueError, match="layers"):
        M.cascading_randomization(model, x, 0, "gradient", layers=["nope"])
    with pytest.raises(ValueError, match="inputs must be images"):
        A.meaningful_perturbation(model, x.flatten(1), 0)
    with pytest.raises(ValueError, match="mode"):
        A.meaningful_perturbation(model, x, 0, mode="keep")
    with pytest.raises(ValueError, match="baseline"):
        A.meaningful_perturbation(model, x, 0, baselines="average")
    with pytest.raises(ValueError, match="l1"):
        A.meaningful_perturbation(model, x, 0, l1=-1.0)
    with pytest.raises(TypeError, match="step"):
        M.input_reduction(model, x, 0, x, step=1.5)
    with pytest.raises(ValueError, match="a and b"):
        M.rank_correlation(torch.rand(2, 3), torch.rand(2, 4))


# ------------------------------------------------------------------ the split, the defaults, the vocabulary
def test_metrics_module_is_a_shim_of_evaluation():
    import xaicourse.metrics as old
    for name in M.__all__:
        assert getattr(old, name) is getattr(M, name), name
    from xaicourse.evaluation import axioms, benchmark, faithfulness, localisation, sanity
    assert M.deletion_curve is faithfulness.deletion_curve and M.pointing_game is localisation.pointing_game
    assert M.check_axioms is axioms.check_axioms and M.cascading_randomization is sanity.cascading_randomization
    assert M.evaluate_methods is benchmark.evaluate_methods


def test_curve_auc_refuses_a_reversed_axis():
    f, s = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([[1.0, 1.0, 0.0]])
    assert M.curve_auc(f, s).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="fractions must increase"):
        M.curve_auc(f.flip(0), s.flip(1))           # the trapezoid rule would give −0.75
    with pytest.raises(ValueError, match="fractions must lie in"):
        M.curve_auc(torch.tensor([0.0, 2.0]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="fractions must increase"):
        M.curve_auc(torch.tensor([0.5, 0.5]), torch.ones(1, 2))


def test_localisation_defaults_use_abs_as_lecture_08_teaches():
    a = torch.tensor([[0.1, -5.0, 1.0, 0.0]])
    m = torch.tensor([[False, True, False, False]])
    assert M.pointing_game(a, m).item() == 1.0 and M.pointing_game(a, m, absolute=False).item() == 0.0
    assert M.mask_iou(a, m).item() == 1.0 and M.mask_iou(a, m, absolute=False).item() == pytest.approx(0.0)
    with pytest.raises(TypeError, match="absolute"):
        M.pointing_game(a, m, absolute="yes")


def test_perturbation_default_is_the_blur_fill_and_old_names_forward():
    torch.manual_seed(0)
    model = models.SmallCNN(3, 4, width=4).eval()
    x = torch.rand(2, 3, 12, 12)
    a = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    fr, s = M.deletion_curve(model, x, 0, a, n_steps=6)
    fr_b, s_b = M.deletion_curve(model, x, 0, a, n_steps=6, baselines="blur", sigma=2.0)
    assert torch.equal(s, s_b)
    # the blurred fill is what is reached at the end of the deletion path
    with torch.no_grad():
        end = torch.softmax(model(M.resolve_baselines(x, "blur", sigma=2.0)), 1)[:, 0].double()
    assert torch.allclose(s[:, -1], end, atol=1e-6)
    with pytest.warns(DeprecationWarning, match="baselines"):
        _, s_old = M.deletion_curve(model, x, 0, a, n_steps=6, value=0.5)
    with pytest.warns(DeprecationWarning, match="n_steps"):
        _, s_old2 = M.deletion_curve(model, x, 0, a, steps=6, baselines=0.5)
    _, s_new = M.deletion_curve(model, x, 0, a, n_steps=6, baselines=0.5)
    assert torch.equal(s_old, s_new) and torch.equal(s_old2, s_new)
    with pytest.warns(DeprecationWarning):
        _, s_ins = M.insertion_curve(model, x, 0, a, n_steps=6, fill="constant", value=0.5)
    assert torch.equal(s_ins, M.insertion_curve(model, x, 0, a, n_steps=6, baselines=0.5)[1])
    with pytest.raises(TypeError, match="unexpected keyword argument 'nsteps'"):
        M.aopc(model, x, 0, a, nsteps=3)


def test_target_none_is_the_predicted_class_and_any_callable_model_works():
    g = torch.Generator().manual_seed(0)
    w = torch.rand(1, 4, 4, generator=g, dtype=torch.float64)
    model = Linear2(w, b=-3.0)
    x = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    pred = model(x).argmax(1)
    a = w * x
    ref = M.deletion_curve(model, x, pred, a, n_steps=8, baselines=0.0)[1]
    assert torch.equal(M.deletion_curve(model, x, None, a, n_steps=8, baselines=0.0)[1], ref)

    def f(inputs):              # a plain function: evaluated as is
        return model(inputs)
    assert torch.equal(M.deletion_curve(f, x, None, a, n_steps=8, baselines=0.0)[1], ref)
    assert torch.equal(M.aopc(f, x, pred, a, n_steps=8, baselines=0.0), M.aopc(model, x, pred, a, n_steps=8,
                                                                              baselines=0.0))
    with pytest.raises(ValueError, match="target out of range"):
        M.deletion_curve(model, x, 2, a, baselines=0.0)
    with pytest.raises(TypeError, match="target"):
        M.deletion_curve(model, x, 0.5, a, baselines=0.0)


class BNNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn, self.relu, self.fc2 = nn.Linear(3, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)

    def forward(self, x):
        return self.fc2(self.relu(self.bn(self.fc1(x))))


@pytest.mark.parametrize("method", ["gradient", "integrated_gradients"])
def test_check_axioms_leaves_a_train_mode_batchnorm_model_as_it_found_it(method):
    torch.manual_seed(0)
    model = BNNet().train()
    with torch.no_grad():
        model(torch.randn(64, 3) * 3 + 1)             # running statistics that are not the defaults
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3)
    rows = M.check_axioms(method, model, x, None, n_steps=32) if method == "integrated_gradients" else \
        M.check_axioms(method, model, x, None)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())
    comp = next(r for r in rows if r["axiom"] == "completeness")
    assert comp["holds"] == (method == "integrated_gradients"), comp


def test_sanity_checks_and_benchmark_validate_their_arguments():
    model = Linear2(torch.ones(1, 4, 4, dtype=torch.float64))
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    m = torch.zeros(2, 4, 4, dtype=torch.bool)
    m[:, 0, 0] = True
    with pytest.raises(TypeError, match="layers must be a list"):
        M.cascading_randomization(model, x, 0, "gradient", layers="lin")
    with pytest.raises(ValueError, match="seed"):
        M.cascading_randomization(model, x, 0, "gradient", seed=-1)
    with pytest.raises(TypeError, match="tolerance"):
        M.pointing_game(torch.rand(2, 4, 4), m, tolerance=1.5)
    with pytest.raises(TypeError, match="methods must be a non-empty dict"):
        M.evaluate_methods(model, x, 0, m, ["gradient"])
    with pytest.raises(TypeError, match=r"methods\['g'\] must be a pair"):
        M.evaluate_methods(model, x, 0, m, {"g": "gradient"})
    with pytest.raises(TypeError, match="methods must be a list"):
        M.axioms_table("gradient")
    with pytest.raises(TypeError, match="train_labels"):
        M.label_randomization(model, x, [0, 1], x, 0, "gradient")
    with pytest.raises(ValueError, match="n_steps"):
        M.deletion_curve(model, x, 0, x, n_steps=0, baselines=0.0)
    with pytest.raises(ValueError, match="output"):
        M.deletion_curve(model, x, 0, x, output="probability", baselines=0.0)
    with pytest.raises(ValueError, match="NaN"):
        M.deletion_curve(model, x, 0, x * float("nan"), baselines=0.0)


# ------------------------------------------------------------------ the bad-input probe's findings (issue #25)
def test_probe_findings_bounds_and_shapes_are_refused_with_the_argument_named():
    """The raw / silent results of the probe for evaluation/: each is now a ValueError / TypeError
    that names the argument, and the boundary values just inside are still accepted."""
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2, 2] = True
    a = torch.zeros(2, 8, 8)
    a[:, 7, 7] = 1.0                                        # max 5 px from the object in each direction
    assert M.pointing_game(a, masks, tolerance=8).tolist() == [1.0, 1.0]    # max(H, W) is the largest tolerance
    assert M.pointing_game(a, masks, tolerance=4).tolist() == [0.0, 0.0]
    assert M.pointing_game(a, masks, tolerance=5).tolist() == [1.0, 1.0]
    for bad in (9, 10 ** 12):
        with pytest.raises(ValueError, match=r"tolerance must be ≤ 8"):
            M.pointing_game(a, masks, tolerance=bad)
    # input_reduction: 1 ≤ step ≤ D (here D = 11 features); step = D checks only "nothing" and "everything"
    w = torch.tensor([[5.0] + [1.0] * 9 + [-2.0]], dtype=torch.float64)
    model, x = Linear2(w, b=-4.5), torch.ones(1, 11, dtype=torch.float64)
    assert M.input_reduction(model, x, 0, w * x, baselines=0.0, step=11)["remaining"].tolist() == [11]
    for bad in (12, 10 ** 12):
        with pytest.raises(ValueError, match=r"step must be ≤ 11"):
            M.input_reduction(model, x, 0, w * x, baselines=0.0, step=bad)
    # fill_baseline (deprecated, no model to run): (N, D) or (N, C, H, W) only; a list gives the tensor's numbers
    xi = torch.rand(2, 1, 8, 8)
    with pytest.warns(DeprecationWarning):
        for bad in (xi[0], xi[None]):
            with pytest.raises(ValueError, match="inputs must have 2 or 4 dimensions"):
                M.fill_baseline(bad, "noise")
        assert torch.equal(M.fill_baseline(xi.tolist(), "noise", seed=3), M.fill_baseline(xi, "noise", seed=3))
    # cascading_randomization: layers must be a list of names
    with pytest.raises(TypeError, match="layers must be a list of layer names"):
        M.cascading_randomization(model, x, 0, "gradient", layers=3)


def test_label_randomization_names_train_inputs_and_train_labels():
    """Its errors name its own arguments (train_inputs / train_labels), not models.train's X / y,
    and a misspelt train_options key is refused before anything is trained."""
    model = models.SmallCNN(1, 3, width=4)
    xtr, ytr = torch.rand(8, 1, 8, 8), torch.arange(8) % 3
    x = torch.rand(2, 1, 8, 8)
    opts = dict(epochs=1, cache=False, progress=False)
    cases = [
        (dict(train_inputs=xtr[0]), ValueError, "train_inputs and train_labels must be of equal length"),
        (dict(train_inputs=xtr[None]), ValueError, "train_inputs and train_labels must be of equal length"),
        (dict(train_inputs=xtr[:0]), ValueError, "train_inputs is empty"),
        (dict(train_inputs=xtr * float("nan")), ValueError, "train_inputs contains NaN"),
        (dict(train_inputs=xtr.double()), TypeError, "train_inputs has dtype torch.float64"),
        (dict(train_inputs=xtr.numpy()), TypeError, "train_inputs must be a torch.Tensor"),
        (dict(train_labels=ytr[:-1]), ValueError, "train_inputs and train_labels must be of equal length"),
        (dict(train_labels=torch.where(torch.arange(8) == 0, 3, ytr)), ValueError, r"train_labels must lie in \[0, 3\)"),
        (dict(train_labels=ytr.float()), TypeError, "train_labels must hold integer class labels"),
        (dict(train_labels=ytr[:, None]), ValueError, r"train_labels must have shape \(8,\)"),
        (dict(train_options={"epochz": 1}), TypeError, "train_options: models.train has no option 'epochz'"),
    ]
    for override, exc, match in cases:
        kw = dict(train_inputs=xtr, train_labels=ytr, train_options=opts) | override
        with pytest.raises(exc, match=match):
            M.label_randomization(model, inputs=x, target=0, method="gradient", **kw)
    r = M.label_randomization(model, xtr, ytr, x, 0, "gradient", train_options=opts)
    assert r["rho"].shape == (2,) and torch.isfinite(r["rho"]).all()
