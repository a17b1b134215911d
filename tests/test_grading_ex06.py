"""Exercise 06 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every attack family (tests/attacks.py) and every library route earns 0 on its task or
is flagged. alice (solution) and bob (untouched) are test_course's students. The two tasks are
checked independently (task 2 gets its α, tasks 3–4 their W from the grader), so an attack costs its
own task only."""
import attacks
import pytest

EX = "06_representer_points"
POINTS = {"alpha_tests": 3.0, "contributions_tests": 3.0, "refit_tests": 3.0, "mislabel_tests": 2.0}
FULL = sum(POINTS.values())
NAMES = {"alpha_answer": ["representer_alpha"], "contributions_answer": ["representer_contributions"],
         "refit_answer": ["refit_last_layer"], "mislabel_answer": ["flag_mislabels"]}
TASK = {"alpha_answer": "alpha_tests", "contributions_answer": "contributions_tests",
        "refit_answer": "refit_tests", "mislabel_answer": "mislabel_tests"}

HONEST = {
    # numpy throughout (a stable softmax, one-hot rows of an identity, einsum), numpy arrays returned
    "e06_h_numpy": {
        "alpha_answer": (
            "import numpy as np\n"
            "def representer_alpha(features, labels, W, l2):\n"
            "    Phi, Wn = np.asarray(features, dtype=np.float64), np.asarray(W, dtype=np.float64)\n"
            "    z = Phi @ Wn.T\n"
            "    z = z - z.max(1, keepdims=True)\n"
            "    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)\n"
            "    a = -(p - np.eye(Wn.shape[0])[np.asarray(labels)]) / (2 * l2 * len(Phi))\n"
            "    return a, Wn - a.T @ Phi\n"),
        "contributions_answer": (
            "import numpy as np\n"
            "def representer_contributions(alpha, train_features, test_features, target):\n"
            "    A = np.asarray(alpha, dtype=np.float64)[:, np.asarray(target)]\n"
            "    return np.einsum('md,nd,nm->mn', np.asarray(test_features, dtype=np.float64),\n"
            "                     np.asarray(train_features, dtype=np.float64), A)\n"),
        # gradient descent in numpy, the residual norms collected in a list
        "refit_answer": (
            "import numpy as np\n"
            "def refit_last_layer(features, labels, W0, l2, lr, n_steps):\n"
            "    P, W = np.asarray(features, dtype=np.float64), np.array(W0, dtype=np.float64)\n"
            "    n, Y = len(P), np.eye(W.shape[0])[np.asarray(labels)]\n"
            "    out = []\n"
            "    for k in range(n_steps + 1):\n"
            "        z = P @ W.T\n"
            "        e = np.exp(z - z.max(1, keepdims=True))\n"
            "        G = e / e.sum(1, keepdims=True) - Y\n"
            "        grad = G.T @ P / n + 2 * l2 * W\n"
            "        out.append(np.linalg.norm(grad / (2 * l2)))\n"
            "        if k < n_steps:\n"
            "            W = W - lr * grad\n"
            "    return W, np.array(out)\n"),
        # the loss ranks like |α_(i,y_i)| (both decrease with p_(i,y_i)): sort by −log p
        "mislabel_answer": (
            "import numpy as np\n"
            "def flag_mislabels(features, labels, W, l2, k):\n"
            "    z = np.asarray(features, dtype=np.float64) @ np.asarray(W, dtype=np.float64).T\n"
            "    z = z - z.max(1, keepdims=True)\n"
            "    logp = z - np.log(np.exp(z).sum(1, keepdims=True))\n"
            "    nll = -logp[np.arange(len(z)), np.asarray(labels)]\n"
            "    return np.argsort(-nll, kind='stable')[:k]\n"),
    },
    # log-softmax and F.one_hot, the residual as ∇L(W)/(2λ); the terms one test point at a time
    "e06_h_gradient": {
        "alpha_answer": (
            "def representer_alpha(features, labels, W, l2):\n"
            "    n, K = len(features), W.shape[0]\n"
            "    g = F.log_softmax(features @ W.T, dim=1).exp() - F.one_hot(labels, K).to(features.dtype)\n"
            "    grad = g.T @ features / n + 2 * l2 * W\n"
            "    return -g / (2 * l2 * n), grad / (2 * l2)\n"),
        "contributions_answer": (
            "def representer_contributions(alpha, train_features, test_features, target):\n"
            "    rows = [alpha[:, int(c)] * (train_features @ t) for t, c in zip(test_features, target)]\n"
            "    return torch.stack(rows)\n"),
        # the refit through F.cross_entropy's closed-form gradient, with W updated in place
        "refit_answer": (
            "def refit_last_layer(features, labels, W0, l2, lr, n_steps):\n"
            "    n, K = len(features), W0.shape[0]\n"
            "    W, norms = W0.clone(), []\n"
            "    onehot = F.one_hot(labels, K).to(features.dtype)\n"
            "    for k in range(n_steps + 1):\n"
            "        alpha = (onehot - torch.softmax(features @ W.T, 1)) / (2 * l2 * n)\n"
            "        r = W - alpha.T @ features\n"
            "        norms.append(torch.linalg.norm(r).item())\n"
            "        if k < n_steps:\n"
            "            W -= lr * 2 * l2 * r\n"
            "    return W, norms\n"),
        "mislabel_answer": (
            "def flag_mislabels(features, labels, W, l2, k):\n"
            "    alpha = (F.one_hot(labels, W.shape[0]).to(features.dtype) - torch.softmax(features @ W.T, 1))\n"
            "    a = alpha.gather(1, labels[:, None])[:, 0].abs() / (2 * l2 * len(features))\n"
            "    return torch.topk(a, k).indices\n"),
    },
}

