"""Hidden checks of exercise 07 (trusted: run by the grader, never inside the student's sandbox).

Every check draws its own models, checkpoints, data and loss reduction per student, computes the
reference here (from scratch, in float64) and calls the student's functions through the sandbox.
Task 1 asks for the per-checkpoint terms C[k] of TracInCP, which no library returns (captum's
TracInCP and the package's ``tracin_cp`` give only their sum); Task 3 for the idealised TracIn of an
SGD run over this student's visiting order and learning rate, which no library computes.
"""
import copy

import numpy as np
import torch
from torch import nn

from xaicourse.checking import Failed, close, task

# xaicourse.data_attribution minus its poison module (flip_labels, detection_curve), which the locked
# set-up and the "look at your answer" cell import: the grader's assembly currently scans those cells
# as added cells against every task's list (see the report), so the whole package cannot be listed.
_DA = "xaicourse.data_attribution"
DATA_ATTRIBUTION = [f"{_DA}.{m}" for m in (
    "tracin", "gradients", "curvature", "influence_functions", "representer",      # the modules
    "per_example_grads", "parameter_names", "flat_params", "TrainingObjective",     # their re-exports
    "hessian_vector_product", "hessian_matrix", "influence", "inverse_hvp", "leave_one_out", "fit",
    "RepresenterPoints", "tracin_cp", "self_influence", "grad_dot", "grad_cos",
    "_base", "solvers", "retraining", "TrainingDataAttribution", "METHODS", "InfluenceFunction", "TracInCP",
    "GradDot", "GradCos")]
RULED_OUT = ["captum", *DATA_ATTRIBUTION, "torch.func", "functorch", "torch._functorch",
             "torch.autograd.functional", "torch.nn.utils._per_sample_grad", "torch.nn.utils._expanded_weights",
             "opacus", "backpack"]
FORBIDDEN = {"tracin_answer": RULED_OUT, "self_answer": RULED_OUT, "ideal_answer": RULED_OUT}

REL = 1e-4
"""Tolerance: 1e-4 × the largest |reference| entry. float32 gradients and dot products are good to
~1e-6 of that scale, so honest float32 / float64 / vectorised answers pass with a wide margin."""


def _digits():
    from xaicourse.data import load_digits_tensors
    return load_digits_tensors()


def prepare():
    _digits()


