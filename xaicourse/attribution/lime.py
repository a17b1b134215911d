"""LIME from scratch (Ribeiro et al. 2016, Algorithm 1 "sparse linear explanations").

Explain f at x by a linear model g on an *interpretable representation* x' ∈ {0,1}^K
(superpixels on/off for images) fitted on samples around x:

    ξ(x) = argmin_{g ∈ G}  L(f, g, π_x) + Ω(g),   L = Σ_i π_x(z_i) (f(z_i) − g(z'_i))²

1. interpretable features: K superpixels (scikit-image SLIC / quickshift, or a regular
   grid); x' = 1^K. For tabular data the features are the input's columns.
2. sampling: z'_i ∈ {0,1}^K uniformly at random (row 0 = x' itself); z_i is the image
   with the superpixels where z'_i = 0 replaced by a fill (segment mean or a constant).
   Tabular: z_i = x + s ⊙ ε_i, ε_i ~ N(0, I), and z'_i = ε_i (standardised deviation).
3. kernel: d_i = D(x', z'_i) (cosine distance for images, L2 for tabular) and
   π_i = exp(−d_i² / (2 w²)) = sqrt(exp(−d_i²/w²)) — the ``lime`` package's kernel — with
   kernel width w (small w = very local).
4. K-Lasso: run the LARS/lasso path on the weighted, weighted-centred data and keep the
   features active at the last point of the path with ≤ K of them ("lasso_path" in lime).
5. weighted ridge on the kept features: min_{β,b} Σ_i π_i (y_i − b − z'_iβ)² + α‖β‖²,
   solved in closed form after weighted centring.
Returned: coefficients (one per feature, 0 if not kept), intercept, weighted R² of the
surrogate on the samples, and the segments.

As w → 0 (and, tabular, the sampling scale → 0) the fit sees only an infinitesimal
neighbourhood, and for a smooth f its slope tends to the gradient: LIME with a small
radius *is* a (noisy) gradient, answering the sensitivity question again.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .._torch import check_inputs, maybe_eval, resolve_target, scores
from .._validate import check_bool, check_choice, check_int, check_real


# ----------------------------------------------------------------- interpretable features
def segment_image(image: torch.Tensor, method: str = "slic", n_segments: int = 50,
                  compactness: float = 10.0, cell: int = 4, seed: int = 0, **kwargs) -> np.ndarray:
    """Superpixels of one image (C, H, W) → int array (H, W) with labels 0 … K−1.

    method: "slic" (``skimage.segmentation.slic(n_segments, compactness)``),
    "quickshift" (``skimage.segmentation.quickshift``, needs RGB: grey is repeated; extra
    kwargs kernel_size=3, max_dist=6, ratio=0.5 by default — lime's 4/200/0.2 merge a
    whole [0, 1] image into one segment), or "grid" (square cells of ``cell`` pixels).
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3:
        raise ValueError(f"image must be one (C, H, W) tensor, got "
                         f"{tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__}")
    C, H, W = image.shape
    img = image.detach().cpu().double().numpy().transpose(1, 2, 0)
    if method == "grid":
        if int(cell) < 1:
            raise ValueError(f"cell must be ≥ 1, got {cell}")
        rows, cols = np.arange(H) // cell, np.arange(W) // cell
        seg = rows[:, None] * (cols.max() + 1) + cols[None, :]
    elif method == "slic":
        from skimage.segmentation import slic

        seg = slic(img if C == 3 else img[..., 0], n_segments=int(n_segments), compactness=compactness,
                   start_label=0, channel_axis=-1 if C == 3 else None, **kwargs)
    elif method == "quickshift":
        from skimage.segmentation import quickshift

        rgb = img if C == 3 else np.repeat(img[..., :1], 3, -1)
        kw = dict(kernel_size=3, max_dist=6, ratio=0.5) | kwargs  # sized for [0, 1] images
        seg = quickshift(rgb, rng=seed, **kw)
    else:
        raise ValueError(f"method must be 'slic', 'quickshift' or 'grid', got {method!r}")
    _, seg = np.unique(seg, return_inverse=True)  # relabel 0..K-1
    return seg.reshape(H, W).astype(np.int64)


