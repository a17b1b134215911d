"""Exercise 07 graded for real (the suite's one shared ``xaicourse grade`` run): honest variants earn
full points; the library routes (captum's per-example Jacobian and TracInCP, torch.func — also for
Task 3, the idealised TracIn —, the package's TracIn) and the generic attack families (tests/attacks.py) earn 0 on their task or are
flagged. alice (solution) and bob (untouched) are test_course's students."""
from pathlib import Path

import attacks


ROOT = Path(__file__).resolve().parents[1]
EX = "07_tracin"
POINTS = {"tracin_tests": 5.0, "self_tests": 3.0, "ideal_tests": 3.0}
FULL = sum(POINTS.values())
NAMES = {"tracin_answer": ["example_gradients", "tracin_contributions"],
         "self_answer": ["self_influence_scores", "suspects"],
         "ideal_answer": ["ideal_tracin"]}
TASK = {"tracin_answer": "tracin_tests", "self_answer": "self_tests", "ideal_answer": "ideal_tests"}

# Task 2's answer without Task 1's functions: students whose Task 1 is a cheat or a library call
# answer Task 2 with this, so that Task 2 is graded on its own.
SELF_STANDALONE = (
    "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
    "    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}\n"
    "    params = list(model.parameters())\n"
    "    s = torch.zeros(len(X))\n"
    "    try:\n"
    "        for ck in checkpoints:\n"
    "            model.load_state_dict(ck['state_dict'])\n"
    "            for i in range(len(X)):\n"
    "                g = torch.autograd.grad(loss_fn(model(X[i:i + 1]), y[i:i + 1]), params)\n"
    "                s[i] += ck['lr'] * sum(float((t * t).sum()) for t in g)\n"
    "    finally:\n"
    "        model.load_state_dict(saved)\n"
    "    return s\n"
    "def suspects(scores, k):\n"
    "    return torch.topk(torch.as_tensor(scores), k).indices\n")

