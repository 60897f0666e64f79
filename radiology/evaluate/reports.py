"""Classification reports: the headline metrics of one evaluation set as a JSON-ready dict, or as text.

Built from :mod:`radiology.evaluate.metrics`; undefined values (``nan`` there) are ``None`` here,
so the dict is strict JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

from radiology.evaluate.metrics import (
    _defined_mean,
    _indicator,
    _label_f1,
    _labels,
    _nan_to_none,
    _scores,
    accuracy,
    balanced_accuracy,
    expected_calibration_error,
    macro_auc,
    macro_f1,
    odir_score,
    operating_point,
    quadratic_kappa,
    roc_auc_per_class,
)

__all__ = ["classification_metrics", "classification_report", "decision_metrics", "decision_report"]


def _check_classes(classes: Sequence[str], width: int) -> list[str]:
    classes = [str(name) for name in classes]
    if len(classes) != width:
        raise ValueError(f"{len(classes)} class names for {width} probability columns")
    return classes


def classification_metrics(
    targets, probs, classes: Sequence[str], *, multi_label: bool, thresholds=None, ordinal: bool = False
) -> dict:
    """The headline metrics of a classifier on one evaluation set, as a JSON-ready dict.

    Parameters
    ----------
    targets : array_like
        Single-label: class indices ``(N,)``. Multi-label: 0/1 matrix ``(N, L)``.
    probs : array_like, shape (N, C) or (N, L)
        Probabilities (softmax for single-label, sigmoid for multi-label).
    classes : sequence of str
        Class (label) names, one per column.
    multi_label : bool
        Sigmoid outputs with a 0/1 target matrix, instead of one class per sample.
    thresholds : float or array_like of shape (L,), optional
        Multi-label decision thresholds (``p > t``); default 0.5 for every label, e.g. from
        :func:`~radiology.evaluate.metrics.best_thresholds` on the validation split. The
        ODIR-style numbers always use 0.5, as the challenge does.
    ordinal : bool, optional
        The classes are ordered grades (e.g. Kellgren–Lawrence), in class-index order: only then
        is ``quadratic_kappa`` computed (single-label only; for unordered classes it is
        meaningless and left out).

    Returns
    -------
    dict
        Single-label: ``n, accuracy, balanced_accuracy, macro_f1, macro_auc`` (and
        ``quadratic_kappa`` when ``ordinal``), per-class ``auc``, ``recall``, ``support`` (dicts
        keyed by class name) and ``confusion_matrix`` (rows = truth, columns = prediction, in
        class order, nested lists of int). Two classes add ``positive_class`` (the second class),
        ``sensitivity`` and ``specificity`` at the argmax decision
        (:func:`~radiology.evaluate.metrics.operating_point`) and ``ece``
        (:func:`~radiology.evaluate.metrics.expected_calibration_error` of the positive class).
        Multi-label: ``n, macro_auc, micro_f1, macro_f1, subset_accuracy, ece, thresholds``,
        per-label ``auc``, ``f1``, ``support``, and ``odir`` (``kappa, f1, auc, score`` of the
        flattened matrices). Undefined values are ``None``: the F1 of a label neither present
        nor predicted is, and ``macro_f1`` is the mean over the labels where F1 is defined, as
        for ``macro_auc``.

    Examples
    --------
    >>> result = classification_metrics([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]],
    ...                                 ["neg", "pos"], multi_label=False)
    >>> round(result["accuracy"], 3), result["confusion_matrix"]
    (0.667, [[1, 0], [1, 1]])
    """
    if ordinal and multi_label:
        raise ValueError("ordinal=True needs single-label classes, not multi_label=True")
    if multi_label:
        truth = _indicator(targets)
        probs = _scores(probs, truth.shape)
        classes = _check_classes(classes, truth.shape[1])
        if thresholds is None:
            thresholds = 0.5
        thresholds = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (truth.shape[1],))
        decisions = (probs > thresholds[None, :]).astype(np.int64)
        auc = roc_auc_per_class(truth, probs)
        f1 = _label_f1(truth, decisions)
        result = {
            "n": int(len(truth)),
            "macro_auc": macro_auc(truth, probs),
            "micro_f1": float(skm.f1_score(truth, decisions, average="micro", zero_division=0.0)),
            "macro_f1": _defined_mean(f1),
            "subset_accuracy": float(np.mean((decisions == truth).all(axis=1))),
            "ece": expected_calibration_error(truth, probs),
            "thresholds": [float(t) for t in thresholds],
            "auc": {name: float(v) for name, v in zip(classes, auc)},
            "f1": {name: float(v) for name, v in zip(classes, f1)},
            "support": {name: int(v) for name, v in zip(classes, truth.sum(axis=0))},
            "odir": odir_score(truth, probs),
        }
        return _nan_to_none(result)

    labels = _labels(targets)
    probs = _scores(probs, n=len(labels))
    classes = _check_classes(classes, probs.shape[1])
    if labels.max() >= len(classes):
        raise ValueError(f"class index {labels.max()} but only {len(classes)} classes")
    predictions = probs.argmax(axis=1)
    everyone = np.arange(len(classes))
    confusion = skm.confusion_matrix(labels, predictions, labels=everyone)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    auc = roc_auc_per_class(labels, probs)
    result = {
        "n": int(len(labels)),
        "accuracy": accuracy(labels, predictions),
        "balanced_accuracy": balanced_accuracy(labels, predictions),
        "macro_f1": macro_f1(labels, predictions),
        "macro_auc": macro_auc(labels, probs),
        "auc": {name: float(v) for name, v in zip(classes, auc)},
        "recall": {name: float(v) for name, v in zip(classes, recall)},
        "support": {name: int(v) for name, v in zip(classes, support)},
        "confusion_matrix": confusion.astype(int).tolist(),
    }
    if ordinal:
        result["quadratic_kappa"] = quadratic_kappa(labels, predictions, len(classes))
    if len(classes) == 2:
        point = operating_point(labels, probs)
        result.update(positive_class=classes[1], sensitivity=point["sensitivity"],
                      specificity=point["specificity"], ece=expected_calibration_error(labels, probs))
    return _nan_to_none(result)


#: The scalar metrics of :func:`classification_metrics`, in report order (those present are shown).
SINGLE_LABEL_HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "quadratic_kappa", "macro_auc",
                         "sensitivity", "specificity", "ece")
MULTI_LABEL_HEADLINE = ("macro_auc", "micro_f1", "macro_f1", "subset_accuracy", "ece")


def _fmt(value) -> str:
    return "   n/a" if value is None else f"{value:6.3f}"


def _with_interval(value, interval) -> str:
    text = _fmt(value).strip()
    if interval is None or value is None:
        return text
    low, high = ("n/a" if bound is None else f"{bound:.3f}" for bound in interval)
    return f"{text} [{low}, {high}]"


def classification_report(targets, probs, classes: Sequence[str], *, multi_label: bool, thresholds=None,
                          ordinal: bool = False, intervals: dict | None = None) -> str:
    """:func:`classification_metrics` as readable text: headline numbers, then one row per class.

    Parameters
    ----------
    targets, probs, classes, multi_label, thresholds, ordinal
        As for :func:`classification_metrics`.
    intervals : dict, optional
        Confidence intervals ``{metric: [low, high]}`` (e.g. the ``interval`` of
        :func:`radiology.evaluate.bootstrap.bootstrap_intervals`); a headline metric with one is
        shown as ``value [low, high]``. ODIR entries are keyed ``odir_kappa``, ``odir_score``...

    Returns
    -------
    str
        The confusion matrix (single-label) is labelled by class name on both axes, in class order.

    Examples
    --------
    >>> print(classification_report([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]],
    ...                             ["neg", "pos"], multi_label=False,
    ...                             intervals={"accuracy": [0.333, 1.0]}))  # doctest: +ELLIPSIS
    samples            3
    accuracy           0.667 [0.333, 1.000]
    ...
    confusion matrix (rows: truth, columns: prediction)
    true \\ predicted  neg  pos
    neg                 1    0
    pos                 1    1
    """
    result = classification_metrics(targets, probs, classes, multi_label=multi_label, thresholds=thresholds,
                                    ordinal=ordinal)
    intervals = intervals or {}
    names = list(result["auc"])
    width = max(8, *(len(name) for name in names))
    lines = [f"{'samples':<18} {result['n']}"]
    if multi_label:
        lines += [f"{key:<18} {_with_interval(result[key], intervals.get(key))}" for key in MULTI_LABEL_HEADLINE]
        odir = result["odir"]
        parts = [f"{key} {_with_interval(odir[key], intervals.get('odir_' + key))}"
                 for key in ("kappa", "f1", "auc", "score")]
        lines.append("odir (p > 0.5)     " + "  ".join(parts))
        lines.append("")
        lines.append(f"{'label':<{width}}  support     auc      f1  threshold")
        for name, threshold in zip(names, result["thresholds"]):
            lines.append(
                f"{name:<{width}}  {result['support'][name]:7d}  {_fmt(result['auc'][name])}  "
                f"{_fmt(result['f1'][name])}  {threshold:9.3f}"
            )
    else:
        lines += [f"{key:<18} {_with_interval(result[key], intervals.get(key))}"
                  for key in SINGLE_LABEL_HEADLINE if key in result]
        if "positive_class" in result:
            lines.append(f"{'positive class':<18} {result['positive_class']} (sensitivity, specificity at the "
                         f"argmax decision)")
        lines.append("")
        lines.append(f"{'class':<{width}}  support     auc  recall")
        for name in names:
            lines.append(
                f"{name:<{width}}  {result['support'][name]:7d}  {_fmt(result['auc'][name])}  "
                f"{_fmt(result['recall'][name])}"
            )
        lines += _confusion_lines(result["confusion_matrix"], names, width)
    return "\n".join(lines)


def _confusion_lines(matrix: list[list[int]], names: list[str], width: int) -> list[str]:
    """A confusion matrix as text, after a blank line and a title."""
    lines = ["", "confusion matrix (rows: truth, columns: prediction)"]
    # Both axes by class name (never by index: with classes "2", "5", "8" an index 1 would read as class "1").
    corner = "true \\ predicted"
    width = max(width, len(corner))
    longest = max(len(str(max(max(row) for row in matrix))), *(len(n) for n in names))
    cell = max(5, longest + 2)
    lines.append(f"{corner:<{width}}" + "".join(f"{name:>{cell}}" for name in names))
    for name, row in zip(names, matrix):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}d}" for v in row))
    return lines


#: The metrics of :func:`decision_metrics` that need probabilities, left out there.
_PROBABILITY_METRICS = ("macro_auc", "auc", "ece", "odir", "thresholds")
#: Why they are left out, as :func:`decision_report` and ``radiology evaluate`` say it.
DECISIONS_ONLY = "decisions only, no probabilities: AUC, calibration and ROC are not computed"


def _decisions(targets, decisions, n_classes: int, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Checked targets and decisions, and the decisions as 0/1 scores (what :func:`classification_metrics` takes)."""
    if multi_label:
        truth = _indicator(targets)
        chosen = _indicator(decisions)
        if chosen.shape != truth.shape:
            raise ValueError(f"decisions have shape {chosen.shape}, targets {truth.shape}")
        if truth.shape[1] != n_classes:
            raise ValueError(f"{n_classes} class names for {truth.shape[1]} label columns")
        return truth, chosen.astype(np.float64)
    labels = _labels(targets)
    chosen = np.asarray(decisions)
    if chosen.ndim != 1 or chosen.shape[0] != len(labels):
        raise ValueError(f"decisions must be ({len(labels)},) class indices, got shape {chosen.shape}")
    chosen = _labels(chosen)
    if max(labels.max(), chosen.max()) >= n_classes:
        raise ValueError(f"class index {max(labels.max(), chosen.max())} but only {n_classes} classes")
    return labels, np.eye(n_classes)[chosen]


