"""Prediction (torch or onnxruntime, no fastai): bundles → inputs → table → Kaggle file.

What ``radiology predict`` runs, serving standing below training: nothing here imports
fastai or :mod:`radiology.train`, so ``radiology predict --backend onnx`` needs neither.

1. **Bundle(s)**: :func:`radiology.models.load_bundle` reads a folder that training wrote
   (verified against its manifest; ``eager``, ``export`` or ``onnx`` backend). Several
   bundles trained on the same labels make an :class:`Ensemble` (probabilities averaged,
   optionally over horizontally flipped inputs too: ``tta=True``); :meth:`Ensemble.load` loads
   folders, an ensemble bundle of ``train --folds K`` as its K members.
2. **Inputs**: :func:`prediction_inputs` resolves a folder (its input files,
   :func:`radiology.files.find_inputs`), a single file, or a CSV (paths or SOP Instance UIDs,
   one column per view) into :class:`PredictionInputs`: ids as the output shows them, the
   files of each sample, and an error for each input that cannot be found.
3. **Table**: :func:`predict_table` reads every input with each bundle's own pipeline and
   writes one row per input: ``image``, ``SOPInstanceUID`` (of a DICOM input, read while
   decoding it; empty for image files), ``prediction`` (:func:`radiology.models.decide`:
   argmax, or the labels above their thresholds joined by ``|``), ``prob_<class>`` columns
   and ``error`` (an input that cannot be read gets its error, the others go on). Ids and
   error cells are UTF-8 text naming inputs as given, never by an absolute path.
4. **Kaggle file**: :func:`kaggle_submission` turns a table into ``SOPInstanceUID,Target``
   (the UNIFESP competition format); :func:`header_uid` reads one file's UID cheaply.

Usage::

    from radiology.predict import Ensemble, kaggle_submission, predict_table, prediction_inputs

    model = Ensemble.load(["runs/a", "runs/b"], backend="onnx", tta=True)  # or one `train --folds K` bundle
    inputs = prediction_inputs("test/")
    table = predict_table(model, inputs)
    kaggle_submission(table, inputs).to_csv("submission.csv", index=False)

5. **Scale out**: ``predict_table(..., shard=(I, N))`` predicts shard ``I`` of ``N`` of the
   inputs (:func:`shard_inputs`, stable by input id: :func:`shard_of`) and
   :func:`merge_tables` joins the shard tables into one, in the input order;
   :func:`predict_distributed` runs the batches on a Dask cluster (or any executor), each
   worker loading the bundles once.

Scoring a table against labels is :func:`radiology.evaluate.evaluate_predictions`.
"""

from radiology.predict.distributed import predict_distributed
from radiology.predict.ensemble import Ensemble
from radiology.predict.inputs import PredictionInputs, prediction_inputs
from radiology.predict.shards import merge_tables, shard_inputs, shard_of
from radiology.predict.table import header_uid, kaggle_submission, predict_table

__all__ = ["Ensemble", "PredictionInputs", "prediction_inputs", "predict_table", "kaggle_submission", "header_uid",
           "shard_of", "shard_inputs", "merge_tables", "predict_distributed"]
