"""Prediction tables (one row per input) and the UNIFESP Kaggle submission made from them."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from radiology.predict.ensemble import Ensemble
from radiology.predict.inputs import PredictionInputs

__all__ = ["predict_table", "kaggle_submission", "header_uid"]


def predict_table(
    model, inputs: PredictionInputs, *, batch_size: int = 32, progress: bool = True,
    shard: tuple[int, int] | None = None, workers: int = 0,
) -> pd.DataFrame:
    """Predict every input with a bundle or an :class:`~radiology.predict.Ensemble`.

    Images are decoded ahead of the model, overlapped with it: while one batch runs, the next
    is read (a thread of this process, or ``workers`` processes). The table is the same
    whatever ``workers``.

    Parameters
    ----------
    model : radiology.models.Bundle or radiology.predict.Ensemble
        What predicts; an ensemble averages its members' probabilities.
    inputs : radiology.predict.PredictionInputs
        From :func:`~radiology.predict.prediction_inputs`.
    batch_size : int
        Samples per model call; the first calls take fewer (1/8, 1/4, 1/2 of it) so that the
        model starts while the next batch is read. Batching changes no probability beyond
        float rounding (1e-6).
    progress : bool
        Show a progress bar.
    shard : tuple of int, optional
        ``(I, N)``: predict only shard ``I`` of ``N`` (:func:`~radiology.predict.shard_inputs`);
        the table then also has the columns ``shard`` (``"I/N"``) and ``position`` (each row's
        place among all inputs) that :func:`~radiology.predict.merge_tables` joins shards by.
    workers : int, optional
        Processes that decode the images; ``0`` (default, the fastest measured on 2 cores):
        one thread of this process decodes the next batch while the model runs (onnxruntime
        and torch release the GIL). Worker processes pay for their start (once per call) and
        for sending the arrays back; they pay off when decoding costs about as much as the
        model and cores are free for them: load the bundle with fewer threads
        (:func:`radiology.models.load_bundle`'s ``threads``, e.g. the cores minus ``workers``)
        so that the two do not fight over the same cores. Workers start by the ``forkserver``
        method (``spawn`` where there is none): a script that passes ``workers`` needs the usual
        ``if __name__ == "__main__":`` guard.

    Returns
    -------
    pandas.DataFrame
        Columns ``image, SOPInstanceUID, prediction, prob_<class>..., error``, one row per
        input, in order. ``prediction`` is :func:`radiology.models.decide`'s (argmax, or the
        labels above their thresholds joined by ``|``); a row with an error has an empty
        prediction and no probabilities.

        ``SOPInstanceUID`` is always there, whatever the inputs, so that every table (local,
        each shard, a Dask run) has the same columns: the SOP Instance UID of a DICOM input
        (several views: theirs joined by ``|``, as ``image``), taken from the dataset the
        decoder read (no second read); the header alone is read (without pixels) only for an
        input whose decoding failed, so that its error row keeps its UID. The cell is empty for
        image files, inputs not found, and files without a readable UID (only digits and dots,
        at most 64 characters, is a UID here: anything else in a hostile header is left out,
        never raised). Labels keyed by UID (UNIFESP's ``train.csv``) match it without guessing
        (:func:`radiology.evaluate.evaluate_predictions`).

    Raises
    ------
    ValueError
        Inputs with another number of views than the model takes, ``shard`` out of range,
        ``batch_size`` below 1 or ``workers`` below 0.
    """
    from tqdm.auto import tqdm

    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
    if shard is not None:
        from radiology.predict.shards import shard_inputs

        inputs = shard_inputs(inputs, *shard)
    ensemble = model if isinstance(model, Ensemble) else Ensemble([model])
    classes = ensemble.classes
    _check_views(ensemble, inputs)
    n = len(inputs.ids)
    probs = np.full((n, len(classes)), np.nan)
    errors = list(inputs.errors)
    uids = [""] * n
    bar = tqdm(total=n * len(ensemble.bundles), disable=not progress, unit="image", desc="predict")
    with _decoder(workers) as decode:
        for member, bundle in enumerate(ensemble.bundles):
            member_probs = np.full((n, len(classes)), np.nan)
            spans = _spans(n, batch_size)
            batches = [[(row, inputs.sources[row], inputs.ids[row]) for row in range(start, stop)
                        if inputs.sources[row] is not None and not errors[row]] for start, stop in spans]
            for (start, stop), (batch, rows, failed, found) in zip(spans, decode(bundle, batches)):
                for row, error in failed:
                    errors[row] = error
                if member == 0:  # every input that can be read is read by the first member
                    for row, uid in found:
                        uids[row] = uid
                if rows:
                    member_probs[rows] = ensemble.predict_arrays(member, batch)
                bar.update(stop - start)
            probs = member_probs if member == 0 else probs + member_probs
    bar.close()
    probs /= len(ensemble.bundles)
    ok = np.array([not e for e in errors], bool)
    predictions = [""] * n
    for row, decided in zip(np.flatnonzero(ok), ensemble.decide(probs[ok].reshape(-1, len(classes)))):
        predictions[row] = decided
    table = pd.DataFrame({"image": inputs.ids, "SOPInstanceUID": uids, "prediction": predictions})
    for index, name in enumerate(classes):
        table[f"prob_{name}"] = np.where(ok, probs[:, index], np.nan)
    table["error"] = errors
    return _with_shard_columns(table, inputs, shard)


def _spans(n: int, batch_size: int) -> list[tuple[int, int]]:
    """Row ranges of the model's batches: ``batch_size`` rows each, after a short ramp (1/8, 1/4, 1/2 of it).

    The model waits for its first batch to be read whole; small first batches start it early,
    and each is read while the one before runs, so that reading is hidden behind the model
    from the start (what ``bench/predict.py`` measured; a batch's size changes no result).
    """
    spans, start, size = [], 0, max(1, batch_size // 8)
    while start < n:
        spans.append((start, min(n, start + size)))
        start, size = start + size, min(batch_size, size * 2)
    return spans


def _read_batch(reader, items) -> tuple[np.ndarray | None, list[int], list[tuple[int, str]], list[tuple[int, str]]]:
    """One batch read: ``(stacked float32 samples, their rows, [(row, error cell)] of the inputs that failed,
    [(row, SOP Instance UID cell)] of every input)``."""
    from radiology.data import input_error
    from radiology.files import is_image_file

    arrays, rows, failed, uids = [], [], [], []
    for row, paths, name in items:
        uid = None
        try:
            decoded = None
            if len(paths) == len(reader.views):  # else load_sample raises the bundle's one-line error
                # Each DICOM decoded once: its dataset names the image, its pixels feed the pipeline.
                decoded = [Path(p) if is_image_file(p) else reader.pipeline.decode.read(p) for p in paths]
                uid = _joined_uids([_dataset_uid(d.dataset) if not isinstance(d, Path) else "" for d in decoded])
            arrays.append(reader.load_sample(paths, decoded=decoded))
            rows.append(row)
        except Exception as error:  # noqa: BLE001 - one bad input gets its row, the run goes on
            failed.append((row, input_error(error, paths, name)))
            if uid is None:  # decoding failed: the header alone may still name the image
                uid = _joined_uids([header_uid(p) for p in paths])
        uids.append((row, uid))
    return (np.stack(arrays).astype(np.float32, copy=False) if arrays else None), rows, failed, uids


_UID = re.compile(r"[0-9.]{1,64}")


def _dataset_uid(dataset) -> str:
    """A dataset's SOP Instance UID, or ``""`` where there is none that reads as a UID (never raises)."""
    import warnings

    try:
        with warnings.catch_warnings():  # pydicom warns of an invalid UI value: it is left out here anyway
            warnings.simplefilter("ignore")
            value = dataset.get("SOPInstanceUID")
            text = "" if value is None else str(value).strip(" \0")
    except Exception:  # noqa: BLE001 - a hostile element value may raise anything when it is read
        return ""
    return text if _UID.fullmatch(text) else ""


def _joined_uids(uids: list[str]) -> str:
    """The UIDs of a sample's views joined by ``|`` (as ``image`` joins the views); empty when one has none."""
    return "|".join(uids) if all(uids) else ""


def header_uid(path: str | os.PathLike) -> str:
    """The SOP Instance UID in a DICOM file's header, read without the pixel data (cheap, and never raises).

    Parameters
    ----------
    path : path
        A DICOM file (with or without preamble and file meta information), or any other file.

    Returns
    -------
    str
        The UID, or ``""`` for an image file (:func:`radiology.files.is_image_file`), a file that
        is not DICOM or cannot be parsed, and a value that is not a UID (only digits and dots, at
        most 64 characters): a hostile file never raises here.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> folder = Path(tempfile.mkdtemp())
    >>> path = write_phantom_dicom(folder / "a.dcm", phantom_radiograph((32, 32)), sop_instance_uid="1.2.3.4")
    >>> header_uid(path), header_uid(folder / "missing.dcm")
    ('1.2.3.4', '')
    """
    from radiology.dicom import DEFAULT_MAX_PIXELS, read_dataset
    from radiology.files import is_image_file

    if is_image_file(path) or not os.path.isfile(path):
        return ""
    try:
        # The header only (no pixels); a deflated file is refused before it inflates past what decoding allows.
        dataset = read_dataset(path, stop_before_pixels=True, max_bytes=8 * DEFAULT_MAX_PIXELS)
    except Exception:  # noqa: BLE001 - pydicom raises many types on broken and hostile files
        return ""
    return _dataset_uid(dataset)


class _decoder:
    """Reads batches ahead of the model: a thread of this process (``workers=0``) or worker processes.

    Called with a bundle and its batches, it yields each batch's :func:`_read_batch` in order,
    keeping a few batches in flight (bounded memory) while the caller runs the model.
    """

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = None

    def __enter__(self):
        if self.workers:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # forkserver: workers fork from a clean server process that imported the readers
            # once, not from this one (its onnxruntime / torch / OpenCV threads do not survive a fork).
            if "forkserver" in multiprocessing.get_all_start_methods():
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["radiology.predict.table"])
            else:  # Windows: each worker starts a fresh interpreter
                context = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.workers, mp_context=context)
        else:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="radiology-decode")
        return self

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, bundle, batches):
        from collections import deque

        reader = bundle
        if self.workers:  # what a worker needs to read a sample: the bundle without its model
            from dataclasses import replace

            reader = replace(bundle, _runner=None, _model=None)
        ahead = max(2, self.workers + 1)
        pending = deque()
        for items in batches:
            pending.append(self.pool.submit(_read_batch, reader, items))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


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

    The UID of a row is the table's ``SOPInstanceUID`` cell (what :func:`predict_table`
    read from the DICOM it decoded); for a row without one, or a table without the column,
    the header of its input when ``inputs`` (what the table was predicted from) are given,
    else the ``image`` value (a UID, or a file named ``<UID>.dcm`` as in the competition's
    layout). ``Target`` is the row's ``prediction``: the class names, which for a model
    trained on UNIFESP's ``train.csv`` are its class indices (``"3"``, ``"11"``), several
    (multi-label) joined by spaces as the competition expects; a failed row keeps its UID
    with an empty target. ``radiology evaluate`` scores this file against a label table of
    the same ``Target`` convention (:func:`radiology.evaluate.evaluate_predictions`).

    Parameters
    ----------
    table : pandas.DataFrame
        A table of :func:`predict_table` (``image`` or ``SOPInstanceUID``, and ``prediction``).
    inputs : PredictionInputs, optional
        The inputs the table was predicted from, to read the UIDs a table without the
        ``SOPInstanceUID`` column lacks from their headers.

    Returns
    -------
    pandas.DataFrame
        Columns ``SOPInstanceUID, Target``, one row per table row, in order.

    Raises
    ------
    ValueError
        ``table`` without ``prediction`` or without both ``image`` and ``SOPInstanceUID``, or
        ``inputs`` of another length than ``table``.

    Examples
    --------
    >>> table = pd.DataFrame({"image": ["1.2.3", "test/a/4.5.6.dcm", "b.dcm"],
    ...                       "SOPInstanceUID": ["", "", "7.8.9"], "prediction": ["11", "3|13", "0"]})
    >>> kaggle_submission(table).to_csv(index=False).splitlines()
    ['SOPInstanceUID,Target', '1.2.3,11', '4.5.6,3 13', '7.8.9,0']
    """
    if "image" not in table.columns and "SOPInstanceUID" not in table.columns:
        raise ValueError(f"table: no 'image' or 'SOPInstanceUID' column; columns are {list(table.columns)}")
    if "prediction" not in table.columns:
        raise ValueError(f"table: no 'prediction' column; columns are {list(table.columns)}")
    if inputs is not None and len(inputs.ids) != len(table):
        raise ValueError(f"{len(inputs.ids)} inputs for a table of {len(table)} rows")
    names = [str(v) for v in table["image"]] if "image" in table.columns else [""] * len(table)
    uids = [Path(v).stem if v.lower().endswith(".dcm") else Path(v).name for v in names]
    read = [""] * len(table)
    if "SOPInstanceUID" in table.columns:  # predict_table read them from the DICOMs it decoded
        read = [v if isinstance(v, str) else "" for v in table["SOPInstanceUID"]]
    if inputs is not None:  # the cells still empty (or a table without the column): the headers, read now
        read = [found or (_joined_uids([header_uid(p) for p in paths]) if paths else "")
                for found, paths in zip(read, inputs.sources)]
    uids = [found or uid for found, uid in zip(read, uids)]
    targets = ["" if not isinstance(p, str) else p.replace("|", " ") for p in table["prediction"]]
    return pd.DataFrame({"SOPInstanceUID": uids, "Target": targets})
