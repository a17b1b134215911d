"""Exercise 08 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; the library routes (the package's metrics and evaluation, Quantus) and the generic attack families
(tests/attacks.py) earn 0 on their task or are flagged. alice (solution) and bob (untouched) are
test_course's students."""
from pathlib import Path

import attacks
import pytest

ROOT = Path(__file__).resolve().parents[1]
EX = "08_evaluating_explanations"
POINTS = {"deletion_tests": 5.0, "pointing_tests": 3.0, "sanity_tests": 4.0}
FULL = sum(POINTS.values())
NAMES = {"deletion_answer": ["deletion_scores", "deletion_auc"], "pointing_answer": ["pointing_game"],
         "sanity_answer": ["cascading_test"]}
TASK = {"deletion_answer": "deletion_tests", "pointing_answer": "pointing_tests", "sanity_answer": "sanity_tests"}

HONEST = {
    # float64 everywhere (a double copy of the model), numpy sorting and trapezoids, numpy indices
    "e08_h_float64": {
        "deletion_answer": (
            "import copy\n"
            "import numpy as np\n"
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    m = copy.deepcopy(model).double().eval()\n"
            "    r = attribution.double().sum(0).reshape(-1).numpy()\n"
            "    order = np.argsort(-r, kind='stable')\n"
            "    D = r.size\n"
            "    probs, preds = np.zeros(steps + 1), np.zeros(steps + 1, dtype=np.int64)\n"
            "    for j in range(steps + 1):\n"
            "        xj = x.double().clone().reshape(x.shape[0], -1)\n"
            "        xj[:, torch.as_tensor(order[:round(j * D / steps)])] = fill_value\n"
            "        with torch.no_grad():\n"
            "            out = m(xj.reshape(1, *x.shape))[0]\n"
            "        probs[j] = torch.softmax(out, 0)[int(target)].item()\n"
            "        preds[j] = int(out.argmax())\n"
            "    return torch.from_numpy(probs), torch.from_numpy(preds)\n"
            "def deletion_auc(scores, D, steps):\n"
            "    s = np.asarray(scores, dtype=float)\n"
            "    f = np.array([round(j * D / steps) / D for j in range(steps + 1)])\n"
            "    return float(np.sum((f[1:] - f[:-1]) * (s[1:] + s[:-1]) / 2))\n"),
        "pointing_answer": (
            "def pointing_game(attributions, masks):\n"
            "    a = np.abs(np.asarray(attributions, dtype=np.float64)).sum(1)\n"
            "    mk = np.asarray(masks, dtype=bool)\n"
            "    if not mk.reshape(len(mk), -1).any(1).all():\n"
            "        raise ValueError('a mask is empty')\n"
            "    rows, cols = np.unravel_index(a.reshape(len(a), -1).argmax(1), a.shape[1:])\n"
            "    hits = mk[np.arange(len(mk)), rows, cols].astype(np.float64)\n"
            "    return torch.from_numpy(hits), torch.from_numpy(np.stack([rows, cols], 1).astype(np.int64))\n"),
        # float64 copies of the model (re-initialised in float32 first, as the task says), scipy's spearmanr
        "sanity_answer": (
            "import copy\n"
            "import numpy as np\n"
            "from scipy.stats import spearmanr\n"
            "def cascading_test(model, layers, x, target, seed=0):\n"
            "    m = copy.deepcopy(model)\n"
            "    def gm(mod):\n"
            "        md = copy.deepcopy(mod).double()\n"
            "        xg = x.double().clone().requires_grad_(True)\n"
            "        md(xg)[torch.arange(len(x)), target].sum().backward()\n"
            "        return xg.grad.sum(1).numpy()\n"
            "    maps = [gm(m)]\n"
            "    torch.manual_seed(seed)\n"
            "    for name in layers:\n"
            "        getattr(m, name).reset_parameters()\n"
            "        maps.append(gm(m))\n"
            "    rho = np.array([[spearmanr(maps[0][n].ravel(), mp[n].ravel())[0] for n in range(len(x))]\n"
            "                    for mp in maps])\n"
            "    return torch.from_numpy(rho), torch.from_numpy(np.stack(maps))\n")},
    # every step in one batch (ranks compared with the counts), float32 trapezoid; the pointing game
    # from a max over rows then columns
    "e08_h_batched": {
        "deletion_answer": (
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    r = attribution.sum(0).flatten()\n"
            "    D = r.numel()\n"
            "    rank = torch.empty(D, dtype=torch.long)\n"
            "    rank[torch.sort(-r, stable=True).indices] = torch.arange(D)\n"
            "    counts = torch.tensor([round(j * D / steps) for j in range(steps + 1)])\n"
            "    gone = (rank[None] < counts[:, None]).reshape(steps + 1, 1, *x.shape[1:])\n"
            "    xs = torch.where(gone, torch.full_like(x, fill_value)[None], x[None])\n"
            "    with torch.no_grad():\n"
            "        out = model(xs)\n"
            "    return torch.softmax(out, 1)[:, target], out.argmax(1)\n"
            "def deletion_auc(scores, D, steps):\n"
            "    fr = torch.tensor([round(j * D / steps) for j in range(steps + 1)]) / D\n"
            "    return torch.trapezoid(torch.as_tensor(scores).float(), fr).item()\n"),
        "pointing_answer": (
            "def pointing_game(attributions, masks):\n"
            "    masks = torch.as_tensor(masks).bool()\n"
            "    if not masks.any(2).any(1).all():\n"
            "        raise ValueError('empty mask')\n"
            "    r = attributions.abs().sum(1)\n"
            "    best_in_row, col_of_row = r.max(2)\n"
            "    rows = best_in_row.argmax(1)\n"
            "    cols = col_of_row.gather(1, rows[:, None])[:, 0]\n"
            "    n = torch.arange(len(r))\n"
            "    return masks[n, rows, cols].to(torch.float64), torch.stack([rows, cols], 1)\n"),
        # one image at a time, the RNG forked, rankdata + corrcoef
        "sanity_answer": (
            "import copy\n"
            "import numpy as np\n"
            "from scipy.stats import rankdata\n"
            "def cascading_test(model, layers, x, target, seed=0):\n"
            "    m = copy.deepcopy(model).eval()\n"
            "    out_maps = []\n"
            "    with torch.random.fork_rng(devices=[]):\n"
            "        torch.manual_seed(seed)\n"
            "        for j in range(len(layers) + 1):\n"
            "            if j:\n"
            "                getattr(m, layers[j - 1]).reset_parameters()\n"
            "            g = []\n"
            "            for n in range(len(x)):\n"
            "                xi = x[n:n + 1].clone().requires_grad_(True)\n"
            "                g.append(torch.autograd.grad(m(xi)[0, int(target[n])], xi)[0][0].sum(0))\n"
            "            out_maps.append(torch.stack(g).detach())\n"
            "    base = out_maps[0].flatten(1).double().numpy()\n"
            "    rhos = [[np.corrcoef(rankdata(base[n]), rankdata(mp.flatten(1)[n].double().numpy()))[0, 1]\n"
            "             for n in range(len(x))] for mp in out_maps]\n"
            "    return torch.tensor(rhos), torch.stack(out_maps)\n")},
}