def fill_image(image: torch.Tensor, segments: np.ndarray, hide="mean") -> torch.Tensor:
    """The image used where a superpixel is off: per-segment channel means or a constant."""
    if hide == "mean":
        seg = torch.as_tensor(segments, device=image.device).reshape(-1)
        K = int(seg.max()) + 1
        flat = image.reshape(image.shape[0], -1).double()
        sums = torch.zeros(image.shape[0], K, dtype=torch.float64, device=image.device).index_add_(1, seg, flat)
        cnt = torch.bincount(seg, minlength=K).double()
        return (sums / cnt)[:, seg].reshape(image.shape).to(image.dtype)
    if isinstance(hide, (int, float)):
        return torch.full_like(image, float(hide))
    raise ValueError(f"hide must be 'mean' or a number, got {hide!r}")


# ----------------------------------------------------------------- sampling and kernel
def sample_masks(num_samples: int, n_features: int, seed: int = 0) -> np.ndarray:
    """Binary masks z' (num_samples, n_features), row 0 all ones (the instance itself).

    Drawn as ``np.random.RandomState(seed).randint(0, 2, num_samples·n_features)``, the
    same stream the ``lime`` package uses, so equal seeds give equal samples.
    """
    num_samples = check_int("num_samples", num_samples, min=2)
    n_features = check_int("n_features", n_features, min=1)
    rs = np.random.RandomState(seed)
    z = rs.randint(0, 2, num_samples * n_features).reshape(num_samples, n_features)
    z[0, :] = 1
    return z