def decision_metrics(targets, decisions, classes: Sequence[str], *, multi_label: bool, ordinal: bool = False) -> dict:
    """The headline metrics of hard decisions (a Kaggle submission: no probabilities), as a JSON-ready dict.

    What :func:`classification_metrics` gives, less what needs probabilities (AUC,
    calibration, the ODIR score, thresholds), plus the per-class F1 of single-label decisions.

    Parameters
    ----------
    targets : array_like
        Single-label: class indices ``(N,)``. Multi-label: 0/1 matrix ``(N, L)``.
    decisions : array_like
        What was predicted, in the form of ``targets``: class indices ``(N,)`` or a 0/1
        matrix ``(N, L)``.
    classes : sequence of str
        Class (label) names, one per class index (column).
    multi_label : bool
        0/1 matrices instead of one class per sample.
    ordinal : bool, optional
        The classes are ordered grades: add ``quadratic_kappa`` (single-label only).

    Returns
    -------
    dict
        Single-label: ``n, accuracy, balanced_accuracy, macro_f1`` (and ``quadratic_kappa``
        when ``ordinal``), per-class ``recall``, ``f1`` and ``support``, ``confusion_matrix``;
        two classes add ``positive_class``, ``sensitivity`` and ``specificity``. Multi-label:
        ``n, micro_f1, macro_f1, subset_accuracy``, per-label ``f1`` and ``support``. Both:
        ``probabilities: False``. Undefined values are ``None`` (the F1 of a class neither
        present nor predicted).

    Raises
    ------
    ValueError
        Targets and decisions of different shapes, negative or out-of-range class indices,
        cells other than 0/1, or as many class names as classes.

    Examples
    --------
    >>> result = decision_metrics([0, 1, 1, 2], [0, 1, 2, 2], ["3", "11", "13"], multi_label=False)
    >>> result["accuracy"], result["f1"], "macro_auc" in result
    (0.75, {'3': 1.0, '11': 0.6666666666666666, '13': 0.6666666666666666}, False)
    >>> decision_metrics([[1, 0], [1, 1]], [[1, 0], [1, 0]], ["3", "11"], multi_label=True)["subset_accuracy"]
    0.5
    """
    if ordinal and multi_label:
        raise ValueError("ordinal=True needs single-label classes, not multi_label=True")
    classes = [str(name) for name in classes]
    truth, scores = _decisions(targets, decisions, len(classes), multi_label)
    result = classification_metrics(truth, scores, classes, multi_label=multi_label, ordinal=ordinal)
    for key in _PROBABILITY_METRICS:
        result.pop(key, None)
    if not multi_label:
        f1 = _label_f1(np.eye(len(classes), dtype=np.int64)[truth], scores.astype(np.int64))
        result["f1"] = _nan_to_none({name: float(v) for name, v in zip(classes, f1)})
    result["probabilities"] = False
    return result