LIBRARY = {  # reference libraries by routes a list of forbidden functions would miss
    # the package (was test_course's LIBRARY_ANSWERS["08_evaluating_explanations"]): its deletion
    # curve and pointing game, the extra outputs computed by hand
    "e08_lib_package": {
        "deletion_answer": (
            "from xaicourse.metrics import deletion_curve as _dc, curve_auc as _auc\n"
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    probs = _dc(model, x[None], int(target), attribution[None], steps=steps, value=fill_value)[1][0]\n"
            "    order = torch.sort(-attribution.sum(0).flatten(), stable=True).indices\n"
            "    D = order.numel()\n"
            "    preds = []\n"
            "    for j in range(steps + 1):\n"
            "        xj = x.clone().reshape(x.shape[0], -1)\n"
            "        xj[:, order[:round(j * D / steps)]] = fill_value\n"
            "        with torch.no_grad():\n"
            "            preds.append(model(xj.reshape(1, *x.shape)).argmax())\n"
            "    return probs, torch.stack(preds)\n"
            "def deletion_auc(scores, D, steps):\n"
            "    fr = torch.tensor([round(j * D / steps) / D for j in range(steps + 1)], dtype=torch.float64)\n"
            "    return float(_auc(fr, torch.as_tensor(scores, dtype=torch.float64)[None])[0])\n"),
        "pointing_answer": (
            "from xaicourse.metrics import pointing_game as _pg\n"
            "def pointing_game(attributions, masks):\n"
            "    idx = attributions.abs().sum(1).flatten(1).argmax(1)\n"
            "    W = attributions.shape[-1]\n"
            "    return _pg(attributions, masks, absolute=True), torch.stack([idx // W, idx % W], 1)\n"),
        # the package's cascading randomisation test, signed maps
        "sanity_answer": (
            "from xaicourse.evaluation import cascading_randomization\n"
            "def cascading_test(model, layers, x, target, seed=0):\n"
            "    res = cascading_randomization(model, x, target, 'gradient', layers=list(layers), seed=seed,\n"
            "                                  absolute=False)\n"
            "    return res['rho'], torch.stack(res['maps'])\n")},
    # Quantus's pointing game (and its pixel-flipping curve for the deletion AUC)
    "e08_lib_quantus": {
        "pointing_answer": (
            "import numpy as np\n"
            "import quantus\n"
            "def pointing_game(attributions, masks):\n"
            "    masks = torch.as_tensor(masks).bool()\n"
            "    if (masks.flatten(1).sum(1) == 0).any():\n"
            "        raise ValueError('empty mask')\n"
            "    a = attributions.abs().sum(1, keepdim=True).double().numpy()\n"
            "    hits = quantus.PointingGame(normalise=False, disable_warnings=True)(\n"
            "        model=None, x_batch=a, y_batch=np.zeros(len(a), dtype=int), a_batch=a,\n"
            "        s_batch=masks[:, None].double().numpy())\n"
            "    idx = torch.as_tensor(a).flatten(1).argmax(1)\n"
            "    W = a.shape[-1]\n"
            "    return torch.tensor([float(h) for h in hits]), torch.stack([idx // W, idx % W], 1)\n")},
    # the package's evaluation package (what xaicourse.metrics became, issue #25) under its new names:
    # deletion_curve with n_steps= and baselines=, and curve_auc; the predicted classes by hand
    "e08_lib_evaluation": {
        "deletion_answer": (
            "from xaicourse.evaluation import curve_auc, deletion_curve\n"
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    probs = deletion_curve(model, x[None], int(target), attribution[None], n_steps=steps,\n"
            "                           baselines=fill_value)[1][0]\n"
            "    order = torch.sort(-attribution.sum(0).flatten(), stable=True).indices\n"
            "    D = order.numel()\n"
            "    preds = []\n"
            "    for j in range(steps + 1):\n"
            "        xj = x.clone().reshape(x.shape[0], -1)\n"
            "        xj[:, order[:round(j * D / steps)]] = fill_value\n"
            "        with torch.no_grad():\n"
            "            preds.append(model(xj.reshape(1, *x.shape)).argmax())\n"
            "    return probs, torch.stack(preds)\n"
            "def deletion_auc(scores, D, steps):\n"
            "    fr = torch.tensor([round(j * D / steps) / D for j in range(steps + 1)], dtype=torch.float64)\n"
            "    return float(curve_auc(fr, torch.as_tensor(scores, dtype=torch.float64)[None])[0])\n")},
    # the package's metrics module reached through importlib and a string
    "e08_lib_importlib": {
        "deletion_answer": (
            "import importlib as _il\n"
            "_M = _il.import_module('xaicourse.metrics')\n"
            "def deletion_scores(model, x, target, attribution, steps=16, fill_value=0.5):\n"
            "    return _M.deletion_curve(model, x[None], int(target), attribution[None], steps=steps,\n"
            "                             value=fill_value)[1][0], torch.zeros(steps + 1, dtype=torch.long)\n"
            "def deletion_auc(scores, D, steps):\n"
            "    fr = torch.tensor([round(j * D / steps) / D for j in range(steps + 1)], dtype=torch.float64)\n"
            "    return float(_M.curve_auc(fr, torch.as_tensor(scores, dtype=torch.float64)[None])[0])\n")},
}

CHEATS = {  # the generic families, each task attacked by at least two of them
    "e08_cheat_refs": {"deletion_answer": attacks.refs(NAMES["deletion_answer"]),
                       "pointing_answer": attacks.refs(NAMES["pointing_answer"]),
                       "sanity_answer": attacks.refs(NAMES["sanity_answer"])},
    "e08_cheat_subclass": {"deletion_answer": attacks.subclass(NAMES["deletion_answer"])},
    "e08_cheat_rebind": {"pointing_answer": attacks.rebind(NAMES["pointing_answer"])},
    "e08_cheat_files": {"deletion_answer": attacks.trusted_files(NAMES["deletion_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e08_cheat_files":
        attacks.plant_payloads(folder)


@pytest.fixture(scope="module")
def grades(course_grades):
    return {s: r for (s, ex), r in course_grades.items() if ex == EX}


def _task_points(row, task):
    part = next(p for p in row["tasks"].split("; ") if p.startswith(task + "="))
    return float(part.rsplit(" ", 1)[1].split("/")[0])


@pytest.mark.slow
@pytest.mark.parametrize("student", list(HONEST))
def test_honest_variants_full_marks(grades, student):
    row = grades[student]
    assert float(row["score"]) == FULL, row
    assert not row["status"].startswith("flagged"), row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY) + list(CHEATS))
def test_attacks_earn_nothing_on_their_task(grades, student):
    row = grades[student]
    plan = {**LIBRARY, **CHEATS}[student]
    attacked = {TASK[a] for a in plan}
    for task in attacked:
        got = _task_points(row, task)
        assert got == 0.0 or row["status"].startswith("flagged"), (task, row)
    # the other tasks were answered honestly and keep their points
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in attacked), row


@pytest.mark.slow
def test_library_routes_are_flagged(grades):
    for student in LIBRARY:
        assert grades[student]["status"].startswith("flagged"), grades[student]


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e08_cheat_files" in grades
    assert attacks.marker_absent()
