"""Exercise 02 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; the library routes (``xaicourse.tsne``, scikit-learn's t-SNE internals, autograd for
the analytic gradient) and every attack family (tests/attacks.py) earn 0 on their task or are
flagged. alice (solution) and bob (untouched) are test_course's students."""
import attacks
import pytest

EX = "02_tsne"
POINTS = {"perplexity_tests": 4.0, "gradient_tests": 4.0}
FULL = sum(POINTS.values())
NAMES = {"perplexity_answer": ["perplexity_search"], "gradient_answer": ["tsne_gradient"]}
TASK = {"perplexity_answer": "perplexity_tests", "gradient_answer": "gradient_tests"}

HONEST = {
    # one row at a time in NumPy float64, the entropy as −Σ p log p, the counts in a list; the
    # gradient pair by pair with broadcasting, returned as a NumPy array
    "e02_h_rowloop": {
        "perplexity_answer": (
            "def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):\n"
            "    D = np.asarray(D, dtype=np.float64)\n"
            "    n = len(D)\n"
            "    P, betas, steps = np.zeros((n, n)), np.ones(n), []\n"
            "    goal = np.log(perplexity)\n"
            "    for i in range(n):\n"
            "        others = np.arange(n) != i\n"
            "        d = D[i, others] - D[i, others].min()\n"
            "        b, lo, hi, s = 1.0, None, None, 0\n"
            "        for _ in range(max_steps):\n"
            "            p = np.exp(-b * d); p /= p.sum()\n"
            "            H = -np.sum(p[p > 0] * np.log(p[p > 0]))\n"
            "            if abs(H - goal) <= tol:\n"
            "                break\n"
            "            if H > goal:\n"
            "                lo = b\n"
            "                b = 2 * b if hi is None else (b + hi) / 2\n"
            "            else:\n"
            "                hi = b\n"
            "                b = b / 2 if lo is None else (b + lo) / 2\n"
            "            s += 1\n"
            "        p = np.exp(-b * d)\n"
            "        P[i, others] = p / p.sum()\n"
            "        betas[i] = b\n"
            "        steps.append(s)\n"
            "    return torch.from_numpy(P), torch.from_numpy(betas), torch.tensor(steps)\n"),
        "gradient_answer": (
            "def tsne_gradient(P, Y):\n"
            "    P, Y = np.asarray(P, dtype=np.float64), np.asarray(Y, dtype=np.float64)\n"
            "    diff = Y[:, None, :] - Y[None, :, :]\n"
            "    W = 1.0 / (1.0 + (diff ** 2).sum(-1))\n"
            "    np.fill_diagonal(W, 0.0)\n"
            "    Q = W / W.sum()\n"
            "    return 4.0 * np.einsum('ij,ijk->ik', (P - Q) * W, diff)\n"),
    },
    # vectorised in NumPy with boolean masks, int32 counts; the gradient split into attraction and
    # repulsion, in the input's dtype (float32 in, float32 out)
    "e02_h_numpy": {
        "perplexity_answer": (
            "def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):\n"
            "    D = D.double().numpy().copy()\n"
            "    n = len(D)\n"
            "    np.fill_diagonal(D, np.inf)\n"
            "    D = D - D.min(1, keepdims=True)\n"
            "    np.fill_diagonal(D, 0.0)\n"
            "    mask = 1.0 - np.eye(n)\n"
            "    beta, lo, hi = np.ones(n), np.zeros(n), np.full(n, np.inf)\n"
            "    active = np.ones(n, dtype=bool)\n"
            "    steps = np.zeros(n, dtype=np.int32)\n"
            "    goal = np.log(perplexity)\n"
            "    def rows(b):\n"
            "        E = np.exp(-b[:, None] * D) * mask\n"
            "        S = E.sum(1)\n"
            "        return E / S[:, None], np.log(S) + b * (E * D).sum(1) / S\n"
            "    for _ in range(max_steps):\n"
            "        _, H = rows(beta)\n"
            "        active &= np.abs(H - goal) > tol\n"
            "        if not active.any():\n"
            "            break\n"
            "        up, down = active & (H > goal), active & (H <= goal)\n"
            "        lo[up], hi[down] = beta[up], beta[down]\n"
            "        beta = np.where(up, np.where(np.isinf(hi), 2 * beta, (beta + hi) / 2), beta)\n"
            "        beta = np.where(down, np.where(lo == 0, beta / 2, (beta + lo) / 2), beta)\n"
            "        steps += active\n"
            "    return rows(beta)[0], beta, steps\n"),
        "gradient_answer": (
            "def tsne_gradient(P, Y):\n"
            "    W = 1.0 / (1.0 + torch.cdist(Y, Y) ** 2)\n"
            "    W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))\n"
            "    A, R = P * W, (W / W.sum()) * W\n"
            "    attraction = 4 * (A.sum(1, keepdim=True) * Y - A @ Y)\n"
            "    repulsion = 4 * (R.sum(1, keepdim=True) * Y - R @ Y)\n"
            "    return attraction - repulsion\n"),
    },
}

