"""Exercise 04b graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every attack family (tests/attacks.py) and every library route earns 0 on its task or
is flagged. alice (solution) and bob (untouched) are test_course's students."""
from pathlib import Path

import attacks

ROOT = Path(__file__).resolve().parents[1]
EX = "04b_propagation_and_shapley"
POINTS = {"multiplier_tests": 2.0, "deeplift_tests": 3.0, "shapley_tests": 5.0}
FULL = sum(POINTS.values())
NAMES = {"multiplier_answer": ["rescale_multiplier"], "deeplift_answer": ["deeplift_mlp"],
         "shapley_answer": ["exact_shapley"]}
TASK = {"multiplier_answer": "multiplier_tests", "deeplift_answer": "deeplift_tests", "shapley_answer": "shapley_tests"}

HONEST = {
    # numpy throughout, numpy arrays back; Shapley by one model call per coalition
    "h_numpy": {
        "multiplier_answer": (
            "import numpy as np\n"
            "def rescale_multiplier(z, z_ref):\n"
            "    a, b = z.numpy(), z_ref.numpy()\n"
            "    d = a - b\n"
            "    small = np.abs(d) < 1e-10\n"
            "    with np.errstate(divide='ignore', invalid='ignore'):\n"
            "        sec = (np.maximum(a, 0) - np.maximum(b, 0)) / np.where(small, 1.0, d)\n"
            "    return torch.from_numpy(np.where(small, (a > 0).astype(a.dtype), sec).astype(a.dtype))\n"),
        "deeplift_answer": (
            "import numpy as np\n"
            "def deeplift_mlp(layers, x, baseline, target):\n"
            "    Ws = [np.asarray(W, dtype=np.float64) for W, _ in layers]\n"
            "    bs = [np.asarray(b, dtype=np.float64) for _, b in layers]\n"
            "    h, hr = np.asarray(x, dtype=np.float64), np.asarray(baseline, dtype=np.float64)\n"
            "    ms = []\n"
            "    for W, b in zip(Ws[:-1], bs[:-1]):\n"
            "        z, zr = h @ W.T + b, hr @ W.T + b\n"
            "        ms.append(rescale_multiplier(torch.from_numpy(z), torch.from_numpy(zr)).numpy())\n"
            "        h, hr = np.maximum(z, 0), np.maximum(zr, 0)\n"
            "    m = np.tile(Ws[-1][target], (len(h), 1))\n"
            "    for W, mult in zip(reversed(Ws[:-1]), reversed(ms)):\n"
            "        m = (m * mult) @ W\n"
            "    return (np.asarray(x) - np.asarray(baseline)) * m\n"),
        "shapley_answer": (
            "from itertools import combinations\n"
            "from math import comb\n"
            "def exact_shapley(model, x, baseline, target):\n"
            "    if x.shape != baseline.shape:\n"
            "        raise ValueError('shapes differ')\n"
            "    d = len(x)\n"
            "    def v(S):\n"
            "        z = baseline.clone()\n"
            "        for j in S:\n"
            "            z[j] = x[j]\n"
            "        with torch.no_grad():\n"
            "            return float(model(z[None])[0, target])\n"
            "    out = []\n"
            "    for i in range(d):\n"
            "        rest = [j for j in range(d) if j != i]\n"
            "        out.append(sum((v(S + (i,)) - v(S)) / (d * comb(d - 1, k))\n"
            "                       for k in range(d) for S in combinations(rest, k)))\n"
            "    return out\n")},
    # DeepLIFT as a modified gradient (a custom autograd.Function), Shapley over every order
    "h_autograd": {
        "deeplift_answer": (
            "class _Rescale(torch.autograd.Function):\n"
            "    @staticmethod\n"
            "    def forward(ctx, z, z_ref):\n"
            "        ctx.save_for_backward(rescale_multiplier(z, z_ref))\n"
            "        return torch.relu(z)\n"
            "    @staticmethod\n"
            "    def backward(ctx, g):\n"
            "        (m,) = ctx.saved_tensors\n"
            "        return g * m, None\n"
            "def deeplift_mlp(layers, x, baseline, target):\n"
            "    xx = x.clone().requires_grad_(True)\n"
            "    h, hr = xx, baseline\n"
            "    for l, (W, b) in enumerate(layers):\n"
            "        z, zr = h @ W.T + b, hr @ W.T + b\n"
            "        if l < len(layers) - 1:\n"
            "            h, hr = _Rescale.apply(z, zr.detach()), torch.relu(zr)\n"
            "    (m,) = torch.autograd.grad(z[:, target].sum(), xx)\n"
            "    return ((x - baseline) * m).detach()\n"),
        "shapley_answer": (
            "from itertools import permutations\n"
            "def exact_shapley(model, x, baseline, target):\n"
            "    if tuple(x.shape) != tuple(baseline.shape):\n"
            "        raise ValueError('x and baseline must have one shape')\n"
            "    d = x.shape[0]\n"
            "    phi = torch.zeros(d, dtype=torch.float64)\n"
            "    orders = list(permutations(range(d)))\n"
            "    for order in orders:\n"
            "        z = baseline.clone()\n"
            "        zs = [z.clone()]\n"
            "        for i in order:\n"
            "            z[i] = x[i]\n"
            "            zs.append(z.clone())\n"
            "        with torch.no_grad():\n"
            "            v = model(torch.stack(zs))[:, target].double()\n"
            "        for k, i in enumerate(order):\n"
            "            phi[i] += v[k + 1] - v[k]\n"
            "    return phi / len(orders)\n")},
}

