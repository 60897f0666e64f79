"""What to predict: a folder, a file or a CSV resolved into :class:`PredictionInputs`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from radiology.io import column_names

__all__ = ["PredictionInputs", "prediction_inputs"]


@dataclass
class PredictionInputs:
    """What to predict: ``ids`` as they appear in the output, and the files of each sample.

    ``sources[i]`` is a tuple of paths (one per view), or ``None`` with ``errors[i]`` saying
    why the input could not be found. ``positions`` (set by
    :func:`~radiology.predict.shard_inputs`) are the inputs' places among all the inputs they
    were drawn from; ``None`` means ``0, 1, 2, ...``.

    Parameters
    ----------
    ids : list of str
        One identifier per sample, as written to the output's ``image`` column.
    sources : list of (tuple of pathlib.Path or None)
        The files of each sample, one per view; ``None`` when they were not found.
    errors : list of str
        Why a sample's files were not found; empty when they were.
    positions : list of int, optional
        Places of the samples among all inputs they were drawn from.

    Examples
    --------
    >>> inputs = PredictionInputs(["a.png", "b.png"], [(Path("a.png"),), None], ["", "b.png: no such file"])
    >>> [i for i, error in zip(inputs.ids, inputs.errors) if not error]
    ['a.png']
    """

    ids: list[str]
    sources: list[tuple[Path, ...] | None]
    errors: list[str]
    positions: list[int] | None = None


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
    output folder of a command that writes next to its inputs). In a folder, the inputs are
    the files :func:`radiology.files.find_inputs` finds, as training reads folders: files with
    a table, text or archive suffix (``.csv``, ``.txt``, ``.json``, ...) are not inputs.
    A CSV value pointing outside ``root`` (``../x.png``, an absolute path; the rule training
    applies, :func:`radiology.data.escapes_root`) gets an error row and is not read, unless
    ``allow_outside_root``.

    Parameters
    ----------
    source : path
        A folder, a file, or a ``.csv`` table.
    root : path, optional
        Folder a CSV's image values are relative to (default: the CSV's folder).
    image_cols : str or sequence of str, optional
        Image column(s) of a CSV, several for multi-view models (``"frontal,lateral"``).
    exclude : path, optional
        A folder inside a folder ``source`` to leave out.
    progress : bool, optional
        Show a progress bar while SOP Instance UIDs are indexed.
    allow_outside_root : bool, optional
        Read CSV values that point outside ``root``.

    Returns
    -------
    PredictionInputs
        Ids are the CSV values (views joined by ``|``) or the paths relative to the folder,
        with undecodable bytes as ``\\xNN`` (:func:`radiology.naming.display_name`).

    Raises
    ------
    FileNotFoundError
        ``source`` does not exist.
    ValueError
        A CSV without an image column, or a folder without inputs.

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
    from radiology.naming import display_name

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    if source.is_file() and source.suffix.lower() == ".csv":
        return _csv_inputs(source, root, column_names(image_cols or ("image",)), progress, allow_outside_root)
    if source.is_file():
        return PredictionInputs([display_name(source.name)], [(source,)], [""])
    from radiology.files import find_inputs

    # Reports, notes and tables beside the images (conversion_report.csv, README.txt) are not
    # inputs; any other suffix may be a DICOM (archives name files by UID: "1.2.840...321").
    files = find_inputs(source, exclude=exclude)
    if not files:
        raise ValueError(f"{source}: no files to predict")
    # Undecodable bytes in a name become \xNN escapes, as in convert's report: the ids are written to UTF-8 tables.
    ids = [display_name(p.relative_to(source).as_posix()) for p in files]
    return PredictionInputs(ids, [(p,) for p in files], [""] * len(files))


def _csv_inputs(source: Path, root, cols: tuple[str, ...], progress: bool,
                allow_outside_root: bool) -> PredictionInputs:
    from radiology.data import escapes_root, resolve_images

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
