"""Concept-based explanations: TCAV (Kim et al. 2018) and linear probes.

Attribution maps answer "which pixels?"; TCAV answers "which human concept?". A concept C is
given by example inputs (images of stripes, of a colour, of a watermark). At a layer l with
activations h = f_l(x) ∈ R^D (flattened):

1. **Concept activation vector (CAV).** A linear classifier separates {f_l(x) : x ∈ C} from
   {f_l(x) : x ∈ R} (random counterexamples). Its weight vector w is the normal of the decision
   boundary, pointing towards the concept; the CAV is v_C^l = w / ‖w‖ (D,).
2. **Conceptual sensitivity.** With h_{l,k} the map from layer l to the logit of class k,

       S_{C,k,l}(x) = ∇h_{l,k}(f_l(x)) · v_C^l        (a directional derivative, (N,) per batch)

   — how much the class-k logit grows if the activation moves towards the concept.
3. **TCAV score.** TCAV_{C,k,l} = |{x ∈ X_k : S_{C,k,l}(x) > 0}| / |X_k|, the fraction of the
   class-k inputs that the concept pushes towards class k.
4. **Significance.** A CAV trained on a small random set can be meaningless, so the CAV is
   retrained against n different random sets R_1..R_n, giving n scores; the same is done for a
   *random* "concept" R_0 against R_1..R_n (or n independent random concepts). A two-sided
   t-test between the two lists of scores says whether the concept's scores differ from what
   random directions give.
5. **Check against an intervention.** TCAV is a first-order, sign-only reading at the inputs'
   own activations; ``intervention_effect`` adds the concept to the inputs and measures the
   logit's actual change — the ground truth to hold TCAV against.

Same numbers as ``captum.concept.TCAV`` (sign-count score) given the same CAV and inputs: captum's
default layer attribution is the gradient of the logit at the layer's output, its CAV the weight
row of the concept's class. ``tests/test_concepts.py`` injects our CAV into captum.

A **linear probe** (``linear_probe``) asks a different question of the same layer: can a label
(the concept's presence, the class) be *read out* linearly from the activations? High probe
accuracy says the information is there, not that the model *uses* it — TCAV's directional
derivative looks at the use.

Public API (the package's vocabulary: ``inputs``, ``target`` with None = the predicted class,
``layer=`` keyword-only; the old calls with the layer second still work, with a DeprecationWarning)
    CAV                                              — (vector (D,), accuracy, layer, bias)
    layer_activations(model, inputs, *, layer)       — f_l(x), (N, *layer shape) (``_torch``'s)
    concept_activation_vector(model, concept_inputs, random_inputs, *, layer, seed=0, C=1.0)
    directional_derivatives(model, inputs, target, *, layer, cav)   — S_{C,k,l}(x), (N,)
    tcav_score(model, inputs, target, *, layer, cav) — fraction of S > 0
    tcav(model, inputs, target, *, layer, concepts, random_sets, n_random=10, seed=0,
         random_concepts=None) → {name: TCAVResult}
    intervention_effect(model, inputs, apply_concept, target) → Intervention(delta, before, after)
    linear_probe(model, inputs, labels, *, layer, seed=0) → ProbeResult
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ._torch import (check_inputs, check_model, eval_on, layer_activations as _layer_activations, layer_keyword,
                     resolve_layer, resolve_target, scores, select, target_gradient)
from ._validate import as_tensor, check_bool, check_int, check_real

__all__ = ["CAV", "TCAVResult", "ProbeResult", "MIN_CONCEPT_EXAMPLES", "layer_activations",
           "concept_activation_vector", "directional_derivatives", "tcav_score", "tcav", "Intervention",
           "intervention_effect", "linear_probe"]

MIN_CONCEPT_EXAMPLES = 5
"""A concept or random set needs at least this many examples (a CAV from fewer is noise)."""


class CAV(NamedTuple):
    """A concept activation vector: ``vector`` (D,) unit norm, pointing towards the concept;
    ``accuracy`` of the linear classifier on held-out activations; ``layer`` it lives in;
    ``bias`` the classifier's intercept divided by ‖w‖ (the boundary is v·h + bias = 0)."""
    vector: torch.Tensor
    accuracy: float
    layer: str
    bias: float = 0.0


