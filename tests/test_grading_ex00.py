"""Exercise 00 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every library route and every attack family (tests/attacks.py) earns 0 on its task or
is flagged. alice (solution), bob (untouched) and the wrong / hanging / crashing / tampering
students carol, dave, eve and frank are test_course's."""
import math
from pathlib import Path

import attacks
import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EX = "00_introduction"
POINTS = {"perturbation_tests": 3.0, "topweights_tests": 2.0}
FULL = sum(POINTS.values())
NAMES = {"perturbation_answer": ["perturbation_score_vector"], "topweights_answer": ["gradient_limit"]}
TASK = {"perturbation_answer": "perturbation_tests", "topweights_answer": "topweights_tests"}

HONEST = {
    # one perturbed input at a time; ties of the error broken towards the smallest step; a 0-d
    # comparison for the zero step
    "e00_h_loop": {
        "perturbation_answer": (
            "def perturbation_score_vector(f, x, delta):\n"
            "    if delta == 0:\n"
            "        raise ValueError('delta must be non-zero')\n"
            "    f0 = f(x[None])[0]\n"
            "    out = []\n"
            "    for i in range(len(x)):\n"
            "        xp = x.clone()\n"
            "        xp[i] = xp[i] + delta\n"
            "        out.append(f0 - f(xp[None])[0])\n"
            "    return torch.stack(out)\n"),
        "topweights_answer": (
            "def gradient_limit(f, x, i, deltas, exact):\n"
            "    if (torch.as_tensor(deltas) <= 0).any():\n"
            "        raise ValueError('every step must be positive')\n"
            "    f0 = f(x[None])[0]\n"
            "    errs = []\n"
            "    for dl in deltas.tolist():\n"
            "        xp = x.clone()\n"
            "        xp[i] += dl\n"
            "        errs.append(abs(((f0 - f(xp[None])[0]) / dl).item() + exact))\n"
            "    e = torch.tensor(errs, dtype=torch.float64)\n"
            "    k = len(e) - 1 - int(torch.flip(e, [0]).argmin())\n"
            "    return e, float(deltas[k])\n")},
    # numpy results: the perturbed inputs built in float64 and rounded to x's dtype, f evaluated once
    # on the whole batch (x included), a numpy float64 best step
    "e00_h_numpy": {
        "perturbation_answer": (
            "def perturbation_score_vector(f, x, delta):\n"
            "    if not delta:\n"
            "        raise ValueError('delta must be non-zero')\n"
            "    X = x.double()[None] + delta * torch.eye(len(x), dtype=torch.float64)\n"
            "    vals = f(torch.cat([x.double()[None], X]).to(x.dtype)).double().numpy()\n"
            "    return vals[0] - vals[1:]\n"),
        "topweights_answer": (
            "def gradient_limit(f, x, i, deltas, exact):\n"
            "    D = np.asarray(deltas, dtype=np.float64)\n"
            "    if np.any(D <= 0):\n"
            "        raise ValueError('every step must be positive')\n"
            "    E = torch.zeros(len(D), x.numel(), dtype=torch.float64)\n"
            "    E[:, i] = torch.from_numpy(D)\n"
            "    out = f(torch.cat([x[None], (x.double()[None] + E).to(x.dtype)]))\n"
            "    e = np.abs((out[0] - out[1:]).double().numpy() / D + exact)\n"
            "    return e, np.float64(D[np.argmin(e)])\n")},
}

