"""Predicting with bundles (one, an ensemble, with flip test-time augmentation) and scoring
prediction files: what ``radiology predict`` and ``radiology evaluate`` run.

A prediction table has one row per input: ``image`` (as given: the CSV value, several
image columns joined by ``|``, or the path relative to the input folder), ``prediction``
(the class; multi-label: the labels above their thresholds joined by ``|``), one
``prob_<class>`` column per class, and ``error`` (empty when the input was fine). An input
that cannot be read gets its error and the others go on. Ids and error cells are UTF-8 text
that name inputs as given, never by an absolute path: undecodable bytes in a file name are
``\\xNN`` escapes, as in convert's report, and the caller's folders stay out of the table.

Scoring reads labels as training reads them and refuses, in one line, what it cannot score
truthfully: unknown labels, and a label kind (single- or multi-label) on which the
predictions, the bundle, the caller and the label table disagree.
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
    exclude: str | os.PathLike | None = None, progress: bool = True, allow_outside_root: bool = False,
) -> PredictionInputs:
    """Resolve a folder (recursive), a single file, or a CSV into prediction inputs.

    For a CSV, ``image_cols`` (default ``image``; several = views) hold paths relative to
    ``root`` (default: the CSV's folder) or SOP Instance UIDs found by reading the headers
    under ``root``; one entry per CSV row, in order. Rows whose image cannot be found get
    an error instead of stopping the run. ``progress`` shows a bar while UIDs are indexed.
    ``exclude`` names a folder inside a folder ``source`` whose files are not inputs (the
    output folder of a command that writes next to its inputs). In a folder, files with a
    table, text or archive suffix (``.csv``, ``.txt``, ``.json``, ...) are not inputs.
    A CSV value pointing outside ``root`` (``../x.png``, an absolute path; the rule training
    applies, :func:`radiology.data.escapes_root`) gets an error row and is not read, unless
    ``allow_outside_root``.

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
    from radiology.data import escapes_root, resolve_images

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_file() and source.suffix.lower() == ".csv":
        cols = _columns(image_cols or ("image",))
        table = pd.read_csv(source, dtype=str, keep_default_na=False)
        missing = [c for c in cols if c not in table.columns]
        if missing:
            raise ValueError(f"{source}: no column {missing[0]!r}; columns are {list(table.columns)}")
        base = Path(root) if root is not None else source.parent
        values = [v for c in cols for v in table[c].tolist()]
        outside = [not allow_outside_root and escapes_root(v) for v in values]
        # One look-up for every column: UIDs are indexed from the headers at most once.
        found = iter(resolve_images([v for v, out in zip(values, outside) if not out], base, progress=progress))
        found = [None if out else next(found) for out in outside]
        resolved = {c: found[i * len(table):(i + 1) * len(table)] for i, c in enumerate(cols)}
        escaped = {c: outside[i * len(table):(i + 1) * len(table)] for i, c in enumerate(cols)}
        ids, sources, errors = [], [], []
        for row in range(len(table)):
            ids.append("|".join(table[c].iloc[row] for c in cols))
            paths = [resolved[c][row] for c in cols]
            absent = [table[c].iloc[row] for c, p in zip(cols, paths) if p is None]
            away = [table[c].iloc[row] for c in cols if escaped[c][row]]
            sources.append(None if absent else tuple(paths))
            # The value as written in the CSV names the input; the root folder is the caller's own
            # (and may be a patient's name), so it stays out of the table.
            if away:
                errors.append(f"{away[0]}: points outside the root folder; not read")
            else:
                errors.append(f"{absent[0]}: no such file or SOP Instance UID under the root folder" if absent else "")
        return PredictionInputs(ids, sources, errors)
    from radiology.convert import display_name

    if source.is_file():
        return PredictionInputs([display_name(source.name)], [(source,)], [""])
    from radiology.data.labels import _NOT_IMAGE
    from radiology.dicom import find_files

    # Reports, notes and tables beside the images (conversion_report.csv, README.txt) are not
    # inputs; any other suffix may be a DICOM (archives name files by UID: "1.2.840...321").
    files = [p for p in find_files(source, exclude=exclude) if p.suffix.lower() not in _NOT_IMAGE]
    if not files:
        raise ValueError(f"{source}: no files to predict")
    # Undecodable bytes in a name become \xNN escapes, as in convert's report: the ids are written to UTF-8 tables.
    ids = [display_name(p.relative_to(source).as_posix()) for p in files]
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

    from radiology.data import input_error

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
                    errors[row] = input_error(error, paths, inputs.ids[row])
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


#: A softmax row sums to 1 up to float32 rounding and the decimal text of a CSV.
_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True)
class _Table:
    """A table with every cell as text (missing cells empty), and how errors name it."""

    frame: pd.DataFrame
    name: str
    from_file: bool

    def row(self, position: int) -> str:
        """One data row by its line in the file (the header is line 1), or by its DataFrame index."""
        if self.from_file:
            return f"{self.name} line {position + 2}"
        return f"{self.name} row {self.frame.index[position]!r}"