# ----------------------------------------------------------------------------- references (float64)
def _grads(model, loss_fn, X, y):
    m = copy.deepcopy(model).double()
    params = list(m.parameters())
    rows = []
    for i in range(len(X)):
        loss = loss_fn(m(X[i:i + 1].double()), y[i:i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows).detach()


def _contributions(model, checkpoints, loss_fn, Xtr, ytr, Xte, yte):
    m = copy.deepcopy(model)
    out = []
    for ck in checkpoints:
        m.load_state_dict(ck["state_dict"])
        out.append(ck["lr"] * (_grads(m, loss_fn, Xte, yte) @ _grads(m, loss_fn, Xtr, ytr).T))
    return torch.stack(out)


def _self_influence(model, checkpoints, loss_fn, X, y):
    m = copy.deepcopy(model)
    s = torch.zeros(len(X), dtype=torch.float64)
    for ck in checkpoints:
        m.load_state_dict(ck["state_dict"])
        g = _grads(m, loss_fn, X, y)
        s += ck["lr"] * (g * g).sum(1)
    return s


def _close_rel(got, want, what):
    close(got, want, atol=REL * float(want.abs().max()), what=what)


# ----------------------------------------------------------------------------- per-student material
def _loss(k, salt):
    """CrossEntropyLoss with this student's reduction: on one example "mean" and "sum" agree."""
    red = k.choice(["mean", "sum"], salt)
    return nn.CrossEntropyLoss(reduction=red), k.instance("torch.nn:CrossEntropyLoss", reduction=red)


def _data(k, salt, n_train, n_test, flip=0.0):
    split = _digits()
    rng = k.rng(salt)
    idx = torch.as_tensor(rng.choice(len(split.X_train), n_train, replace=False))
    X, y = split.X_train[idx], split.y_train[idx].clone()
    if flip:
        wrong = torch.as_tensor(rng.choice(n_train, int(flip * n_train), replace=False))
        y[wrong] = (y[wrong] + torch.as_tensor(rng.integers(1, 10, len(wrong)))) % 10
    jdx = torch.as_tensor(rng.choice(len(split.X_test), n_test, replace=False))
    return X, y, split.X_test[jdx], split.y_test[jdx]


def _trained_logreg(k, salt, X, y):
    """Checkpoints of a short SGD run on this student's data, learning rate decaying (K distinct η_k)."""
    from xaicourse.models import LogisticRegression, train

    rng = k.rng(salt)
    epochs = int(k.choice([6, 8], salt))
    res = train(LogisticRegression(), X, y, epochs=epochs, lr=float(rng.uniform(0.02, 0.08)), optimizer="sgd",
                lr_decay=float(rng.uniform(0.5, 0.8)), checkpoint_every=2, device="cpu", cache=False,
                progress=False, seed=int(rng.integers(1000)))
    cks = [{"epoch": int(c["epoch"]), "lr": float(c["lr"]),
            "state_dict": {n: v.detach().clone() for n, v in c["state_dict"].items()}} for c in res.checkpoints]
    if len({c["lr"] for c in cks}) != len(cks):
        raise RuntimeError("checkpoints with equal learning rates")  # a check bug, not the student's
    return res.model, cks


def _random_mlp(k, salt, n_checkpoints):
    """An MLP with per-student hidden width and random checkpoints (TracIn needs no training run)."""
    from xaicourse.models import MLP

    g = k.generator(salt)
    hidden = int(k.choice([8, 12, 16], salt))
    mlp = MLP(hidden=hidden)

    def state():
        return {n: 0.4 * torch.randn(v.shape, generator=g) for n, v in mlp.state_dict().items()}

    mlp.load_state_dict(state())
    lrs = (0.01 + 0.1 * torch.rand(n_checkpoints, generator=g, dtype=torch.float64)).tolist()
    return mlp, [{"epoch": 2 * (i + 1), "lr": lr, "state_dict": state()} for i, lr in enumerate(lrs)]


def _restores(k, fn, cks, loss_spec, Xtr, ytr, extra=()):
    """The notebook's own ``model`` (a LogisticRegression) goes through ``fn`` with this check's
    checkpoints: its outputs (the notebook's object called directly, no student code involved)
    must be the same before and after."""
    probe = Xtr[:4]
    before = k.call("model", probe)
    k.call(fn, k.global_("model"), cks, loss_spec, Xtr, ytr, *extra)
    after = k.call("model", probe)
    try:
        close(after, before, atol=1e-6, what="outputs of the notebook's model")
    except Failed:
        raise Failed(f"{fn} changed the model's parameters: save model.state_dict() (a copy) first and load "
                     f"it back at the end") from None


# ----------------------------------------------------------------------------- the tasks
@task("tracin_tests")
def tracin(k):
    loss, loss_spec = _loss(k, "loss1")
    # per-example gradients of an MLP with random weights, this student's digits
    mlp, _ = _random_mlp(k, "grads", 1)
    X, y, _, _ = _data(k, "grads", int(k.rng("n").integers(6, 11)), 1)
    got, info = k.call("example_gradients", k.module(mlp), loss_spec, X, y, meta=True)
    _close_rel(got, _grads(mlp, loss, X, y), "example_gradients of an MLP (one row per example, columns in "
                                             "the order of model.parameters())")
    if info and info[0]["requires_grad"]:
        raise Failed("example_gradients must return a tensor that does not require grad (use .detach())")
    # TracInCP terms on a logistic regression trained by SGD (learning rate decaying)
    Xtr, ytr, Xte, yte = _data(k, "logreg", 40, 5)
    logreg, cks = _trained_logreg(k, "logreg", Xtr, ytr)
    got = k.call("tracin_contributions", k.module(logreg), cks, loss_spec, Xtr, ytr, Xte, yte)
    want = _contributions(logreg, cks, loss, Xtr, ytr, Xte, yte)
    _close_rel(got, want, f"tracin_contributions (K={len(cks)} checkpoints, 5 test × 40 training points)")
    # an MLP with random checkpoints and learning rates
    mlp, cks2 = _random_mlp(k, "mlp", int(k.choice([2, 4], "K")))
    Xtr2, ytr2, Xte2, yte2 = _data(k, "mlp", 25, 3)
    got = k.call("tracin_contributions", k.module(mlp), cks2, loss_spec, Xtr2, ytr2, Xte2, yte2)
    _close_rel(got, _contributions(mlp, cks2, loss, Xtr2, ytr2, Xte2, yte2),
               f"tracin_contributions of an MLP (K={len(cks2)})")
    # the model is left as it was found
    _restores(k, "tracin_contributions", cks, loss_spec, Xtr[:10], ytr[:10], extra=(Xte, yte))


@task("self_tests")
def self_influence(k):
    loss, loss_spec = _loss(k, "loss2")
    # self-influence on a logistic regression trained on labels of which 10 % are wrong
    X, y, _, _ = _data(k, "self", 60, 1, flip=0.1)
    logreg, cks = _trained_logreg(k, "self", X, y)
    got = k.call("self_influence_scores", k.module(logreg), cks, loss_spec, X, y)
    _close_rel(got, _self_influence(logreg, cks, loss, X, y), f"self_influence_scores (K={len(cks)}, N=60)")
    mlp, cks2 = _random_mlp(k, "self-mlp", 3)
    X2, y2, _, _ = _data(k, "self-mlp", 30, 1)
    got = k.call("self_influence_scores", k.module(mlp), cks2, loss_spec, X2, y2)
    _close_rel(got, _self_influence(mlp, cks2, loss, X2, y2), "self_influence_scores of an MLP")
    _restores(k, "self_influence_scores", cks, loss_spec, X[:10], y[:10])
    # the ranking: this student's scores (no ties), float32 and float64
    g = k.generator("suspects")
    for dtype in (torch.float32, torch.float64):
        n = int(torch.randint(20, 50, (1,), generator=g))
        top = int(torch.randint(3, 10, (1,), generator=g))
        s = torch.randn(n, generator=g, dtype=dtype) * 3
        got = k.call("suspects", s, top)
        want = torch.argsort(s, descending=True)[:top]
        close(got, want, atol=0, what=f"suspects(scores, {top}) (indices, highest score first)")


def _ideal(model, loss_fn, Xtr, ytr, order, lr, Xte, yte):
    """Idealised TracIn of plain SGD over ``order`` (float64 copy of the model)."""
    m = copy.deepcopy(model).double()
    params = list(m.parameters())

    def grads(X, y):
        return torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(m(X[j:j + 1].double()),
                                                                                          y[j:j + 1]), params)])
                            for j in range(len(X))])

    T = torch.zeros(len(Xte), len(Xtr), dtype=torch.float64)
    for i in order:
        g_te, g_i = grads(Xte, yte), grads(Xtr[i:i + 1], ytr[i:i + 1])[0]
        T[:, i] += lr * (g_te @ g_i)
        with torch.no_grad():
            off = 0
            for p in params:
                p -= lr * g_i[off:off + p.numel()].view_as(p)
                off += p.numel()
    return T