def distances(samples: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance of every row of ``samples`` to row 0: "cosine" (1 − cos, 1 for a zero
    row, as scikit-learn) or "l2"."""
    Z = np.asarray(samples, dtype=np.float64)
    ref = Z[0]
    if metric == "cosine":
        nz, nr = np.linalg.norm(Z, axis=1), np.linalg.norm(ref)
        denom = nz * nr
        cos = np.divide(Z @ ref, denom, out=np.zeros(len(Z)), where=denom > 0)
        return np.clip(1.0 - cos, 0.0, 2.0)
    if metric in ("l2", "euclidean"):
        return np.linalg.norm(Z - ref, axis=1)
    raise ValueError(f"metric must be 'cosine' or 'l2', got {metric!r}")


def kernel_weights(d: np.ndarray, kernel_width: float) -> np.ndarray:
    """π = sqrt(exp(−d²/w²)) = exp(−d²/(2w²)), the lime package's exponential kernel."""
    if not kernel_width > 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
    d = np.asarray(d, dtype=np.float64)
    return np.sqrt(np.exp(-(d ** 2) / kernel_width ** 2))


# ----------------------------------------------------------------- the surrogate fit
def k_lasso(Z: np.ndarray, y: np.ndarray, weights: np.ndarray, num_features: int) -> np.ndarray:
    """Indices of ≤ K features chosen along the weighted lasso (LARS) path.

    The data are centred by their weighted means and scaled by √π so the lasso sees the
    weighted least-squares problem; walking the path from its end (smallest penalty)
    back, the first point with ≤ K non-zero coefficients gives the features.
    """
    from sklearn.linear_model import lars_path

    w = np.asarray(weights, dtype=np.float64)
    Zw = (Z - np.average(Z, axis=0, weights=w)) * np.sqrt(w[:, None])
    yw = (y - np.average(y, weights=w)) * np.sqrt(w)
    _, _, coefs = lars_path(Zw, yw, method="lasso", verbose=False)
    nonzero = np.arange(Z.shape[1])
    for i in range(coefs.shape[1] - 1, 0, -1):
        nonzero = coefs[:, i].nonzero()[0]
        if len(nonzero) <= num_features:
            break
    return nonzero


def weighted_ridge(Z: np.ndarray, y: np.ndarray, weights: np.ndarray, alpha: float = 1.0):
    """argmin_{β,b} Σ_i π_i (y_i − b − Z_iβ)² + α‖β‖² → (β, b).

    Centre by weighted means (Z̄ = Σπ_iZ_i/Σπ_i, ȳ likewise), then
    β = (Z_cᵀ Π Z_c + α I)⁻¹ Z_cᵀ Π y_c and b = ȳ − Z̄β (the intercept is not penalised).
    """
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.sum() <= 0:
        raise ValueError("all sample weights are zero: increase kernel_width")
    zbar = w @ Z / w.sum()
    ybar = w @ y / w.sum()
    Zc, yc = Z - zbar, y - ybar
    A = Zc.T @ (w[:, None] * Zc) + alpha * np.eye(Z.shape[1])
    beta = np.linalg.solve(A, Zc.T @ (w * yc)) if Z.shape[1] else np.zeros(0)
    return beta, float(ybar - zbar @ beta)


def weighted_r2(Z, y, weights, coef, intercept) -> float:
    """1 − Σπ(y − ŷ)² / Σπ(y − ȳ_π)²: how well the surrogate fits the weighted samples."""
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    pred = np.asarray(Z, dtype=np.float64) @ coef + intercept
    ybar = w @ y / w.sum()
    tot = w @ (y - ybar) ** 2
    return float(1.0 - (w @ (y - pred) ** 2) / tot) if tot > 0 else 1.0


def fit_surrogate(Z, y, weights, num_features: int | None = None, alpha: float = 1.0):
    """K-Lasso then weighted ridge. Returns (coef over all features, intercept, weighted R²,
    selected feature indices, surrogate prediction at row 0)."""
    Z = np.asarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if num_features is None:
        used = np.arange(Z.shape[1])
    else:
        if int(num_features) < 1:
            raise ValueError(f"num_features must be ≥ 1, got {num_features}")
        used = k_lasso(Z, y, weights, int(num_features))
    beta, b = weighted_ridge(Z[:, used], y, weights, alpha)
    coef = np.zeros(Z.shape[1])
    coef[used] = beta
    score = weighted_r2(Z[:, used], y, weights, beta, b)
    return coef, b, score, np.asarray(used), float(Z[0, used] @ beta + b)


# ----------------------------------------------------------------- the whole explanation
@dataclass
class LimeExplanation:
    """One LIME explanation. ``coefficients`` (K,), ``segments`` (H, W) or None (tabular)."""
    coefficients: np.ndarray
    intercept: float
    score: float
    segments: np.ndarray | None
    selected: np.ndarray
    local_pred: float
    target: int
    samples: np.ndarray = field(repr=False)
    predictions: np.ndarray = field(repr=False)
    distances: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)

    def top_features(self, k: int = 5) -> np.ndarray:
        """Indices of the k features with the largest |coefficient|."""
        return np.argsort(-np.abs(self.coefficients), kind="stable")[:k]

    def to_map(self, shape) -> torch.Tensor:
        """Coefficients painted on the features: tensor of per-sample ``shape``."""
        if self.segments is None:
            return torch.as_tensor(self.coefficients, dtype=torch.float32).reshape(shape)
        m = torch.as_tensor(self.coefficients[self.segments], dtype=torch.float32)
        return m.expand(*shape).clone()


def model_scores(model, target: int, output: str = "prob"):
    """z (B, ...) tensor → f_t(z) as float64 numpy: softmax probability or logit."""
    if output not in ("prob", "logit"):
        raise ValueError(f"output must be 'prob' or 'logit', got {output!r}")

    @torch.no_grad()
    def f(z):
        out = scores(model, z).double()  # float64 softmax: p ≈ 1 keeps its resolution
        if output == "prob":
            out = out.softmax(1)
        return out[:, target].cpu().numpy()
    return f


def _chunks(n, batch_size):
    return [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]


