"""Deprecated: ``radiology.train.inference`` is :mod:`radiology.predict` and :mod:`radiology.evaluate`.

Prediction (:class:`~radiology.predict.Ensemble`, :class:`~radiology.predict.PredictionInputs`,
:func:`~radiology.predict.prediction_inputs`, :func:`~radiology.predict.predict_table`,
:func:`~radiology.predict.kaggle_submission`) moved to :mod:`radiology.predict`, which serves
without fastai; scoring (:func:`~radiology.evaluate.evaluate_predictions`) moved to
:mod:`radiology.evaluate`. This module re-exports them for one release and warns
(``DeprecationWarning``) when imported.
"""

from __future__ import annotations

import warnings

from radiology.evaluate import evaluate_predictions
from radiology.predict import Ensemble, PredictionInputs, kaggle_submission, predict_table, prediction_inputs

__all__ = [
    "Ensemble", "PredictionInputs", "prediction_inputs", "predict_table", "kaggle_submission", "evaluate_predictions",
]

warnings.warn("radiology.train.inference is deprecated: use radiology.predict (Ensemble, PredictionInputs, "
              "prediction_inputs, predict_table, kaggle_submission) and radiology.evaluate (evaluate_predictions)",
              DeprecationWarning, stacklevel=2)