@dataclass
class TCAVResult:
    """One concept's TCAV test. ``score``: mean TCAV score over the n random runs; ``std``: their
    spread; ``scores`` (n,) and ``random_scores`` (n,) (random concept vs the same random sets);
    ``p_value``: two-sided t-test (Welch) of scores vs random_scores; ``accuracies`` (n,) of the
    CAV classifiers; ``significant(alpha)``."""
    score: float
    std: float
    p_value: float
    scores: np.ndarray
    random_scores: np.ndarray
    accuracies: np.ndarray
    cavs: list = field(default_factory=list, repr=False)

    def significant(self, alpha: float = 0.01) -> bool:
        return bool(self.p_value < alpha)


@dataclass
class ProbeResult:
    """A linear probe: held-out ``accuracy``, the majority-class ``baseline`` accuracy and the
    fitted sklearn classifier."""
    accuracy: float
    baseline: float
    classifier: object = field(repr=False, default=None)


# ------------------------------------------------------------------ activations and gradients
def _layer_key(model, layer) -> str:
    resolve_layer(model, layer)
    if isinstance(layer, str):
        return layer
    return next(n for n, m in model.named_modules() if m is layer)


def _check_set(name: str, model, x) -> torch.Tensor:
    x = check_inputs(model, x, name)
    if len(x) < MIN_CONCEPT_EXAMPLES:
        raise ValueError(f"{name} has {len(x)} examples; a concept or random set needs at least "
                         f"{MIN_CONCEPT_EXAMPLES} (TCAV papers use 50–500)")
    return x


def layer_activations(model, inputs, *args, layer=None, batch_size: int | None = 256) -> torch.Tensor:
    """f_l(x): ``_torch.layer_activations(model, inputs, layer=...)`` — (N, *layer shape) on the
    inputs' device. The old call ``layer_activations(model, layer, inputs)`` still works (with a
    DeprecationWarning) and returns what it returned: (N, D) flattened, on the CPU."""
    if isinstance(inputs, (str, nn.Module)) and layer is None:
        if len(args) != 1:
            raise TypeError("layer_activations(model, inputs, *, layer=..., batch_size=256)")
        warnings.warn("layer_activations(model, layer, inputs) is deprecated; use layer_activations(model, inputs, "
                      "layer=...) (it returns the unflattened (N, *layer shape) on the inputs' device)",
                      DeprecationWarning, stacklevel=2)
        return _flat_acts(model, inputs, args[0], batch_size)
    if args or layer is None:
        raise TypeError("layer_activations(model, inputs, *, layer=..., batch_size=256)")
    return _layer_activations(model, inputs, layer=layer, batch_size=batch_size)


def _flat_acts(model, layer, inputs, batch_size=256) -> torch.Tensor:
    """f_l(x) flattened: (N, D), detached, on the CPU (what CAVs are trained on)."""
    a = _layer_activations(model, inputs, layer=layer, batch_size=batch_size)
    return a.reshape(len(a), -1).cpu()


def _layer_grads(model, key, x, target) -> torch.Tensor:
    """∇_{f_l} f_t for each input, (N, D): the gradient of the class logit at the layer output."""
    return target_gradient(model, x, target, layer=key).reshape(len(x), -1)


def _cav_vector(model, key, cav) -> torch.Tensor:
    if isinstance(cav, CAV):
        if cav.layer != key:
            raise ValueError(f"cav was trained at layer {cav.layer!r}, not at layer {key!r}")
        cav = cav.vector
    if not isinstance(cav, torch.Tensor):
        raise TypeError(f"cav must be a CAV or a (D,) tensor, got {type(cav).__name__}")
    v = as_tensor("cav", cav, finite=True).reshape(-1)     # a NaN CAV would score 0.0 silently
    if not bool((v != 0).any()):
        raise ValueError("cav is the zero vector: it has no direction")
    return v


