"""Exercise 04 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every attack family (tests/attacks.py) and every library route earns 0 on its task or
is flagged. alice (solution) and bob (untouched) are test_course's students."""
from pathlib import Path

import attacks

ROOT = Path(__file__).resolve().parents[1]
EX = "04_integrated_gradients"
POINTS = {"ig_tests": 4.0, "delta_tests": 2.0, "invariance_tests": 3.0}
FULL = sum(POINTS.values())
NAMES = {"ig_answer": ["riemann_ig"], "delta_answer": ["convergence_delta"], "invariance_answer": ["invariance_gap"]}
TASK = {"ig_answer": "ig_tests", "delta_answer": "delta_tests", "invariance_answer": "invariance_tests"}

HONEST = {
    # float64 out of a float32 model: the right numbers in another dtype
    "h_float64": {"ig_answer": (
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    off = {'left': 0.0, 'middle': 0.5, 'right': 1.0}\n"
        "    if rule not in off or n_steps < 1:\n"
        "        raise ValueError('rule or n_steps')\n"
        "    t = torch.as_tensor(target).reshape(-1).expand(len(x))\n"
        "    total = torch.zeros(x.shape, dtype=torch.float64)\n"
        "    for k in range(n_steps):\n"
        "        z = (baseline + (k + off[rule]) / n_steps * (x - baseline)).detach().requires_grad_(True)\n"
        "        (g,) = torch.autograd.grad(model(z)[torch.arange(len(x)), t].sum(), z)\n"
        "        total += g.double()\n"
        "    return ((x - baseline).double() * total / n_steps).detach()\n")},
    # vectorised over the steps (one batched forward), numpy scalar for the gap
    "h_batched": {"ig_answer": (
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    if rule not in ('left', 'middle', 'right'):\n"
        "        raise ValueError(f'unknown rule {rule}')\n"
        "    if n_steps < 1:\n"
        "        raise ValueError('n_steps must be >= 1')\n"
        "    off = {'left': 0.0, 'middle': 0.5, 'right': 1.0}[rule]\n"
        "    a = (torch.arange(n_steps, dtype=x.dtype) + off) / n_steps\n"
        "    shape = (n_steps,) + (1,) * x.dim()\n"
        "    z = (baseline[None] + a.reshape(shape) * (x - baseline)[None]).reshape(-1, *x.shape[1:])\n"
        "    z = z.detach().requires_grad_(True)\n"
        "    t = torch.as_tensor(target).reshape(-1).expand(len(x)).repeat(n_steps)\n"
        "    (g,) = torch.autograd.grad(model(z)[torch.arange(len(z)), t].sum(), z)\n"
        "    return ((x - baseline) * g.reshape(n_steps, *x.shape).mean(0)).detach()\n"),
        "invariance_answer": (
        "import numpy as np\n"
        "def invariance_gap(method, f_net, g_net, x, target=0):\n"
        "    a, b = method(f_net, x, target).detach().numpy(), method(g_net, x, target).detach().numpy()\n"
        "    return np.float64(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))\n")},
}

LIBRARY = {  # reference libraries by routes a list of forbidden functions would miss
    "lib_internal_influence": {"ig_answer": (
        "from captum.attr import InternalInfluence as _II\n"
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    if rule not in ('left', 'middle', 'right') or n_steps < 1:\n"
        "        raise ValueError('bad')\n"
        "    layer = torch.nn.Identity()\n"
        "    wrapped = torch.nn.Sequential(layer, model)\n"
        "    a = _II(wrapped, layer).attribute(x, baselines=baseline, target=target, n_steps=n_steps,\n"
        "                                      method='riemann_' + rule)\n"
        "    return (a * (x - baseline)).detach()\n")},
    "lib_saliency_delta": {"delta_answer": (
        "import captum.attr as _ca\n"
        "def convergence_delta(model, x, target, baseline, attributions):\n"
        "    return _ca.IntegratedGradients(model).compute_convergence_delta(attributions, baseline, x, target=target)\n")},
    "lib_importlib": {"ig_answer": (
        "import importlib.util as _u\n"
        "_spec = _u.find_spec('xaicourse.attribution.gradients')\n"
        "_G = _u.module_from_spec(_spec); _spec.loader.exec_module(_G)\n"
        "def riemann_ig(model, x, target, baseline, n_steps=50, rule='middle'):\n"
        "    if rule not in ('left', 'middle', 'right') or n_steps < 1:\n"
        "        raise ValueError('bad')\n"
        "    return _G.integrated_gradients(model, x, target, baselines=baseline, n_steps=n_steps,\n"
        "                                   method='riemann_' + rule)\n")},
    "lib_functional": {"invariance_answer": (
        "def invariance_gap(method, f_net, g_net, x, target=0):\n"
        "    from torch.autograd.functional import jacobian\n"
        "    a, b = method(f_net, x, target).detach(), method(g_net, x, target).detach()\n"
        "    jacobian(lambda u: f_net(u).sum(), x)\n"
        "    return float((a - b).abs().max() / b.abs().max())\n")},
}

CHEATS = {  # one generic family per task of this exercise, every family on at least one task
    "cheat_refs": {"ig_answer": attacks.refs(NAMES["ig_answer"])},
    "cheat_subclass": {"ig_answer": attacks.subclass(NAMES["ig_answer"]),
                       "invariance_answer": attacks.subclass(NAMES["invariance_answer"])},
    "cheat_rebind": {"delta_answer": attacks.rebind(NAMES["delta_answer"])},
    "cheat_files": {"invariance_answer": attacks.trusted_files(NAMES["invariance_answer"])},
}


# the graded checks every exercise shares: honest = full, attacks = 0 on their task, library
# routes flagged, no payload outside the sandbox
globals().update(attacks.graded_tests(EX, HONEST, LIBRARY, CHEATS, TASK, POINTS, files_student='cheat_files'))
