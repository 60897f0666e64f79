"""Scoring prediction files: a predictions table and a label table in, metrics, a report and plots out.

A predictions table is what :func:`radiology.predict.predict_table` (``radiology predict``)
writes: one row per input with ``image`` (several image columns joined by ``|``),
``prediction``, one ``prob_<class>`` column per class and ``error`` (empty when the input was
fine). :func:`evaluate_predictions` matches its rows to a label table on the image reference,
reads the labels as training reads them, scores with :func:`radiology.evaluate.classification_metrics`,
adds patient-level bootstrap confidence intervals (:func:`radiology.evaluate.bootstrap.bootstrap_intervals`)
and writes ``metrics.json``, ``report.txt``, ``confusion_matrix.png`` (single-label), ``roc.png``
and ``calibration.png`` (two classes or multi-label).

Scoring refuses, in one line, what it cannot score truthfully: unknown labels, and a label
kind (single- or multi-label) on which the predictions, the bundle, the caller and the label
table disagree. It needs numpy, pandas, scikit-learn and matplotlib, never torch: a bundle's
manifest is verified here with the checks and messages of :func:`radiology.models.verify_bundle`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from radiology.classes import class_order
from radiology.errors import one_line
from radiology.evaluate.bootstrap import bootstrap_intervals, interval_key
from radiology.evaluate.plots import plot_calibration, plot_confusion_matrix, plot_roc
from radiology.evaluate.reports import classification_metrics, classification_report
from radiology.io import atomic_write, column_names, write_json
from radiology.manifest import MANIFEST, BundleError, read_manifest, verified_bytes

__all__ = ["evaluate_predictions"]


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
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"{folder}: no such bundle folder")
    # As load_bundle does: a bundle damaged or changed since it was saved is refused, naming the file.
    data = _verified_labels(Path(folder))
    name = os.fspath(Path(folder) / _LABELS)
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise ValueError(f"{name}: not valid JSON ({one_line(error)})") from None
    if (not isinstance(record, dict) or not isinstance(record.get("classes"), list)
            or not isinstance(record.get("multi_label"), bool)):
        raise ValueError(f"{name}: needs 'classes' (a list) and 'multi_label' (true or false)")
    return record, name


def _verified_labels(folder: Path) -> bytes:
    """``labels.json``'s bytes, after every file the manifest lists is checked (as ``verify_bundle`` does)."""
    files = read_manifest(folder)
    if _LABELS not in files:  # nothing would vouch for it
        raise BundleError(f"{folder / _LABELS}: not listed in {MANIFEST}")
    for name in files:  # one file in memory at a time
        if name != _LABELS:
            verified_bytes(folder, files, name)
    return verified_bytes(folder, files, _LABELS)


_LABELS = "labels.json"


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


#: Columns predictions and labels can be matched on without naming one: a file's id, or its DICOM UID.
JOIN_COLUMNS = ("image", "SOPInstanceUID")
_UID_COLUMN = "SOPInstanceUID"


def _is_submission(frame: pd.DataFrame) -> bool:
    """A Kaggle submission (``SOPInstanceUID,Target``, decisions only) rather than a table with probabilities."""
    return (_UID_COLUMN in frame.columns and "Target" in frame.columns
            and not any(str(c).startswith("prob_") for c in frame.columns))


def _join_columns(pred: _Table, truth: _Table, named: tuple[str, ...] | None) -> tuple[str, tuple[str, ...]]:
    """The predictions' column and the labels' column(s) whose values match rows.

    Named label columns (``image_cols``) are matched to the predictions' ``SOPInstanceUID`` when
    the one named is ``SOPInstanceUID`` (and the predictions have it), else to their ``image``
    (a submission has none: its ``SOPInstanceUID``). Not named: the first of :data:`JOIN_COLUMNS`
    both tables have.
    """
    have, label_have = list(pred.frame.columns), list(truth.frame.columns)
    if named is not None:
        absent = [c for c in named if c not in label_have]
        if absent:
            raise ValueError(f"{truth.name}: no column {absent[0]!r} (image_cols); columns are {label_have}")
        if named == (_UID_COLUMN,) and _UID_COLUMN in have:
            return _UID_COLUMN, named
        for key in JOIN_COLUMNS:
            if key in have:
                return key, named
        raise ValueError(f"{pred.name}: no 'image' or 'SOPInstanceUID' column to match rows on; columns are {have}")
    for key in JOIN_COLUMNS:
        if key in have and key in label_have:
            return key, (key,)
    raise ValueError(f"no column to match rows on: {pred.name} has {have}, {truth.name} has {label_have}; they "
                     f"are matched on 'image' or 'SOPInstanceUID' when both have it (else name the labels' image "
                     f"column(s) with image_cols)")


