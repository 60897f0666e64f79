"""Predicting with bundles (one, an ensemble, with flip test-time augmentation) and scoring
prediction files: what ``radiology predict`` and ``radiology evaluate`` run.

A prediction table has one row per input: ``image`` (as given: the CSV value, several
image columns joined by ``|``, or the path relative to the input folder), ``prediction``
(the class; multi-label: the labels above their thresholds joined by ``|``), one
``prob_<class>`` column per class, and ``error`` (empty when the input was fine). An input
that cannot be read gets its error and the others go on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "Ensemble", "PredictionInputs", "prediction_inputs", "predict_table", "kaggle_submission", "evaluate_predictions",
]

logger = logging.getLogger(__name__)


class Ensemble:
    """Average the probabilities of several bundles trained on the same labels.

    Parameters
    ----------
    bundles : sequence of radiology.models.Bundle
        Same classes (in the same order), label kind and number of views. Each member
        preprocesses with its *own* pipeline, so members may differ in size or steps.
    tta : bool
        Also average over horizontally flipped inputs (test-time augmentation); for two
        views the flipped pair is swapped too, as in training (left stays left-looking).
    """

    def __init__(self, bundles: Sequence, *, tta: bool = False):
        bundles = list(bundles)
        if not bundles:
            raise ValueError("an ensemble needs at least one bundle")
        first = bundles[0]
        for other in bundles[1:]:
            if list(other.classes) != list(first.classes) or other.multi_label != first.multi_label:
                raise ValueError("ensemble members must share classes and label kind")
            if tuple(other.views) != tuple(first.views):
                raise ValueError("ensemble members must take the same views")
        self.bundles = bundles
        self.tta = bool(tta)

    @property
    def classes(self) -> list[str]:
        """Class (or label) names."""
        return list(self.bundles[0].classes)

    @property
    def multi_label(self) -> bool:
        """True for sigmoid, multi-label members."""
        return bool(self.bundles[0].multi_label)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-label decision thresholds (the members' mean; 0.5 where none were stored)."""
        stored = [np.asarray(b.thresholds if b.thresholds is not None else [0.5] * len(self.classes), np.float64)
                  for b in self.bundles]
        return np.mean(stored, axis=0)

    @property
    def views(self) -> tuple[str, ...]:
        """Image columns of one sample."""
        return tuple(self.bundles[0].views)

    def predict_arrays(self, member: int, batch: np.ndarray) -> np.ndarray:
        """Probabilities of one member for a preprocessed batch, with flip TTA when enabled."""
        bundle = self.bundles[member]
        probs = bundle.predict_batch(batch)
        if self.tta:
            flipped = batch[..., ::-1].copy()
            if flipped.ndim == 5 and flipped.shape[1] == 2:
                flipped = flipped[:, ::-1].copy()
            probs = (probs + bundle.predict_batch(flipped)) / 2
        return probs


@dataclass
class PredictionInputs:
    """What to predict: ``ids`` as they appear in the output, and the files of each sample.

    ``sources[i]`` is a tuple of paths (one per view), or ``None`` with ``errors[i]`` saying
    why the input could not be found.
    """

    ids: list[str]
    sources: list[tuple[Path, ...] | None]
    errors: list[str]