# ------------------------------------------------------------------ CAV
def _fit_logistic(Xtr: np.ndarray, ytr: np.ndarray, C: float):
    """sklearn's L2 logistic regression; BLAS limited to one thread (a few-dozen-row problem: extra
    threads only spin, 5–10× slower on a busy 2-core machine)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        return LogisticRegression(C=C, max_iter=2000).fit(Xtr, ytr)


@layer_keyword(("layer", "concept_inputs", "random_inputs", "seed", "C", "test_fraction"))
def concept_activation_vector(model, concept_inputs, random_inputs, *, layer, seed: int = 0, C: float = 1.0,
                              test_fraction: float = 0.33) -> CAV:
    """Train a CAV: logistic regression (L2, strength 1/C, intercept) separating the layer's
    activations of ``concept_inputs`` (label 1) from those of ``random_inputs`` (label 0).

    concept_inputs, random_inputs: (n_c, ...), (n_r, ...) batches for ``model``, each ≥ 5 examples.
    seed: fixes the stratified train/test split (``test_fraction`` of each set held out; the
    classifier is deterministic). Returns ``CAV(vector (D,) with ‖v‖ = 1 pointing towards the
    concept, held-out accuracy, layer name, bias)``. D = number of elements of the layer output.
    """
    check_model(model)
    key = _layer_key(model, layer)
    xc = _check_set("concept_inputs", model, concept_inputs)
    xr = _check_set("random_inputs", model, random_inputs)
    seed = check_int("seed", seed, min=0)
    C = check_real("C", C, min=0.0, min_inclusive=False)
    test_fraction = check_real("test_fraction", test_fraction, min=0.0, max=0.5, min_inclusive=False)
    ac = _flat_acts(model, key, xc).double().numpy()
    ar = _flat_acts(model, key, xr).double().numpy()
    return _cav_from_acts(ac, ar, key, seed, C, test_fraction)


def _cav_from_acts(ac: np.ndarray, ar: np.ndarray, key: str, seed: int, C: float, test_fraction: float) -> CAV:
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for a in (ac, ar):
        idx = rng.permutation(len(a))
        n_te = max(1, int(round(test_fraction * len(a))))
        te.append(a[idx[:n_te]])
        tr.append(a[idx[n_te:]])
    Xtr, Xte = np.concatenate(tr), np.concatenate(te)
    ytr = np.r_[np.ones(len(tr[0])), np.zeros(len(tr[1]))]
    yte = np.r_[np.ones(len(te[0])), np.zeros(len(te[1]))]
    clf = _fit_logistic(Xtr, ytr, C)
    w = clf.coef_[0]
    norm = float(np.linalg.norm(w))
    if not norm > 0:
        raise ValueError(f"the concept and random activations at layer {key!r} cannot be told apart "
                         f"(zero classifier weights); pick another layer or other examples")
    acc = float((clf.predict(Xte) == yte).mean())
    v = torch.as_tensor(w / norm, dtype=torch.float32)
    return CAV(v, acc, key, float(clf.intercept_[0]) / norm)


# ------------------------------------------------------------------ TCAV
@layer_keyword(("layer", "cav", "inputs", "target", "batch_size"))
def directional_derivatives(model, inputs, target=None, *, layer, cav, batch_size: int = 256) -> torch.Tensor:
    """S_{C,k,l}(x) = ∇h_{l,k}(f_l(x)) · v_C^l for each input: (N, ...) → (N,) float tensor (CPU).

    cav: a ``CAV`` trained at ``layer`` or a (D,) vector (D = elements of the layer output).
    target: class k (int, one int per input, or None = the predicted class). The gradient is that
    of the logit model(x)[k] with respect to the layer's output.
    """
    check_model(model)
    key = _layer_key(model, layer)
    x = check_inputs(model, inputs)
    v = _cav_vector(model, key, cav)
    batch_size = check_int("batch_size", batch_size, min=1)
    tt = resolve_target(model, x, target)
    out = []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        g = _layer_grads(model, key, xb, tt[s:s + batch_size])
        if g.shape[1] != v.numel():
            raise ValueError(f"cav has {v.numel()} entries but layer {key!r} has {g.shape[1]} activations")
        out.append((g @ v.to(g)).detach().cpu())
    return torch.cat(out)


@layer_keyword(("layer", "cav", "inputs", "target"))
def tcav_score(model, inputs, target=None, *, layer, cav) -> float:
    """TCAV_{C,k,l} = fraction of ``inputs`` with S_{C,k,l}(x) > 0 (a number in [0, 1]).

    ``inputs`` should be examples of class ``target`` (the score asks: for how many of them does
    the concept push the prediction towards k?). Equals captum's ``TCAV(...).interpret(...)``
    ``["sign_count"]`` for the same CAV and inputs.
    """
    return float((directional_derivatives(model, inputs, target, layer=layer, cav=cav) > 0).float().mean())


def _ttest(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Welch t-test p-value; defined (0 or 1) when both samples are constant."""
    import warnings

    from scipy.stats import ttest_ind
    if np.std(a) == 0 and np.std(b) == 0:
        return 1.0 if np.mean(a) == np.mean(b) else 0.0
    with warnings.catch_warnings():     # nearly constant samples: scipy warns, the p-value is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_ind(a, b, equal_var=False).pvalue)


