"""Train (fastai): the recipe — learner factory, head-first fine-tuning, losses, checkpoints, callbacks.

Only training needs fastai. Serving lives below it and imports none of it: prediction
(bundles, ensembles, predict tables, Kaggle files) in :mod:`radiology.predict`, scoring
(metrics, reports, plots, ``evaluate``) in :mod:`radiology.evaluate`. Their names are still
reachable here for one release, with a ``DeprecationWarning`` naming the new home.

This subpackage imports torch; ``import radiology`` does not.
"""

import importlib
import warnings

from radiology.pipeline import default_pipeline
from radiology.train.config import TrainConfig
from radiology.train.learner import check_model_settings, fine_tune, fit_head, make_learner, run_settings
from radiology.train.losses import (
    LOSSES,
    BinaryFocalLoss,
    FocalLoss,
    NCEandRCE,
    WeightedBCEWithLogits,
    WeightedCrossEntropy,
    make_loss,
    positive_weights,
)
from radiology.train.metrics import fastai_metrics
from radiology.train.recipe import TrainResult, load_items, patient_column_of, train

__all__ = [
    # the recipe
    "TrainConfig",
    "TrainResult",
    "train",
    "default_pipeline",
    "load_items",
    "patient_column_of",
    "make_learner",
    "fit_head",
    "fine_tune",
    "run_settings",
    "check_model_settings",
    "fastai_metrics",
    # losses
    "LOSSES",
    "make_loss",
    "positive_weights",
    "WeightedCrossEntropy",
    "FocalLoss",
    "BinaryFocalLoss",
    "NCEandRCE",
    "WeightedBCEWithLogits",
]

# Names that moved below training in 0.2; importing them from here still works for one release.
_MOVED = {
    **dict.fromkeys(("Ensemble", "PredictionInputs", "prediction_inputs", "predict_table", "kaggle_submission"),
                    "radiology.predict"),
    **dict.fromkeys(("evaluate_predictions", "accuracy", "balanced_accuracy", "macro_f1", "quadratic_kappa",
                     "roc_auc_per_class", "macro_auc", "odir_score", "best_thresholds", "classification_metrics",
                     "classification_report", "plot_confusion_matrix", "plot_roc"), "radiology.evaluate"),
}


def __getattr__(name):
    if name in _MOVED:
        home = _MOVED[name]
        warnings.warn(f"radiology.train.{name} moved to {home}.{name}; import it from there "
                      "(the old name goes in the next release)", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(home), name)
    raise AttributeError(f"module 'radiology.train' has no attribute {name!r}")
