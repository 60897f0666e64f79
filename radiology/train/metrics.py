"""fastai metric objects for the training loop, giving the numbers of :mod:`radiology.evaluate`.

The numpy metrics and reports moved to :mod:`radiology.evaluate` (no torch there); they are
re-exported here unchanged, so ``from radiology.train.metrics import macro_auc`` keeps working.
New code imports them from :mod:`radiology.evaluate`.
"""

from __future__ import annotations

import numpy as np

from radiology.evaluate.metrics import (
    accuracy,
    balanced_accuracy,
    best_thresholds,
    macro_auc,
    macro_f1,
    odir_score,
    quadratic_kappa,
    roc_auc_per_class,
)
from radiology.evaluate.reports import classification_metrics, classification_report

__all__ = [
    "fastai_metrics",
    # re-exported from radiology.evaluate
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "quadratic_kappa",
    "roc_auc_per_class",
    "macro_auc",
    "odir_score",
    "best_thresholds",
    "classification_metrics",
    "classification_report",
]


def _odir(targets, probs):
    return odir_score(targets, probs)["score"]


def fastai_metrics(n_classes: int, multi_label: bool) -> list:
    """fastai metric objects for ``Learner(metrics=...)``, matching :mod:`radiology.evaluate`'s numbers.

    Single-label: accuracy, balanced accuracy and macro AUC (softmax probabilities, one-vs-rest,
    classes absent from the validation set skipped instead of crashing as sklearn's would).
    Multi-label: accuracy of the per-label decisions at ``p > 0.5`` (sigmoid), macro AUC over the
    labels, and the ODIR-style flattened score.

    Parameters
    ----------
    n_classes : int
        Number of model outputs (classes or labels).
    multi_label : bool
        Metrics of sigmoid outputs with a 0/1 target matrix, instead of single-label ones.

    Returns
    -------
    list of fastai.metrics.Metric

    Examples
    --------
    >>> [m.name for m in fastai_metrics(3, multi_label=False)]
    ['accuracy', 'balanced_accuracy', 'macro_auc']
    >>> [m.name for m in fastai_metrics(8, multi_label=True)]
    ['accuracy_multi', 'macro_auc', 'odir_score']
    """
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    from fastai.learner import AvgMetric
    from fastai.metrics import AccumMetric, ActivationType, skm_to_fastai
    from fastai.metrics import accuracy as fastai_accuracy

    if multi_label:
        # fastai's accuracy_multi uses p > thresh, the same side as the ODIR script.
        return [
            AccumMetric(_accuracy_multi, activation=ActivationType.Sigmoid, flatten=False, to_np=True,
                        invert_arg=True, name="accuracy_multi"),
            AccumMetric(macro_auc, activation=ActivationType.Sigmoid, flatten=False, to_np=True,
                        invert_arg=True, name="macro_auc"),
            AccumMetric(_odir, activation=ActivationType.Sigmoid, flatten=False, to_np=True,
                        invert_arg=True, name="odir_score"),
        ]
    if n_classes < 2:
        raise ValueError("single-label classification needs n_classes >= 2")
    balanced = skm_to_fastai(balanced_accuracy)
    balanced.name = "balanced_accuracy"
    auc = AccumMetric(macro_auc, dim_argmax=-1, activation=ActivationType.Softmax, flatten=False,
                      to_np=True, invert_arg=True, name="macro_auc")
    return [AvgMetric(fastai_accuracy), balanced, auc]


def _accuracy_multi(targets, probs):
    return float(np.mean((np.asarray(probs) > 0.5) == (np.asarray(targets) > 0.5)))