def _read_table(source: str | os.PathLike | pd.DataFrame, what: str) -> _Table:
    if isinstance(source, pd.DataFrame):
        text = source.astype(object).where(source.notna(), "").astype(str)
        return _Table(text, what, False)
    return _Table(pd.read_csv(source, dtype=str, keep_default_na=False), os.fspath(source), True)


def _label_tokens(value: str) -> list[str]:
    """The labels of one multi-label cell, split and stripped as training reads them (``"B | C"`` is B and C)."""
    return [token.strip() for token in value.split("|") if token.strip()]


def _columns(names: Sequence[str] | str) -> tuple[str, ...]:
    return tuple(c.strip() for c in names.split(",")) if isinstance(names, str) else tuple(names)


def _is_softmax(probs: np.ndarray, predictions: Sequence[str] | None, classes: Sequence[str]) -> bool:
    """Whether every row is a single-label model's: it sums to 1 and its prediction is its most probable class.

    Sigmoid rows of several labels sum to 1 only by chance, and their prediction is the set of
    labels above threshold, so both must hold on every row.
    """
    if not np.allclose(probs.sum(axis=1), 1.0, rtol=0.0, atol=_SUM_TOLERANCE):
        return False
    return predictions is None or all(p == classes[i] for p, i in zip(predictions, probs.argmax(axis=1)))


def _kind(multi_label: bool) -> str:
    return "multi-label" if multi_label else "single-label"


def _bundle_labels(folder: str | os.PathLike) -> tuple[dict, str]:
    """A bundle's ``labels.json`` (read as data only, after its manifest is verified) and its name for errors."""
    from radiology.errors import one_line
    from radiology.models import verify_bundle

    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such bundle folder")
    # As load_bundle does: a bundle damaged or changed since it was saved is refused, naming the file.
    verify_bundle(folder)
    path = Path(folder) / "labels.json"
    name = os.fspath(path)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{name}: not valid JSON ({one_line(error)})") from None
    if (not isinstance(record, dict) or not isinstance(record.get("classes"), list)
            or not isinstance(record.get("multi_label"), bool)):
        raise ValueError(f"{name}: needs 'classes' (a list) and 'multi_label' (true or false)")
    return record, name


def _label_kind(declared: bool | None, record: dict | None, record_name: str, softmax: bool, pred_name: str) -> bool:
    """The label kind of the predictions: the bundle's when given, else their probability rows'; checked."""
    looks = ("single-label (every probability row sums to 1)" if softmax
             else "multi-label (probability rows that do not sum to 1)")
    if record is not None:
        kind = record["multi_label"]
        if kind == softmax:
            raise ValueError(f"{record_name} says {_kind(kind)} but {pred_name} are {looks}: "
                             f"they were not made by this bundle")
        source = f"as {record_name} says"
    else:
        kind, source = not softmax, looks.split(" ", 1)[1]
    if declared is not None and bool(declared) != kind:
        raise ValueError(f"multi_label={bool(declared)} but {pred_name} are {_kind(kind)} {source}")
    return kind


def _single_targets(truth: _Table, column: str, classes: list[str], kind_note: str) -> np.ndarray:
    """Class indices of a single-label column; -1 where the label is empty (unlabeled)."""
    values = truth.frame[column].str.strip().tolist()
    joined = next((i for i, v in enumerate(values) if "|" in v), None)
    if joined is not None:
        raise ValueError(f"{truth.row(joined)}: multi-label value {values[joined]!r} in column {column!r} "
                         f"but {kind_note}")
    unknown = sorted({v for v in values if v} - set(classes))
    if unknown:
        raise ValueError(f"{truth.name}: label(s) {unknown[:5]} in column {column!r} are not among the predicted "
                         f"classes {classes}")
    position = {c: i for i, c in enumerate(classes)}
    return np.array([position[v] if v else -1 for v in values], np.int64)