def lime_explain(model, inputs: torch.Tensor, target=None, *, n_samples: int = 1000, kernel_width: float | None = None,
                 num_features: int | None = None, alpha: float = 1.0, mode: str = "image",
                 segmentation: str = "slic", n_segments: int = 50, cell: int = 4, segments=None,
                 hide="mean", distance: str | None = None, sample_scale=0.1, output: str = "prob",
                 batch_size: int = 64, seed: int = 0, segment_seed: int = 0, progress: bool = False, **old):
    """LIME for each sample of ``inputs`` → list of ``LimeExplanation``.

    mode "image": inputs (N, C, H, W); superpixels from ``segmentation`` ("slic" with
    ``n_segments``, "quickshift", "grid" with ``cell``) or a given ``segments`` (H, W);
    ``hide`` = "mean" (segment mean colour, lime's default) or a constant; distance
    default "cosine", kernel_width default 0.25 (lime_image's).
    mode "tabular": inputs (N, D) or any shape (features = flattened entries); samples
    x + sample_scale·ε; distance default "l2" on ε; kernel_width default 0.75·√D (lime's).
    num_features: K for K-Lasso (None = keep all). alpha: ridge penalty (lime: 1).
    output: explain the softmax "prob" (lime's convention) or the "logit" of ``target``.
    batch_size: perturbed inputs per model call (chunks that stay in cache are fastest).
    seed: sampling seed (numpy RandomState stream, as lime); segment_seed: quickshift's.
    n_samples: perturbed samples per explanation (``num_samples`` is the deprecated name, lime's).
    model: an nn.Module or ANY callable z (B, ...) → (B, n_outputs) scores (LIME is model-agnostic:
    a scikit-learn model as ``lambda z: torch.as_tensor(clf.predict_proba(z.reshape(len(z), -1).numpy()))``).
    target: int, one per sample, or None (the predicted class). Integer inputs are explained as
    float inputs (the perturbed samples are fractional).
    """
    if old:
        unknown = set(old) - {"num_samples"}
        if unknown:
            raise TypeError(f"lime_explain got unexpected keyword arguments {sorted(unknown)}")
        warnings.warn("lime_explain(num_samples=...) is deprecated; use n_samples=", DeprecationWarning, stacklevel=2)
        n_samples = old["num_samples"]
    num_samples = check_int("n_samples", n_samples, min=2)
    x_all = check_inputs(model, inputs, allow_int=True)
    if not x_all.dtype.is_floating_point:
        x_all = x_all.to(torch.get_default_dtype())
    check_choice("mode", mode, ("image", "tabular"))
    if kernel_width is not None:
        kernel_width = check_real("kernel_width", kernel_width, min=0.0, min_inclusive=False)
    batch_size = check_int("batch_size", batch_size, min=1)
    check_choice("output", output, ("prob", "logit"))
    check_choice("segmentation", segmentation, ("slic", "quickshift", "grid"))
    check_int("n_segments", n_segments, min=1)
    check_int("cell", cell, min=1, max=max(x_all.shape[-2:]) if x_all.dim() == 4 else None)
    check_int("seed", seed, min=0)
    check_int("segment_seed", segment_seed, min=0)
    check_bool("progress", progress)
    alpha = check_real("alpha", alpha, min=0.0)
    if num_features is not None:
        num_features = check_int("num_features", num_features, min=1)
    if distance is not None:
        check_choice("distance", distance, ("cosine", "l2", "euclidean"))
    if not (hide == "mean" or (isinstance(hide, (int, float)) and not isinstance(hide, bool))):
        raise ValueError(f"hide must be 'mean' or a number, got {hide!r}")
    if isinstance(hide, float):
        check_real("hide", hide)
    if mode == "image" and x_all.dim() != 4:
        raise ValueError(f"mode='image' needs inputs (N, C, H, W), got shape {tuple(x_all.shape)}")
    with maybe_eval(model):
        return _lime_explain(model, x_all, target, num_samples, kernel_width, num_features, alpha, mode,
                             segmentation, n_segments, cell, segments, hide, distance, sample_scale, output,
                             batch_size, seed, segment_seed, progress)


