"""Labeled image lists: what a dataset *is*, before any pixel is read.

A :class:`LabeledImages` holds, for every sample, one path per view, the reference the
user gave (CSV value or path relative to the folder), the target, and optionally a
patient group. It comes from a class-per-folder tree (:func:`from_folder`), a CSV
(:func:`from_csv`: file paths, or DICOM SOP Instance UIDs as in the Kaggle UNIFESP
layout; single- or multi-label; one or several views) or a plain list of files
(:func:`from_paths`, unlabeled).

Patient ids (``groups``) are personal data: they stay in memory for grouped splits and
are never written by :meth:`LabeledImages.summary`.
"""

from __future__ import annotations

import logging
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from radiology.classes import class_order, plain_name
from radiology.dicom import DicomError, read_dataset
from radiology.files import find_inputs, is_image_file

__all__ = [
    "LabeledImages", "from_folder", "from_csv", "from_paths", "index_dicom_uids", "dicom_patient_ids", "resolve_images",
    "escapes_root", "patient_column",
]

logger = logging.getLogger(__name__)

# Column names that hold a patient id in the public datasets' tables, normalized (lower case,
# letters and digits only): "patient" (FracAtlas fixture), "patientid" (ieee8023), "Patient ID"
# (NIH), "PatientID" (DICOM exports), "subject_id" (MIMIC), in order of preference.
PATIENT_COLUMNS = ("patientid", "patient", "patientnumber", "patientno", "subjectid", "participantid")



@dataclass
class LabeledImages:
    """Samples of a dataset: view paths, references, targets, classes and patient groups.

    Attributes
    ----------
    paths : list of tuple of pathlib.Path
        One tuple of ``V`` view paths per sample.
    ids : list of str
        The image reference as given: the CSV value(s) joined by ``"|"``, or the path
        relative to the folder.
    targets : numpy.ndarray
        Single-label: ``int64`` ``(N,)`` class indices, ``-1`` = unlabeled.
        Multi-label: ``float32`` ``(N, L)`` of 0/1.
    classes : list of str
        Class (label) names; ``targets`` index into it.
    multi_label : bool
        ``targets`` is a 0/1 label matrix rather than class indices.
    groups : numpy.ndarray of str, optional
        Patient ids for grouped splits (in memory only, never written out).
    views : tuple of str
        View names: the CSV image columns when there are several, ``("image",)`` for one view.

    Examples
    --------
    >>> items = LabeledImages([(Path("a.png"),), (Path("b.png"),), (Path("c.png"),)], ["a.png", "b.png", "c.png"],
    ...                       np.array([0, 1, 1]), ["cat", "dog"])
    >>> len(items), items.class_counts().tolist(), items.subset([2]).ids
    (3, [1, 2], ['c.png'])
    """

    paths: list[tuple[Path, ...]]
    ids: list[str]
    targets: np.ndarray
    classes: list[str]
    multi_label: bool = False
    groups: np.ndarray | None = None
    views: tuple[str, ...] = ("image",)

    def __post_init__(self):
        self.paths = [tuple(Path(p) for p in sample) for sample in self.paths]
        self.ids = [str(i) for i in self.ids]
        self.classes = [str(c) for c in self.classes]
        self.views = tuple(self.views)
        n = len(self.paths)
        if len(self.ids) != n:
            raise ValueError(f"ids has {len(self.ids)} entries for {n} samples")
        if any(len(sample) != len(self.views) for sample in self.paths):
            raise ValueError(f"every sample needs {len(self.views)} view path(s) ({', '.join(self.views)})")
        if self.multi_label:
            self.targets = np.asarray(self.targets, dtype=np.float32).reshape(n, len(self.classes))
        else:
            self.targets = np.asarray(self.targets, dtype=np.int64).reshape(n)
            if n and (self.targets.min() < -1 or self.targets.max() >= len(self.classes)):
                raise ValueError(f"targets must lie in -1..{len(self.classes) - 1}")
        if self.groups is not None:
            self.groups = np.asarray(self.groups, dtype=str).reshape(-1)
            if len(self.groups) != n:
                raise ValueError(f"groups has {len(self.groups)} entries for {n} samples")

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def labeled(self) -> np.ndarray:
        """Boolean mask of samples with a label (always all ``True`` for multi-label)."""
        if self.multi_label:
            return np.ones(len(self), dtype=bool)
        return self.targets >= 0

    def subset(self, indices: Sequence[int] | np.ndarray) -> LabeledImages:
        """The samples at ``indices`` (a new object; classes and views unchanged).

        Parameters
        ----------
        indices : sequence of int or numpy.ndarray
            Positions of the samples to keep, in the order wanted.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"indices out of range for {len(self)} samples")
        return LabeledImages(
            paths=[self.paths[i] for i in indices],
            ids=[self.ids[i] for i in indices],
            targets=self.targets[indices],
            classes=list(self.classes),
            multi_label=self.multi_label,
            groups=None if self.groups is None else self.groups[indices],
            views=self.views,
        )

    def class_counts(self) -> np.ndarray:
        """Samples per class (single-label, unlabeled left out) or positives per label (multi-label)."""
        if self.multi_label:
            return (self.targets > 0.5).sum(axis=0).astype(np.int64)
        return np.bincount(self.targets[self.targets >= 0], minlength=len(self.classes)).astype(np.int64)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description: counts only, no paths, ids or patient groups."""
        counts = self.class_counts()
        return {
            "samples": len(self),
            "views": list(self.views),
            "multi_label": self.multi_label,
            "classes": list(self.classes),
            "class_counts": {c: int(n) for c, n in zip(self.classes, counts)},
            "unlabeled": int((~self.labeled).sum()),
            "patients": None if self.groups is None else int(len(np.unique(self.groups))),
        }


