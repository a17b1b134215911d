"""Exercise 05 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; every attack family (tests/attacks.py) and every library route earns 0 on its task or
is flagged. alice (solution) and bob (untouched) are test_course's students.

Task 3 (``influence_scores``) calls the student's own ``hvp`` and ``cg_solve``: an attack on one of
those also breaks it, so the expected scores are written out per student."""
import attacks
import pytest

EX = "05_influence_functions"
POINTS = {"hvp_tests": 3.0, "cg_tests": 3.0, "influence_tests": 4.0, "loo_tests": 4.0}
FULL = sum(POINTS.values())
NAMES = {"hvp_answer": ["hvp"], "cg_answer": ["cg_solve"], "influence_answer": ["influence_scores"],
         "loo_answer": ["loo_check"]}
TASK = {"hvp_answer": "hvp_tests", "cg_answer": "cg_tests", "influence_answer": "influence_tests",
        "loo_answer": "loo_tests"}

HONEST = {
    # hvp as a vector-Jacobian product of the gradient; CG in numpy (numpy x and history, an int
    # count); influence with one per-example gradient at a time
    "e05_h_numpy": {
        "hvp_answer": (
            "def hvp(f, theta, v):\n"
            "    th = theta.detach().clone().requires_grad_(True)\n"
            "    g = torch.autograd.grad(f(th), th, create_graph=True)[0]\n"
            "    return torch.autograd.grad(g, th, grad_outputs=v.to(g))[0].detach()\n"),
        "cg_answer": (
            "def cg_solve(matvec, b, tol=1e-10, max_iter=1000):\n"
            "    B = b.detach().double().numpy()\n"
            "    H = lambda u: matvec(torch.from_numpy(u).to(b.dtype)).detach().double().numpy()\n"
            "    x, r = np.zeros_like(B), B.copy()\n"
            "    p = r.copy()\n"
            "    norms, count = [np.linalg.norm(r)], 0\n"
            "    while count < max_iter and norms[-1] > tol * np.linalg.norm(B):\n"
            "        q = H(p)\n"
            "        count += 1\n"
            "        a = (r @ r) / (p @ q)\n"
            "        x = x + a * p\n"
            "        r_new = r - a * q\n"
            "        p = r_new + (r_new @ r_new) / (r @ r) * p\n"
            "        r = r_new\n"
            "        norms.append(np.linalg.norm(r))\n"
            "    return x, np.array(norms), count\n"),
        "influence_answer": (
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    R, theta = flat_objective(model, loss_fn, X, y, l2)\n"
            "    g_test = per_example_grads(model, loss_fn, x_test, y_test)[0]\n"
            "    s = torch.as_tensor(cg_solve(lambda v: hvp(R, theta, v), g_test)[0])\n"
            "    out = []\n"
            "    for i in range(len(X)):\n"
            "        out.append(-(per_example_grads(model, loss_fn, X[i:i + 1], y[i:i + 1])[0] @ s))\n"
            "    return torch.stack(out)\n"),
        # leave-one-out with fit(drop=...), numbers returned as a list turned into a tensor
        "loo_answer": (
            "import copy\n"
            "def loo_check(model, loss_fn, X, y, x_test, y_test, l2, indices):\n"
            "    scores = influence_scores(model, loss_fn, X, y, x_test, y_test, l2)\n"
            "    pred = torch.stack([-scores[i] / len(X) for i in indices]).detach()\n"
            "    act = []\n"
            "    for i in indices:\n"
            "        m = copy.deepcopy(model)\n"
            "        fit(m, loss_fn, X, y, l2=l2, drop=[i])\n"
            "        with torch.no_grad():\n"
            "            act.append(float(loss_fn(m(x_test), y_test) - loss_fn(model(x_test), y_test)))\n"
            "    return pred, torch.tensor(act)\n"),
    },
    # stop test on squared norms, the history as a tensor of 0-d tensors stacked, a tighter tol
    # in task 3 and the gradients of train and test points in one call
    "e05_h_squared": {
        "hvp_answer": (
            "def hvp(f, theta, v):\n"
            "    th = theta.detach().requires_grad_()\n"
            "    (g,) = torch.autograd.grad(f(th), [th], create_graph=True)\n"
            "    (h,) = torch.autograd.grad((g * v).sum(), [th])\n"
            "    return h.detach().clone()\n"),
        "cg_answer": (
            "def cg_solve(matvec, b, tol=1e-10, max_iter=1000):\n"
            "    x = b * 0\n"
            "    r, p = b.clone(), b.clone()\n"
            "    rs = torch.dot(r, r)\n"
            "    target = (tol * torch.linalg.norm(b)) ** 2\n"
            "    hist, k = [rs.sqrt()], 0\n"
            "    while k < max_iter and rs > target:\n"
            "        Ap = matvec(p)\n"
            "        k += 1\n"
            "        step = rs / torch.dot(p, Ap)\n"
            "        x = x + step * p\n"
            "        r = r - step * Ap\n"
            "        rs_new = torch.dot(r, r)\n"
            "        p = r + (rs_new / rs) * p\n"
            "        rs = rs_new\n"
            "        hist.append(rs.sqrt())\n"
            "    return x, torch.stack(hist), k\n"),
        "influence_answer": (
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    R, theta = flat_objective(model, loss_fn, X, y, l2)\n"
            "    G = per_example_grads(model, loss_fn, torch.cat([x_test, X]), torch.cat([y_test, y]))\n"
            "    s = cg_solve(lambda v: hvp(R, theta, v), G[0], tol=1e-12)[0]\n"
            "    return -(G[1:] @ s)\n"),
        # delete the row but rescale λ: (1/n)Σ_{k≠i} ℓ + (λ/2)‖θ‖² has the minimiser of
        # (1/(n−1))Σ_{k≠i} ℓ + (λn/(n−1)/2)‖θ‖²; numpy outputs
        "loo_answer": (
            "import copy\n"
            "def loo_check(model, loss_fn, X, y, x_test, y_test, l2, indices):\n"
            "    n = len(X)\n"
            "    pred = (-influence_scores(model, loss_fn, X, y, x_test, y_test, l2) / n)[torch.as_tensor(indices)]\n"
            "    with torch.no_grad():\n"
            "        base = loss_fn(model(x_test), y_test).item()\n"
            "    act = np.zeros(len(indices))\n"
            "    for j, i in enumerate(indices):\n"
            "        keep = torch.tensor([k for k in range(n) if k != i])\n"
            "        m = copy.deepcopy(model)\n"
            "        fit(m, loss_fn, X[keep], y[keep], l2=l2 * n / (n - 1), tol=1e-10)\n"
            "        with torch.no_grad():\n"
            "            act[j] = loss_fn(m(x_test), y_test).item() - base\n"
            "    return pred.detach().numpy(), act\n"),
    },
}