def _keyed_rows(pred: _Table, key: str, rows: np.ndarray) -> np.ndarray:
    """The rows with a value to match (an image predicted twice: its first row)."""
    values = pred.frame[key].iloc[rows].str.strip()
    if not (values != "").any():
        raise ValueError(f"{pred.name}: no row without an error has a {key!r} value to match labels on"
                         + (" (no input was a DICOM with a SOP Instance UID)" if key == _UID_COLUMN else ""))
    rows = rows[(values != "").to_numpy()]
    return rows[~pred.frame[key].iloc[rows].str.strip().duplicated().to_numpy()]


def _matches(pred: _Table, truth: _Table, key: str, image_cols: tuple[str, ...], usable: pd.DataFrame,
             labeled: np.ndarray) -> tuple[pd.Series, dict[str, int], np.ndarray]:
    """Each label row's key, the predictions' row of each key, and which labeled rows have a prediction."""
    keys = pd.Series(["|".join(v.strip() for v in views) for views in zip(*(truth.frame[c] for c in image_cols))],
                     dtype=object)
    position = {value.strip(): i for i, value in enumerate(usable[key])}
    found = labeled & keys.isin(position).to_numpy() & (keys != "").to_numpy()
    if not found.any():
        named = "+".join(image_cols)
        raise ValueError(f"no labeled image of {truth.name} has a prediction in {pred.name}: none of its "
                         f"{int(labeled.sum())} labeled rows' {named!r} values is among the {len(position)} "
                         f"{key!r} values of the predictions (check image_cols)")
    return keys, position, found


def _patients(truth: _Table, groups: str | None, found: np.ndarray) -> np.ndarray | None:
    """The patient id of every scored label row (``groups`` names the column), or None without ``groups``."""
    if groups is None:
        return None
    patients = truth.frame[groups].str.strip().to_numpy()[found]
    empty = np.flatnonzero(patients == "")
    if empty.size:
        raise ValueError(f"{truth.row(np.flatnonzero(found)[empty[0]])}: no patient id in column {groups!r} "
                         f"(groups={groups!r} needs one on every scored row)")
    return patients


def _interval_note(bootstrap: dict, level: float) -> str:
    """The report's last line: what its ``[low, high]`` intervals are."""
    return (f"\n\n[low, high]: {interval_key(level)[2:]}% percentile bootstrap intervals, {bootstrap['replicates']} "
            f"replicates resampling {bootstrap['groups']} {bootstrap['unit']}s (seed {bootstrap['seed']})")