def from_folder(root: str | os.PathLike, *, classes: Sequence[str] | None = None) -> LabeledImages:
    """Images in one sub-folder per class (``root/<class>/**/<image>``), single-label.

    The files :func:`radiology.files.find_inputs` finds, the ones ``predict`` reads: image
    files and DICOM files under any name (``.dcm``, no extension, or a UID such as
    ``1.2.840.113619.2.55.321``); tables, text and archives beside them and hidden files
    and folders are skipped.

    Parameters
    ----------
    root : path
        Folder holding one sub-folder per class.
    classes : sequence of str, optional
        Class order (default: the sub-folder names in :func:`radiology.classes.class_order`). Every
        name must be a sub-folder.

    Returns
    -------
    LabeledImages
        Sorted by ``ids``, the paths relative to ``root`` (POSIX separators).

    Examples
    --------
    >>> import tempfile
    >>> from radiology.io import write_image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b/1.png", "a/2.png", "a/3.png"):
    ...     _ = write_image(root / name, np.zeros((4, 4), np.float32))
    >>> items = from_folder(root)
    >>> items.classes, items.ids, items.targets.tolist()
    (['a', 'b'], ['a/2.png', 'a/3.png', 'b/1.png'], [0, 0, 1])
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes is None:
        classes = class_order(folders)
    missing = [c for c in classes if c not in folders]
    if missing:
        raise ValueError(f"{root}: no sub-folder for class(es) {missing}")
    if not classes:
        raise ValueError(f"{root}: no class sub-folders")
    paths, ids, targets = [], [], []
    for index, name in enumerate(classes):
        for path in find_inputs(root / name):
            paths.append((path,))
            ids.append(path.relative_to(root).as_posix())
            targets.append(index)
    if not paths:
        raise ValueError(f"{root}: no image files in the class sub-folders")
    order = sorted(range(len(ids)), key=ids.__getitem__)  # by relative path, whatever the class order
    return LabeledImages([paths[i] for i in order], [ids[i] for i in order],
                         np.asarray(targets, np.int64)[order], list(classes))


def from_paths(paths: Iterable[str | os.PathLike | Sequence[str | os.PathLike]], *,
               views: Sequence[str] | None = None) -> LabeledImages:
    """Unlabeled samples from file paths (inference, self-supervised or semi-supervised data).

    Parameters
    ----------
    paths : iterable of path, or of tuples of paths
        One path per sample, or one tuple of view paths per sample.
    views : sequence of str, optional
        View names (default ``("image",)``, or ``view0, view1, ...`` for tuples).

    Returns
    -------
    LabeledImages
        ``targets`` all ``-1``, no classes; ``ids`` are the paths as given.

    Examples
    --------
    >>> items = from_paths(["x/a.dcm", "x/b.dcm"])
    >>> len(items), items.targets.tolist(), items.ids
    (2, [-1, -1], ['x/a.dcm', 'x/b.dcm'])
    """
    samples = [tuple(p) if isinstance(p, (tuple, list)) else (p,) for p in paths]
    if not samples:
        raise ValueError("no paths given")
    count = len(samples[0])
    if views is None:
        views = ("image",) if count == 1 else tuple(f"view{i}" for i in range(count))
    ids = ["|".join(os.fspath(p) for p in sample) for sample in samples]
    return LabeledImages(samples, ids, np.full(len(samples), -1, np.int64), [], views=tuple(views))


def from_unlabeled(root: str | os.PathLike) -> LabeledImages:
    """Every image or DICOM file below ``root``, unlabeled (self- and semi-supervised data).

    The same files :func:`from_folder` would take (:func:`radiology.files.find_inputs`), in
    any folder layout.

    Parameters
    ----------
    root : path

    Returns
    -------
    LabeledImages
        ``targets`` all ``-1``, no classes, ``ids`` relative to ``root``, sorted.

    Examples
    --------
    >>> import tempfile
    >>> from radiology.io import write_image
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b/1.png", "2.dcm", "notes.txt"):
    ...     _ = (root / name).parent.mkdir(parents=True, exist_ok=True), (root / name).write_bytes(b"")
    >>> from_unlabeled(root).ids
    ['2.dcm', 'b/1.png']
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    files = sorted(find_inputs(root), key=lambda p: p.relative_to(root).as_posix())
    if not files:
        raise ValueError(f"{root}: no image or DICOM files")
    ids = [p.relative_to(root).as_posix() for p in files]
    return LabeledImages([(p,) for p in files], ids, np.full(len(files), -1, np.int64), [])