LIBRARY = {
    # the logit gradient by forward-mode autodiff (torch.func.jacfwd) …
    "e06_lib_jacfwd": {"alpha_answer": (
        "from torch.func import jacfwd\n"
        "def representer_alpha(features, labels, W, l2):\n"
        "    n = len(features)\n"
        "    g = jacfwd(lambda Z: F.cross_entropy(Z, labels, reduction='sum'))(features @ W.T)\n"
        "    alpha = -g / (2 * l2 * n)\n"
        "    return alpha, W - alpha.T @ features\n")},
    # … or torch.autograd.functional.jacobian
    "e06_lib_jacobian": {"alpha_answer": (
        "def representer_alpha(features, labels, W, l2):\n"
        "    n = len(features)\n"
        "    g = torch.autograd.functional.jacobian(lambda Z: F.cross_entropy(Z, labels, reduction='sum'),\n"
        "                                           features @ W.T)\n"
        "    alpha = -g / (2 * l2 * n)\n"
        "    return alpha, W - alpha.T @ features\n")},
    # the package's RepresenterPoints for both tasks (was test_course's LIBRARY_ANSWERS entry)
    "e06_lib_package": {
        "alpha_answer": (
            "def representer_alpha(features, labels, W, l2):\n"
            "    from xaicourse.data_attribution import RepresenterPoints\n"
            "    rp = RepresenterPoints(l2=l2).fit(features, labels, init=W)\n"
            "    return rp.alpha_, W - rp.alpha_.T @ rp.features_.to(W)\n"),
        "contributions_answer": (
            "def representer_contributions(alpha, train_features, test_features, target):\n"
            "    from xaicourse.data_attribution import RepresenterPoints\n"
            "    rp = RepresenterPoints()\n"
            "    rp.alpha_, rp.features_ = alpha, train_features.to(alpha)\n"
            "    rp.weight_ = alpha.T @ rp.features_\n"
            "    rp.n_features_in_, rp.n_classes_ = train_features.shape[1], alpha.shape[1]\n"
            "    return rp.contributions(test_features, target)\n"),
    },
}

