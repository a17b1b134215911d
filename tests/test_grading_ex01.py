"""Exercise 01 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; an answer that calls the package's implementation (``featurevis.total_variation``,
``constraints.ascent_step`` / ``project_lp``, however imported) and every attack family
(tests/attacks.py) earns 0 on its task or is flagged. alice (solution) and bob (untouched) are
test_course's."""
import math
from pathlib import Path

import attacks
import nbformat
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EX = "01_activation_maximization"
POINTS = {"tv_tests": 3.0, "pga_tests": 4.0}
FULL = sum(POINTS.values())
NAMES = {"tv_answer": ["total_variation"], "pga_answer": ["pga_step"]}
TASK = {"tv_answer": "tv_tests", "pga_answer": "pga_tests"}

HONEST = {
    # torch.diff for TV; the step computed in float64 whatever the input, reach by torch.linalg
    "e01_h_float64": {
        "tv_answer": (
            "def total_variation(x):\n"
            "    return (torch.diff(x, dim=3).abs().sum(dim=(1, 2, 3))\n"
            "            + torch.diff(x, dim=2).abs().sum(dim=(1, 2, 3)))\n"),
        "pga_answer": (
            "def pga_step(x, grad, step_size, radius, p, center=0.5):\n"
            "    x64, g64 = x.double(), grad.double()\n"
            "    N = len(x)\n"
            "    if p == float('inf'):\n"
            "        d = torch.sign(g64)\n"
            "    else:\n"
            "        n = torch.linalg.vector_norm(g64.reshape(N, -1), dim=1)\n"
            "        d = g64 / torch.where(n == 0, 1.0, n).reshape(N, 1, 1, 1)\n"
            "    y = x64 + step_size * d\n"
            "    v = (y - center).reshape(N, -1)\n"
            "    if p == float('inf'):\n"
            "        reach = v.abs().max(dim=1).values\n"
            "        new = center + torch.clamp(y - center, -radius, radius)\n"
            "    else:\n"
            "        reach = v.norm(dim=1)\n"
            "        f = torch.minimum(torch.ones_like(reach), radius / reach)\n"
            "        new = center + (y - center) * f.reshape(N, 1, 1, 1)\n"
            "    return new, reach\n")},
    # TV as two difference convolutions; the step image by image, reach as a numpy array
    "e01_h_loop": {
        "tv_answer": (
            "import torch.nn.functional as F\n"
            "def total_variation(x):\n"
            "    N, C, H, W = x.shape\n"
            "    z = x.reshape(N * C, 1, H, W)\n"
            "    kx = torch.tensor([[[[-1.0, 1.0]]]], dtype=x.dtype)\n"
            "    ky = kx.transpose(2, 3)\n"
            "    tv = F.conv2d(z, kx).abs().sum(dim=(1, 2, 3)) + F.conv2d(z, ky).abs().sum(dim=(1, 2, 3))\n"
            "    return tv.reshape(N, C).sum(1)\n"),
        "pga_answer": (
            "import numpy as np\n"
            "def pga_step(x, grad, step_size, radius, p, center=0.5):\n"
            "    outs, reach = [], []\n"
            "    for xn, gn in zip(x, grad):\n"
            "        if p == math.inf:\n"
            "            d = gn.sign()\n"
            "        else:\n"
            "            nrm = gn.norm()\n"
            "            d = gn / nrm if nrm > 0 else torch.zeros_like(gn)\n"
            "        v = xn + step_size * d - center\n"
            "        if p == math.inf:\n"
            "            reach.append(float(v.abs().max()))\n"
            "            outs.append(center + v.clamp(-radius, radius))\n"
            "        else:\n"
            "            r = float(v.norm())\n"
            "            reach.append(r)\n"
            "            outs.append(center + v * min(1.0, radius / r) if r > 0 else center + v)\n"
            "    return torch.stack(outs), np.array(reach)\n")},
}