LIBRARY = {  # reference libraries by routes a list of forbidden functions would miss
    "lib_captum_deeplift": {"deeplift_answer": (
        "from captum.attr import DeepLift as _DL\n"
        "def deeplift_mlp(layers, x, baseline, target):\n"
        "    mods = []\n"
        "    for l, (W, b) in enumerate(layers):\n"
        "        lin = torch.nn.Linear(W.shape[1], W.shape[0]).to(W.dtype)\n"
        "        with torch.no_grad():\n"
        "            lin.weight.copy_(W); lin.bias.copy_(b)\n"
        "        mods += [lin] + ([torch.nn.ReLU()] if l < len(layers) - 1 else [])\n"
        "    return _DL(torch.nn.Sequential(*mods)).attribute(x, baselines=baseline, target=target).detach()\n")},
    "lib_importlib_shapley": {"shapley_answer": (
        "import importlib.util as _u\n"
        "_spec = _u.find_spec('xaicourse.attribution.shapley')\n"
        "_S = _u.module_from_spec(_spec); _spec.loader.exec_module(_S)\n"
        "def exact_shapley(model, x, baseline, target):\n"
        "    if x.shape != baseline.shape:\n"
        "        raise ValueError('shapes')\n"
        "    return _S.shapley_exact(model, x[None], target, baselines=baseline[None])[0]\n")},
    "lib_func_multiplier": {"multiplier_answer": (
        "from torch.func import vmap as _vmap\n"
        "def rescale_multiplier(z, z_ref):\n"
        "    def one(a, b):\n"
        "        d = a - b\n"
        "        small = d.abs() < 1e-10\n"
        "        sec = (torch.relu(a) - torch.relu(b)) / torch.where(small, torch.ones_like(d), d)\n"
        "        return torch.where(small, (a > 0).to(a.dtype), sec)\n"
        "    return _vmap(one)(z.reshape(-1), z_ref.reshape(-1)).reshape(z.shape)\n")},
}

CHEATS = {  # every family on at least one task (not on task 1: task 2 calls task 1's function)
    "cheat_refs": {"deeplift_answer": attacks.refs(NAMES["deeplift_answer"])},
    "cheat_subclass": {"shapley_answer": attacks.subclass(NAMES["shapley_answer"]),
                       "deeplift_answer": attacks.subclass(NAMES["deeplift_answer"])},
    "cheat_rebind": {"shapley_answer": attacks.rebind(NAMES["shapley_answer"])},
    "cheat_files": {"deeplift_answer": attacks.trusted_files(NAMES["deeplift_answer"])},
}


# the graded checks every exercise shares: honest = full, attacks = 0 on their task, library
# routes flagged, no payload outside the sandbox
globals().update(attacks.graded_tests(EX, HONEST, LIBRARY, CHEATS, TASK, POINTS, files_student='cheat_files'))