LIBRARY = {  # reference libraries, each by a route a list of forbidden functions would miss
    # the package's search; the counts recovered by re-running it with growing step limits
    "e02_lib_conditional": {"perplexity_answer": (
        "from xaicourse.tsne import conditional_probabilities as _cp\n"
        "def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):\n"
        "    P, beta = _cp(D, perplexity, tol=tol, max_steps=max_steps, return_beta=True)\n"
        "    steps = torch.full(beta.shape, max_steps)\n"
        "    prev = torch.ones_like(beta)\n"
        "    for m in range(max_steps, 0, -1):\n"
        "        b = _cp(D, perplexity, tol=tol, max_steps=m, return_beta=True)[1]\n"
        "        steps = torch.where(b == beta, torch.full_like(steps, m), steps)\n"
        "    steps = torch.where(beta == 1, torch.zeros_like(steps), steps)\n"
        "    return P, beta, steps\n")},
    "e02_lib_search_block": {"perplexity_answer": (
        "import xaicourse.tsne as _T\n"
        "def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):\n"
        "    P, beta = _T._search_block(D.clone(), torch.arange(len(D)), math.log(perplexity), tol, max_steps)\n"
        "    return P, beta, torch.zeros(len(D), dtype=torch.long)\n")},
    "e02_lib_sklearn": {"perplexity_answer": (
        "from sklearn.manifold._utils import _binary_search_perplexity as _bsp\n"
        "def perplexity_search(D, perplexity, tol=1e-5, max_steps=100):\n"
        "    P = torch.from_numpy(_bsp(D.float().numpy(), perplexity, 0)).double()\n"
        "    j, k = D.clone().fill_diagonal_(float('inf')).argsort(1)[:, :2].T\n"
        "    r = torch.arange(len(D))\n"
        "    beta = torch.log(P[r, j] / P[r, k]) / (D[r, k] - D[r, j])\n"
        "    return P, beta, torch.zeros(len(D), dtype=torch.long)\n")},
    "e02_lib_kl_gradient": {"gradient_answer": (
        "import xaicourse.tsne as _T\n"
        "def tsne_gradient(P, Y):\n"
        "    return _T.kl_gradient(P, Y)\n")},
    "e02_lib_sk_kl": {"gradient_answer": (
        "from scipy.spatial.distance import squareform\n"
        "from sklearn.manifold import _t_sne\n"
        "def tsne_gradient(P, Y):\n"
        "    n, d = Y.shape\n"
        "    _, g = _t_sne._kl_divergence(Y.double().numpy().ravel().copy(), squareform(P.double().numpy(), checks=False),\n"
        "                                 1, n, d)\n"
        "    return torch.from_numpy(g).view(n, d)\n")},
    "e02_lib_autograd": {"gradient_answer": (
        "def tsne_gradient(P, Y):\n"
        "    with torch.enable_grad():\n"
        "        Y = Y.detach().clone().requires_grad_(True)\n"
        "        W = 1 / (1 + sq_dists(Y))\n"
        "        W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))\n"
        "        cost = -(P * torch.log(W + torch.eye(len(Y), dtype=Y.dtype))).sum() + torch.log(W.sum())\n"
        "        g, = torch.autograd.grad(cost, Y)\n"
        "    return g\n")},
    "e02_lib_func": {"gradient_answer": (
        "from torch.func import grad as _grad\n"
        "def _cost(Y, P):\n"
        "    W = 1 / (1 + ((Y[:, None] - Y[None]) ** 2).sum(-1))\n"
        "    W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))\n"
        "    return -(P * torch.log(W + torch.eye(len(Y), dtype=Y.dtype))).sum() + torch.log(W.sum())\n"
        "def tsne_gradient(P, Y):\n"
        "    return _grad(_cost)(Y, P)\n")},
    # autograd through a method call names no module: the scan cannot see it, the switched-off
    # autograd stops it (the task earns 0 with status error, not flagged)
    "e02_lib_backward": {"gradient_answer": (
        "def tsne_gradient(P, Y):\n"
        "    Y = Y.detach().clone().requires_grad_(True)\n"
        "    W = 1 / (1 + sq_dists(Y))\n"
        "    W = W * (1 - torch.eye(len(Y), dtype=Y.dtype))\n"
        "    cost = -(P * torch.log(W + torch.eye(len(Y), dtype=Y.dtype))).sum() + torch.log(W.sum())\n"
        "    cost.backward()\n"
        "    return Y.grad\n")},
}
NOT_FLAGGED = {"e02_lib_backward"}

CHEATS = {  # the generic families, spread over both tasks
    "e02_cheat_refs": {"perplexity_answer": attacks.refs(NAMES["perplexity_answer"])},
    "e02_cheat_subclass": {"gradient_answer": attacks.subclass(NAMES["gradient_answer"])},
    "e02_cheat_rebind": {"perplexity_answer": attacks.rebind(NAMES["perplexity_answer"])},
    "e02_cheat_files": {"gradient_answer": attacks.trusted_files(NAMES["gradient_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e02_cheat_files":
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
        assert _task_points(row, task) == 0.0, (task, row)
    # the other task was answered honestly and keeps its points
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in attacked), row


@pytest.mark.slow
def test_library_routes_are_flagged(grades):
    for student in set(LIBRARY) - NOT_FLAGGED:
        assert grades[student]["status"].startswith("flagged"), grades[student]
        assert "flagged" in grades[student]["tasks"], grades[student]
    for student in NOT_FLAGGED:   # caught by the check itself: autograd is off when it calls the answer
        assert "gradient_tests=error (RuntimeError)" in grades[student]["tasks"], grades[student]


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e02_cheat_files" in grades
    assert attacks.marker_absent()