@layer_keyword(("layer", "concepts", "random_sets", "inputs", "target", "n_random", "seed", "C", "progress",
                "random_concepts"))
def tcav(model, inputs, target=None, *, layer, concepts: dict, random_sets, n_random: int = 10, seed: int = 0,
         C: float = 1.0, progress: bool = False, random_concepts=None) -> dict:
    """TCAV with its significance test for each concept.

    concepts: {name: (n_c, ...) inputs}; random_sets: a list of random batches (each ≥ 5). For each
    concept, CAVs are trained against random_sets[0..n_random−1], giving n_random TCAV scores on
    ``inputs`` for class ``target``. The random baseline trains CAVs of "random concepts" against
    the same sets:

    * ``random_concepts=None`` (Kim et al.'s reference code, captum's tutorial): ONE random set,
      random_sets[n_random], against each counterpart — so ``random_sets`` needs n_random + 1 sets.
      Cheap, but all n baseline scores share that one set: if it happens to differ from the
      counterparts in some class-relevant way, the whole baseline shifts.
    * ``random_concepts=[R'_0, …, R'_{n−1}]``: run i's random concept is R'_i against random_sets[i]
      — n independent random concepts, a baseline that does not hinge on one set (needed where
      scores are nearly all-or-nothing, e.g. at a pooled layer; lecture 09 §5).

    A concept may also be a FUNCTION that adds the concept to a batch (e.g. stamps a watermark):
    run i's concept set is then f(random concept of run i), so the concept CAV and the random CAV of
    each run differ ONLY by the concept — a paired design that removes whatever else the concept
    examples happen to share (their classes, their backgrounds) from the test.

    Returns {name: TCAVResult(score = mean, std, p_value of a two-sided Welch t-test against the
    random scores, scores, random_scores, accuracies, cavs)}.
    """
    check_model(model)
    key = _layer_key(model, layer)
    n_random = check_int("n_random", n_random, min=2)
    seed = check_int("seed", seed, min=0)
    progress = check_bool("progress", progress)
    if not isinstance(concepts, dict) or not concepts:
        raise TypeError("concepts must be a non-empty dict {name: inputs, or a function adding the concept}")
    if not isinstance(random_sets, (list, tuple)):
        raise TypeError(f"random_sets must be a list of batches of inputs, got {type(random_sets).__name__}")
    random_sets = list(random_sets)
    if random_concepts is None:
        if len(random_sets) < n_random + 1:
            raise ValueError(f"random_sets must hold at least n_random + 1 = {n_random + 1} sets "
                             f"(n_random counterparts and one random concept), got {len(random_sets)}; "
                             f"or pass random_concepts=[n_random further sets]")
        rand_concepts = [random_sets[n_random]] * n_random
    else:
        if isinstance(random_concepts, (torch.Tensor, np.ndarray)):
            raise TypeError("random_concepts must be a list of n_random batches of inputs, not one tensor")
        rand_concepts = list(random_concepts)
        if len(random_sets) < n_random or len(rand_concepts) < n_random:
            raise ValueError(f"with random_concepts, random_sets and random_concepts must each hold at least "
                             f"n_random = {n_random} sets, got {len(random_sets)} and {len(rand_concepts)}")
        rand_concepts = rand_concepts[:n_random]
        for i, r in enumerate(rand_concepts):
            _check_set(f"random_concepts[{i}]", model, r)
    n_sets = n_random + 1 if random_concepts is None else n_random
    for i, r in enumerate(random_sets[:n_sets]):
        _check_set(f"random_sets[{i}]", model, r)
    x = check_inputs(model, inputs)
    C = check_real("C", C, min=0.0, min_inclusive=False)
    for name, cx in concepts.items():
        if not callable(cx):
            _check_set(f"concepts[{name!r}]", model, cx)
    # activations of every set and the layer gradients of the inputs, computed once
    acts = {i: _flat_acts(model, key, r).double().numpy() for i, r in enumerate(random_sets[:n_sets])}
    tt = resolve_target(model, x, target)
    grads = torch.cat([_layer_grads(model, key, x[s:s + 256], tt[s:s + 256])
                       for s in range(0, len(x), 256)]).detach().cpu()
    distinct = {id(r): r for r in rand_concepts}        # one set repeated n times when random_concepts is None
    rand_acts = {i: _flat_acts(model, key, r).double().numpy() for i, r in distinct.items()}

    def concept_acts(name, cx):
        if not callable(cx):
            return [_flat_acts(model, key, cx).double().numpy()] * n_random
        made = {}
        for i, r in distinct.items():                   # a paired concept: the random concept + the concept
            c = cx(r.clone())
            if not isinstance(c, torch.Tensor) or c.shape != r.shape:
                raise ValueError(f"concepts[{name!r}] is a function, so it must return a batch of the random "
                                 f"concept's shape {tuple(r.shape)}, got {getattr(c, 'shape', type(c).__name__)}")
            made[i] = _flat_acts(model, key, c).double().numpy()
        return [made[id(r)] for r in rand_concepts]

    items = [(name, concept_acts(name, cx)) for name, cx in concepts.items()]
    items.append((None, [rand_acts[id(r)] for r in rand_concepts]))
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(items) * n_random, desc="TCAV")
    found = {}
    for name, acs in items:
        sc, acc, cavs = [], [], []
        for i in range(n_random):
            cav = _cav_from_acts(acs[i], acts[i], key, seed + i, C, 0.33)
            sc.append(float((grads @ cav.vector > 0).float().mean()))     # = tcav_score(cav)
            acc.append(cav.accuracy)
            cavs.append(cav)
            if progress:
                bar.update()
        found[name] = (np.array(sc), np.array(acc), cavs)
    if progress:
        bar.close()
    rand = found.pop(None)[0]
    return {name: TCAVResult(float(s.mean()), float(s.std(ddof=1)), _ttest(s, rand), s, rand, a, cv)
            for name, (s, a, cv) in found.items()}


