"""Bootstrap confidence intervals of the headline metrics, resampling patients (cluster bootstrap).

Images of one patient are not independent: resampling images would count a patient with two
images as two pieces of evidence and give intervals that are too narrow. Here whole *groups*
(patients) are drawn with replacement, and every image of a drawn patient comes along, as often
as the patient was drawn. Without groups every image is its own group (the ordinary bootstrap).

A replicate is a vector of image weights (how many times each image's patient was drawn), so
every metric is computed for all replicates at once as a weighted metric
(:func:`weighted_metrics`): integer weights give exactly the metric of the resampled table,
without building it. 1000 replicates of 1000 images take well under a second.

Intervals are percentile intervals. A replicate where a metric is undefined (an AUC when the
resample holds one class only) is dropped for that metric, and the number of replicates used
is reported per metric.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from radiology.evaluate.metrics import _bin_index, _indicator, _labels, _scores

__all__ = ["bootstrap_intervals", "weighted_metrics", "interval_key"]

#: Replicate rows computed together: bounds the memory of the (replicates x images) weight matrix.
_CELLS_PER_CHUNK = 4_000_000


def interval_key(level: float) -> str:
    """The metrics.json key of intervals at ``level``: ``"ci95"`` for 0.95, ``"ci99.9"`` for 0.999.

    Parameters
    ----------
    level : float
        Confidence level, between 0 and 1.

    Examples
    --------
    >>> interval_key(0.95), interval_key(0.9), interval_key(0.999)
    ('ci95', 'ci90', 'ci99.9')
    """
    return f"ci{round(float(level) * 100, 6):g}"


def _sum_by(weights: np.ndarray, codes: np.ndarray, size: int) -> np.ndarray:
    """``out[b, k] = sum of weights[b, i] over i with codes[i] == k``, for every replicate row ``b``."""
    indicator = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(size, len(codes)))
    return np.asarray((indicator @ weights.T).T)


def _divide(numerator, denominator) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def _defined_mean(values: np.ndarray) -> np.ndarray:
    """Row means over the defined (non-nan) entries; nan for a row without any."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=1)
    return _divide(np.where(defined, values, 0.0).sum(axis=1), count)


