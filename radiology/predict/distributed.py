"""Prediction on a Dask distributed cluster (or any ``concurrent.futures`` executor).

:func:`predict_distributed` splits the inputs into batches (the batches a local
:func:`~radiology.predict.predict_table` run makes) and predicts each as one task. What a
task ships is the bundle folders' *paths* and the input paths, never images or weights:
every worker must read both at the same paths (a shared file system, or the same machine).
Each worker process loads the bundles once (on its first task) and keeps them for the
run's later tasks. A task that fails as a whole (a worker lost, a bundle a worker cannot
read) becomes error rows for its batch; every input keeps its row, in order, and the table
is the one a local run writes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd

from radiology.predict.inputs import PredictionInputs
from radiology.predict.table import _check_views, _joined_uids, _with_shard_columns, header_uid, predict_table

__all__ = ["predict_distributed"]

_MODELS: dict[tuple, object] = {}  # (folders, backend, tta) -> Ensemble, one per worker process
_LOCK = threading.Lock()


def _worker_model(folders: tuple[str, ...], backend: str, tta: bool):
    """The ensemble of ``folders``, loaded once per process (threads of a worker share it)."""
    key = (folders, backend, tta)
    with _LOCK:
        if key not in _MODELS:
            from radiology.predict.ensemble import Ensemble

            _MODELS[key] = Ensemble.load(folders, backend=backend, threads=_worker_threads(), tta=tta)
        return _MODELS[key]


def _worker_threads() -> int | None:
    """onnxruntime threads in a Dask worker: the threads the worker was given (its share of the
    machine's cores), not every core of the machine once per worker; ``None`` (every core this
    process may use) elsewhere."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError, AttributeError):  # not in a Dask worker (get_worker raises ValueError)
        return None


def _predict_part(folders: tuple[str, ...], backend: str, tta: bool, batch_size: int,
                  inputs: PredictionInputs) -> pd.DataFrame:
    """One task: a batch of inputs predicted on a worker (its table)."""
    return predict_table(_worker_model(folders, backend, tta), inputs, batch_size=batch_size, progress=False)


def _failed_part(inputs: PredictionInputs, classes: Sequence[str], error: BaseException) -> pd.DataFrame:
    """The rows of a batch whose task failed: each input's own error, else what the task raised."""
    from radiology.errors import one_line

    reason = f"prediction failed on the cluster: {type(error).__name__}"
    text = one_line(error) if str(error) else ""
    if text and "/" not in text and "\\" not in text:  # a message naming a path stays out of the table
        reason += f": {text}"
    # The UIDs a local run would have read (the header alone: cheap, and it never raises).
    uids = [_joined_uids([header_uid(p) for p in paths]) if paths else "" for paths in inputs.sources]
    table = pd.DataFrame({"image": inputs.ids, "SOPInstanceUID": uids, "prediction": [""] * len(inputs.ids)})
    for name in classes:
        table[f"prob_{name}"] = np.nan
    table["error"] = [own or f"{name}: {reason}" for own, name in zip(inputs.errors, inputs.ids)]
    return table


def _absolute(paths):
    return None if paths is None else tuple(Path(os.path.abspath(p)) for p in paths)


def predict_distributed(
    bundle_folders: Sequence[str | os.PathLike], inputs: PredictionInputs, executor, *, backend: str = "export",
    tta: bool = False, batch_size: int = 32, progress: bool = False, shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Predict every input on a cluster: :func:`~radiology.predict.predict_table`'s table, batch by batch.

    Parameters
    ----------
    bundle_folders : sequence of path
        Bundle folder(s) (several: an :class:`~radiology.predict.Ensemble`), read here once
        for their classes and on each worker once; workers must read them at these paths.
    inputs : radiology.predict.PredictionInputs
        From :func:`~radiology.predict.prediction_inputs` (or one shard of them,
        :func:`~radiology.predict.shard_inputs`); workers must read their files too.
    executor : concurrent.futures.Executor or dask.distributed.Client
        Where batches run, e.g. ``Client(address)`` or ``Client(address).get_executor()``.
    backend : {"eager", "export", "onnx"}, optional
        Which saved model the workers run (:func:`radiology.models.load_bundle`).
    tta : bool, optional
        Average with horizontally flipped inputs, as :class:`~radiology.predict.Ensemble`.
    batch_size : int, optional
        Inputs per task and per model call.
    progress : bool, optional
        Show a progress bar (batches done).
    shard : tuple of int, optional
        ``(I, N)``: only shard ``I`` of ``N``, with the ``shard`` and ``position`` columns, as
        :func:`~radiology.predict.predict_table`.

    Returns
    -------
    pandas.DataFrame
        ``image, SOPInstanceUID, prediction, prob_<class>..., error``: one row per input, in
        order, what :func:`~radiology.predict.predict_table` returns for the same inputs. A
        batch whose task failed gets error rows (``prediction failed on the cluster: ...``),
        with the UIDs read here from the headers, as a local run has them.

    Raises
    ------
    ValueError
        No bundle folder, ``batch_size`` below 1, an unknown backend, or inputs with another
        number of views than the model takes, or ``shard`` out of range.
    FileNotFoundError
        A bundle folder that does not exist here.

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> empty = PredictionInputs([], [], [])
    >>> with ThreadPoolExecutor(1) as pool:
    ...     predict_distributed([], empty, pool)
    Traceback (most recent call last):
    ValueError: bundle_folders: no bundle folder
    """
    from tqdm.auto import tqdm

    from radiology.predict.ensemble import Ensemble

    folders = tuple(os.path.abspath(f) for f in bundle_folders)
    if not folders:
        raise ValueError("bundle_folders: no bundle folder")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if shard is not None:
        from radiology.predict.shards import shard_inputs

        inputs = shard_inputs(inputs, *shard)
    # Loaded here once: the manifest is verified, the members checked against each other and
    # the classes known for the error rows of a failed batch, before any task is sent.
    model = Ensemble.load(folders, backend=backend, tta=tta)
    classes = model.classes
    _check_views(model, inputs)
    if hasattr(executor, "get_executor"):  # a dask.distributed.Client
        executor = executor.get_executor()
    if not isinstance(executor, Executor) and not hasattr(executor, "submit"):
        raise ValueError("executor: not a concurrent.futures.Executor or dask.distributed.Client")
    n = len(inputs.ids)
    parts = [PredictionInputs(inputs.ids[start:start + batch_size],
                              [_absolute(s) for s in inputs.sources[start:start + batch_size]],
                              inputs.errors[start:start + batch_size])
             for start in range(0, n, batch_size)]
    futures = [executor.submit(_predict_part, folders, backend, tta, batch_size, part) for part in parts]
    tables = []
    with tqdm(total=n, disable=not progress, unit="image", desc="predict") as bar:
        for part, future in zip(parts, futures):
            try:
                table = future.result()
            except Exception as error:  # noqa: BLE001 - a lost task gets its rows, the run goes on
                table = _failed_part(part, classes, error)
            tables.append(table)
            bar.update(len(part.ids))
    columns = ["image", "SOPInstanceUID", "prediction", *(f"prob_{c}" for c in classes), "error"]
    if tables:
        table = pd.concat(tables, ignore_index=True)[columns]
    else:
        table = pd.DataFrame({c: pd.Series(dtype=float if c.startswith("prob_") else object) for c in columns})
    return _with_shard_columns(table, inputs, shard)