def evaluate_predictions(
    predictions: str | os.PathLike | pd.DataFrame,
    labels: str | os.PathLike | pd.DataFrame,
    *,
    image_cols: Sequence[str] | str | None = None,
    label_cols: Sequence[str] | str | None = None,
    multi_label: bool | None = None,
    out: str | os.PathLike | None = None,
    thresholds: Sequence[float] | None = None,
    bundle: str | os.PathLike | None = None,
    ordinal: bool = False,
    groups: str | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Score a prediction table against a label table, refusing what cannot be scored truthfully.

    Rows are matched without guessing, on a column both tables have: ``image`` (the
    predictions' image reference; several label image columns joined by ``|``, as ``radiology
    predict`` writes views) or ``SOPInstanceUID`` (the UID ``radiology predict`` reads from each
    DICOM; UNIFESP's ``train.csv`` keys images by it). ``image_cols`` names the labels' column(s):
    named ``SOPInstanceUID``, they match the predictions' ``SOPInstanceUID``; any other name
    matches the predictions' ``image``. Not named: ``image`` when both tables have it, else
    ``SOPInstanceUID`` when both have it, else an error naming each table's columns. A label
    table none of whose labeled rows matches a prediction is an error, never a score of 0 rows.

    A Kaggle submission (``SOPInstanceUID,Target``, what ``radiology predict --format kaggle``
    writes, :func:`radiology.predict.kaggle_submission`) holds decisions, not probabilities: it
    is scored against a label column (default ``Target``) of the same convention, class names
    (UNIFESP: class indices) separated by spaces, several meaning multi-label (the kind, unless
    ``multi_label`` or a bundle says it). Only the metrics of decisions are computed
    (:func:`radiology.evaluate.decision_metrics`: accuracy, balanced accuracy, F1 per class,
    macro and micro F1, subset accuracy), with ``probabilities: False`` in the result: no AUC,
    calibration or ROC, and ``metrics.json``, ``report.txt`` and (single-label)
    ``confusion_matrix.png`` only. Single-label: an empty ``Target`` (a failed input) is no
    prediction and an empty label is unlabeled (skipped and counted). Multi-label, as Kaggle
    scores it: an empty ``Target`` predicts no label (a failed input's too) and an empty label
    cell is an image with no finding.

    Otherwise classes are taken from the ``prob_<class>``
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
        The prediction table (as ``radiology predict`` writes it, with ``prob_<class>``
        columns) and the label table, or CSV files of them.
    image_cols : str or sequence of str, optional
        Image reference column(s) of the label table (comma-separated names or a sequence);
        default: the one of ``image`` and ``SOPInstanceUID`` both tables have (see above).
    label_cols : str or sequence of str, optional
        Label column(s) of the label table (comma-separated names or a sequence); default
        ``label``, or ``Target`` for a Kaggle submission.
    multi_label : bool, optional
        The kind the caller expects; checked against the predictions.
    out : path, optional
        Folder for ``metrics.json``, ``report.txt`` (headline metrics as ``value [low, high]``),
        ``confusion_matrix.png`` (single-label), ``roc.png`` (two classes: one curve of the
        second class, with the argmax operating point) and ``calibration.png`` (two classes or
        multi-label: :func:`radiology.evaluate.plot_calibration`).
    thresholds : sequence of float, optional
        Multi-label decision thresholds, one per predicted class (default: the bundle's, else 0.5).
    bundle : path, optional
        The bundle folder that made the predictions, verified against its manifest: its
        ``labels.json`` (read as data) gives the label kind, the classes (checked against the
        ``prob_`` columns) and the thresholds.
    ordinal : bool, optional
        The classes are ordered grades, in ``prob_`` column order (e.g. Kellgren–Lawrence 0-4):
        only then is ``quadratic_kappa`` computed and reported. Single-label only.
    groups : str, optional
        A column of the label table holding the patient id of every image: the bootstrap then
        resamples patients, every image of a drawn patient coming along. Default: every image is
        its own group (right only when each patient has one image).
    n_boot : int, optional
        Bootstrap replicates of the confidence intervals; 0 for none.
    level : float, optional
        Coverage of the intervals (0.95: the key is ``ci95``).
    seed : int, optional
        Seed of the bootstrap draws: the same seed gives the same intervals.

    Returns
    -------
    dict
        :func:`radiology.evaluate.classification_metrics` plus ``n`` (rows scored),
        ``missing`` (labeled images without a usable prediction), ``unlabeled`` (label rows
        skipped for an empty label), ``multi_label`` (the kind scored) and
        ``matched_on`` (the predictions' column rows were matched on: ``image`` or
        ``SOPInstanceUID``); a Kaggle submission also ``probabilities: False``, and only
        :func:`radiology.evaluate.decision_metrics`'s metrics. With ``n_boot > 0``
        also ``ci95`` (named after ``level``: ``{metric: [low, high]}``, percentile intervals,
        ``None`` where no replicate defined the metric) and ``bootstrap`` (``replicates``,
        ``groups``, ``unit``: ``"patient"`` or ``"image"``, ``seed`` and ``used``: the
        replicates where each metric was defined; the others are dropped).

    Raises
    ------
    ValueError
        A missing column, no column to match rows on, a label kind that disagrees, unknown
        labels, a bad 0/1 cell, thresholds for a Kaggle submission, or no labeled image with a
        prediction; the message names the table, line and values.
    FileNotFoundError
        ``bundle`` is not a folder.
    radiology.manifest.BundleError
        ``bundle`` has no manifest, or a file that differs from it (damaged or changed since
        saving): the one line :func:`radiology.models.verify_bundle` gives, by the same rule
        (:mod:`radiology.manifest`, no torch). A ``ValueError`` too.

    Examples
    --------
    >>> predictions = pd.DataFrame({"image": ["a", "b"], "prediction": ["B|C", "C"],
    ...                             "prob_B": [0.9, 0.2], "prob_C": [0.8, 0.7], "error": ["", ""]})
    >>> labels = pd.DataFrame({"image": ["a", "b", "c"], "label": ["B | C", "C", ""]})
    >>> metrics = evaluate_predictions(predictions, labels, n_boot=0)
    >>> metrics["multi_label"], metrics["macro_f1"], metrics["n"], metrics["missing"]
    (True, 1.0, 2, 1)

    Single-label, written to a folder:

    >>> import json, tempfile
    >>> predictions = pd.DataFrame({"image": ["a", "b", "c", "d"], "prediction": ["x", "y", "y", "y"],
    ...                             "prob_x": [0.9, 0.2, 0.4, 0.3], "prob_y": [0.1, 0.8, 0.6, 0.7]})
    >>> labels = pd.DataFrame({"image": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]})
    >>> out = Path(tempfile.mkdtemp())
    >>> evaluate_predictions(predictions, labels, out=out, n_boot=200)["accuracy"]
    0.75
    >>> written = json.loads((out / "metrics.json").read_text())
    >>> written["confusion_matrix"], written["bootstrap"]["unit"], len(written["ci95"]["accuracy"])
    ([[1, 1], [0, 2]], 'image', 2)
    >>> sorted(p.name for p in out.iterdir())
    ['calibration.png', 'confusion_matrix.png', 'metrics.json', 'report.txt', 'roc.png']

    A Kaggle submission against UNIFESP-style labels, matched on ``SOPInstanceUID``:

    >>> submission = pd.DataFrame({"SOPInstanceUID": ["1.1", "1.2", "1.3"], "Target": ["3", "11", "3 13"]})
    >>> truth = pd.DataFrame({"SOPInstanceUID": ["1.1", "1.2", "1.3"], "Target": ["3", "3", "3 13"]})
    >>> metrics = evaluate_predictions(submission, truth, n_boot=0)
    >>> metrics["matched_on"], metrics["multi_label"], metrics["subset_accuracy"], "macro_auc" in metrics
    ('SOPInstanceUID', True, 0.6666666666666666, False)
    """
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be a whole number >= 0 (0: no intervals), got {n_boot!r}")
    if not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie between 0 and 1 (e.g. 0.95), got {level!r}")
    if ordinal and multi_label:
        raise ValueError("ordinal=True needs single-label classes, not multi_label=True")
    if groups is not None and not isinstance(groups, str):
        raise ValueError(f"groups must be the name of a label-table column of patient ids, got {groups!r}")
    pred = _read_table(predictions, "predictions")
    truth = _read_table(labels, "labels")
    submission = _is_submission(pred.frame)
    key, image_cols = _join_columns(pred, truth, None if image_cols is None else column_names(image_cols))
    label_cols = column_names(label_cols if label_cols is not None else ("Target" if submission else "label"))
    for column in (*label_cols, *([groups] if groups is not None else [])):
        if column not in truth.frame.columns:
            raise ValueError(f"{truth.name}: no column {column!r}; columns are {list(truth.frame.columns)}")
    if submission:
        return _evaluate_decisions(pred, truth, key, image_cols, label_cols, multi_label=multi_label, out=out,
                                   thresholds=thresholds, bundle=bundle, ordinal=ordinal, groups=groups,
                                   n_boot=n_boot, level=level, seed=seed)
    classes = [c[len("prob_"):] for c in pred.frame.columns if c.startswith("prob_")]
    if not classes:
        raise ValueError(f"{pred.name}: no prob_<class> columns, and not a Kaggle submission (SOPInstanceUID,Target)")
    errors = pred.frame["error"].str.strip() if "error" in pred.frame.columns else pd.Series("", pred.frame.index)
    ok = np.flatnonzero((errors == "").to_numpy())
    if not ok.size:
        raise ValueError(f"{pred.name}: every row has an error; nothing to score")
    ok = _keyed_rows(pred, key, ok)
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
    if ordinal and kind:
        raise ValueError(f"ordinal=True but {pred.name} are multi-label; ordinal grades are single-label")

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

    keys, position, found = _matches(pred, truth, key, image_cols, usable, labeled)
    probs = probs_all[[position[k] for k in keys[found]]]
    targets = targets_all[found]
    patients = _patients(truth, groups, found)
    metrics = classification_metrics(targets, probs, classes, multi_label=kind, thresholds=th, ordinal=ordinal)
    metrics.update(n=int(found.sum()), missing=int((labeled & ~found).sum()), unlabeled=int((~labeled).sum()),
                   multi_label=bool(kind), matched_on=key)
    intervals = None
    if n_boot:
        boot = bootstrap_intervals(targets, probs, multi_label=kind, groups=patients, thresholds=th, ordinal=ordinal,
                                   n_boot=int(n_boot), level=float(level), seed=seed)
        intervals = boot["interval"]
        metrics[interval_key(level)] = intervals
        metrics["bootstrap"] = {key: boot[key] for key in ("replicates", "groups", "unit", "seed", "used")}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        report = classification_report(targets, probs, classes, multi_label=kind, thresholds=th, ordinal=ordinal,
                                       intervals=intervals)
        if intervals is not None:
            report += _interval_note(metrics["bootstrap"], level)
        atomic_write(out / "report.txt", report.encode())
        if not kind:
            plot_confusion_matrix(targets, probs.argmax(1), classes, out / "confusion_matrix.png")
        plot_roc(targets, probs, classes, out / "roc.png", multi_label=kind)
        if kind or len(classes) == 2:
            plot_calibration(targets, probs, classes, out / "calibration.png")
    return metrics


def _evaluate_decisions(pred: _Table, truth: _Table, key: str, image_cols: tuple[str, ...],
                        label_cols: tuple[str, ...], *, multi_label, out, thresholds, bundle, ordinal, groups,
                        n_boot: int, level: float, seed: int) -> dict:
    """:func:`evaluate_predictions` of a Kaggle submission: ``Target`` decisions against a ``Target`` label column."""
    from radiology.evaluate.reports import decision_metrics, decision_report

    if thresholds is not None:
        raise ValueError(f"thresholds: {pred.name} is a Kaggle submission of decisions; no threshold applies")
    if len(label_cols) != 1:
        raise ValueError(f"{truth.name}: a Kaggle submission is scored against one label column of space-separated "
                         f"class indices, not {list(label_cols)}")
    column = label_cols[0]
    predicted = [cell.split() for cell in pred.frame["Target"]]
    truths = [cell.split() for cell in truth.frame[column]]
    record, record_name = _bundle_labels(bundle) if bundle is not None else (None, "")
    if record is not None:
        kind = bool(record["multi_label"])
        if multi_label is not None and bool(multi_label) != kind:
            raise ValueError(f"multi_label={bool(multi_label)} but {record_name} says {_kind(kind)}")
    else:
        kind = bool(multi_label) if multi_label is not None else any(len(t) > 1 for t in (*predicted, *truths))
    if kind:
        # As Kaggle scores it: an empty Target predicts no label (a failed input too), an empty label cell is an
        # image with no finding; dropping them would hide every image the model called clear.
        ok, labeled = np.arange(len(predicted)), np.ones(len(truths), bool)
    else:
        # A row without a target (a failed input of radiology predict) is no prediction: its label counts as missing.
        ok = np.flatnonzero(np.array([bool(tokens) for tokens in predicted], bool))
        if not ok.size:
            raise ValueError(f"{pred.name}: no row has a Target; nothing to score")
        labeled = np.array([bool(tokens) for tokens in truths], bool)
    ok = _keyed_rows(pred, key, ok)
    usable = pred.frame.iloc[ok]
    keys, position, found = _matches(pred, truth, key, image_cols, usable, labeled)
    rows = np.flatnonzero(found)
    truth_tokens = [truths[r] for r in rows]
    pred_tokens = [predicted[ok[position[keys[r]]]] for r in rows]
    several = next((i for i, (t, d) in enumerate(zip(truth_tokens, pred_tokens)) if len(t) > 1 or len(d) > 1), None)
    if not kind and several is not None:
        cause = f"{record_name} says single-label" if record is not None else "multi_label=False"
        raise ValueError(f"{truth.row(rows[several])}: several classes in {column!r} or in its prediction's Target, "
                         f"but {cause}")
    if ordinal and kind:
        raise ValueError(f"ordinal=True but {pred.name} or {truth.name} are multi-label; ordinal grades are "
                         f"single-label")
    seen = {t for tokens in (*truth_tokens, *pred_tokens) for t in tokens}
    if record is not None:
        classes = [str(c) for c in record["classes"]]
        unknown = sorted(seen - set(classes))
        if unknown:
            raise ValueError(f"class(es) {unknown[:5]} in {truth.name} or {pred.name} are not among {record_name}'s "
                             f"classes {classes}")
    else:
        classes = class_order(seen)
    index = {c: i for i, c in enumerate(classes)}
    if kind:
        targets = np.zeros((len(rows), len(classes)), np.int64)
        decisions = np.zeros_like(targets)
        for i, (t, d) in enumerate(zip(truth_tokens, pred_tokens)):
            targets[i, [index[c] for c in t]] = 1
            decisions[i, [index[c] for c in d]] = 1
    else:
        targets = np.array([index[t[0]] for t in truth_tokens], np.int64)
        decisions = np.array([index[d[0]] for d in pred_tokens], np.int64)
    patients = _patients(truth, groups, found)
    metrics = decision_metrics(targets, decisions, classes, multi_label=kind, ordinal=ordinal)
    metrics.update(n=int(found.sum()), missing=int((labeled & ~found).sum()), unlabeled=int((~labeled).sum()),
                   multi_label=bool(kind), matched_on=key)
    intervals = None
    if n_boot:
        # The decisions as 0/1 scores: their argmax (single-label) or p > 0.5 (multi-label) are the decisions.
        scores = decisions.astype(np.float64) if kind else np.eye(len(classes))[decisions]
        boot = bootstrap_intervals(targets, scores, multi_label=kind, groups=patients, ordinal=ordinal,
                                   n_boot=int(n_boot), level=float(level), seed=seed)
        kept = [name for name in boot["interval"] if name in metrics and not isinstance(metrics[name], dict)]
        intervals = {name: boot["interval"][name] for name in kept}
        metrics[interval_key(level)] = intervals
        metrics["bootstrap"] = {k: boot[k] for k in ("replicates", "groups", "unit", "seed")}
        metrics["bootstrap"]["used"] = {name: boot["used"][name] for name in kept}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "metrics.json", metrics)
        report = decision_report(targets, decisions, classes, multi_label=kind, ordinal=ordinal, intervals=intervals)
        if intervals is not None:
            report += _interval_note(metrics["bootstrap"], level)
        atomic_write(out / "report.txt", report.encode())
        if not kind:
            plot_confusion_matrix(targets, decisions, classes, out / "confusion_matrix.png")
    return metrics