def _weighted_auc(truth: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC (ties count one half) of one 0/1 column under every weight row; nan without both outcomes."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    positive = truth[order].astype(bool)
    w = weights[:, order]
    pos = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    pairs = (pos * (below + 0.5 * neg)).sum(axis=1)
    return _divide(pairs, pos.sum(axis=1) * neg.sum(axis=1))


def _weighted_ece(truth: np.ndarray, probs: np.ndarray, weights: np.ndarray, n_bins: int) -> np.ndarray:
    gaps = _sum_by(weights * (probs - truth)[None, :], _bin_index(probs, n_bins), n_bins)
    return _divide(np.abs(gaps).sum(axis=1), weights.sum(axis=1))


def _single_label(labels, probs, weights, ordinal: bool, n_bins: int) -> dict[str, np.ndarray]:
    n_classes = probs.shape[1]
    predictions = probs.argmax(axis=1)
    confusion = _sum_by(weights, labels * n_classes + predictions, n_classes * n_classes)
    confusion = confusion.reshape(len(weights), n_classes, n_classes)
    support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
    hits = np.diagonal(confusion, axis1=1, axis2=2)
    total = support.sum(axis=1)
    result = {
        "accuracy": _divide(hits.sum(axis=1), total),
        "balanced_accuracy": _defined_mean(_divide(hits, support)),
        # As sklearn's macro F1 (zero_division=0): over the classes present or predicted.
        "macro_f1": _defined_mean(_divide(2 * hits, support + predicted)),
    }
    if ordinal:
        grades = np.arange(n_classes)
        cost = (grades[:, None] - grades[None, :]) ** 2.0
        expected = _divide(support[:, :, None] * predicted[:, None, :], total[:, None, None])
        disagreement = (cost * confusion).sum(axis=(1, 2))
        result["quadratic_kappa"] = 1.0 - _divide(disagreement, (cost * expected).sum(axis=(1, 2)))
    aucs = np.stack([_weighted_auc(labels == c, probs[:, c], weights) for c in range(n_classes)], axis=1)
    result["macro_auc"] = _defined_mean(aucs)
    if n_classes == 2:
        result["sensitivity"] = _divide(hits[:, 1], support[:, 1])
        result["specificity"] = _divide(hits[:, 0], support[:, 0])
        result["ece"] = _weighted_ece((labels == 1).astype(np.float64), probs[:, 1], weights, n_bins)
    return result


def _multi_label(truth, probs, weights, thresholds, n_bins: int) -> dict[str, np.ndarray]:
    decisions = probs > thresholds[None, :]
    positive = truth.astype(bool)
    tp = weights @ (positive & decisions).astype(np.float64)
    fp = weights @ (~positive & decisions).astype(np.float64)
    fn = weights @ (positive & ~decisions).astype(np.float64)
    total = weights.sum(axis=1)
    n_labels = truth.shape[1]
    flat_weights = np.repeat(weights, n_labels, axis=1)  # row-major flattening: image i's labels together
    flat_truth, flat_probs = truth.ravel().astype(np.float64), probs.ravel()
    result = {
        "macro_auc": _defined_mean(np.stack(
            [_weighted_auc(truth[:, c], probs[:, c], weights) for c in range(n_labels)], axis=1)),
        "micro_f1": np.nan_to_num(_divide(2 * tp.sum(1), 2 * tp.sum(1) + fp.sum(1) + fn.sum(1)), nan=0.0),
        "macro_f1": _defined_mean(_divide(2 * tp, 2 * tp + fp + fn)),
        "subset_accuracy": _divide(weights @ (decisions == positive).all(axis=1).astype(np.float64), total),
        "ece": _weighted_ece(flat_truth, flat_probs, flat_weights, n_bins),
    }
    # ODIR-5K: the flattened matrices at p > 0.5, as radiology.evaluate.odir_score.
    flat_decisions = flat_probs > 0.5
    counts = {(t, d): flat_weights @ ((flat_truth == t) & (flat_decisions == d)).astype(np.float64)
              for t in (0, 1) for d in (False, True)}
    n = total * n_labels
    agree = counts[0, False] + counts[1, True]
    chance_disagreement = ((counts[0, False] + counts[0, True]) * (counts[0, True] + counts[1, True])
                           + (counts[1, False] + counts[1, True]) * (counts[0, False] + counts[1, False]))
    kappa = 1.0 - _divide(n - agree, _divide(chance_disagreement, n))
    f1 = _divide(agree, n)
    auc = _weighted_auc(flat_truth, flat_probs, flat_weights)
    result.update(odir_kappa=kappa, odir_f1=f1, odir_auc=auc, odir_score=(kappa + f1 + auc) / 3.0)
    return result


def weighted_metrics(targets, probs, weights, *, multi_label: bool, thresholds=None, ordinal: bool = False,
                     n_bins: int = 10) -> dict[str, np.ndarray]:
    """The scalar metrics of :func:`radiology.evaluate.classification_metrics` under sample weights, vectorized.

    Each row of ``weights`` gives every sample a weight; with integer weights, a row's metrics
    are exactly those of the table where sample ``i`` appears ``weights[i]`` times (a bootstrap
    replicate), computed without building it.

    Parameters
    ----------
    targets, probs, multi_label, thresholds, ordinal
        As for :func:`radiology.evaluate.classification_metrics`.
    weights : array_like, shape (B, N) or (N,)
        Non-negative sample weights, one row per replicate.
    n_bins : int, optional
        Bins of the expected calibration error.

    Returns
    -------
    dict
        Metric name to a float array of shape ``(B,)`` (``nan`` where undefined). Single-label:
        ``accuracy, balanced_accuracy, macro_f1, macro_auc``, ``quadratic_kappa`` when
        ``ordinal``, and ``sensitivity, specificity, ece`` for two classes. Multi-label:
        ``macro_auc, micro_f1, macro_f1, subset_accuracy, ece`` and ``odir_kappa, odir_f1,
        odir_auc, odir_score``.

    Examples
    --------
    >>> targets, probs = [0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> result = weighted_metrics(targets, probs, [[1, 1, 1], [2, 1, 0], [0, 0, 1]], multi_label=False)
    >>> result["accuracy"].round(3).tolist(), result["macro_auc"].tolist()
    ([0.667, 1.0, 0.0], [1.0, 1.0, nan])
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim == 1:
        weights = weights[None, :]
    if weights.ndim != 2 or not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"weights must be a (B, N) array of non-negative numbers, got shape {weights.shape}")
    if multi_label:
        if ordinal:
            raise ValueError("ordinal=True needs single-label classes, not multi_label=True")
        truth = _indicator(targets)
        probs = _scores(probs, truth.shape)
        thresholds = np.broadcast_to(np.asarray(0.5 if thresholds is None else thresholds, np.float64),
                                     (truth.shape[1],))
    else:
        truth = _labels(targets)
        probs = _scores(probs, n=len(truth))
        if truth.max() >= probs.shape[1]:
            raise ValueError(f"class index {truth.max()} but probabilities have {probs.shape[1]} columns")
    if weights.shape[1] != len(truth):
        raise ValueError(f"weights have {weights.shape[1]} columns for {len(truth)} samples")
    if multi_label:
        return _multi_label(truth, probs, weights, thresholds, n_bins)
    return _single_label(truth, probs, weights, ordinal, n_bins)


def _group_codes(groups, n: int) -> np.ndarray:
    if groups is None:
        return np.arange(n)
    groups = np.asarray(groups, dtype=object)
    if groups.shape != (n,):
        raise ValueError(f"groups must hold one id per sample ({n}), got shape {groups.shape}")
    if any(g is None or (isinstance(g, float) and np.isnan(g)) or (isinstance(g, str) and not g.strip())
           for g in groups):
        raise ValueError("groups holds empty ids; every sample needs its patient id")
    _, first, codes = np.unique(groups.astype(str), return_index=True, return_inverse=True)
    # Codes in order of first appearance, so that a table and its rows in the same order draw alike.
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[codes.reshape(-1)]


def bootstrap_intervals(targets, probs, *, multi_label: bool = False, groups=None, thresholds=None,
                        ordinal: bool = False, n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                        n_bins: int = 10) -> dict:
    """Percentile bootstrap intervals of every scalar metric, resampling groups (patients) with replacement.

    Each of ``n_boot`` replicates draws as many groups as there are, with replacement; all
    samples of a drawn group come along (a cluster bootstrap). The metrics of a replicate are
    those of :func:`weighted_metrics`; a replicate where a metric is undefined is dropped for
    that metric.

    Parameters
    ----------
    targets, probs, multi_label, thresholds, ordinal
        As for :func:`radiology.evaluate.classification_metrics`.
    groups : array_like, shape (N,), optional
        The patient (or other cluster) id of every sample. Default: every sample its own group.
    n_boot : int, optional
        Replicates, at least 1.
    level : float, optional
        Coverage of the intervals, in (0, 1).
    seed : int, optional
        Seed of the random draws: the same seed gives the same intervals.
    n_bins : int, optional
        Bins of the expected calibration error.

    Returns
    -------
    dict
        ``interval`` ({metric: ``[low, high]``, or ``None`` when no replicate defined it}),
        ``used`` ({metric: replicates where it was defined}), ``replicates`` (``n_boot``),
        ``groups`` (number of groups), ``unit`` (``"patient"`` with groups, else ``"image"``),
        ``level`` and ``seed``.

    Examples
    --------
    >>> targets = [0, 1] * 50
    >>> probs = [[0.7, 0.3], [0.4, 0.6]] * 40 + [[0.4, 0.6], [0.7, 0.3]] * 10
    >>> result = bootstrap_intervals(targets, probs, n_boot=200)
    >>> low, high = result["interval"]["accuracy"]
    >>> bool(low < 0.8 < high), result["used"]["accuracy"], result["unit"], result["groups"]
    (True, 200, 'image', 100)
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie between 0 and 1 (e.g. 0.95), got {level!r}")
    n = len(np.asarray(targets))
    codes = _group_codes(groups, n)
    k = int(codes.max()) + 1
    rng = np.random.default_rng(seed)
    width = n * (np.asarray(targets).shape[1] if multi_label and np.asarray(targets).ndim == 2 else 1)
    chunk = max(1, min(int(n_boot), _CELLS_PER_CHUNK // max(width, k, 1)))
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, int(n_boot), chunk):
        b = min(chunk, int(n_boot) - start)
        draws = rng.integers(0, k, size=(b, k))
        counts = np.bincount((draws + k * np.arange(b)[:, None]).ravel(), minlength=b * k).reshape(b, k)
        values = weighted_metrics(targets, probs, counts[:, codes], multi_label=multi_label,
                                  thresholds=thresholds, ordinal=ordinal, n_bins=n_bins)
        for name, value in values.items():
            parts.setdefault(name, []).append(value)
    tail = (1.0 - float(level)) / 2.0 * 100.0
    interval, used = {}, {}
    for name, chunks in parts.items():
        values = np.concatenate(chunks)
        values = values[~np.isnan(values)]
        used[name] = int(values.size)
        interval[name] = ([float(v) for v in np.percentile(values, [tail, 100.0 - tail])] if values.size else None)
    return {"interval": interval, "used": used, "replicates": int(n_boot), "groups": k,
            "unit": "image" if groups is None else "patient", "level": float(level), "seed": seed}