HONEST = {
    # float64 numbers through .backward()/.grad on a copy of the model (never touches the original),
    # numpy indices for the ranking
    "e07_h_float64": {
        "tracin_answer": (
            "import copy\n"
            "import numpy as np\n"
            "def example_gradients(model, loss_fn, X, y):\n"
            "    rows = []\n"
            "    for i in range(len(X)):\n"
            "        model.zero_grad()\n"
            "        loss_fn(model(X[i:i + 1]), y[i:i + 1]).backward()\n"
            "        rows.append(np.concatenate([p.grad.detach().double().numpy().ravel() for p in model.parameters()]))\n"
            "    model.zero_grad()\n"
            "    return torch.from_numpy(np.stack(rows))\n"
            "def tracin_contributions(model, checkpoints, loss_fn, X_train, y_train, X_test, y_test):\n"
            "    m = copy.deepcopy(model)\n"
            "    out = np.zeros((len(checkpoints), len(X_test), len(X_train)))\n"
            "    for k, ck in enumerate(checkpoints):\n"
            "        m.load_state_dict(ck['state_dict'])\n"
            "        a = example_gradients(m, loss_fn, X_test, y_test).numpy()\n"
            "        b = example_gradients(m, loss_fn, X_train, y_train).numpy()\n"
            "        out[k] = float(ck['lr']) * np.einsum('jp,ip->ji', a, b)\n"
            "    return torch.from_numpy(out)\n"),
        # float64 copy trained through .backward()/.grad and an optimizer object
        "ideal_answer": (
            "import copy\n"
            "def ideal_tracin(model, loss_fn, X_train, y_train, order, lr, X_test, y_test):\n"
            "    m = copy.deepcopy(model).double()\n"
            "    opt = torch.optim.SGD(m.parameters(), lr=lr)\n"
            "    def g(x, t):\n"
            "        m.zero_grad()\n"
            "        loss_fn(m(x.double()), t).backward()\n"
            "        return torch.cat([p.grad.reshape(-1).clone() for p in m.parameters()])\n"
            "    T = np.zeros((len(X_test), len(X_train)))\n"
            "    for i in order:\n"
            "        gt = torch.stack([g(X_test[j:j + 1], y_test[j:j + 1]) for j in range(len(X_test))])\n"
            "        gi = g(X_train[i:i + 1], y_train[i:i + 1])\n"
            "        T[:, i] += lr * (gt @ gi).numpy()\n"
            "        opt.step()\n"
            "    return torch.from_numpy(T)\n"),
        "self_answer": (
            "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
            "    m = copy.deepcopy(model)\n"
            "    s = np.zeros(len(X))\n"
            "    for ck in checkpoints:\n"
            "        m.load_state_dict(ck['state_dict'])\n"
            "        g = example_gradients(m, loss_fn, X, y).numpy()\n"
            "        s += float(ck['lr']) * np.einsum('ip,ip->i', g, g)\n"
            "    return torch.from_numpy(s)\n"
            "def suspects(scores, k):\n"
            "    return np.argsort(-np.asarray(scores, dtype=float), kind='stable')[:k]\n")},
    # one forward pass per set, per-example losses differentiated one by one; all checkpoints'
    # gradients stacked and contracted with one einsum; squared norms without the N × N matrix
    "e07_h_batched": {
        # one forward pass for all test points per step, parameters updated through a state dict
        "ideal_answer": (
            "def ideal_tracin(model, loss_fn, X_train, y_train, order, lr, X_test, y_test):\n"
            "    import copy\n"
            "    m = copy.deepcopy(model)\n"
            "    names = [n for n, _ in m.named_parameters()]\n"
            "    T = torch.zeros(len(X_test), len(X_train), dtype=torch.float64)\n"
            "    for i in order:\n"
            "        params = [p for _, p in m.named_parameters()]\n"
            "        out = m(X_test)\n"
            "        gt = torch.stack([torch.cat([t.flatten() for t in torch.autograd.grad(loss_fn(out[j:j + 1], y_test[j:j + 1]), params, retain_graph=True)]) for j in range(len(X_test))])\n"
            "        gi = torch.autograd.grad(loss_fn(m(X_train[i:i + 1]), y_train[i:i + 1]), params)\n"
            "        T[:, i] += lr * (gt.double() @ torch.cat([t.flatten() for t in gi]).double())\n"
            "        sd = m.state_dict()\n"
            "        m.load_state_dict({**sd, **{n: sd[n] - lr * t for n, t in zip(names, gi)}})\n"
            "    return T\n"),
        "tracin_answer": (
            "def example_gradients(model, loss_fn, X, y):\n"
            "    params = list(model.parameters())\n"
            "    out = model(X)\n"
            "    rows = []\n"
            "    for i in range(len(X)):\n"
            "        g = torch.autograd.grad(loss_fn(out[i:i + 1], y[i:i + 1]), params, retain_graph=True)\n"
            "        rows.append(torch.cat([t.flatten() for t in g]))\n"
            "    return torch.stack(rows).detach()\n"
            "def tracin_contributions(model, checkpoints, loss_fn, X_train, y_train, X_test, y_test):\n"
            "    saved = [p.detach().clone() for p in model.parameters()]\n"
            "    G_tr, G_te, lrs = [], [], []\n"
            "    for ck in checkpoints:\n"
            "        model.load_state_dict(ck['state_dict'])\n"
            "        G_tr.append(example_gradients(model, loss_fn, X_train, y_train))\n"
            "        G_te.append(example_gradients(model, loss_fn, X_test, y_test))\n"
            "        lrs.append(ck['lr'])\n"
            "    with torch.no_grad():\n"
            "        for p, v in zip(model.parameters(), saved):\n"
            "            p.copy_(v)\n"
            "    return torch.einsum('k,kjp,kip->kji', torch.tensor(lrs), torch.stack(G_te), torch.stack(G_tr))\n"),
        "self_answer": (
            "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
            "    saved = {k: v.clone() for k, v in model.state_dict().items()}\n"
            "    total = 0\n"
            "    for ck in checkpoints:\n"
            "        model.load_state_dict(ck['state_dict'])\n"
            "        total = total + ck['lr'] * example_gradients(model, loss_fn, X, y).pow(2).sum(1)\n"
            "    model.load_state_dict(saved)\n"
            "    return total\n"
            "def suspects(scores, k):\n"
            "    return torch.topk(scores, k).indices\n")},
}

_TRACIN_FROM_CHECKPOINTS = (  # the per-checkpoint terms from a library that computes TracInCP's sum
    "def tracin_contributions(model, checkpoints, loss_fn, X_train, y_train, X_test, y_test):\n"
    "    return torch.stack([_one(model, ck, loss_fn, X_train, y_train, X_test, y_test) for ck in checkpoints])\n")

