"""evaluation.check_axioms (lecture 04): the measured table is our expected table (EXPECTED, written
down by us from the papers, not a table printed in one of them), and each
constructed network does what its docstring says."""
import pytest
import torch

from xaicourse import attribution as A
from xaicourse.evaluation import AXIOMS, EXPECTED, axioms_table, check_axioms, format_axioms_table, toy_networks


def test_axioms_table_is_our_expected_table():
    table = axioms_table()
    got = {row["method"]: tuple(row[a] for a in AXIOMS) for row in table}
    assert got == EXPECTED, "\n" + format_axioms_table(table)
    # the failures are clear, not borderline
    for row in table:
        for a in ("completeness", "linearity", "symmetry", "implementation_invariance"):
            v = row[a + "_value"]
            assert v < 0.005 or v > 0.1, (row["method"], a, v)


def test_toy_networks_are_what_they_claim():
    toys = toy_networks()
    net, x = toys["sensitivity"]                    # f(x) = 1 − ReLU(1 − x)
    for v in (-1.0, 0.0, 0.5, 2.0, 5.0):
        assert net(torch.tensor([[v]], dtype=torch.float64)).item() == pytest.approx(1 - max(1 - v, 0))
    f1, f2, f12, x = toys["linearity"]
    z = torch.randn(50, 2, dtype=torch.float64)
    assert torch.allclose(f12(z), f1(z) + f2(z))
    net, _ = toys["symmetry"]
    assert torch.allclose(net(z), net(z.flip(1)))
    net, _ = toys["dummy"]
    z2 = z.clone()
    z2[:, 1] = torch.randn(50, dtype=torch.float64)
    assert torch.allclose(net(z), net(z2))
    for f, g, _ in toys["implementation_invariance"]:
        zz = 5 * torch.randn(200, f[0].in_features, dtype=torch.float64)
        assert torch.allclose(f(zz), g(zz)) and not torch.allclose(f[0].weight, g[0].weight) or \
            not torch.allclose(f[0].bias, g[0].bias)


def test_check_axioms_on_the_course_cnn_and_errors():
    from xaicourse.models import course_model
    model, split, _ = course_model("digits", progress=False)
    x, t = split.X_test[:16], split.y_test[:16]
    rows = check_axioms("integrated_gradients", model, x, t, n_steps=64)
    comp = next(r for r in rows if r["axiom"] == "completeness")
    assert comp["holds"] and comp["value"] < 0.01
    rows = check_axioms(A.gradient, model, x, t)
    assert not next(r for r in rows if r["axiom"] == "completeness")["holds"]
    with pytest.raises(ValueError, match="method must be"):
        check_axioms("magic")
    with pytest.raises(ValueError, match="inputs is required"):
        check_axioms("gradient", model)
