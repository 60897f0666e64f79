"""Prediction tables (one row per input) and the UNIFESP Kaggle submission made from them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from radiology.predict.ensemble import Ensemble
from radiology.predict.inputs import PredictionInputs

__all__ = ["predict_table", "kaggle_submission"]


def predict_table(
    model, inputs: PredictionInputs, *, batch_size: int = 32, progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Predict every input with a bundle or an :class:`~radiology.predict.Ensemble`.

    Parameters
    ----------
    model : radiology.models.Bundle or radiology.predict.Ensemble
        What predicts; an ensemble averages its members' probabilities.
    inputs : radiology.predict.PredictionInputs
        From :func:`~radiology.predict.prediction_inputs`.
    batch_size : int
        Samples per model call.
    progress : bool
        Show a progress bar.
    shard : tuple of int, optional
        ``(I, N)``: predict only shard ``I`` of ``N`` (:func:`~radiology.predict.shard_inputs`);
        the table then also has the columns ``shard`` (``"I/N"``) and ``position`` (each row's
        place among all inputs) that :func:`~radiology.predict.merge_tables` joins shards by.

    Returns
    -------
    pandas.DataFrame
        Columns ``image, prediction, prob_<class>..., error``, one row per input, in order.
        ``prediction`` is :func:`radiology.models.decide`'s (argmax, or the labels above their
        thresholds joined by ``|``); a row with an error has an empty prediction and no
        probabilities.

    Raises
    ------
    ValueError
        Inputs with another number of views than the model takes, or ``shard`` out of range.
    """
    from tqdm.auto import tqdm

    from radiology.data import input_error

    if shard is not None:
        from radiology.predict.shards import shard_inputs

        inputs = shard_inputs(inputs, *shard)
    ensemble = model if isinstance(model, Ensemble) else Ensemble([model])
    classes = ensemble.classes
    _check_views(ensemble, inputs)
    n = len(inputs.ids)
    probs = np.full((n, len(classes)), np.nan)
    errors = list(inputs.errors)
    bar = tqdm(total=n * len(ensemble.bundles), disable=not progress, unit="image", desc="predict")
    for member, bundle in enumerate(ensemble.bundles):
        member_probs = np.full((n, len(classes)), np.nan)
        for start in range(0, n, batch_size):
            arrays, rows = [], []
            for row in range(start, min(n, start + batch_size)):
                paths = inputs.sources[row]
                if paths is None or errors[row]:
                    continue
                try:
                    arrays.append(bundle.load_sample(paths))
                    rows.append(row)
                except Exception as error:  # noqa: BLE001 - one bad input gets its row, the run goes on
                    errors[row] = input_error(error, paths, inputs.ids[row])
            if arrays:
                member_probs[rows] = ensemble.predict_arrays(member, np.stack(arrays).astype(np.float32))
            bar.update(min(n, start + batch_size) - start)
        probs = member_probs if member == 0 else probs + member_probs
    bar.close()
    probs /= len(ensemble.bundles)
    ok = np.array([not e for e in errors], bool)
    predictions = [""] * n
    for row, decided in zip(np.flatnonzero(ok), ensemble.decide(probs[ok].reshape(-1, len(classes)))):
        predictions[row] = decided
    table = pd.DataFrame({"image": inputs.ids, "prediction": predictions})
    for index, name in enumerate(classes):
        table[f"prob_{name}"] = np.where(ok, probs[:, index], np.nan)
    table["error"] = errors
    return _with_shard_columns(table, inputs, shard)


def _check_views(ensemble: Ensemble, inputs: PredictionInputs) -> None:
    """Refuse inputs with another number of views than a multi-view model takes (before any work)."""
    views = ensemble.views
    if views and len(views) > 1 and any(s is not None and len(s) != len(views) for s in inputs.sources):
        raise ValueError(f"the model takes {len(views)} views ({', '.join(views)}); give as many image columns")


def _with_shard_columns(table: pd.DataFrame, inputs: PredictionInputs, shard: tuple[int, int] | None) -> pd.DataFrame:
    """A shard's table gets its shard (``"I/N"``) and each row's place among all inputs (what merging joins by)."""
    if shard is not None:
        table["shard"] = f"{shard[0]}/{shard[1]}"
        table["position"] = pd.Series(list(inputs.positions), dtype="int64", index=table.index)
    return table


def kaggle_submission(table: pd.DataFrame, inputs: PredictionInputs | None = None) -> pd.DataFrame:
    """``SOPInstanceUID,Target`` from a prediction table (the UNIFESP Kaggle format).

    The UID of a row is read from its DICOM header when ``inputs`` (what the table was
    predicted from) are given, else taken from the ``image`` value (a UID, or a file named
    ``<UID>.dcm`` as in the competition's layout). Multi-label predictions become
    space-separated targets, as the competition expects; failed rows keep their UID with an
    empty target.

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`predict_table`.
    inputs : PredictionInputs, optional
        The inputs the table was predicted from, to read each UID from its DICOM header.

    Examples
    --------
    >>> table = pd.DataFrame({"image": ["1.2.3", "test/a/4.5.6.dcm"], "prediction": ["11", "3|13"]})
    >>> kaggle_submission(table).to_csv(index=False).splitlines()
    ['SOPInstanceUID,Target', '1.2.3,11', '4.5.6,3 13']
    """
    names = [str(v) for v in table["image"]]
    uids = [Path(v).stem if v.lower().endswith(".dcm") else Path(v).name for v in names]
    if inputs is not None:
        if len(inputs.ids) != len(table):
            raise ValueError(f"{len(inputs.ids)} inputs for a table of {len(table)} rows")
        uids = [_header_uid(paths[0]) or uid if paths else uid for paths, uid in zip(inputs.sources, uids)]
    targets = [str(p).replace("|", " ") for p in table["prediction"]]
    return pd.DataFrame({"SOPInstanceUID": uids, "Target": targets})


def _header_uid(path: Path) -> str | None:
    from radiology.dicom import DicomError, read_dataset

    try:
        uid = read_dataset(path, stop_before_pixels=True).get("SOPInstanceUID")
    except DicomError:
        return None
    return str(uid).strip() or None if uid else None