def _lime_explain(model, inputs, target, num_samples, kernel_width, num_features, alpha, mode, segmentation,
                  n_segments, cell, segments, hide, distance, sample_scale, output, batch_size, seed,
                  segment_seed, progress):
    t = resolve_target(model, inputs, target)
    from tqdm.auto import tqdm

    results = []
    for n in tqdm(range(len(inputs)), disable=not progress or len(inputs) == 1, desc="LIME"):
        x = inputs[n].detach()
        f = model_scores(model, int(t[n]), output)
        if mode == "image":
            seg = (segment_image(x, segmentation, n_segments=n_segments, cell=cell, seed=segment_seed)
                   if segments is None else np.asarray(segments))
            if seg.shape != tuple(x.shape[1:]):
                raise ValueError(f"segments must have shape {tuple(x.shape[1:])}, got {seg.shape}")
            if seg.dtype.kind not in "iu" or seg.min() < 0:
                raise ValueError("segments must hold non-negative integer segment labels")
            K = int(seg.max()) + 1
            Z = sample_masks(num_samples, K, seed)
            fill = fill_image(x, seg, hide)
            seg_t = torch.as_tensor(seg, device=x.device)
            Zt = torch.as_tensor(Z, dtype=x.dtype, device=x.device)
            y = np.empty(len(Z))
            for a, b in _chunks(len(Z), int(batch_size)):
                on = Zt[a:b][:, seg_t][:, None]                # (B, 1, H, W) pixel masks
                y[a:b] = f(fill + (x - fill) * on)
            d = distances(Z, distance or "cosine")
            w = kernel_weights(d, 0.25 if kernel_width is None else kernel_width)
        else:
            seg = None
            D = x.numel()
            rng = np.random.RandomState(seed)
            eps = rng.standard_normal((int(num_samples), D))
            eps[0] = 0.0
            Z = eps
            scale = torch.as_tensor(sample_scale, dtype=x.dtype, device=x.device).reshape(-1)
            if (scale <= 0).any():
                raise ValueError("sample_scale must be > 0")
            Zt = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
            y = np.empty(len(Z))
            for a, b in _chunks(len(Z), int(batch_size)):
                y[a:b] = f((x.reshape(1, -1) + Zt[a:b] * scale).reshape(b - a, *x.shape))
            d = distances(Z, distance or "l2")
            w = kernel_weights(d, 0.75 * np.sqrt(D) if kernel_width is None else kernel_width)
        if not np.isfinite(y).all():
            raise ValueError("model returned NaN/inf on perturbed samples")
        coef, b0, score, used, local = fit_surrogate(Z, y, w, num_features, alpha)
        results.append(LimeExplanation(coef, b0, score, seg, used, local, int(t[n]), Z, y, d, w))
    return results


def lime_attribution(model, inputs: torch.Tensor, target=None, **options) -> torch.Tensor:
    """LIME coefficients painted back onto the input: tensor shaped like ``inputs``.

    Each pixel gets its superpixel's coefficient (image mode); each feature its own
    coefficient (tabular mode). Options as in ``lime_explain``.
    """
    exps = lime_explain(model, inputs, target, **options)
    x = check_inputs(model, inputs, allow_int=True, probe=False)
    dtype = x.dtype if x.dtype.is_floating_point else torch.get_default_dtype()
    dev = inputs.device if isinstance(inputs, torch.Tensor) else x.device
    return torch.stack([e.to_map(x.shape[1:]) for e in exps]).to(device=dev, dtype=dtype)


def topk_agreement(sets) -> float:
    """Mean pairwise overlap |A ∩ B| / k of equally sized top-k index sets (1 = identical)."""
    sets = [set(map(int, s)) for s in sets]
    if len(sets) < 2:
        raise ValueError("need at least two top-k sets")
    k = len(sets[0])
    pairs = [(i, j) for i in range(len(sets)) for j in range(i + 1, len(sets))]
    return float(np.mean([len(sets[i] & sets[j]) / k for i, j in pairs]))


def lime_stability(model, x: torch.Tensor, target: int, seeds=range(10), k: int = 5, **options):
    """Top-k stability across sampling seeds for one image ``x`` (C, H, W) (or tabular row).

    The segmentation is computed once and shared, so only the random samples change.
    Returns (agreement in [0, 1], list of top-k index arrays).
    """
    seeds = list(seeds)
    if len(seeds) < 2:
        raise ValueError("seeds must hold at least two seeds")
    if options.get("mode", "image") == "image" and options.get("segments") is None:
        options["segments"] = segment_image(x, options.pop("segmentation", "slic"),
                                            n_segments=options.pop("n_segments", 50),
                                            cell=options.pop("cell", 4), seed=options.get("segment_seed", 0))
    tops = [lime_explain(model, x[None], target, seed=s, **options)[0].top_features(k) for s in seeds]
    return topk_agreement(tops), tops