def index_dicom_uids(root: str | os.PathLike, *, progress: bool = True) -> dict[str, Path]:
    """Map SOP Instance UID → file for every DICOM file below ``root`` (headers only).

    Files with image, table or text extensions are skipped without being opened; other
    files that are not DICOM are skipped too. When two files share a UID the first (in
    sorted path order) is kept and a warning is logged.

    Parameters
    ----------
    root : path
        Folder searched recursively.
    progress : bool, optional
        Show a tqdm progress bar (archives can hold many thousand files).

    Returns
    -------
    dict of str to pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_phantom_dicom(root / "study" / "x.dcm", phantom_radiograph((32, 32)), sop_instance_uid="1.2.3")
    >>> index_dicom_uids(root, progress=False)["1.2.3"].name
    'x.dcm'
    """
    from tqdm.auto import tqdm

    files = [p for p in find_inputs(root) if not is_image_file(p)]
    index: dict[str, Path] = {}
    duplicates = 0
    for path in tqdm(files, desc="indexing DICOM UIDs", unit="file", disable=not progress, leave=False):
        try:
            uid = read_dataset(path, stop_before_pixels=True).get("SOPInstanceUID")
        except DicomError:
            continue
        if not uid:
            continue
        uid = str(uid).strip()
        if uid in index:
            duplicates += 1
            continue
        index[uid] = path
    if duplicates:
        logger.warning("%s: %d file(s) repeat a SOP Instance UID already seen; the first file is used", root,
                       duplicates)
    return index


def dicom_patient_ids(paths: Iterable[str | os.PathLike | Sequence[str | os.PathLike]]) -> np.ndarray:
    """PatientID of each file, read from its header, for patient-grouped splits.

    Patient ids are personal data: keep the result in memory (``LabeledImages.groups``),
    never write it out. A sample given as a tuple of views uses its first view. Files
    without a PatientID, and files that are not DICOM, each get a unique placeholder
    (``"<unknown:i>"``), so they never merge into one large group.

    Parameters
    ----------
    paths : iterable of path or of tuple of paths
        One file, or one tuple of view files, per sample.

    Returns
    -------
    numpy.ndarray of str, ``(N,)``

    Examples
    --------
    >>> import tempfile
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> path = write_phantom_dicom(Path(tempfile.mkdtemp()) / "p.dcm", phantom_radiograph((32, 32)))
    >>> dicom_patient_ids([path, path.with_name("missing.dcm")]).tolist()
    ['PHANTOM', '<unknown:1>']
    """
    ids = []
    unknown = 0
    for index, sample in enumerate(paths):
        path = sample[0] if isinstance(sample, (tuple, list)) else sample
        try:
            value = str(read_dataset(path, stop_before_pixels=True).get("PatientID", "") or "").strip()
        except DicomError:
            value = ""
        if not value:
            unknown += 1
            value = f"<unknown:{index}>"
        ids.append(value)
    if unknown:
        logger.warning("%d file(s) have no readable PatientID; each is its own group", unknown)
    return np.asarray(ids, dtype=str)