LIBRARY = {  # reference libraries by routes a list of forbidden functions would miss
    # captum's private per-example Jacobian, the per-checkpoint terms from it
    "e07_lib_captum_jacobian": {"tracin_answer": (
        "from captum._utils.gradient import _compute_jacobian_wrt_params as _jac\n"
        "def example_gradients(model, loss_fn, X, y):\n"
        "    g = _jac(model, (X,), y, loss_fn=torch.nn.CrossEntropyLoss(reduction='none'))\n"
        "    return torch.cat([t.reshape(len(X), -1) for t in g], 1).detach()\n"
        "def _one(model, ck, loss_fn, X_train, y_train, X_test, y_test):\n"
        "    saved = {k: v.clone() for k, v in model.state_dict().items()}\n"
        "    model.load_state_dict(ck['state_dict'])\n"
        "    out = ck['lr'] * example_gradients(model, loss_fn, X_test, y_test) @ example_gradients(model, loss_fn, X_train, y_train).T\n"
        "    model.load_state_dict(saved)\n"
        "    return out\n" + _TRACIN_FROM_CHECKPOINTS)},
    # captum's TracInCP, one checkpoint at a time
    "e07_lib_captum_tracincp": {"tracin_answer": (
        "import captum.influence as _ci\n"
        "def example_gradients(model, loss_fn, X, y):\n"
        "    params = list(model.parameters())\n"
        "    return torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(model(X[i:i + 1]), y[i:i + 1]), params)])\n"
        "                        for i in range(len(X))]).detach()\n"
        "def _one(model, ck, loss_fn, X_train, y_train, X_test, y_test):\n"
        "    ds = torch.utils.data.TensorDataset(X_train, y_train)\n"
        "    def load(m, path):\n"
        "        m.load_state_dict(ck['state_dict'])\n"
        "        return ck['lr']\n"
        "    t = _ci.TracInCP(model, ds, checkpoints=['ck'], checkpoints_load_func=load,\n"
        "                     loss_fn=torch.nn.CrossEntropyLoss(reduction='sum'), batch_size=len(X_train),\n"
        "                     sample_wise_grads_per_batch=True)\n"
        "    saved = {k: v.clone() for k, v in model.state_dict().items()}\n"
        "    out = t.influence((X_test, y_test))\n"
        "    model.load_state_dict(saved)\n"
        "    return out\n" + _TRACIN_FROM_CHECKPOINTS),
        "self_answer": (
        "from captum.influence import TracInCP as _T\n"
        "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
        "    ds = torch.utils.data.TensorDataset(X, y)\n"
        "    names = [str(i) for i in range(len(checkpoints))]\n"
        "    def load(m, path):\n"
        "        m.load_state_dict(checkpoints[int(path)]['state_dict'])\n"
        "        return checkpoints[int(path)]['lr']\n"
        "    t = _T(model, ds, checkpoints=names, checkpoints_load_func=load,\n"
        "           loss_fn=torch.nn.CrossEntropyLoss(reduction='sum'), batch_size=len(X),\n"
        "           sample_wise_grads_per_batch=True)\n"
        "    saved = {k: v.clone() for k, v in model.state_dict().items()}\n"
        "    out = t.self_influence((X, y))\n"
        "    model.load_state_dict(saved)\n"
        "    return out\n"
        "def suspects(scores, k):\n"
        "    return torch.topk(scores, k).indices\n")},
    # per-example gradients with torch.func (vmap of grad)
    "e07_lib_torch_func": {"tracin_answer": (
        "from torch.func import functional_call, grad, vmap\n"
        "def example_gradients(model, loss_fn, X, y):\n"
        "    params = {k: v.detach() for k, v in model.named_parameters()}\n"
        "    f = lambda p, x, t: loss_fn(functional_call(model, p, (x[None],)), t[None])\n"
        "    g = vmap(grad(f), in_dims=(None, 0, 0))(params, X, y)\n"
        "    return torch.cat([g[k].reshape(len(X), -1) for k in params], 1)\n"
        "def _one(model, ck, loss_fn, X_train, y_train, X_test, y_test):\n"
        "    import copy\n"
        "    m = copy.deepcopy(model)\n"
        "    m.load_state_dict(ck['state_dict'])\n"
        "    return ck['lr'] * example_gradients(m, loss_fn, X_test, y_test) @ example_gradients(m, loss_fn, X_train, y_train).T\n"
        + _TRACIN_FROM_CHECKPOINTS),
        "ideal_answer": (
        "import torch.func as _tf\n"
        "def ideal_tracin(model, loss_fn, X_train, y_train, order, lr, X_test, y_test):\n"
        "    import copy\n"
        "    m = copy.deepcopy(model)\n"
        "    p = {k: v.detach() for k, v in m.named_parameters()}\n"
        "    f = lambda q, x, t: loss_fn(_tf.functional_call(m, q, (x[None],)), t[None])\n"
        "    T = torch.zeros(len(X_test), len(X_train))\n"
        "    for i in order:\n"
        "        gt = _tf.vmap(_tf.grad(f), in_dims=(None, 0, 0))(p, X_test, y_test)\n"
        "        gi = _tf.grad(f)(p, X_train[i], y_train[i])\n"
        "        T[:, i] += lr * sum((gt[k].reshape(len(X_test), -1) @ gi[k].reshape(-1)) for k in p)\n"
        "        p = {k: p[k] - lr * gi[k] for k in p}\n"
        "    return T\n")},
    # the package (was test_course's LIBRARY_ANSWERS["07_tracin"]): per_example_grads, tracin_cp per
    # checkpoint, self_influence
    "e07_lib_package": {"tracin_answer": (
        "from xaicourse.data_attribution import per_example_grads as _peg, tracin_cp as _tc\n"
        "def example_gradients(model, loss_fn, X, y):\n"
        "    return _peg(model, loss_fn, X, y)\n"
        "def _one(model, ck, loss_fn, X_train, y_train, X_test, y_test):\n"
        "    return _tc(model, [ck], loss_fn, X_train, y_train, X_test, y_test, progress=False)\n"
        + _TRACIN_FROM_CHECKPOINTS),
        "self_answer": (
        "from xaicourse.data_attribution import self_influence as _si\n"
        "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
        "    return _si(model, checkpoints, loss_fn, X, y, progress=False)\n"
        "def suspects(scores, k):\n"
        "    return torch.topk(scores, k).indices\n")},
    # the package's private module, imported by its path in a string
    "e07_lib_importlib": {"self_answer": (
        "import importlib as _il\n"
        "_tr = _il.import_module('xaicourse.data_attribution.tracin')\n"
        "def self_influence_scores(model, checkpoints, loss_fn, X, y):\n"
        "    return _tr.self_influence(model, checkpoints, loss_fn, X, y, progress=False)\n"
        "def suspects(scores, k):\n"
        "    return torch.argsort(scores, descending=True)[:k]\n")},
}