LIBRARY = {  # the reference libraries, by the routes a student would take
    # torch.func: forward-over-reverse HVP, and the influence from the explicit Hessian jacfwd(jacrev(R))
    "e05_lib_func": {
        "hvp_answer": (
            "import torch.func\n"
            "def hvp(f, theta, v):\n"
            "    return torch.func.jvp(torch.func.grad(f), (theta.detach(),), (v.to(theta),))[1].detach()\n"),
        "influence_answer": (
            "from torch.func import jacfwd, jacrev\n"
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    R, theta = flat_objective(model, loss_fn, X, y, l2)\n"
            "    H = jacfwd(jacrev(R))(theta)\n"
            "    s = torch.linalg.solve(H, per_example_grads(model, loss_fn, x_test, y_test)[0])\n"
            "    return -(per_example_grads(model, loss_fn, X, y) @ s)\n"),
    },
    # torch.autograd.functional.hvp, and scipy's cg with a callback for the residual history
    "e05_lib_autograd_scipy": {
        "hvp_answer": (
            "def hvp(f, theta, v):\n"
            "    return torch.autograd.functional.hvp(f, theta.detach(), v)[1].detach()\n"),
        "cg_answer": (
            "import scipy.sparse.linalg as sla\n"
            "def cg_solve(matvec, b, tol=1e-10, max_iter=1000):\n"
            "    P, B = len(b), b.detach().double().numpy()\n"
            "    H = lambda u: matvec(torch.as_tensor(u, dtype=b.dtype).reshape(-1)).detach().double().numpy()\n"
            "    norms = [float(np.linalg.norm(B))]\n"
            "    op = sla.LinearOperator((P, P), matvec=H, dtype=np.float64)\n"
            "    cb = lambda xk: norms.append(float(np.linalg.norm(B - H(xk))))\n"
            "    x, _ = sla.cg(op, B, rtol=tol, atol=0.0, maxiter=max_iter, callback=cb)\n"
            "    return torch.as_tensor(x), norms, len(norms) - 1\n"),
    },
    # scipy's minres (another Krylov solver) for the system
    "e05_lib_minres": {
        "cg_answer": (
            "from scipy.sparse.linalg import LinearOperator, minres\n"
            "def cg_solve(matvec, b, tol=1e-10, max_iter=1000):\n"
            "    P, B = len(b), b.detach().double().numpy()\n"
            "    H = lambda u: matvec(torch.as_tensor(u, dtype=b.dtype).reshape(-1)).detach().double().numpy()\n"
            "    norms = [float(np.linalg.norm(B))]\n"
            "    cb = lambda xk: norms.append(float(np.linalg.norm(B - H(xk))))\n"
            "    x, _ = minres(LinearOperator((P, P), matvec=H, dtype=np.float64), B, rtol=tol, maxiter=max_iter,\n"
            "                  callback=cb)\n"
            "    return torch.as_tensor(x), norms, len(norms) - 1\n"),
    },
    # the package's leave-one-out retraining
    "e05_lib_loo": {
        "loo_answer": (
            "def loo_check(model, loss_fn, X, y, x_test, y_test, l2, indices):\n"
            "    from xaicourse.data_attribution import leave_one_out\n"
            "    pred = -influence_scores(model, loss_fn, X, y, x_test, y_test, l2)[indices] / len(X)\n"
            "    return pred.detach(), leave_one_out(model, loss_fn, X, y, x_test, y_test, indices, l2=l2)[0]\n"),
    },
    # the package's influence function
    "e05_lib_package": {
        "influence_answer": (
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    from xaicourse.data_attribution import influence\n"
            "    return influence(model, loss_fn, X, y, x_test, y_test, l2=l2, method='cg')[0]\n"),
    },
    # the same under its new name, and the object with the package's sign flipped back
    "e05_lib_i_up_loss": {
        "influence_answer": (
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    import xaicourse.data_attribution as da\n"
            "    return da.i_up_loss(model, loss_fn, X, y, x_test, y_test, l2=l2, method='exact')[0]\n"),
    },
    "e05_lib_object": {
        "influence_answer": (
            "def influence_scores(model, loss_fn, X, y, x_test, y_test, l2):\n"
            "    from xaicourse.data_attribution import InfluenceFunction as IF\n"
            "    return -IF(model, X, y, loss_fn=loss_fn, l2=l2, solver='exact').attribute(x_test, y_test)[0]\n"),
    },
}