def _token_targets(truth: _Table, column: str, classes: list[str]) -> np.ndarray:
    """0/1 rows of a ``A|B`` column; an empty cell is no label present, as training reads it."""
    rows = [_label_tokens(v) for v in truth.frame[column]]
    unknown = sorted({t for tokens in rows for t in tokens} - set(classes))
    if unknown:
        first = next(i for i, tokens in enumerate(rows) if set(tokens) & set(unknown))
        raise ValueError(f"{truth.name}: label(s) {unknown[:5]} in column {column!r} are not among the predicted "
                         f"classes {classes} (first: {truth.row(first)})")
    return np.array([[c in tokens for c in classes] for tokens in rows], np.float32).reshape(len(rows), len(classes))


def _binary_targets(truth: _Table, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """0/1 columns as a matrix, and which rows are labeled (a row with every cell empty is not)."""
    cells = truth.frame[list(columns)].apply(lambda column: column.str.strip())
    labeled = (cells != "").any(axis=1).to_numpy()
    values = cells.apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    bad = labeled[:, None] & ~np.isin(values, (0.0, 1.0))
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"{truth.row(row)}: label column {columns[column]!r} holds "
                         f"{cells.iat[row, column]!r}; 0/1 label columns take 0 or 1")
    return np.where(labeled[:, None], values, 0.0).astype(np.float32), labeled


def _thresholds(given, record: dict | None, n: int) -> np.ndarray | None:
    """Multi-label thresholds: the ones given, else the bundle's; one per predicted class."""
    chosen = given if given is not None else (record or {}).get("thresholds")
    if chosen is None:
        return None
    chosen = np.asarray(chosen, np.float64).reshape(-1)
    if chosen.size != n:
        raise ValueError(f"{chosen.size} thresholds for {n} predicted classes")
    return chosen