LIBRARY = {  # reference libraries by routes a list of forbidden functions would miss
    "e00_lib_package": {  # the package's perturbation scores for both tasks (was test_course's "lib")
        "perturbation_answer": (
            "def perturbation_score_vector(f, x, delta):\n"
            "    from xaicourse.attribution import perturbation_scores\n"
            "    if delta == 0:\n"
            "        raise ValueError('delta must be non-zero')\n"
            "    class F(torch.nn.Module):\n"
            "        def forward(self, X):\n"
            "            return f(X)[:, None]\n"
            "    return perturbation_scores(F(), x[None], 0, delta=delta)[0]\n"),
        "topweights_answer": (
            "def gradient_limit(f, x, i, deltas, exact):\n"
            "    from xaicourse.attribution import perturbation_scores\n"
            "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
            "    if not bool((deltas > 0).all()):\n"
            "        raise ValueError('steps must be positive')\n"
            "    class F(torch.nn.Module):\n"
            "        def forward(self, X):\n"
            "            return f(X)[:, None]\n"
            "    R = torch.stack([perturbation_scores(F(), x[None], 0, delta=float(dl))[0, i] for dl in deltas.tolist()])\n"
            "    errors = (R.double() / deltas + exact).abs()\n"
            "    return errors, float(deltas[errors.argmin()])\n")},
    # captum's feature ablation with the baseline x + δ: ablating feature i *is* the perturbation
    "e00_lib_ablation": {"perturbation_answer": (
        "from captum.attr import FeatureAblation as _FA\n"
        "def perturbation_score_vector(f, x, delta):\n"
        "    if delta == 0:\n"
        "        raise ValueError('delta must be non-zero')\n"
        "    return _FA(lambda X: f(X)).attribute(x[None], baselines=x[None] + delta)[0]\n")},
    # captum's occlusion with a one-feature window, once per step
    "e00_lib_occlusion": {"topweights_answer": (
        "import captum.attr as _ca\n"
        "def gradient_limit(f, x, i, deltas, exact):\n"
        "    deltas = torch.as_tensor(deltas, dtype=torch.float64)\n"
        "    if not bool((deltas > 0).all()):\n"
        "        raise ValueError('steps must be positive')\n"
        "    occ = _ca.Occlusion(lambda X: f(X))\n"
        "    R = torch.stack([occ.attribute(x[None], sliding_window_shapes=(1,),\n"
        "                                   baselines=x[None] + torch.tensor(dl, dtype=x.dtype))[0, i]\n"
        "                     for dl in deltas.tolist()])\n"
        "    errors = (R.double() / deltas + exact).abs()\n"
        "    return errors, float(deltas[errors.argmin()])\n")},
    # the package module loaded by file, under no import statement
    "e00_lib_importlib": {"perturbation_answer": (
        "import importlib.util as _u\n"
        "_spec = _u.find_spec('xaicourse.attribution.perturbation')\n"
        "_P = _u.module_from_spec(_spec); _spec.loader.exec_module(_P)\n"
        "def perturbation_score_vector(f, x, delta):\n"
        "    class F(torch.nn.Module):\n"
        "        def forward(self, X):\n"
        "            return f(X)[:, None]\n"
        "    return _P.perturbation_scores(F(), x[None], 0, delta=delta)[0]\n")},
}

CHEATS = {  # the four generic families, spread over both tasks
    "e00_cheat_refs": {"perturbation_answer": attacks.refs(NAMES["perturbation_answer"])},
    "e00_cheat_subclass": {"perturbation_answer": attacks.subclass(NAMES["perturbation_answer"]),
                           "topweights_answer": attacks.subclass(NAMES["topweights_answer"])},
    "e00_cheat_rebind": {"topweights_answer": attacks.rebind(NAMES["topweights_answer"])},
    "e00_cheat_files": {"topweights_answer": attacks.trusted_files(NAMES["topweights_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e00_cheat_files":
        attacks.plant_payloads(folder)


# ----------------------------------------------------------------------------- fast: the routes are right
def _define(source: str, name: str):
    import numpy as np

    ns = {"math": math, "torch": torch, "np": np}
    exec("\n".join(line for line in source.splitlines() if "### " not in line), ns)
    return ns[name]


def _solution(grade_id: str, name: str):
    nb = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return _define(cell.source, name)


def test_library_answers_are_numerically_right():
    """So a 0 in grading is the flag at work, not a wrong answer."""
    import functools

    f = functools.partial(torch.linalg.vector_norm, ord=2.5, dim=1)
    x = torch.tensor([0.7, -1.3, 0.4, 2.0], dtype=torch.float64)
    score = _solution("perturbation_answer", "perturbation_score_vector")
    limit = _solution("topweights_answer", "gradient_limit")
    deltas = torch.logspace(-1, -6, 11, dtype=torch.float64)
    for plan in LIBRARY.values():
        if "perturbation_answer" in plan:
            mine = _define(plan["perturbation_answer"], "perturbation_score_vector")
            assert torch.allclose(torch.as_tensor(mine(f, x, -0.3)).double(), score(f, x, -0.3), atol=1e-12)
        if "topweights_answer" in plan:
            mine = _define(plan["topweights_answer"], "gradient_limit")
            e, b = mine(f, x, 1, deltas, 0.5)
            e_ref, b_ref = limit(f, x, 1, deltas, 0.5)
            assert torch.allclose(e, e_ref, rtol=1e-6) and b == b_ref


# ----------------------------------------------------------------------------- graded
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
        assert _task_points(row, task) == 0.0 or row["status"].startswith("flagged"), (task, row)
    # the other task was answered honestly and keeps its points
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in attacked), row


@pytest.mark.slow
def test_library_routes_are_flagged(grades):
    for student in LIBRARY:
        assert grades[student]["status"].startswith("flagged"), grades[student]
        for task in {TASK[a] for a in LIBRARY[student]}:
            assert f"{task}=flagged 0/" in grades[student]["tasks"], grades[student]


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e00_cheat_files" in grades
    assert attacks.marker_absent()