CHEATS = {  # every generic family, spread over the three tasks
    "e05_cheat_refs": {"influence_answer": attacks.refs(NAMES["influence_answer"])},
    "e05_cheat_subclass": {"cg_answer": attacks.subclass(NAMES["cg_answer"])},
    "e05_cheat_rebind": {"hvp_answer": attacks.rebind(NAMES["hvp_answer"])},
    "e05_cheat_files": {"influence_answer": attacks.trusted_files(NAMES["influence_answer"])},
    "e05_cheat_refs_loo": {"loo_answer": attacks.refs(NAMES["loo_answer"])},
}

WRONG = {  # honest mistakes the checks must catch
    # deleting the row (the others then weigh 1/(n−1), not 1/n): another objective, another θ̂_{−i}
    "e05_w_rows": {
        "loo_answer": (
            "import copy\n"
            "def loo_check(model, loss_fn, X, y, x_test, y_test, l2, indices):\n"
            "    n = len(X)\n"
            "    pred = -influence_scores(model, loss_fn, X, y, x_test, y_test, l2)[indices] / n\n"
            "    with torch.no_grad():\n"
            "        base = loss_fn(model(x_test), y_test)\n"
            "    act = []\n"
            "    for i in indices:\n"
            "        keep = [k for k in range(n) if k != i]\n"
            "        m = copy.deepcopy(model)\n"
            "        fit(m, loss_fn, X[keep], y[keep], l2=l2)\n"
            "        with torch.no_grad():\n"
            "            act.append(loss_fn(m(x_test), y_test) - base)\n"
            "    return pred.detach(), torch.stack(act)\n"),
    },
}

