"""From probabilities to labels: the one decision rule of bundles, ensembles and prediction tables.

Single-label models predict their most probable class (argmax); multi-label models predict
every label whose probability is *above* its threshold (``p > t``, as the ODIR evaluation
decides), possibly none. :func:`decide` names the decisions, :meth:`radiology.models.Bundle.decide`
returns them as indices, and ``predict_table`` writes them in its ``prediction`` column.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["decide"]


def _chosen(probs, *, multi_label: bool, thresholds=None) -> np.ndarray:
    """``(N, C)`` bool: which classes each row decides (one per row single-label, any number multi-label)."""
    probs = np.asarray(probs)
    if probs.dtype.kind != "f":
        probs = probs.astype(np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, n_classes), got shape {probs.shape}")
    if multi_label:
        # Compared in the probabilities' precision: a float32 probability equal to its threshold is not above it.
        limits = np.asarray(0.5 if thresholds is None else thresholds, probs.dtype).reshape(-1)
        if limits.size not in (1, probs.shape[1]):
            raise ValueError(f"{limits.size} thresholds for {probs.shape[1]} classes")
        return probs > limits[None, :]
    chosen = np.zeros(probs.shape, bool)
    if probs.shape[0]:
        chosen[np.arange(probs.shape[0]), probs.argmax(axis=1)] = True
    return chosen


def decide(probs, classes: Sequence[str], *, multi_label: bool, thresholds=None) -> list[str]:
    """The label decided for each row of probabilities.

    Parameters
    ----------
    probs : array-like, shape (N, n_classes)
        Softmax (single-label) or sigmoid (multi-label) probabilities.
    classes : sequence of str
        Class (label) names, in the order of the columns.
    multi_label : bool
        False: the most probable class of each row. True: every label whose probability is
        above its threshold, joined by ``|`` (``""`` when none is).
    thresholds : float or sequence of float, optional
        Multi-label decision thresholds, one per class or one for all (default 0.5);
        ignored for single-label.

    Returns
    -------
    list of str
        One decision per row, as ``radiology predict`` writes its ``prediction`` column.

    Raises
    ------
    ValueError
        ``probs`` is not 2-D, or its columns, ``classes`` and ``thresholds`` disagree in number.

    Examples
    --------
    >>> probs = [[0.2, 0.7, 0.9], [0.6, 0.1, 0.3]]
    >>> decide(probs, ["A", "B", "C"], multi_label=False)
    ['C', 'A']
    >>> decide(probs, ["A", "B", "C"], multi_label=True)
    ['B|C', 'A']
    >>> decide(probs, ["A", "B", "C"], multi_label=True, thresholds=[0.1, 0.8, 0.95])
    ['A', 'A']
    """
    classes = [str(c) for c in classes]
    chosen = _chosen(probs, multi_label=multi_label, thresholds=thresholds)
    if chosen.shape[1] != len(classes):
        raise ValueError(f"probs has {chosen.shape[1]} columns for {len(classes)} classes")
    return ["|".join(c for c, on in zip(classes, row) if on) for row in chosen]