def prediction_inputs(
    source: str | os.PathLike, *, root: str | os.PathLike | None = None, image_cols: Sequence[str] | str | None = None,
    exclude: str | os.PathLike | None = None, progress: bool = True,
) -> PredictionInputs:
    """Resolve a folder (recursive), a single file, or a CSV into prediction inputs.

    For a CSV, ``image_cols`` (default ``image``; several = views) hold paths relative to
    ``root`` (default: the CSV's folder) or SOP Instance UIDs found by reading the headers
    under ``root``; one entry per CSV row, in order. Rows whose image cannot be found get
    an error instead of stopping the run. ``progress`` shows a bar while UIDs are indexed.
    ``exclude`` names a folder inside a folder ``source`` whose files are not inputs (the
    output folder of a command that writes next to its inputs). In a folder, files with a
    table, text or archive suffix (``.csv``, ``.txt``, ``.json``, ...) are not inputs.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "a.png").write_bytes(b""), (folder / "notes.txt").write_bytes(b"")
    (0, 0)
    >>> prediction_inputs(folder).ids
    ['a.png']
    >>> (folder / "out").mkdir(); (folder / "out" / "b.png").write_bytes(b"")
    0
    >>> prediction_inputs(folder).ids, prediction_inputs(folder, exclude=folder / "out").ids
    (['a.png', 'out/b.png'], ['a.png'])
    """
    from radiology.data import resolve_images

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_file() and source.suffix.lower() == ".csv":
        cols = image_cols or ("image",)
        cols = tuple(c.strip() for c in cols.split(",")) if isinstance(cols, str) else tuple(cols)
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"{source}: no column {missing[0]!r}; columns are {list(table.columns)}")
        base = Path(root) if root is not None else source.parent
        # One look-up for every column: UIDs are indexed from the headers at most once.
        found = resolve_images([v for c in cols for v in table[c].tolist()], base, progress=progress)
        resolved = {c: found[i * len(table):(i + 1) * len(table)] for i, c in enumerate(cols)}
        ids, sources, errors = [], [], []
        for row in range(len(table)):
            ids.append("|".join(table[c].iloc[row] for c in cols))
            paths = [resolved[c][row] for c in cols]
            absent = [table[c].iloc[row] for c, p in zip(cols, paths) if p is None]
            sources.append(None if absent else tuple(paths))
            errors.append(f"not found under {base}: {absent[0]}" if absent else "")
        return PredictionInputs(ids, sources, errors)
    if source.is_file():
        return PredictionInputs([source.name], [(source,)], [""])
    from radiology.data.labels import _NOT_IMAGE
    from radiology.dicom import find_files

    # Reports, notes and tables beside the images (conversion_report.csv, README.txt) are not
    # inputs; any other suffix may be a DICOM (archives name files by UID: "1.2.840...321").
    files = [p for p in find_files(source, exclude=exclude) if p.suffix.lower() not in _NOT_IMAGE]
    if not files:
        raise ValueError(f"{source}: no files to predict")
    ids = [p.relative_to(source).as_posix() for p in files]
    return PredictionInputs(ids, [(p,) for p in files], [""] * len(files))


def predict_table(
    model, inputs: PredictionInputs, *, batch_size: int = 32, progress: bool = True
) -> pd.DataFrame:
    """Predict every input with a bundle or an :class:`Ensemble`.

    Parameters
    ----------
    model : radiology.models.Bundle or Ensemble
    inputs : PredictionInputs
        From :func:`prediction_inputs`.
    batch_size : int
    progress : bool
        Show a progress bar.

    Returns
    -------
    pandas.DataFrame
        Columns ``image, prediction, prob_<class>..., error``, one row per input, in order.
    """
    from tqdm.auto import tqdm

    ensemble = model if isinstance(model, Ensemble) else Ensemble([model])
    classes = ensemble.classes
    if ensemble.views and len(ensemble.views) > 1:
        bad = [s for s in inputs.sources if s is not None and len(s) != len(ensemble.views)]
        if bad:
            raise ValueError(f"the model takes {len(ensemble.views)} views ({', '.join(ensemble.views)}); "
                             f"give as many image columns")
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
                    errors[row] = " ".join(str(error).split()) or type(error).__name__
            if arrays:
                member_probs[rows] = ensemble.predict_arrays(member, np.stack(arrays).astype(np.float32))
            bar.update(min(n, start + batch_size) - start)
        probs = member_probs if member == 0 else probs + member_probs
    bar.close()
    probs /= len(ensemble.bundles)
    ok = np.array([not e for e in errors])
    predictions = [""] * n
    if ensemble.multi_label:
        above = probs > ensemble.thresholds[None, :]
        for row in np.flatnonzero(ok):
            predictions[row] = "|".join(c for c, on in zip(classes, above[row]) if on)
    else:
        for row in np.flatnonzero(ok):
            predictions[row] = classes[int(np.argmax(probs[row]))]
    table = pd.DataFrame({"image": inputs.ids, "prediction": predictions})
    for index, name in enumerate(classes):
        table[f"prob_{name}"] = np.where(ok, probs[:, index], np.nan)
    table["error"] = errors
    return table


