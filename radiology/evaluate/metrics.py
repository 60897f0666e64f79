"""Single classification metrics: numpy arrays in, plain floats out (scikit-learn underneath).

Conventions
-----------
- Single-label targets are integer class indices ``(N,)``; scores are ``(N, C)`` probabilities
  (or any scores whose argmax is the prediction).
- Multi-label targets are a 0/1 matrix ``(N, L)``; scores are per-label probabilities ``(N, L)``.
  A label is predicted present when its probability is *strictly greater* than the threshold,
  as in the ODIR-5K evaluation script (so :func:`best_thresholds` returns thresholds for ``p > t``).
- A metric that is undefined on the given data (an AUC for a class with no positives, or no
  negatives, in the evaluated set) is ``nan``, never an exception: validation splits of rare
  classes often miss a class. :func:`radiology.evaluate.classification_metrics` turns ``nan``
  into ``None`` so its dict is strict JSON.

The same numbers as fastai metric objects for the training loop:
:func:`radiology.train.metrics.fastai_metrics`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

__all__ = [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "quadratic_kappa",
    "roc_auc_per_class",
    "macro_auc",
    "odir_score",
    "best_thresholds",
    "operating_point",
    "calibration_bins",
    "expected_calibration_error",
]


# ----------------------------------------------------------------------------- validation helpers


def _labels(targets) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 1:
        raise ValueError(f"single-label targets must be 1-D class indices, got shape {targets.shape}")
    if targets.size == 0:
        raise ValueError("targets are empty")
    if targets.dtype.kind == "f":
        if not np.all(np.equal(np.mod(targets, 1), 0)):
            raise ValueError("single-label targets must be integer class indices")
        targets = targets.astype(np.int64)
    elif targets.dtype.kind not in "iub":
        raise ValueError(f"single-label targets must be integer class indices, got dtype {targets.dtype}")
    if targets.min() < 0:
        raise ValueError("single-label targets hold negative class indices (unlabeled samples?); drop them first")
    return targets.astype(np.int64)


def _predicted_labels(predictions, n: int) -> np.ndarray:
    """Class indices from ``(N,)`` indices or the argmax of ``(N, C)`` scores."""
    predictions = np.asarray(predictions)
    if predictions.ndim == 2:
        predictions = predictions.argmax(axis=1)
    if predictions.ndim != 1 or predictions.shape[0] != n:
        raise ValueError(f"predictions must be ({n},) class indices or ({n}, C) scores, got shape {predictions.shape}")
    return predictions.astype(np.int64)


def _indicator(targets) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim != 2:
        raise ValueError(f"multi-label targets must be an (N, L) 0/1 matrix, got shape {targets.shape}")
    if targets.size == 0:
        raise ValueError("targets are empty")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("multi-label targets must hold only 0 and 1")
    return targets.astype(np.int64)


def _scores(probs, shape: tuple[int, ...] | None = None, n: int | None = None) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be an (N, C) matrix, got shape {probs.shape}")
    if shape is not None and probs.shape != shape:
        raise ValueError(f"probabilities have shape {probs.shape}, expected {shape}")
    if n is not None and probs.shape[0] != n:
        raise ValueError(f"probabilities have {probs.shape[0]} rows for {n} targets")
    if not np.isfinite(probs).all():
        raise ValueError("probabilities hold NaN or infinite values")
    return probs


def _label_f1(truth: np.ndarray, decisions: np.ndarray) -> np.ndarray:
    """Per-label F1 of 0/1 matrices; ``nan`` for a label neither present nor predicted (undefined, not 0)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return np.asarray(skm.f1_score(truth, decisions, average=None, zero_division=np.nan), np.float64)