LIBRARY.update({
    # the minimum by scikit-learn's optimiser instead of the descent the task asks for
    "e06_lib_sklearn_refit": {"refit_answer": (
        "from sklearn.linear_model import LogisticRegression\n"
        "def refit_last_layer(features, labels, W0, l2, lr, n_steps):\n"
        "    n = len(features)\n"
        "    m = LogisticRegression(C=1 / (2 * l2 * n), fit_intercept=False, tol=1e-10, max_iter=5000)\n"
        "    W = torch.as_tensor(m.fit(features.numpy(), labels.numpy()).coef_, dtype=features.dtype)\n"
        "    return W, [0.0] * (n_steps + 1)\n")},
    # torch.optim.SGD with autograd: the right iterates, but by the ruled-out route
    "e06_lib_optim_refit": {"refit_answer": (
        "def refit_last_layer(features, labels, W0, l2, lr, n_steps):\n"
        "    n = len(features)\n"
        "    W = W0.clone().requires_grad_(True)\n"
        "    opt = torch.optim.SGD([W], lr=lr)\n"
        "    norms = []\n"
        "    for k in range(n_steps + 1):\n"
        "        opt.zero_grad()\n"
        "        (F.cross_entropy(features @ W.T, labels) + l2 * (W ** 2).sum()).backward()\n"
        "        norms.append(float(W.grad.norm()) / (2 * l2))\n"
        "        if k < n_steps:\n"
        "            opt.step()\n"
        "    return W.detach(), norms\n")},
    # the package's global importance
    "e06_lib_importance": {"mislabel_answer": (
        "def flag_mislabels(features, labels, W, l2, k):\n"
        "    from xaicourse.data_attribution import RepresenterPoints\n"
        "    rp = RepresenterPoints(l2=l2)\n"
        "    n = len(features)\n"
        "    g = torch.softmax(features @ W.T, 1)\n"
        "    g[torch.arange(n), labels] -= 1\n"
        "    rp.alpha_, rp.targets_ = -g / (2 * l2 * n), labels\n"
        "    return torch.topk(rp.importance(), k).indices\n")},
})

CHEATS = {  # every generic family, on every task
    "e06_cheat_refs": {"alpha_answer": attacks.refs(NAMES["alpha_answer"])},
    "e06_cheat_subclass": {"contributions_answer": attacks.subclass(NAMES["contributions_answer"])},
    "e06_cheat_rebind": {"alpha_answer": attacks.rebind(NAMES["alpha_answer"])},
    "e06_cheat_files": {"contributions_answer": attacks.trusted_files(NAMES["contributions_answer"])},
    "e06_cheat_refs_new": {"refit_answer": attacks.refs(NAMES["refit_answer"]),
                           "mislabel_answer": attacks.subclass(NAMES["mislabel_answer"])},
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS})


def plant(folder, student, ex):
    if student == "e06_cheat_files":
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
    assert float(row["max_score"]) == FULL, row
    assert float(row["score"]) == FULL, row
    assert not row["status"].startswith("flagged"), row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY) + list(CHEATS))
def test_attacks_earn_nothing_on_their_task(grades, student):
    row = grades[student]
    attacked = {TASK[a] for a in {**LIBRARY, **CHEATS}[student]}
    for task in attacked:
        assert _task_points(row, task) == 0.0, (task, row)
    # the other task was answered honestly and keeps its points
    assert float(row["score"]) == FULL - sum(POINTS[t] for t in attacked), row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY))
def test_library_routes_are_flagged(grades, student):
    row = grades[student]
    assert row["status"].startswith("flagged"), row
    for answer in LIBRARY[student]:
        assert f"{TASK[answer]}=flagged" in row["tasks"], row


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e06_cheat_files" in grades
    assert attacks.marker_absent()