def _as_list(columns: str | Sequence[str] | None) -> list[str]:
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def _read_table(csv):
    import pandas as pd

    if isinstance(csv, pd.DataFrame):
        return csv.fillna("").astype(str), None
    path = Path(csv)
    if not path.is_file():
        raise ValueError(f"{path}: no such CSV file")
    # Everything as text: UIDs and zero-padded ids must not become numbers.
    return pd.read_csv(path, dtype=str, keep_default_na=False), path


def from_csv(
    csv,
    root: str | os.PathLike | None = None,
    image_cols: str | Sequence[str] = "image",
    label_cols: str | Sequence[str] | None = None,
    *,
    multi_label: bool = False,
    group_col: str | None = None,
    label_sep: str = "|",
    classes: Sequence[str] | None = None,
    progress: bool = True,
    allow_outside_root: bool = False,
) -> LabeledImages:
    """Samples from a CSV table: image references, labels, views and patient groups.

    Each image value is a path relative to ``root`` (``<value>.dcm`` is tried too), or
    else a DICOM SOP Instance UID, resolved by reading the headers below ``root``
    (:func:`index_dicom_uids`, done once and only when needed): the Kaggle UNIFESP
    layout ``train/<study>/<series>/<uid>.dcm`` with ``train.csv`` ``SOPInstanceUID,Target``.

    Parameters
    ----------
    csv : path or pandas.DataFrame
        The label table, or a CSV file of it.
    root : path, optional
        Folder the image values refer to (default: the CSV's folder).
    image_cols : str or sequence of str
        One column, or several columns = views of one sample (ODIR ``["left", "right"]``).
    label_cols : str or sequence of str, optional
        None: unlabeled. Single-label: one column of class names (empty = unlabeled).
        Multi-label: one column of ``label_sep``-joined names (``"A|B"``, empty = no
        label), or several 0/1 columns (the column names are the classes).
    multi_label : bool, optional
        Several labels per sample (see ``label_cols``).
    group_col : str, optional
        Patient id column for grouped splits (kept in memory only).
    label_sep : str, optional
        Separator of a multi-label column.
    classes : sequence of str, optional
        Class order; by default the label values in :func:`radiology.classes.class_order`
        (sorted; integer codes as numbers; a two-class task's "normal" first).
        A label value not among ``classes`` is an error.
    progress : bool, optional
        Progress bar while indexing UIDs.
    allow_outside_root : bool, optional
        Accept image values that point outside ``root`` (:func:`escapes_root`: ``../x.dcm``,
        absolute paths). Refused by default, before any file is opened: a label table
        decides which files are read, and it may come from someone else.

    Returns
    -------
    LabeledImages

    Raises
    ------
    ValueError
        Missing columns, files or UIDs, values outside ``root`` (named in the message),
        bad label values.

    Examples
    --------
    >>> import tempfile
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_phantom_dicom(root / "s" / "a.dcm", phantom_radiograph((32, 32)), sop_instance_uid="1.2.3")
    >>> _ = (root / "train.csv").write_text("SOPInstanceUID,Target\\n1.2.3,11\\n")
    >>> items = from_csv(root / "train.csv", root, "SOPInstanceUID", "Target", progress=False)
    >>> items.paths[0][0].name, items.classes, items.targets.tolist()
    ('a.dcm', ['11'], [0])
    """
    table, csv_path = _read_table(csv)
    if root is None:
        if csv_path is None:
            raise ValueError("root is required when csv is a DataFrame")
        root = csv_path.parent
    root = Path(root)
    name = csv_path or "table"
    views = _as_list(image_cols)
    labels = _as_list(label_cols)
    if not views:
        raise ValueError("give at least one image column")
    wanted = views + labels + ([group_col] if group_col else [])
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; columns are {list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"{name}: no rows")
    if len(labels) > 1 and not multi_label:
        raise ValueError(f"{name}: several label columns {labels} need multi_label=True")

    if not allow_outside_root:
        _refuse_outside_root(table, views, name, from_file=csv_path is not None)
    paths = _resolve(table, views, root, name, progress)
    ids = ["|".join(str(table.at[row, c]) for c in views) for row in table.index]
    targets, classes = _targets(table, labels, multi_label, label_sep, classes, name)
    groups = _patient_ids(table, group_col, name) if group_col else None
    # One view is "image" whatever its column is called, so single-view datasets look alike.
    names = tuple(views) if len(views) > 1 else ("image",)
    return LabeledImages(paths, ids, targets, classes, multi_label, groups, names)