def _defined_mean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _nan_to_none(value):
    if isinstance(value, dict):
        return {key: _nan_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(item) for item in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


# ----------------------------------------------------------------------------- single metrics


def accuracy(targets, predictions) -> float:
    """Fraction of samples whose predicted class is the target class.

    Parameters
    ----------
    targets : array_like of int, shape (N,)
        Class indices.
    predictions : array_like, shape (N,) or (N, C)
        Predicted class indices, or scores whose argmax is the prediction.

    Returns
    -------
    float

    Examples
    --------
    >>> accuracy([0, 1, 2, 2], [0, 1, 1, 2])
    0.75
    """
    targets = _labels(targets)
    return float(skm.accuracy_score(targets, _predicted_labels(predictions, len(targets))))


def balanced_accuracy(targets, predictions) -> float:
    """Mean per-class recall over the classes present in ``targets``.

    Robust to class imbalance: a model that always answers the majority class scores ``1 / C``.

    Parameters
    ----------
    targets : array_like of int, shape (N,)
        True class indices.
    predictions : array_like, shape (N,) or (N, C)
        Class indices, or scores (argmax taken).

    Returns
    -------
    float

    Examples
    --------
    >>> balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0])
    0.5
    """
    targets = _labels(targets)
    predictions = _predicted_labels(predictions, len(targets))
    with warnings.catch_warnings():
        # sklearn warns when a predicted class never occurs in targets; that is not an error here.
        warnings.simplefilter("ignore", UserWarning)
        return float(skm.balanced_accuracy_score(targets, predictions))


def macro_f1(targets, predictions, *, threshold: float = 0.5) -> float:
    """Unweighted mean of the per-class (or per-label) F1 scores.

    Parameters
    ----------
    targets : array_like, shape (N,) or (N, L)
        Class indices (single-label) or a 0/1 matrix (multi-label).
    predictions : array_like
        Single-label: class indices ``(N,)`` or scores ``(N, C)`` (argmax taken).
        Multi-label: probabilities or 0/1 decisions ``(N, L)``; a label is present when ``p > threshold``.
    threshold : float, optional
        Multi-label decision threshold (ignored for single-label).

    Returns
    -------
    float
        Classes that are neither present nor predicted are left out of the mean; a class that is
        present but never predicted (or the reverse) counts as F1 0. ``nan`` when no class is
        present or predicted.

    Examples
    --------
    >>> round(macro_f1([0, 0, 1, 1], [0, 1, 1, 1]), 4)
    0.7333
    >>> macro_f1([[1, 0], [0, 1]], [[0.9, 0.2], [0.3, 0.7]])
    1.0
    >>> macro_f1([[1, 0], [1, 0]], [[0.9, 0.2], [0.8, 0.1]])  # the second label: neither present nor predicted
    1.0
    """
    targets = np.asarray(targets)
    if targets.ndim == 2:
        truth = _indicator(targets)
        decisions = (_scores(predictions, truth.shape) > threshold).astype(np.int64)
        return _defined_mean(_label_f1(truth, decisions))
    truth = _labels(targets)
    decisions = _predicted_labels(predictions, len(truth))
    return float(skm.f1_score(truth, decisions, average="macro", zero_division=0.0))


def quadratic_kappa(targets, predictions, n_classes: int | None = None) -> float:
    """Cohen's kappa with quadratic weights, for ordinal classes (e.g. Kellgren–Lawrence grades).

    Disagreements cost the squared distance between class indices, normalized by ``(C - 1)^2``.

    Parameters
    ----------
    targets : array_like of int, shape (N,)
        True grades, as class indices.
    predictions : array_like, shape (N,) or (N, C)
        Class indices, or scores (argmax taken; their column count then sets ``n_classes``).
    n_classes : int, optional
        Number of ordinal classes. Needed for the right distances when the largest grades
        occur in neither array; by default the largest index seen plus one.

    Returns
    -------
    float
        1 for perfect agreement, 0 for chance; ``nan`` when undefined (a single class everywhere).

    Examples
    --------
    >>> round(quadratic_kappa([0, 1, 2, 2], [0, 2, 2, 1]), 4)
    0.6364
    """
    targets = _labels(targets)
    scores = np.asarray(predictions)
    if n_classes is None and scores.ndim == 2:
        n_classes = scores.shape[1]
    predictions = _predicted_labels(predictions, len(targets))
    top = int(max(targets.max(), predictions.max())) + 1
    if n_classes is None:
        n_classes = top
    elif n_classes < top:
        raise ValueError(f"n_classes={n_classes} but class index {top - 1} occurs")
    # Passing every label keeps the quadratic distances right when a middle grade is absent.
    with warnings.catch_warnings():
        # Undefined kappa (one class everywhere) is documented as nan; no warning needed.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(skm.cohen_kappa_score(targets, predictions, labels=np.arange(n_classes), weights="quadratic"))


def _one_vs_rest(targets, probs, *, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """0/1 truth ``(N, C)`` and checked scores ``(N, C)``: labels as given, classes one-vs-rest."""
    if multi_label:
        truth = _indicator(targets)
        return truth, _scores(probs, truth.shape)
    labels = _labels(targets)
    probs = _scores(probs, n=len(labels))
    if labels.max() >= probs.shape[1]:
        raise ValueError(f"class index {labels.max()} but probabilities have {probs.shape[1]} columns")
    truth = (labels[:, None] == np.arange(probs.shape[1])[None, :]).astype(np.int64)
    return truth, probs


def roc_auc_per_class(targets, probs) -> np.ndarray:
    """ROC AUC of every class (one-vs-rest) or label; ``nan`` where it is undefined.

    Parameters
    ----------
    targets : array_like, shape (N,) or (N, L)
        Class indices (single-label: class ``c`` is scored one-vs-rest by column ``c``) or a 0/1
        matrix (multi-label: each label on its own).
    probs : array_like, shape (N, C) or (N, L)
        Scores; only their order matters.

    Returns
    -------
    numpy.ndarray of float64, shape (C,) or (L,)
        ``nan`` for a class whose targets are all positive or all negative.

    Examples
    --------
    >>> roc_auc_per_class([0, 1, 1, 0], [[0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.6, 0.4]])
    array([1., 1.])
    >>> roc_auc_per_class([[1, 0], [0, 0], [1, 0]], [[0.9, 0.5], [0.2, 0.5], [0.7, 0.1]])
    array([ 1., nan])
    """
    truth, probs = _one_vs_rest(targets, probs, multi_label=np.asarray(targets).ndim == 2)
    result = np.full(truth.shape[1], np.nan)
    for column in range(truth.shape[1]):
        positives = truth[:, column].sum()
        if 0 < positives < len(truth):
            result[column] = skm.roc_auc_score(truth[:, column], probs[:, column])
    return result


def macro_auc(targets, probs) -> float:
    """Unweighted mean of :func:`roc_auc_per_class` over the classes where it is defined.

    Parameters
    ----------
    targets : array_like, shape (N,) or (N, L)
        Class indices or a 0/1 label matrix, as for :func:`roc_auc_per_class`.
    probs : array_like, shape (N, C) or (N, L)
        Scores, one column per class or label.

    Returns
    -------
    float
        ``nan`` when no class has both outcomes.

    Examples
    --------
    >>> macro_auc([[1, 0], [0, 0], [1, 0]], [[0.9, 0.5], [0.2, 0.5], [0.7, 0.1]])
    1.0
    """
    per_class = roc_auc_per_class(targets, probs)
    defined = per_class[~np.isnan(per_class)]
    return float(defined.mean()) if defined.size else float("nan")


def odir_score(truth, probs, threshold: float = 0.5) -> dict[str, float]:
    """The ODIR-5K challenge score, computed as the challenge's evaluation script does.

    Both ``(N, 8)`` matrices are flattened into one vector of ``8 N`` binary decisions; then
    Cohen's kappa and micro F1 (on a flattened 0/1 vector, equal to accuracy) of ``probs > threshold``,
    and the ROC AUC of the flattened probabilities. The score is the mean of the three.

    Parameters
    ----------
    truth : array_like, shape (N, L)
        0/1 labels (ODIR: N, D, G, C, A, H, M, O per patient).
    probs : array_like, shape (N, L)
        Probabilities.
    threshold : float, optional
        Decision threshold (the challenge uses 0.5, strictly greater).

    Returns
    -------
    dict
        ``{"kappa", "f1", "auc", "score"}`` as floats (``auc`` and ``score`` ``nan`` when the
        flattened truth has a single value).

    Examples
    --------
    >>> result = odir_score([[1, 0], [0, 1]], [[0.9, 0.2], [0.4, 0.6]])
    >>> result["kappa"], result["f1"], result["auc"], result["score"]
    (1.0, 1.0, 1.0, 1.0)
    """
    truth = _indicator(truth)
    probs = _scores(probs, truth.shape)
    flat_truth = truth.ravel()
    flat_probs = probs.ravel()
    decisions = (flat_probs > threshold).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        kappa = float(skm.cohen_kappa_score(flat_truth, decisions))
    f1 = float(skm.f1_score(flat_truth, decisions, average="micro"))
    both = 0 < flat_truth.sum() < flat_truth.size
    auc = float(skm.roc_auc_score(flat_truth, flat_probs)) if both else float("nan")
    return {"kappa": kappa, "f1": f1, "auc": auc, "score": (kappa + f1 + auc) / 3.0}


def best_thresholds(targets, probs, *, default: float = 0.5) -> np.ndarray:
    """Per-label thresholds that maximize F1 on a (validation) set, for ``p > threshold`` decisions.

    Each threshold lies halfway between two consecutive distinct scores, so that nearby scores on
    new data fall on the same side as on the tuning set. Among equally good thresholds the one
    closest to ``default`` is taken.

    Parameters
    ----------
    targets : array_like, shape (N, L)
        0/1 labels.
    probs : array_like, shape (N, L)
        Probabilities.
    default : float, optional
        Returned for a label without positives (its F1 is 0 at every threshold).

    Returns
    -------
    numpy.ndarray of float64, shape (L,)

    Examples
    --------
    >>> best_thresholds([[1], [1], [0], [0]], [[0.9], [0.3], [0.2], [0.1]])
    array([0.25])
    """
    truth = _indicator(targets)
    probs = _scores(probs, truth.shape)
    thresholds = np.full(truth.shape[1], float(default))
    for column in range(truth.shape[1]):
        positives = truth[:, column].sum()
        if positives == 0:
            continue
        order = np.argsort(-probs[:, column], kind="stable")
        scores = probs[order, column]
        hits = np.cumsum(truth[order, column])
        # Cut after position k (predict the k + 1 highest as positive) only where the score drops:
        # ties must fall on the same side of any threshold.
        ends = np.flatnonzero(np.diff(scores) < 0)
        lowest = scores[-1]
        cut_values = np.concatenate([(scores[ends] + scores[ends + 1]) / 2.0, [lowest / 2.0 if lowest > 0 else -0.5]])
        cut_positions = np.concatenate([ends, [len(scores) - 1]])
        true_positives = hits[cut_positions]
        predicted = cut_positions + 1
        f1 = 2.0 * true_positives / (positives + predicted)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        thresholds[column] = cut_values[best[np.argmin(np.abs(cut_values[best] - default))]]
    return thresholds


def operating_point(targets, probs) -> dict[str, float]:
    """Sensitivity and specificity of a two-class model at the decision its predictions make.

    The positive class is the second one (column 1 of ``probs``, index 1 in ``targets``), as in
    :func:`~radiology.evaluate.plot_roc`. The decision is the argmax of each row, the rule
    :func:`radiology.models.decide` applies to single-label models: positive when
    ``probs[:, 1] > probs[:, 0]``, i.e. ``p > 0.5`` for softmax rows (a tie is negative).

    Parameters
    ----------
    targets : array_like of int, shape (N,)
        Class indices, 0 (negative) or 1 (positive).
    probs : array_like, shape (N, 2)
        Probabilities (or scores) of the two classes.

    Returns
    -------
    dict
        ``sensitivity`` (true positive rate), ``specificity`` (true negative rate) and
        ``false_positive_rate`` (``1 - specificity``), floats; ``nan`` when the targets hold no
        positive (sensitivity) or no negative (specificity).

    Examples
    --------
    >>> point = operating_point([0, 0, 0, 1, 1], [[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.6, 0.4]])
    >>> point["sensitivity"], round(point["specificity"], 4)
    (0.5, 0.6667)
    """
    labels = _labels(targets)
    probs = _scores(probs, n=len(labels))
    if probs.shape[1] != 2:
        raise ValueError(f"probs must have 2 columns (negative, positive), got {probs.shape[1]}")
    if labels.max() > 1:
        raise ValueError(f"targets must be 0 or 1, got class index {labels.max()}")
    decided = probs.argmax(axis=1) == 1
    positive = labels == 1
    sensitivity = float(decided[positive].mean()) if positive.any() else float("nan")
    specificity = float((~decided[~positive]).mean()) if (~positive).any() else float("nan")
    return {"sensitivity": sensitivity, "specificity": specificity, "false_positive_rate": 1.0 - specificity}


def _bin_index(probs: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bins of [0, 1]: ``[0, 1/n), [1/n, 2/n), ..., [(n-1)/n, 1]``."""
    return np.minimum((np.clip(probs, 0.0, 1.0) * n_bins).astype(np.int64), n_bins - 1)


def _check_bins(n_bins) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def _calibration_pairs(targets, probs) -> tuple[np.ndarray, np.ndarray]:
    """0/1 outcomes and their probabilities, flat: the positive class of two, or every label."""
    targets = np.asarray(targets)
    if targets.ndim == 2:
        truth = _indicator(targets)
        return truth.ravel().astype(np.float64), _scores(probs, truth.shape).ravel()
    labels = _labels(targets)
    probs = _scores(probs, n=len(labels))
    if probs.shape[1] != 2 or labels.max() > 1:
        raise ValueError("calibration needs two classes (targets 0/1, probs (N, 2)) or a multi-label (N, L) matrix")
    return (labels == 1).astype(np.float64), probs[:, 1]


def calibration_bins(targets, probs, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Reliability-diagram bins: per equal-width probability bin, its count, mean probability and positive rate.

    Parameters
    ----------
    targets, probs
        As for :func:`expected_calibration_error`.
    n_bins : int, optional
        Number of equal-width bins of ``[0, 1]``.

    Returns
    -------
    dict
        ``count`` (int), ``mean_prob`` and ``positive_rate`` (``nan`` for an empty bin), arrays of
        length ``n_bins``.

    Examples
    --------
    >>> bins = calibration_bins([0, 1, 1], [[0.8, 0.2], [0.2, 0.8], [0.1, 0.9]], n_bins=2)
    >>> bins["count"].tolist(), bins["mean_prob"].tolist(), bins["positive_rate"].tolist()
    ([1, 2], [0.2, 0.85], [0.0, 1.0])
    """
    n_bins = _check_bins(n_bins)
    truth, flat = _calibration_pairs(targets, probs)
    index = _bin_index(flat, n_bins)
    count = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(index, weights=flat, minlength=n_bins) / count
        positive_rate = np.bincount(index, weights=truth, minlength=n_bins) / count
    return {"count": count, "mean_prob": mean_prob, "positive_rate": positive_rate}


def expected_calibration_error(targets, probs, n_bins: int = 10) -> float:
    """Expected calibration error: the count-weighted mean gap between probability and positive rate per bin.

    ``sum_b (n_b / N) * |mean probability_b - positive rate_b|`` over ``n_bins`` equal-width bins of
    [0, 1] (a probability of exactly 1 falls in the last bin).

    Parameters
    ----------
    targets : array_like
        Two classes: class indices ``(N,)`` of 0 and 1 (the probability of class 1 is scored).
        Multi-label: a 0/1 matrix ``(N, L)``; every (sample, label) pair is pooled.
    probs : array_like, shape (N, 2) or (N, L)
        Probabilities, one column per class (two classes) or per label.
    n_bins : int, optional
        Number of equal-width bins of ``[0, 1]``.

    Returns
    -------
    float
        0 for perfectly calibrated probabilities; at most 1.

    Examples
    --------
    >>> expected_calibration_error([0, 1, 0, 1], [[0.1, 0.9]] * 4)  # 0.9 said, 0.5 observed
    0.4
    """
    n_bins = _check_bins(n_bins)
    truth, flat = _calibration_pairs(targets, probs)
    index = _bin_index(flat, n_bins)
    gap = np.bincount(index, weights=flat - truth, minlength=n_bins)
    return float(round(np.abs(gap).sum() / len(flat), 12))
