"""The folder-level header table: one row of non-PHI fields per DICOM file (no torch).

Folder work on top of :mod:`radiology.dicom.read` (headers only) and the record of
:mod:`radiology.dicom.metadata`; kept out of the record module so that reading stays a
one-way street (read → lut → metadata).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from radiology.dicom.errors import DicomError
from radiology.dicom.metadata import PHI_KEYWORDS, _text, hashed_name, metadata_from_dataset
from radiology.dicom.read import read_dataset
from radiology.errors import one_line
from radiology.files import find_files

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TABLE_COLUMNS", "metadata_table"]


#: Columns of :func:`metadata_table`, in order (PHI columns are appended only on request).
TABLE_COLUMNS = (
    "source", "modality", "body_part", "view_position", "rows", "columns", "frames",
    "photometric", "bits_stored", "transfer_syntax", "manufacturer",
    "spacing_row_mm", "spacing_col_mm", "sop_instance_uid", "error",
)


def _table_row(path: Path, root: Path | None, include_phi: bool, source_names: str = "relative") -> dict:
    source = os.path.relpath(path, root) if root is not None else str(path)
    if source_names == "hashed":
        source = hashed_name(source if root is not None else path.name)
    row = {name: None for name in TABLE_COLUMNS}
    row["source"] = source
    try:
        ds = read_dataset(path, stop_before_pixels=True)
    except DicomError as error:  # named as the source column names it: no absolute or patient-named path
        row["error"] = one_line(error).replace(os.fspath(path), source)
        return row
    meta = metadata_from_dataset(ds)
    record = asdict(meta)
    for name in TABLE_COLUMNS:
        if name in record:
            row[name] = record[name]
    if meta.spacing_mm is not None:
        row["spacing_row_mm"], row["spacing_col_mm"] = meta.spacing_mm
    if include_phi:
        for keyword in PHI_KEYWORDS:
            row[keyword] = _text(ds, keyword)
    return row


def metadata_table(
    sources: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    include_phi: bool = False,
    progress: bool = False,
    source_names: str = "relative",
) -> pd.DataFrame:
    """Tabulate the non-PHI header fields of a folder (recursively) or a list of DICOM files.

    Only headers are read (pixel data is skipped), so this is fast on large archives.

    Parameters
    ----------
    sources : path or iterable of paths
        A folder (searched recursively, hidden files ignored) or explicit files.
    include_phi : bool, optional
        Add ``PatientName``, ``PatientID``, ``PatientBirthDate``, ``OtherPatientIDs`` and
        ``AccessionNumber`` columns. Off by default: patient identifiers are never
        written unless asked for.
    progress : bool, optional
        Show a progress bar.
    source_names : {"relative", "hashed"}, optional
        ``source`` column: the path (relative to a folder source), or :func:`hashed_name`
        of it (of the file name for explicit files), keeping identifying folder and file
        names out of the table.

    Returns
    -------
    pandas.DataFrame
        One row per file with the columns of ``TABLE_COLUMNS``; files that cannot be
        read have their one-line reason in ``error`` and empty fields otherwise.

    Examples
    --------
    >>> import pydicom.data
    >>> table = metadata_table([pydicom.data.get_testdata_file("CT_small.dcm")])
    >>> table.loc[0, "modality"], int(table.loc[0, "rows"]), table.loc[0, "photometric"]
    ('CT', 128, 'MONOCHROME2')
    """
    import pandas as pd  # here: `import radiology.dicom` stays light
    from tqdm.auto import tqdm

    if source_names not in ("relative", "hashed"):
        raise ValueError(f"source_names must be 'relative' or 'hashed', not {source_names!r}")
    if isinstance(sources, (str, os.PathLike)) and Path(sources).is_dir():
        root: Path | None = Path(sources)
        paths = find_files(root)
    else:
        root = None
        paths = [Path(sources)] if isinstance(sources, (str, os.PathLike)) else [Path(p) for p in sources]
    rows = [_table_row(p, root, include_phi, source_names) for p in tqdm(paths, disable=not progress, unit="file")]
    columns = list(TABLE_COLUMNS) + (list(PHI_KEYWORDS) if include_phi else [])
    return pd.DataFrame(rows, columns=columns)