LIBRARY = {  # the package by routes a list of forbidden functions would miss
    "e01_lib_tv": {"tv_answer": (
        "from xaicourse.featurevis import total_variation as _package_tv\n"
        "def total_variation(x):\n"
        "    return _package_tv(x)\n")},
    "e01_lib_tv_maps": {"tv_answer": (   # the foundation module the package's own TV now lives in
        "from xaicourse.maps import total_variation as _tv\n"
        "def total_variation(x):\n"
        "    return _tv(x)\n")},
    "e01_lib_tv_importlib": {"tv_answer": (
        "import importlib.util as _u\n"
        "_spec = _u.find_spec('xaicourse.featurevis')\n"
        "_fv = _u.module_from_spec(_spec); _spec.loader.exec_module(_fv)\n"
        "def total_variation(x):\n"
        "    return _fv.total_variation(x)\n")},
    "e01_lib_pga": {"pga_answer": (
        "import xaicourse.constraints\n"
        "def pga_step(x, grad, step_size, radius, p, center=0.5):\n"
        "    C = xaicourse.constraints\n"
        "    y = x + step_size * C.steepest_direction(grad, p)\n"
        "    return C.ascent_step(x, grad, step_size, radius, p, center), C.lp_norm(y, p, center)\n")},
    "e01_lib_projection": {"pga_answer": (  # its own step, the package's projection
        "from xaicourse.constraints import project_lp as proj\n"
        "def pga_step(x, grad, step_size, radius, p, center=0.5):\n"
        "    if p == math.inf:\n"
        "        d = grad.sign()\n"
        "    else:\n"
        "        n = grad.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))\n"
        "        d = torch.where(n > 0, grad / n.clamp_min(1e-30), torch.zeros_like(grad))\n"
        "    y = x + step_size * d\n"
        "    v = (y - center).flatten(1)\n"
        "    reach = v.abs().amax(1) if p == math.inf else v.norm(dim=1)\n"
        "    return proj(y, radius, p, center), reach\n")},
}

CHEATS = {  # the four generic families, spread over both tasks
    "e01_cheat_refs": {"tv_answer": attacks.refs(NAMES["tv_answer"])},
    "e01_cheat_subclass": {"pga_answer": attacks.subclass(NAMES["pga_answer"])},
    "e01_cheat_rebind": {"tv_answer": attacks.rebind(NAMES["tv_answer"])},   # (two rebind cells would
    # chain their wrappers into an endless recursion: a 60 s timeout per task, no extra coverage)
    "e01_cheat_files": {"pga_answer": attacks.trusted_files(NAMES["pga_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e01_cheat_files":
        attacks.plant_payloads(folder)


# ----------------------------------------------------------------------------- fast: the routes are right
def _define(source: str, name: str):
    ns = {"math": math, "torch": torch}
    exec("\n".join(line for line in source.splitlines() if "### " not in line), ns)
    return ns[name]


def _solution(grade_id: str, name: str):
    nb = nbformat.read(ROOT / "solutions" / EX / f"{EX}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    return _define(cell.source, name)


def test_library_answers_are_numerically_right():
    """So a 0 in grading is the flag at work, not a wrong answer."""
    tv_ref = _solution("tv_answer", "total_variation")
    pga_ref = _solution("pga_answer", "pga_step")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 5, 6, generator=g, dtype=torch.float64)
    grad = torch.randn(3, 2, 5, 6, generator=g, dtype=torch.float64)
    for plan in LIBRARY.values():
        if "tv_answer" in plan:
            assert torch.allclose(_define(plan["tv_answer"], "total_variation")(x), tv_ref(x), rtol=1e-12)
        if "pga_answer" in plan:
            step = _define(plan["pga_answer"], "pga_step")
            for eta, r, p, c in ((0.1, 0.3, math.inf, 0.5), (0.5, 1.0, 2, 0.5), (3.0, 0.5, 2, 0.2)):
                (a, ra), (b, rb) = step(x, grad, eta, r, p, c), pga_ref(x, grad, eta, r, p, c)
                assert torch.allclose(a, b, atol=1e-12) and torch.allclose(ra, rb, atol=1e-12)


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
    assert "e01_cheat_files" in grades
    assert attacks.marker_absent()