def patient_column(columns: Iterable[str], exclude: Iterable[str] = ()) -> str | None:
    """The column of a label table that names patients, found by its name; None if none does.

    A name matches when, lower-cased and stripped of everything but letters and digits, it is
    one of ``patientid``, ``patient``, ``patientnumber``, ``patientno``, ``subjectid`` or
    ``participantid`` (``Patient ID``, ``patient_id``, ``PatientID``,
    ``subject_id`` ...). With several matches the earlier name of that list wins, then the
    earlier column.

    Parameters
    ----------
    columns : iterable of str
        The table's column names.
    exclude : iterable of str, optional
        Columns that cannot be the patient column (the image and label columns).

    Returns
    -------
    str or None
        The column name as the table spells it.

    Examples
    --------
    >>> patient_column(["Image Index", "Finding Labels", "Patient ID"])
    'Patient ID'
    >>> patient_column(["file", "label"]) is None
    True
    """
    excluded = set(exclude)
    found = {}
    for column in columns:
        key = plain_name(column)
        if column not in excluded and key in PATIENT_COLUMNS:
            found.setdefault(key, column)
    for key in PATIENT_COLUMNS:
        if key in found:
            return found[key]
    return None


def _patient_ids(table, group_col: str, name) -> np.ndarray:
    """The group column's ids; an empty cell is a patient of its own (one shared empty id would put every
    such image on one side of the split as if they were one patient), counted in a warning."""
    ids = table[group_col].astype(str).str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero(ids == "")
    if empty.size:
        logger.warning("%s: %d row(s) with an empty %r are each taken as a patient of their own", name, empty.size,
                       group_col)
        ids[empty] = [f"\0row{row}" for row in empty]  # cannot collide with a cell: CSV text holds no NUL
    return ids


def resolve_images(values: Sequence[str], root: str | os.PathLike, *, progress: bool = True) -> list[Path | None]:
    """Find the file each image reference names: a path below ``root`` or a SOP Instance UID.

    A value is first tried as a path relative to ``root`` (and with ``.dcm`` appended); the
    values that are not files are looked up as SOP Instance UIDs among the DICOM headers
    below ``root`` (:func:`index_dicom_uids`, read once and only when needed).

    Parameters
    ----------
    values : sequence of str
        Image references, e.g. a CSV's image column.
    root : path
        Folder the references are relative to and below which UIDs are looked up.
    progress : bool, optional
        Progress bar while indexing UIDs.

    Returns
    -------
    list of pathlib.Path or None
        One entry per value, ``None`` where nothing was found (empty values included).

    Examples
    --------
    >>> import tempfile
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> root = Path(tempfile.mkdtemp())
    >>> _ = write_phantom_dicom(root / "s" / "a.dcm", phantom_radiograph((32, 32)), sop_instance_uid="1.2.3")
    >>> [p if p is None else p.name for p in resolve_images(["s/a.dcm", "1.2.3", "nope"], root, progress=False)]
    ['a.dcm', 'a.dcm', None]
    """
    root = Path(root)
    resolved: dict[str, Path] = {}
    pending: list[str] = []
    for value in dict.fromkeys(str(v).strip() for v in values):
        if not value:
            continue
        for candidate in (root / value, root / f"{value}.dcm"):
            if candidate.is_file():
                resolved[value] = candidate
                break
        else:
            pending.append(value)
    if pending:
        index = index_dicom_uids(root, progress=progress)
        resolved.update((v, index[v]) for v in pending if v in index)
    return [resolved.get(str(v).strip()) for v in values]


