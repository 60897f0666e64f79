"""Evaluation plots (confusion matrix, ROC curves, reliability diagram) written as PNG files.

Figures are drawn with matplotlib's object API on an Agg canvas: no display, no pyplot global
state, safe in worker processes and on headless servers. Files are written atomically
(:func:`radiology.io.atomic_write`), so a report folder never holds a half-written image.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_curve

from radiology.evaluate.metrics import (
    _calibration_pairs,
    _labels,
    _one_vs_rest,
    _predicted_labels,
    calibration_bins,
    expected_calibration_error,
    operating_point,
    roc_auc_per_class,
)
from radiology.io import atomic_write

__all__ = ["plot_confusion_matrix", "plot_roc", "plot_calibration"]


def _save(figure: Figure, path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return atomic_write(path, buffer.getvalue())


def _png_path(path) -> Path:
    path = Path(os.fspath(path))
    if path.suffix.lower() != ".png":
        raise ValueError(f"plots are written as PNG: {path} must end with .png")
    return path


def plot_confusion_matrix(targets, predictions, classes: Sequence[str], path, normalize: bool = True) -> Path:
    """Draw the confusion matrix (rows: truth, columns: prediction) and write it as a PNG.

    Parameters
    ----------
    targets : array_like of int, shape (N,)
        True class indices.
    predictions : array_like, shape (N,) or (N, C)
        Predicted class indices, or scores (argmax taken).
    classes : sequence of str
        Class names, one per class index.
    path : str or os.PathLike
        Output file, ``.png``; parent folders are created.
    normalize : bool, optional
        Colour and label each row as fractions of that true class (per-class recall on the
        diagonal), with the counts in brackets; rows without samples stay empty. Otherwise counts.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "confusion.png"
    >>> plot_confusion_matrix([0, 1, 1], [0, 1, 0], ["neg", "pos"], out).read_bytes()[:4]
    b'\\x89PNG'
    """
    path = _png_path(path)
    targets = _labels(targets)
    predictions = _predicted_labels(predictions, len(targets))
    classes = [str(name) for name in classes]
    top = int(max(targets.max(), predictions.max()))
    if top >= len(classes):
        raise ValueError(f"class index {top} but only {len(classes)} class names")
    counts = confusion_matrix(targets, predictions, labels=np.arange(len(classes)))
    totals = counts.sum(axis=1, keepdims=True)
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    else:
        values = counts.astype(np.float64)

    n = len(classes)
    size = float(np.clip(0.45 * n + 2.5, 4.0, 16.0))
    figure = Figure(figsize=(size + 1.0, size))
    axes = figure.add_subplot()
    image = axes.imshow(np.ma.masked_invalid(values), cmap="Blues", vmin=0.0,
                        vmax=1.0 if normalize else max(1.0, float(np.nanmax(values))))
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    axes.set_xticks(np.arange(n), labels=classes, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    axes.set_yticks(np.arange(n), labels=classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axes.set_title(f"confusion matrix (n={counts.sum()}, accuracy {accuracy:.3f})")
    if n <= 30:  # beyond that the numbers are unreadable; the colours still show the structure
        fontsize = 9 if n <= 10 else 6
        for i in range(n):
            for j in range(n):
                if (normalize and np.isnan(values[i, j])) or (n > 10 and counts[i, j] == 0):
                    continue  # many classes: empty cells stay blank so the errors stand out
                text = f"{values[i, j]:.2f}\n({counts[i, j]})" if normalize else f"{counts[i, j]}"
                dark = values[i, j] > (0.5 if normalize else 0.5 * np.nanmax(values))
                axes.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                          color="white" if dark else "black")
    figure.tight_layout()
    return _save(figure, path)


def plot_roc(targets, probs, classes: Sequence[str], path, multi_label: bool = False) -> Path:
    """Draw one ROC curve per class (one-vs-rest) or label, with its AUC, and write a PNG.

    Classes without both outcomes in ``targets`` have no curve and are listed as "n/a" in the legend.

    Two single-label classes get one curve, not two mirror images: the second class (column 1,
    in class order) is the positive one. The operating point the predictions imply, the argmax
    decision (``p > 0.5`` of the positive class for softmax rows, as
    :func:`radiology.models.decide` decides), is marked as a dot with its sensitivity and
    specificity (:func:`~radiology.evaluate.metrics.operating_point` gives the numbers).

    Parameters
    ----------
    targets : array_like
        Class indices ``(N,)``, or a 0/1 matrix ``(N, L)`` when ``multi_label``.
    probs : array_like, shape (N, C) or (N, L)
        Probabilities.
    classes : sequence of str
        One name per column of ``probs``.
    path : str or os.PathLike
        Output file, ``.png``.
    multi_label : bool, optional
        ``targets`` is a 0/1 label matrix (one curve per label) rather than class indices.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "roc.png"
    >>> plot_roc([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["neg", "pos"], out).stat().st_size > 0
    True
    """
    path = _png_path(path)
    truth, probs = _one_vs_rest(targets, probs, multi_label=multi_label)
    classes = [str(name) for name in classes]
    if len(classes) != probs.shape[1]:
        raise ValueError(f"{len(classes)} class names for {probs.shape[1]} probability columns")
    aucs = roc_auc_per_class(truth, probs)

    figure = Figure(figsize=(7.5, 6.0))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1)
    if not multi_label and len(classes) == 2:
        _binary_roc(axes, truth[:, 1], probs, classes, aucs[1])
        figure.tight_layout()
        return _save(figure, path)
    cmap = colormaps["tab20" if len(classes) > 10 else "tab10"]
    for column, (name, auc) in enumerate(zip(classes, aucs)):
        colour = cmap(column % cmap.N)
        if np.isnan(auc):
            axes.plot([], [], color=colour, label=f"{name} (n/a)")
            continue
        fpr, tpr, _ = roc_curve(truth[:, column], probs[:, column])
        axes.plot(fpr, tpr, color=colour, linewidth=1.5, label=f"{name} ({auc:.3f})")
    defined = aucs[~np.isnan(aucs)]
    macro = f"{defined.mean():.3f}" if defined.size else "n/a"
    axes.set_title(f"ROC, {'per label' if multi_label else 'one-vs-rest'} (macro AUC {macro}, n={len(truth)})")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.legend(loc="lower right", fontsize=7 if len(classes) > 10 else 9, ncol=2 if len(classes) > 12 else 1,
                title="AUC")
    figure.tight_layout()
    return _save(figure, path)


def _binary_roc(axes, positive, probs, classes: list[str], auc: float) -> None:
    """One ROC curve of the positive (second) class, and the argmax operating point as a dot."""
    shown = "n/a" if np.isnan(auc) else f"{auc:.3f}"
    if not np.isnan(auc):
        fpr, tpr, _ = roc_curve(positive, probs[:, 1])
        axes.plot(fpr, tpr, color="C0", linewidth=1.8, label=f"{classes[1]} vs {classes[0]} (AUC {shown})")
        point = operating_point(positive.astype(np.int64), probs)
        axes.plot([point["false_positive_rate"]], [point["sensitivity"]], "o", color="C3", markersize=7,
                  label=f"argmax decision: sensitivity {point['sensitivity']:.3f}, "
                        f"specificity {point['specificity']:.3f}")
    else:
        axes.plot([], [], color="C0", label=f"{classes[1]} vs {classes[0]} (AUC n/a: one class only)")
    axes.set_title(f"ROC, positive class {classes[1]!r} (AUC {shown}, n={len(positive)})")
    axes.set_xlabel("false positive rate (1 - specificity)")
    axes.set_ylabel("true positive rate (sensitivity)")
    axes.set_xlim(-0.01, 1.01)
    axes.set_ylim(-0.01, 1.01)
    axes.set_aspect("equal")
    axes.legend(loc="lower right", fontsize=9)


def plot_calibration(targets, probs, classes: Sequence[str], path, n_bins: int = 10) -> Path:
    """Draw a reliability diagram (positive rate against mean probability per bin) and write a PNG.

    Two classes: one curve, of the second (positive) class. Multi-label: one curve per label,
    and the expected calibration error of every (sample, label) pair pooled in the title. Below,
    how many probabilities fall in each bin. Empty bins have no point.

    Parameters
    ----------
    targets : array_like
        Class indices 0/1 ``(N,)`` of two classes, or a 0/1 matrix ``(N, L)`` (multi-label).
    probs : array_like, shape (N, 2) or (N, L)
        Probabilities.
    classes : sequence of str
        One name per column of ``probs``.
    path : str or os.PathLike
        Output file, ``.png``.
    n_bins : int, optional
        Equal-width probability bins of [0, 1].

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        Single-label targets of more than two classes (no single probability to calibrate).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "calibration.png"
    >>> plot_calibration([0, 1, 1], [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], ["neg", "pos"], out).read_bytes()[:4]
    b'\\x89PNG'
    """
    path = _png_path(path)
    _calibration_pairs(targets, probs)  # checks the shapes and the kind
    classes = [str(name) for name in classes]
    probs = np.asarray(probs, dtype=np.float64)
    if len(classes) != probs.shape[1]:
        raise ValueError(f"{len(classes)} class names for {probs.shape[1]} probability columns")
    targets = np.asarray(targets)
    if targets.ndim == 2:
        curves = [(name, targets[:, [c]], probs[:, [c]]) for c, name in enumerate(classes)]
    else:
        curves = [(classes[1], targets, probs)]
    ece = expected_calibration_error(targets, probs, n_bins)

    figure = Figure(figsize=(6.5, 7.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfectly calibrated")
    cmap = colormaps["tab20" if len(curves) > 10 else "tab10"]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for c, (name, truth, scores) in enumerate(curves):
        bins = calibration_bins(truth, scores, n_bins)
        filled = bins["count"] > 0
        colour = cmap(c % cmap.N)
        label = f"{name} (ECE {expected_calibration_error(truth, scores, n_bins):.3f})"
        top.plot(bins["mean_prob"][filled], bins["positive_rate"][filled], "o-", color=colour, markersize=4,
                 linewidth=1.2, label=label)
        bottom.stairs(bins["count"], edges, color=colour, linewidth=1.0)
    kind = "every label pooled" if targets.ndim == 2 else f"positive class {classes[1]!r}"
    top.set_title(f"reliability diagram, {kind} (ECE {ece:.3f}, {n_bins} bins)")
    top.set_ylabel("observed positive rate")
    top.set_xlim(-0.01, 1.01)
    top.set_ylim(-0.01, 1.01)
    top.legend(loc="upper left", fontsize=7 if len(curves) > 10 else 9, ncol=2 if len(curves) > 12 else 1)
    bottom.set_xlabel("predicted probability")
    bottom.set_ylabel("count")
    figure.tight_layout()
    return _save(figure, path)