CHEATS = {  # the generic families, each task attacked by at least two of them
    "e07_cheat_refs": {"tracin_answer": attacks.refs(NAMES["tracin_answer"])},
    "e07_cheat_subclass": {"tracin_answer": attacks.subclass(NAMES["tracin_answer"]),
                           "self_answer": attacks.subclass(NAMES["self_answer"])},
    # one rebinding cell only: a second one wraps the first one's wrapper of the call agent through
    # the same global `_real`, an endless recursion that times every task out (the whole exercise
    # 0, the student's own doing, no extra coverage; tests 01 and 03 say the same)
    "e07_cheat_rebind": {"ideal_answer": attacks.rebind(NAMES["ideal_answer"])},
    "e07_cheat_refs_ideal": {"ideal_answer": attacks.refs(NAMES["ideal_answer"])},
    "e07_cheat_files": {"self_answer": attacks.trusted_files(NAMES["self_answer"])},
}


def _with_standalone_task2(plan):
    """A plan that replaces Task 1 but not Task 2 answers Task 2 on its own (SELF_STANDALONE)."""
    return plan if "self_answer" in plan else {**plan, "self_answer": SELF_STANDALONE}


def submissions():
    plans = {**HONEST, **{s: _with_standalone_task2(p) for s, p in {**LIBRARY, **CHEATS}.items()}}
    return attacks.students(EX, plans)


# the graded checks every exercise shares: honest = full, attacks = 0 on their task, library
# routes flagged, no payload outside the sandbox
globals().update({k: v for k, v in attacks.graded_tests(EX, HONEST, LIBRARY, CHEATS, TASK, POINTS,
                                                        files_student='e07_cheat_files').items()
                  if k != "submissions"})    # 07 grades its own plans (above)