def escapes_root(value: str) -> bool:
    """Whether an image value names a file outside the folder it is relative to.

    Absolute paths (POSIX or Windows) and relative paths that climb out with ``..`` escape;
    the test is on the text alone, so a symbolic link inside the folder is not one.

    Parameters
    ----------
    value : str
        An image value of a label table.

    Examples
    --------
    >>> [escapes_root(v) for v in ("a/b.dcm", "1.2.840.1", "a/../b.dcm", "../x.png", "/etc/passwd", "C:/x.dcm")]
    [False, False, False, True, True, True]
    """
    value = str(value).strip().replace("\\", "/")
    if value.startswith("/") or PureWindowsPath(value).anchor:
        return True
    return posixpath.normpath(value).split("/")[0] == ".."


def _refuse_outside_root(table, views: list[str], name, *, from_file: bool) -> None:
    # Row numbers as the user sees them: CSV line numbers (header = line 1), else table rows.
    offset = 2 if from_file else 0
    rows = [(position + offset, str(table.at[row, c]).strip()) for position, row in enumerate(table.index)
            for c in views if escapes_root(str(table.at[row, c]))]
    if rows:
        where = "line" if from_file else "row"
        shown = ", ".join(f"{where} {n} ({v})" for n, v in rows[:3]) + (" ..." if len(rows) > 3 else "")
        raise ValueError(f"{name}: {len(rows)} image value(s) point outside root: {shown}; "
                         "pass allow_outside_root=True to read them")


def _resolve(table, views: list[str], root: Path, name, progress: bool) -> list[tuple[Path, ...]]:
    for column in views:
        if (table[column].astype(str).str.strip() == "").any():
            raise ValueError(f"{name}: empty value in image column {column!r}")
    values = [str(table.at[row, c]).strip() for row in table.index for c in views]
    found = resolve_images(values, root, progress=progress)
    absent = list(dict.fromkeys(v for v, p in zip(values, found) if p is None))
    if absent:
        shown = ", ".join(absent[:3]) + (" ..." if len(absent) > 3 else "")
        raise ValueError(f"{name}: {len(absent)} image(s) found neither as a file below {root} "
                         f"nor as a SOP Instance UID there: {shown}")
    per_row = len(views)
    return [tuple(found[i:i + per_row]) for i in range(0, len(found), per_row)]


def _targets(table, labels: list[str], multi_label: bool, sep: str, classes, name) -> tuple[np.ndarray, list[str]]:
    n = len(table)
    if not labels:
        if multi_label:
            raise ValueError("multi_label needs label columns")
        return np.full(n, -1, np.int64), list(classes or [])
    if multi_label and len(labels) > 1:
        return _binary_columns(table, labels, classes, name), list(classes or labels)
    values = [str(v).strip() for v in table[labels[0]]]
    if multi_label:
        rows = [[t.strip() for t in v.split(sep) if t.strip()] for v in values]
        found = {t for row in rows for t in row}
    else:
        rows = [[v] if v else [] for v in values]
        found = {v for v in values if v}
    if classes is None:
        classes = class_order(found)
    classes = [str(c) for c in classes]
    unknown = sorted(found - set(classes))
    if unknown:
        raise ValueError(f"{name}: label value(s) {unknown[:5]} in column {labels[0]!r} are not among classes")
    position = {c: i for i, c in enumerate(classes)}
    if multi_label:
        targets = np.zeros((n, len(classes)), np.float32)
        for i, row in enumerate(rows):
            targets[i, [position[t] for t in row]] = 1.0
        return targets, classes
    return np.asarray([position[r[0]] if r else -1 for r in rows], np.int64), classes


def _binary_columns(table, labels: list[str], classes, name) -> np.ndarray:
    if classes is not None and list(classes) != labels:
        raise ValueError("with several 0/1 label columns the classes are the column names; leave classes=None")
    try:
        targets = table[labels].apply(lambda col: col.str.strip().astype(float)).to_numpy(np.float32)
    except ValueError as error:
        raise ValueError(f"{name}: label columns {labels} must hold 0/1 values ({error})") from None
    if not np.isin(targets, (0.0, 1.0)).all():
        raise ValueError(f"{name}: label columns {labels} must hold only 0 and 1")
    return targets