class Intervention(NamedTuple):
    """What adding a concept to the inputs does to the prediction (``intervention_effect``):
    ``delta`` (N,) change of the target logit; ``before`` / ``after`` fraction of inputs predicted
    as the target class without / with the concept."""
    delta: torch.Tensor
    before: float
    after: float


def intervention_effect(model, inputs, apply_concept, target=None, batch_size: int = 256) -> Intervention:
    """The ground truth TCAV approximates: put the concept INTO the inputs and watch the logit.

    apply_concept: a function (N, ...) → (N, ...) that adds the concept to a batch (e.g. stamps the
    watermark). Returns ``Intervention(delta = f_k(apply(x)) − f_k(x) per input, before, after)``,
    with k = ``target`` (int, one per input, or None = the predicted class). TCAV is first-order and local (a directional derivative at f_l(x), its
    sign only); this is the whole, finite change — the two can disagree (lecture 09 §5).
    """
    check_model(model)
    if not callable(apply_concept):
        raise TypeError(f"apply_concept must be a function that adds the concept to a batch, "
                        f"got {type(apply_concept).__name__}")
    x = check_inputs(model, inputs)
    batch_size = check_int("batch_size", batch_size, min=1)
    tt = resolve_target(model, x, target)
    d, b, a = [], [], []
    with eval_on(model, freeze=True), torch.no_grad():
        for s in range(0, len(x), batch_size):
            xb = x[s:s + batch_size]
            xc = apply_concept(xb.clone())
            if not isinstance(xc, torch.Tensor) or xc.shape != xb.shape:
                raise ValueError(f"apply_concept must return a tensor of the batch's shape {tuple(xb.shape)}, "
                                 f"got {getattr(xc, 'shape', type(xc).__name__)}")
            xc = xc.to(xb)
            if not torch.isfinite(xc).all():
                raise ValueError("apply_concept returned NaN or inf values")
            o0, o1 = scores(model, xb), scores(model, xc)
            t = tt[s:s + batch_size]
            d.append((select(o1, t) - select(o0, t)).cpu())
            b.append((o0.argmax(1) == t).cpu())
            a.append((o1.argmax(1) == t).cpu())
    return Intervention(torch.cat(d), float(torch.cat(b).float().mean()), float(torch.cat(a).float().mean()))