def kaggle_submission(table: pd.DataFrame, inputs: PredictionInputs | None = None) -> pd.DataFrame:
    """``SOPInstanceUID,Target`` from a prediction table (the UNIFESP Kaggle format).

    The UID of a row is read from its DICOM header when ``inputs`` (what the table was
    predicted from) are given, else taken from the ``image`` value (a UID, or a file named
    ``<UID>.dcm`` as in the competition's layout). Multi-label predictions become
    space-separated targets, as the competition expects; failed rows keep their UID with an
    empty target.

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


def evaluate_predictions(
    predictions: str | os.PathLike | pd.DataFrame,
    labels: str | os.PathLike | pd.DataFrame,
    *,
    image_cols: Sequence[str] | str = ("image",),
    label_cols: Sequence[str] | str = ("label",),
    multi_label: bool | None = None,
    out: str | os.PathLike | None = None,
    thresholds: Sequence[float] | None = None,
) -> dict:
    """Score a prediction table against a label table.

    Rows are matched on the image reference (several image columns joined by ``|``, as
    ``radiology predict`` writes them). Classes are taken from the ``prob_<class>``
    columns. Multi-label: one column of ``A|B`` strings or one 0/1 column per label
    (inferred when not given: several label columns, or ``|`` in the labels).

    Parameters
    ----------
    predictions, labels : path or DataFrame
    image_cols, label_cols : str or sequence of str
    multi_label : bool, optional
    out : path, optional
        Folder for ``metrics.json``, ``report.txt``, ``confusion_matrix.png`` (single-label)
        and ``roc.png``.
    thresholds : sequence of float, optional
        Multi-label decision thresholds (default 0.5).

    Returns
    -------
    dict
        :func:`radiology.train.metrics.classification_metrics` plus ``n`` (rows scored)
        and ``missing`` (labeled images without a usable prediction).
    """
    from radiology.train.metrics import classification_metrics, classification_report
    from radiology.train.plots import plot_confusion_matrix, plot_roc

    pred = predictions if isinstance(predictions, pd.DataFrame) else pd.read_csv(predictions, dtype={"image": str},
                                                                                  keep_default_na=False)
    truth = labels if isinstance(labels, pd.DataFrame) else pd.read_csv(labels, dtype=str, keep_default_na=False)
    image_cols = tuple(c.strip() for c in image_cols.split(",")) if isinstance(image_cols, str) else tuple(image_cols)
    label_cols = tuple(c.strip() for c in label_cols.split(",")) if isinstance(label_cols, str) else tuple(label_cols)
    for column in (*image_cols, *label_cols):
        if column not in truth.columns:
            raise ValueError(f"labels have no column {column!r}; columns are {list(truth.columns)}")
    if "image" not in pred.columns:
        raise ValueError("predictions have no 'image' column (write them with radiology predict)")
    classes = [c[len("prob_"):] for c in pred.columns if c.startswith("prob_")]
    if not classes:
        raise ValueError("predictions have no prob_<class> columns")
    if multi_label is None:
        multi_label = len(label_cols) > 1 or truth[label_cols[0]].astype(str).str.contains("|", regex=False).any()
    keys = truth[list(image_cols)].astype(str).agg("|".join, axis=1)
    errors = pred["error"].astype(str) if "error" in pred.columns else pd.Series([""] * len(pred))
    usable = pred[(errors.isin(["", "nan"])).to_numpy()].drop_duplicates("image").set_index("image")
    found = keys.isin(usable.index).to_numpy()
    if not found.any():
        raise ValueError("no labeled image has a prediction (check --image-col)")
    probs = usable.loc[keys[found], [f"prob_{c}" for c in classes]].to_numpy(np.float64)
    rows = truth[found]
    if multi_label:
        if len(label_cols) > 1:
            if list(label_cols) != classes:
                unknown = [c for c in label_cols if c not in classes]
                if unknown:
                    raise ValueError(f"label columns {unknown} are not predicted classes {classes}")
                probs = probs[:, [classes.index(c) for c in label_cols]]
                classes = list(label_cols)
            targets = rows[list(label_cols)].astype(float).to_numpy(np.float32)
        else:
            sets = [set(filter(None, str(v).split("|"))) for v in rows[label_cols[0]]]
            targets = np.array([[c in s for c in classes] for s in sets], np.float32)
    else:
        values = rows[label_cols[0]].astype(str).str.strip().tolist()
        unknown = sorted(set(values) - set(classes))
        if unknown:
            raise ValueError(f"labels {unknown[:5]} are not among the predicted classes {classes}")
        targets = np.array([classes.index(v) for v in values])
    th = None if thresholds is None else np.asarray(thresholds, np.float64)
    metrics = classification_metrics(targets, probs, classes, multi_label=bool(multi_label), thresholds=th)
    metrics["n"] = int(found.sum())
    metrics["missing"] = int((~found).sum())
    if out is not None:
        from radiology.io import atomic_write

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "metrics.json", json.dumps(metrics, indent=2, default=_json_default).encode())
        report = classification_report(targets, probs, classes, multi_label=bool(multi_label), thresholds=th)
        atomic_write(out / "report.txt", report.encode())
        if not multi_label:
            plot_confusion_matrix(targets, probs.argmax(1), classes, out / "confusion_matrix.png")
        plot_roc(targets, probs, classes, out / "roc.png", multi_label=bool(multi_label))
    return metrics


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