def evaluate_predictions(
    predictions: str | os.PathLike | pd.DataFrame,
    labels: str | os.PathLike | pd.DataFrame,
    *,
    image_cols: Sequence[str] | str = ("image",),
    label_cols: Sequence[str] | str = ("label",),
    multi_label: bool | None = None,
    out: str | os.PathLike | None = None,
    thresholds: Sequence[float] | None = None,
    bundle: str | os.PathLike | None = None,
) -> dict:
    """Score a prediction table against a label table, refusing what cannot be scored truthfully.

    Rows are matched on the image reference (several image columns joined by ``|``, as
    ``radiology predict`` writes them). Classes are taken from the ``prob_<class>``
    columns, and so is the label kind unless ``bundle`` is given: single-label when every
    probability row sums to 1 (within 1e-3) and its prediction is its most probable class,
    else multi-label. A ``multi_label``, a bundle or a label table that disagrees with the
    predictions is an error, never a silent re-reading.

    Labels are read as training reads them. Single-label: one column of class names; an
    empty cell is unlabeled, skipped and counted. Multi-label: one column of ``A|B`` strings,
    each name stripped (``"B | C"`` is B and C; an empty cell is no label present), or one
    0/1 column per label (a row with every cell empty is unlabeled). A label that is not a
    predicted class is an error naming it.

    Parameters
    ----------
    predictions, labels : path or DataFrame
    image_cols, label_cols : str or sequence of str
    multi_label : bool, optional
        The kind the caller expects; checked against the predictions.
    out : path, optional
        Folder for ``metrics.json``, ``report.txt``, ``confusion_matrix.png`` (single-label)
        and ``roc.png``.
    thresholds : sequence of float, optional
        Multi-label decision thresholds, one per predicted class (default: the bundle's, else 0.5).
    bundle : path, optional
        The bundle folder that made the predictions, verified against its manifest: its
        ``labels.json`` (read as data) gives the label kind, the classes (checked against the
        ``prob_`` columns) and the thresholds.

    Returns
    -------
    dict
        :func:`radiology.train.metrics.classification_metrics` plus ``n`` (rows scored),
        ``missing`` (labeled images without a usable prediction), ``unlabeled`` (label rows
        skipped for an empty label) and ``multi_label`` (the kind scored).

    Raises
    ------
    ValueError
        A missing column, a label kind that disagrees, unknown labels, a bad 0/1 cell, or no
        labeled image with a prediction; the message names the table, line and values.
    FileNotFoundError
        ``bundle`` is not a folder.
    radiology.models.BundleError
        ``bundle`` has no manifest, or a file that differs from it (damaged or changed since saving).

    Examples
    --------
    >>> predictions = pd.DataFrame({"image": ["a", "b"], "prediction": ["B|C", "C"],
    ...                             "prob_B": [0.9, 0.2], "prob_C": [0.8, 0.7], "error": ["", ""]})
    >>> labels = pd.DataFrame({"image": ["a", "b", "c"], "label": ["B | C", "C", ""]})
    >>> metrics = evaluate_predictions(predictions, labels)
    >>> metrics["multi_label"], metrics["macro_f1"], metrics["n"], metrics["missing"]
    (True, 1.0, 2, 1)
    """
    from radiology.train.metrics import classification_metrics, classification_report
    from radiology.train.plots import plot_confusion_matrix, plot_roc

    pred = _read_table(predictions, "predictions")
    truth = _read_table(labels, "labels")
    image_cols, label_cols = _columns(image_cols), _columns(label_cols)
    for column in (*image_cols, *label_cols):
        if column not in truth.frame.columns:
            raise ValueError(f"{truth.name}: no column {column!r}; columns are {list(truth.frame.columns)}")
    if "image" not in pred.frame.columns:
        raise ValueError(f"{pred.name}: no 'image' column (write predictions with predict_table)")
    classes = [c[len("prob_"):] for c in pred.frame.columns if c.startswith("prob_")]
    if not classes:
        raise ValueError(f"{pred.name}: no prob_<class> columns")
    errors = pred.frame["error"].str.strip() if "error" in pred.frame.columns else pd.Series("", pred.frame.index)
    ok = np.flatnonzero((errors == "").to_numpy())
    ok = ok[~pred.frame["image"].iloc[ok].duplicated().to_numpy()]  # an image predicted twice: the first row
    if not ok.size:
        raise ValueError(f"{pred.name}: every row has an error; nothing to score")
    usable = pred.frame.iloc[ok]
    probs_all = usable[[f"prob_{c}" for c in classes]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    broken = np.flatnonzero(~np.isfinite(probs_all).all(axis=1))
    if broken.size:
        raise ValueError(f"{pred.row(ok[broken[0]])}: a prob_ cell is not a number, on a row without an error")

    record, record_name = _bundle_labels(bundle) if bundle is not None else (None, "")
    if record is not None and [str(c) for c in record["classes"]] != classes:
        raise ValueError(f"{record_name} has classes {record['classes']} but {pred.name} has prob_ columns "
                         f"for {classes}")
    shown = usable["prediction"].tolist() if "prediction" in usable.columns else None
    softmax = _is_softmax(probs_all, shown, classes)
    kind = _label_kind(multi_label, record, record_name, softmax, pred.name)
    th = _thresholds(thresholds, record, len(classes)) if kind else None

    if not kind:
        if len(label_cols) > 1:
            raise ValueError(f"{truth.name}: several label columns {list(label_cols)} are multi-label but "
                             f"{pred.name} are single-label")
        targets_all = _single_targets(truth, label_cols[0], classes, f"{pred.name} are single-label")
        labeled = targets_all >= 0
    elif len(label_cols) > 1:
        unknown = [c for c in label_cols if c not in classes]
        if unknown:
            raise ValueError(f"{truth.name}: label columns {unknown} are not predicted classes {classes}")
        targets_all, labeled = _binary_targets(truth, label_cols)
        order = [classes.index(c) for c in label_cols]
        probs_all, classes = probs_all[:, order], list(label_cols)
        th = None if th is None else th[order]
    else:
        targets_all = _token_targets(truth, label_cols[0], classes)
        labeled = np.ones(len(truth.frame), bool)

    keys = pd.Series(["|".join(views) for views in zip(*(truth.frame[c] for c in image_cols))], dtype=object)
    position = {image: i for i, image in enumerate(usable["image"])}
    found = labeled & keys.isin(position).to_numpy()
    if not found.any():
        raise ValueError(f"no labeled image of {truth.name} has a prediction in {pred.name} (check image_cols)")
    probs = probs_all[[position[k] for k in keys[found]]]
    targets = targets_all[found]
    metrics = classification_metrics(targets, probs, classes, multi_label=kind, thresholds=th)
    metrics.update(n=int(found.sum()), missing=int((labeled & ~found).sum()), unlabeled=int((~labeled).sum()),
                   multi_label=bool(kind))
    if out is not None:
        from radiology.io import atomic_write

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "metrics.json", json.dumps(metrics, indent=2, default=_json_default).encode())
        report = classification_report(targets, probs, classes, multi_label=kind, thresholds=th)
        atomic_write(out / "report.txt", report.encode())
        if not kind:
            plot_confusion_matrix(targets, probs.argmax(1), classes, out / "confusion_matrix.png")
        plot_roc(targets, probs, classes, out / "roc.png", multi_label=kind)
    return metrics


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
