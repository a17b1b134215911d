"""Exercise 06 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every attack family (tests/attacks.py) and every library route earns 0 on its task or
is flagged. alice (solution) and bob (untouched) are test_course's students. The two tasks are
checked independently (task 2 gets its α from the grader), so an attack costs its own task only."""
import attacks
import pytest

EX = "06_representer_points"
POINTS = {"alpha_tests": 3.0, "contributions_tests": 3.0}
FULL = sum(POINTS.values())
NAMES = {"alpha_answer": ["representer_alpha"], "contributions_answer": ["representer_contributions"]}
TASK = {"alpha_answer": "alpha_tests", "contributions_answer": "contributions_tests"}

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

CHEATS = {  # every generic family, on both tasks
    "e06_cheat_refs": {"alpha_answer": attacks.refs(NAMES["alpha_answer"])},
    "e06_cheat_subclass": {"contributions_answer": attacks.subclass(NAMES["contributions_answer"])},
    "e06_cheat_rebind": {"alpha_answer": attacks.rebind(NAMES["alpha_answer"])},
    "e06_cheat_files": {"contributions_answer": attacks.trusted_files(NAMES["contributions_answer"])},
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
