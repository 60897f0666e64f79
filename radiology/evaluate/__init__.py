"""Evaluate (numpy, scikit-learn, matplotlib; no torch): score predictions against labels.

The flow::

    predictions table (image, SOPInstanceUID, prediction, prob_<class>..., error; as radiology.predict
        writes it), or a Kaggle submission (SOPInstanceUID, Target: decisions, no probabilities)
    + label table (image column(s), label column(s); read as training reads them)
    + optionally the bundle that made the predictions (its verified labels.json)
        -> evaluate_predictions: rows matched on image or SOPInstanceUID, label kind checked
        -> metrics.json          classification_metrics, + bootstrap_intervals (ci95, resampling patients)
           report.txt            classification_report (value [low, high])
           confusion_matrix.png  plot_confusion_matrix (single-label)
           roc.png               plot_roc (two classes: one curve and the operating point)
           calibration.png       plot_calibration (two classes or multi-label)

- :mod:`radiology.evaluate.metrics`: single metrics on numpy arrays (accuracy, balanced
  accuracy, macro F1, quadratic kappa, per-class and macro ROC AUC, the ODIR-5K score,
  F1-maximizing thresholds, the operating point of a two-class model, the expected calibration
  error); undefined values are ``nan``, never an exception.
- :mod:`radiology.evaluate.reports`: :func:`classification_metrics` (the headline numbers of
  one evaluation set as a strict-JSON dict) and :func:`classification_report` (the same as text);
  :func:`decision_metrics` and :func:`decision_report` for hard decisions without probabilities
  (a Kaggle submission: accuracy and F1, no AUC).
- :mod:`radiology.evaluate.bootstrap`: :func:`bootstrap_intervals`, percentile confidence
  intervals of every headline metric, resampling patients (all images of a drawn patient come
  along), vectorized over replicates (:func:`weighted_metrics`).
- :mod:`radiology.evaluate.plots`: :func:`plot_confusion_matrix`, :func:`plot_roc` and
  :func:`plot_calibration`, PNG files written atomically, without pyplot.
- :mod:`radiology.evaluate.scoring`: :func:`evaluate_predictions`, what ``radiology evaluate``
  runs: a predictions table (as :mod:`radiology.predict` writes it) and a label table in,
  the files above out; it refuses in one line what it cannot score truthfully.

Importing this package imports neither torch nor fastai: scoring runs where the models do
not. The fastai metric objects of the training loop are in :mod:`radiology.train.metrics`.

Examples
--------
>>> import pandas as pd
>>> predictions = pd.DataFrame({"image": ["a", "b", "c", "d"], "prediction": ["x", "y", "y", "y"],
...                             "prob_x": [0.9, 0.2, 0.4, 0.3], "prob_y": [0.1, 0.8, 0.6, 0.7]})
>>> labels = pd.DataFrame({"image": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
>>> metrics = evaluate_predictions(predictions, labels)
>>> metrics["accuracy"], metrics["recall"]
(0.75, {'x': 0.5, 'y': 1.0})
>>> accuracy([0, 1, 0, 1], [0, 1, 1, 1])
0.75
"""

from radiology.evaluate.bootstrap import bootstrap_intervals, weighted_metrics
from radiology.evaluate.metrics import (
    accuracy,
    balanced_accuracy,
    best_thresholds,
    calibration_bins,
    expected_calibration_error,
    macro_auc,
    macro_f1,
    odir_score,
    operating_point,
    quadratic_kappa,
    roc_auc_per_class,
)
from radiology.evaluate.plots import plot_calibration, plot_confusion_matrix, plot_roc
from radiology.evaluate.reports import (
    classification_metrics,
    classification_report,
    decision_metrics,
    decision_report,
)
from radiology.evaluate.scoring import evaluate_predictions

__all__ = [
    # scoring prediction files
    "evaluate_predictions",
    # single metrics
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
    # confidence intervals
    "bootstrap_intervals",
    "weighted_metrics",
    # reports
    "classification_metrics",
    "classification_report",
    "decision_metrics",
    "decision_report",
    # plots
    "plot_confusion_matrix",
    "plot_roc",
    "plot_calibration",
]