@task("ideal_tests")
def ideal_tracin(k):
    loss, loss_spec = _loss(k, "loss3")
    rng = k.rng("ideal")
    # an MLP with random weights (per-student width), a visiting order with repeats and gaps
    mlp, _ = _random_mlp(k, "ideal-mlp", 1)
    Xtr, ytr, Xte, yte = _data(k, "ideal-mlp", 16, 3)
    order = [int(i) for i in rng.integers(0, 16, int(rng.integers(20, 30)))]
    lr = float(rng.uniform(0.05, 0.2))
    got = k.call("ideal_tracin", k.module(mlp), loss_spec, Xtr, ytr, order, lr, Xte, yte)
    _close_rel(got, _ideal(mlp, loss, Xtr, ytr, order, lr, Xte, yte),
               f"ideal_tracin of an MLP ({len(order)} SGD steps, lr {lr:.3f}, 3 test × 16 training points)")
    # a trained logistic regression, two epochs in this student's order
    Xtr2, ytr2, Xte2, yte2 = _data(k, "ideal-logreg", 20, 4)
    logreg, _ = _trained_logreg(k, "ideal-logreg", Xtr2, ytr2)
    order2 = [int(i) for i in np.concatenate([rng.permutation(20), rng.permutation(20)])]
    lr2 = float(rng.uniform(0.02, 0.1))
    got = k.call("ideal_tracin", k.module(logreg), loss_spec, Xtr2, ytr2, order2, lr2, Xte2, yte2)
    _close_rel(got, _ideal(logreg, loss, Xtr2, ytr2, order2, lr2, Xte2, yte2),
               f"ideal_tracin of a logistic regression (two epochs, lr {lr2:.3f})")
    # the notebook's model is left as it was
    probe = Xtr2[:4]
    before = k.call("model", probe)
    k.call("ideal_tracin", k.global_("model"), loss_spec, Xtr2, ytr2, order2[:10], lr2, Xte2, yte2)
    try:
        close(k.call("model", probe), before, atol=1e-6, what="outputs of the notebook's model")
    except Failed:
        raise Failed("ideal_tracin changed the model's parameters: train a copy (copy.deepcopy(model))") from None