# exact scores: task 3 runs on the student's own hvp and cg_solve, so it falls with a broken one
# (the library students' hvp / cg_solve compute the right numbers: their task 3 keeps its points)
# task 4 calls the student's influence_scores: it keeps its points when that computes the right
# numbers (a library route flagged on task 3 still does)
LOO = POINTS["loo_tests"]
SCORES = {
    "e05_lib_func": POINTS["cg_tests"] + LOO,
    "e05_lib_autograd_scipy": POINTS["influence_tests"] + LOO,
    "e05_lib_minres": POINTS["hvp_tests"] + POINTS["influence_tests"] + LOO,
    "e05_lib_loo": FULL - LOO,
    "e05_lib_package": POINTS["hvp_tests"] + POINTS["cg_tests"] + LOO,
    "e05_lib_i_up_loss": POINTS["hvp_tests"] + POINTS["cg_tests"] + LOO,
    "e05_lib_object": POINTS["hvp_tests"] + POINTS["cg_tests"] + LOO,
    "e05_cheat_refs": POINTS["hvp_tests"] + POINTS["cg_tests"],
    "e05_cheat_subclass": POINTS["hvp_tests"],          # task 3 unpacks the fake cg_solve's result
    "e05_cheat_rebind": POINTS["cg_tests"],             # H v = 0: task 3's CG divides by zero
    "e05_cheat_files": POINTS["hvp_tests"] + POINTS["cg_tests"],
    "e05_cheat_refs_loo": FULL - LOO,
}


def submissions():
    return attacks.students(EX, {**HONEST, **LIBRARY, **CHEATS, **WRONG})


def plant(folder, student, ex):
    if student == "e05_cheat_files":
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
    plan = {**LIBRARY, **CHEATS}[student]
    for task in {TASK[a] for a in plan}:
        assert _task_points(row, task) == 0.0, (task, row)
    assert float(row["score"]) == SCORES[student], row


@pytest.mark.slow
@pytest.mark.parametrize("student", list(LIBRARY))
def test_library_routes_are_flagged(grades, student):
    row = grades[student]
    assert row["status"].startswith("flagged"), row
    for answer in LIBRARY[student]:
        assert f"{TASK[answer]}=flagged" in row["tasks"], row


@pytest.mark.slow
def test_nothing_outside_the_sandbox_ran_a_payload(grades):
    assert "e05_cheat_files" in grades
    assert attacks.marker_absent()


@pytest.mark.slow
@pytest.mark.parametrize("student", list(WRONG))
def test_wrong_leave_one_out_earns_nothing(grades, student):
    row = grades[student]
    assert _task_points(row, "loo_tests") == 0.0, row
    assert float(row["score"]) == FULL - POINTS["loo_tests"], row
