"""TCAV and CAVs: ground truth on a model whose layer → logit map is linear, a planted concept
direction, parity with captum's TCAV given the same CAV and inputs, the t-test, bad inputs."""
import numpy as np
import pytest
import torch
from torch import nn

from xaicourse import concepts as C


class Lin(nn.Module):
    """x (N, 6) → body (6 → 4, tanh) → head (4 → 3, linear): the logit is linear in body's output."""

    def __init__(self, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.body = nn.Sequential(nn.Linear(6, 4), nn.Tanh())
        self.head = nn.Linear(4, 3)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return self.head(self.body(x))


@pytest.fixture(scope="module")
def lin():
    return Lin().eval()


def _sets(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)


def test_directional_derivative_is_head_row_dot_v(lin):
    x = torch.randn(20, 6, generator=torch.Generator().manual_seed(1))
    v = torch.nn.functional.normalize(torch.randn(4, generator=torch.Generator().manual_seed(2)), dim=0)
    for k in range(3):
        S = C.directional_derivatives(lin, x, k, layer="body", cav=v)
        exact = (lin.head.weight[k] @ v).item()
        assert torch.allclose(S, torch.full((20,), exact), atol=1e-6)
        assert C.tcav_score(lin, x, k, layer="body", cav=v) == float(exact > 0)


def test_cav_finds_a_planted_direction():
    # identity "layer": activations = inputs; the concept is shifted along a known direction u
    model = nn.Sequential(nn.Identity(), nn.Linear(10, 2)).eval()
    g = torch.Generator().manual_seed(0)
    u = torch.nn.functional.normalize(torch.randn(10, generator=g), dim=0)
    rand = torch.randn(200, 10, generator=g)
    conc = torch.randn(200, 10, generator=g) + 3.0 * u
    cav = C.concept_activation_vector(model, conc, rand, layer="0", seed=0)
    assert abs(cav.vector.norm().item() - 1) < 1e-6
    assert torch.dot(cav.vector, u).item() > 0.95
    assert cav.accuracy > 0.9 and cav.layer == "0"
    # same seed, same CAV
    again = C.concept_activation_vector(model, conc, rand, layer="0", seed=0)
    assert torch.equal(again.vector, cav.vector)


def test_tcav_significance(lin):
    # concept = inputs whose body activation points along +head.weight[0] → S > 0 for class 0
    g = torch.Generator().manual_seed(3)
    rand_sets = [torch.randn(30, 6, generator=g) for _ in range(6)]
    w = lin.body[0].weight.detach()
    direction = torch.linalg.lstsq(w, lin.head.weight[0].detach()[:, None]).solution[:, 0]
    concept = torch.randn(30, 6, generator=g) * 0.3 + 2.0 * direction / direction.norm()
    x = torch.randn(40, 6, generator=g)
    res = C.tcav(lin, x, 0, layer="body", concepts={"planted": concept}, random_sets=rand_sets, n_random=5)
    r = res["planted"]
    assert r.scores.shape == (5,) and r.random_scores.shape == (5,)
    from scipy.stats import ttest_ind
    assert r.p_value == pytest.approx(ttest_ind(r.scores, r.random_scores, equal_var=False).pvalue, rel=1e-9) \
        or (np.std(r.scores) == 0 and np.std(r.random_scores) == 0)
    assert r.score == pytest.approx(r.scores.mean())
    assert r.score > 0.9


def test_matches_captum_given_the_same_cav(tmp_path):
    from captum.concept import TCAV, Concept
    from captum.concept._utils.classifier import Classifier
    from xaicourse.models import SmallCNN

    torch.manual_seed(0)
    model = SmallCNN(3, 4, width=4, hidden=8).eval()
    g = torch.Generator().manual_seed(0)
    conc, rand, x = (torch.rand(n, 3, 16, 16, generator=g) for n in (12, 12, 20))
    conc[:, :, :4, :4] = 1.0
    layer = "relu3"
    cav = C.concept_activation_vector(model, conc, rand, layer=layer, seed=0)

    class Fixed(Classifier):
        def __init__(self):
            pass

        def train_and_eval(self, dataloader, **kw):
            return {"accs": torch.tensor(cav.accuracy)}

        def weights(self):
            return torch.stack([cav.vector, -cav.vector])      # row of concept 0 = our CAV

        def classes(self):
            return [0, 1]

    for target in range(4):
        tc = TCAV(model, [layer], classifier=Fixed(), save_path=str(tmp_path / f"cav{target}"))
        out = tc.interpret(x, [[Concept(0, "c", [conc]), Concept(1, "r", [rand])]], target=target)
        theirs = out["0-1"][layer]
        ours = C.tcav_score(model, x, target, layer=layer, cav=cav)
        assert abs(theirs["sign_count"][0].item() - ours) <= 1e-6
        S = C.directional_derivatives(model, x, target, layer=layer, cav=cav)
        assert abs(theirs["magnitude"][0].item() - S.mean().item()) <= 1e-6 * max(1.0, S.abs().max().item())


def test_linear_probe_reads_a_linear_label():
    model = nn.Sequential(nn.Identity(), nn.Linear(5, 2)).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    p = C.linear_probe(model, x, y, layer="0", seed=0)
    assert p.accuracy > 0.95 and 0.4 < p.baseline < 0.65


def test_paired_concepts_and_independent_random_concepts(lin):
    g = torch.Generator().manual_seed(5)
    n = 20
    rand_sets = [torch.randn(30, 6, generator=g) for _ in range(n)]
    rand_conc = [torch.randn(30, 6, generator=g) for _ in range(n)]
    x = torch.randn(40, 6, generator=g)
    w = lin.body[0].weight.detach()
    towards = torch.linalg.lstsq(w, lin.head.weight[0].detach()[:, None]).solution[:, 0]
    towards = 2.0 * towards / towards.norm()
    null = torch.linalg.svd(w).Vh[-1]                  # body's pre-activation ignores it: W @ null = 0
    res = C.tcav(lin, x, 0, layer="body", concepts={"seen": lambda r: r + towards, "unseen": lambda r: r + 5.0 * null}, random_sets=rand_sets, n_random=n, random_concepts=rand_conc, seed=3)
    for i in (0, 7, n - 1):                            # each run rebuilt by hand: f(R'_i) vs R_i, and R'_i vs R_i
        cav = C.concept_activation_vector(lin, rand_conc[i] + towards, rand_sets[i], layer="body", seed=3 + i)
        assert torch.equal(cav.vector, res["seen"].cavs[i].vector)
        rc = C.concept_activation_vector(lin, rand_conc[i], rand_sets[i], layer="body", seed=3 + i)
        assert res["seen"].random_scores[i] == C.tcav_score(lin, x, 0, layer="body", cav=rc)
    # a concept along the class's own direction: every run 1, significant against independent random concepts
    assert res["seen"].score == 1.0 and res["seen"].p_value < 0.01
    # a concept the layer cannot see: its CAVs ARE the random concept's → identical scores, p = 1
    assert np.array_equal(res["unseen"].scores, res["unseen"].random_scores) and res["unseen"].p_value == 1.0
    # a function concept with the default single random concept: f(random_sets[n]) against each set
    one = C.tcav(lin, x, 0, layer="body", concepts={"seen": lambda r: r + towards}, random_sets=rand_sets + [rand_conc[0]], n_random=n, seed=3)
    assert np.array_equal(one["seen"].scores[:1], res["seen"].scores[:1])


def test_intervention_effect_is_the_exact_logit_change(lin):
    x = torch.randn(25, 6, generator=torch.Generator().manual_seed(6))
    r = C.intervention_effect(lin, x, lambda b: b + 0.7, 2)
    with torch.no_grad():
        before, after = lin(x), lin(x + 0.7)
    assert torch.allclose(r.delta, after[:, 2] - before[:, 2], atol=1e-6)
    assert r.before == pytest.approx((before.argmax(1) == 2).float().mean().item())
    assert r.after == pytest.approx((after.argmax(1) == 2).float().mean().item())
    again = C.intervention_effect(lin, x, lambda b: b + 0.7, 2, batch_size=7)
    assert torch.allclose(again.delta, r.delta) and again.after == r.after
    with pytest.raises(TypeError, match="apply_concept"):
        C.intervention_effect(lin, x, x + 0.7, 2)
    with pytest.raises(ValueError, match="apply_concept must return"):
        C.intervention_effect(lin, x, lambda b: b[:, :3], 2)
    with pytest.raises(ValueError, match="target"):
        C.intervention_effect(lin, x, lambda b: b, 3)


def test_bad_inputs(lin):
    a, b = _sets()
    with pytest.raises(ValueError, match="concept_inputs"):
        C.concept_activation_vector(lin, a[:4], b, layer="body")
    with pytest.raises(ValueError, match="random_inputs"):
        C.concept_activation_vector(lin, a, b[:3], layer="body")
    with pytest.raises(ValueError, match="layer 'nope'"):
        C.concept_activation_vector(lin, a, b, layer="nope")
    with pytest.raises(ValueError, match="layer"):
        C.tcav_score(lin, a, 0, layer="conv9", cav=torch.ones(4))
    with pytest.raises(ValueError, match="random_sets"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": a}, random_sets=[b, b], n_random=2)
    with pytest.raises(ValueError, match=r"random_sets\[1\]"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": a}, random_sets=[b, b[:2], b], n_random=2)
    with pytest.raises(ValueError, match="random_concepts must each hold at least n_random = 3"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": a}, random_sets=[b, b, b], n_random=3, random_concepts=[b, b])
    with pytest.raises(TypeError, match="random_concepts must be a list"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": a}, random_sets=[b, b], n_random=2, random_concepts=b)
    with pytest.raises(ValueError, match=r"random_concepts\[1\]"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": a}, random_sets=[b, b], n_random=2, random_concepts=[b, b[:3]])
    with pytest.raises(ValueError, match=r"concepts\['c'\] is a function"):
        C.tcav(lin, a, 0, layer="body", concepts={"c": lambda r: r[:, :2]}, random_sets=[b, b], n_random=2, random_concepts=[a, a])
    with pytest.raises(ValueError, match="cav has 3 entries"):
        C.tcav_score(lin, a, 0, layer="body", cav=torch.ones(3))
    cav = C.concept_activation_vector(lin, a, b, layer="body")
    with pytest.raises(ValueError, match="layer"):
        C.tcav_score(lin, a, 0, layer="head", cav=cav)


def test_tcav_scores_equal_tcav_score_of_its_cavs(lin):
    g = torch.Generator().manual_seed(4)
    rand_sets = [torch.randn(20, 6, generator=g) for _ in range(4)]
    conc = torch.randn(20, 6, generator=g) + 1.5
    x = torch.randn(30, 6, generator=g)
    r = C.tcav(lin, x, 1, layer="body", concepts={"c": conc}, random_sets=rand_sets, n_random=3, seed=2)["c"]
    for i, cav in enumerate(r.cavs):
        assert r.scores[i] == C.tcav_score(lin, x, 1, layer="body", cav=cav)
        again = C.concept_activation_vector(lin, conc, rand_sets[i], layer="body", seed=2 + i)
        assert torch.equal(again.vector, cav.vector)


def test_vocabulary_old_calls_warn_and_nan_cav_is_refused(lin):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(10, 6, generator=g)
    v = torch.nn.functional.normalize(torch.randn(4, generator=g), dim=0)
    new = C.directional_derivatives(lin, x, 1, layer="body", cav=v)
    with pytest.warns(DeprecationWarning, match="layer"):
        old = C.directional_derivatives(lin, "body", v, x, 1)
    assert torch.equal(new, old)
    # target=None is the predicted class
    pred = lin(x).argmax(1)
    assert torch.equal(C.directional_derivatives(lin, x, layer="body", cav=v),
                       C.directional_derivatives(lin, x, pred, layer="body", cav=v))
    # one layer_activations: (N, *layer shape); the old order gives the old flattened CPU result
    a = C.layer_activations(lin, x, layer="body")
    with pytest.warns(DeprecationWarning):
        assert torch.equal(C.layer_activations(lin, "body", x), a.reshape(len(x), -1))
    with pytest.raises(ValueError, match="NaN"):
        C.tcav_score(lin, x, 0, layer="body", cav=torch.full((4,), float("nan")))
    with pytest.raises(ValueError, match="zero vector"):
        C.tcav_score(lin, x, 0, layer="body", cav=torch.zeros(4))
    with pytest.raises(ValueError, match="target out of range"):
        C.tcav_score(lin, x, 3, layer="body", cav=v)