# ------------------------------------------------------------------ probing
@layer_keyword(("layer", "inputs", "labels", "seed", "C", "test_fraction"))
def linear_probe(model, inputs, labels, *, layer, seed: int = 0, C: float = 1.0,
                 test_fraction: float = 0.33) -> ProbeResult:
    """Held-out accuracy of a multinomial logistic-regression probe reading ``labels`` (N,) from
    the layer's activations of ``inputs`` (N, ...). ``baseline`` is the majority-class rate of
    the test split; a probe is informative only well above it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    check_model(model)
    key = _layer_key(model, layer)
    x = check_inputs(model, inputs)
    from ._validate import check_labels

    y = check_labels("labels", labels, len(x)).cpu().numpy()
    vals, counts = np.unique(y, return_counts=True)
    if len(vals) < 2:
        raise ValueError("labels must contain at least two classes")
    if counts.min() < 2:
        raise ValueError(f"labels: every class needs at least 2 examples for a stratified split, class "
                         f"{int(vals[counts.argmin()])} has {int(counts.min())}")
    seed = check_int("seed", seed, min=0)
    test_fraction = check_real("test_fraction", test_fraction, min=0.0, max=1.0, min_inclusive=False,
                               max_inclusive=False)
    a = _flat_acts(model, key, x).double().numpy()
    Xtr, Xte, ytr, yte = train_test_split(a, y, test_size=test_fraction, random_state=seed, stratify=y)
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):
        clf = LogisticRegression(C=check_real("C", C, min=0.0, min_inclusive=False), max_iter=2000).fit(Xtr, ytr)
    vals, counts = np.unique(yte, return_counts=True)
    return ProbeResult(float((clf.predict(Xte) == yte).mean()), float(counts.max() / len(yte)), clf)
