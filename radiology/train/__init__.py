"""Train (fastai): learner factory, losses, metrics, plots, ensembles.

This subpackage imports torch; ``import radiology`` does not.
"""

from radiology.train.config import TrainConfig
from radiology.train.inference import (
    Ensemble,
    PredictionInputs,
    evaluate_predictions,
    kaggle_submission,
    predict_table,
    prediction_inputs,
)
from radiology.train.learner import TrainResult, default_pipeline, fine_tune, fit_head, load_items, make_learner, train
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
from radiology.train.metrics import (
    accuracy,
    balanced_accuracy,
    best_thresholds,
    classification_metrics,
    classification_report,
    fastai_metrics,
    macro_auc,
    macro_f1,
    odir_score,
    quadratic_kappa,
    roc_auc_per_class,
)
from radiology.train.plots import plot_confusion_matrix, plot_roc

__all__ = [
    # training
    "TrainConfig",
    "TrainResult",
    "train",
    "default_pipeline",
    "load_items",
    "make_learner",
    "fit_head",
    "fine_tune",
    # inference
    "Ensemble",
    "PredictionInputs",
    "prediction_inputs",
    "predict_table",
    "kaggle_submission",
    "evaluate_predictions",
    # metrics
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
    # plots
    "plot_confusion_matrix",
    "plot_roc",
]