def decision_report(targets, decisions, classes: Sequence[str], *, multi_label: bool, ordinal: bool = False,
                    intervals: dict | None = None) -> str:
    """:func:`decision_metrics` as readable text: headline numbers, what is not computed, one row per class.

    Parameters
    ----------
    targets, decisions, classes, multi_label, ordinal
        As for :func:`decision_metrics`.
    intervals : dict, optional
        Confidence intervals ``{metric: [low, high]}``, shown as ``value [low, high]``.

    Returns
    -------
    str

    Examples
    --------
    >>> print(decision_report([0, 1, 1], [0, 1, 0], ["3", "11"], multi_label=False))  # doctest: +ELLIPSIS
    samples            3
    accuracy           0.667
    ...
    scores             decisions only, no probabilities: AUC, calibration and ROC are not computed
    ...
    """
    result = decision_metrics(targets, decisions, classes, multi_label=multi_label, ordinal=ordinal)
    intervals = intervals or {}
    names = list(result["support"])
    width = max(8, *(len(name) for name in names))
    headline = MULTI_LABEL_HEADLINE if multi_label else SINGLE_LABEL_HEADLINE
    lines = [f"{'samples':<18} {result['n']}"]
    lines += [f"{key:<18} {_with_interval(result[key], intervals.get(key))}" for key in headline if key in result]
    if "positive_class" in result:
        lines.append(f"{'positive class':<18} {result['positive_class']} (sensitivity, specificity of the decisions)")
    lines += [f"{'scores':<18} {DECISIONS_ONLY}", ""]
    if multi_label:
        lines.append(f"{'label':<{width}}  support      f1")
        for name in names:
            lines.append(f"{name:<{width}}  {result['support'][name]:7d}  {_fmt(result['f1'][name])}")
        return "\n".join(lines)
    lines.append(f"{'class':<{width}}  support  recall      f1")
    for name in names:
        lines.append(f"{name:<{width}}  {result['support'][name]:7d}  {_fmt(result['recall'][name])}  "
                     f"{_fmt(result['f1'][name])}")
    lines += _confusion_lines(result["confusion_matrix"], names, width)
    return "\n".join(lines)
