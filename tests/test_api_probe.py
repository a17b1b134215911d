"""The bad-input probe of issue #25 (tests/probe_api.py): 0 silent wrong results, ≤ 10 raw tracebacks.

``python benchmarks/probe_api.py`` prints the same table with every raw and silent probe listed.
"""
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe_api  # noqa: E402
from probe_api import A, EITHER, Mutation, Spec  # noqa: E402


# ------------------------------------------------------------------ the classifier itself
def _fn_good(inputs, k=1):
    from xaicourse._validate import as_tensor, check_int
    x = as_tensor("inputs", inputs, min_ndim=2)
    k = check_int("k", k, min=1, max=x.shape[1])
    return x[:, :k].sum(1)


def _fn_silent(inputs, k=1):  # truncates floats, no checks at all
    return torch.as_tensor(inputs)[:, :int(k)].sum(1)


def _fn_raw(inputs, k=1):  # checks, but the messages do not say which argument
    x = torch.as_tensor(inputs)
    if not isinstance(k, int):
        raise TypeError("bad value")
    return x[:, :k].sum(1) / (k - 1)  # k = 1: inf


def _fn_trains(model, inputs):  # updates a BatchNorm's running statistics
    return model(inputs)


def _fn_list_differs(inputs):  # a list is read differently from a tensor
    return torch.as_tensor(inputs).sum() if isinstance(inputs, list) else torch.as_tensor(inputs).sum() + 1


def _run(fn_name, args, **kw):
    out = []
    probe_api.run_spec(Spec((f"{__name__}:{fn_name}",), args, **kw), out)
    return {(r.argument, r.mutation): r.outcome for r in out}


def test_the_probe_tells_the_outcomes_apart():
    x = torch.rand(3, 4)
    k = [Mutation("float", 1.5), Mutation("above range", 9), Mutation("numpy int", lambda v: __import__("numpy").int64(v),
                                                                    EITHER, "same")]
    good = _run("_fn_good", [A("inputs", x, probe_api.batch_mutations(x, False)), A("k", 2, k)])
    assert good[("-", "valid call")] == "sensible"
    assert good[("k", "float")] == good[("k", "above range")] == "clear"
    assert good[("inputs", "NaN")] == good[("inputs", "empty batch")] == good[("inputs", "None")] == "clear"
    assert good[("inputs", "numpy")] == good[("inputs", "list")] == good[("k", "numpy int")] == "sensible"

    silent = _run("_fn_silent", [A("inputs", x, probe_api.batch_mutations(x, False)), A("k", 2, k)])
    assert silent[("k", "float")] == "silent"            # 1.5 read as 1
    assert silent[("inputs", "NaN")] == "silent"         # NaN in, NaN out
    assert silent[("inputs", "empty batch")] == "silent"

    raw = _run("_fn_raw", [A("inputs", x, []), A("k", 2, k)])
    assert raw[("k", "float")] == "raw"                  # TypeError that does not name k
    raw1 = _run("_fn_raw", [A("inputs", x, []), A("k", 1, [])])
    assert raw1[("-", "valid call")] == "silent"         # inf in a valid call's result

    bn = probe_api.tiny_bn_mlp
    trains = _run("_fn_trains", [A("model", probe_api.Fresh(bn), []), A("inputs", probe_api.vectors(), [])])
    assert trains[("-", "valid call")] == "silent"       # running statistics changed

    lst = _run("_fn_list_differs", [A("inputs", x, [Mutation("list", lambda v: v.tolist(), EITHER, "same")])])
    assert lst[("inputs", "list")] == "silent"           # accepted but not equal to the tensor call

    missing = []
    probe_api.run_spec(Spec(("xaicourse:no_such_function", "no_such_module:f"), []), missing)
    assert [r.outcome for r in missing] == ["missing"]


# ------------------------------------------------------------------ the package
OWN = ("data", "constraints", "featurevis", "tsne", "viz", "maps")


def _listing(rows):
    return "\n".join(f"{r.module}.{r.function} {r.argument}=<{r.mutation}> [{r.outcome}] {r.detail[:150]}"
                     for r in rows)


def test_data_constraints_featurevis_tsne_viz_maps_have_no_raw_or_silent_results():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = probe_api.run(OWN)
    bad = [r for r in results if r.outcome in ("raw", "silent", "missing")]
    assert len(results) > 600
    assert not bad, _listing(bad)


@pytest.fixture(scope="module")
def everything():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return probe_api.run()


def test_the_whole_public_api_has_no_silent_results(everything):
    total, _ = probe_api.summarise(everything)
    assert total["missing"] == 0, _listing([r for r in everything if r.outcome == "missing"])
    assert total["silent"] == 0, _listing([r for r in everything if r.outcome == "silent"])


def test_the_whole_public_api_has_at_most_10_raw_tracebacks(everything):
    total, _ = probe_api.summarise(everything)
    assert total["clear"] + total["sensible"] > 1000
    assert total["raw"] <= 10, _listing([r for r in everything if r.outcome == "raw"])
