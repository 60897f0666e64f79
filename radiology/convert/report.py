"""The conversion report: one row per input (:class:`ConversionReport`, ``conversion_report.csv``).

- :data:`REPORT_COLUMNS`, :data:`REPORT_NAME`: the file other tools read; keep them stable.
- :class:`ConversionReport`: what :func:`~radiology.convert.convert_folder` returns.
- :func:`merge_reports`: join the shard reports of a sharded run.
- Row helpers (private): a row from a header, a one-line failure reason, CSV bytes, earlier
  rows for resuming.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from radiology.dicom.metadata import metadata_from_dataset
from radiology.errors import RadiologyError, one_line
from radiology.io import atomic_write
from radiology.naming import display_name

__all__ = ["ConversionReport", "REPORT_COLUMNS", "REPORT_NAME", "merge_reports"]

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


#: Columns of ``conversion_report.csv``; other tools read this file: keep them stable.
REPORT_COLUMNS = (
    "source", "status", "reason", "output", "rows", "columns", "photometric", "transfer_syntax", "modality",
    "warnings", "options",
)


#: File name of the report written into the destination folder.
REPORT_NAME = "conversion_report.csv"


class ConversionReport:
    """Outcome of :func:`convert_folder`: one row per input (columns :data:`REPORT_COLUMNS`).

    Parameters
    ----------
    rows : list of dict
        One mapping per input, keyed by :data:`REPORT_COLUMNS`.
    path : pathlib.Path or str
        Where the report was written.

    Attributes
    ----------
    table : pandas.DataFrame
        The rows (built on first access, so the command line never imports pandas).
    path : pathlib.Path or str
        Where the report was written (a URL string when DST is an fsspec URL).
    """

    def __init__(self, rows: list[dict], path):
        self._rows = rows
        self._table = None
        self.path = path

    @property
    def table(self) -> pd.DataFrame:
        if self._table is None:
            import pandas as pd

            self._table = pd.DataFrame(self._rows, columns=list(REPORT_COLUMNS))
        return self._table

    def count(self, status: str) -> int:
        """Number of inputs with this status (``ok``, ``failed`` or ``skipped``).

        Parameters
        ----------
        status : str
            ``ok``, ``failed`` or ``skipped``; any other value counts 0.
        """
        return sum(row["status"] == status for row in self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def images(self) -> int:
        """Inputs that are DICOM images with an output: converted, or skipped because their output exists.

        Not the rows skipped for a link loop or for lying inside DST, so a run that found no image
        says so whatever else it passed over.
        """
        return sum(row["status"] == "ok" or (row["status"] == "skipped" and bool(row["output"])) for row in self._rows)

    @property
    def summary(self) -> str:
        """``"N converted, M failed, K skipped"``."""
        return f"{self.count('ok')} converted, {self.count('failed')} failed, {self.count('skipped')} skipped"


def _csv(rows: list[dict]) -> bytes:
    import csv

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _row(source: str, status: str, reason: str = "", output: str = "", meta: dict | None = None) -> dict:
    row = dict.fromkeys(REPORT_COLUMNS, "")
    row.update(meta or {})
    row.update(source=source, status=status, reason=reason, output=output)
    return row


def _header_fields(ds) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _meta_fields(metadata_from_dataset(ds))


def _meta_fields(meta) -> dict:
    return {"rows": meta.rows, "columns": meta.columns, "photometric": meta.photometric,
            "transfer_syntax": meta.transfer_syntax, "modality": meta.modality or ""}


def _reason(error: BaseException, name: str) -> str:
    text = one_line(error)
    for prefix in (name + ": ", "<bytes>: "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = display_name(text)
    return text if isinstance(error, RadiologyError) else f"unexpected {type(error).__name__}: {text}"


def _previous_rows(store, names: Iterable[str]) -> dict[str, dict]:
    """Rows of earlier reports in DST by output, for resuming."""
    import csv

    rows: dict[str, dict] = {}
    for name in names:
        try:
            data = store.read(name)
            if data is None:
                continue
            table = list(csv.DictReader(io.StringIO(data.decode())))
        except Exception as error:  # noqa: BLE001 - a damaged report only costs re-conversion
            logger.warning("%s: unreadable earlier report (%s); its outputs are converted again", name, error)
            continue
        if not table or "output" not in table[0] or "options" not in table[0]:
            continue
        for row in table:
            if row.get("output") and row.get("status") in ("ok", "skipped"):
                rows[row["output"]] = row
    return rows


def _report_name(shard: tuple[int, int] | None) -> str:
    return REPORT_NAME if shard is None else f"conversion_report.shard-{shard[0]}-of-{shard[1]}.csv"


def merge_reports(dst: str | os.PathLike) -> ConversionReport:
    """Join the shard reports of ``convert_folder(..., shard=(i, n))`` into ``dst/conversion_report.csv``.

    Parameters
    ----------
    dst : str or os.PathLike
        Output folder holding the ``conversion_report.shard-I-of-N.csv`` files of every shard.

    Raises
    ------
    FileNotFoundError
        No shard report, or one of the ``n`` shards is missing.

    Examples
    --------
    >>> import tempfile, pydicom.data
    >>> from radiology.convert import convert_folder
    >>> out = tempfile.mkdtemp()
    >>> files = [pydicom.data.get_testdata_file(n) for n in ("CT_small.dcm", "MR_small.dcm")]
    >>> for i in range(2):
    ...     _ = convert_folder(files, out, shard=(i, 2), progress=False)
    >>> merge_reports(out).summary
    '2 converted, 0 failed, 0 skipped'
    """
    import csv

    dst = Path(dst)
    found: dict[int, dict[int, Path]] = {}
    for path in dst.glob("conversion_report.shard-*-of-*.csv"):
        match = re.fullmatch(r"conversion_report\.shard-(\d+)-of-(\d+)\.csv", path.name)
        if match:
            found.setdefault(int(match[2]), {})[int(match[1])] = path
    if not found:
        raise FileNotFoundError(f"{dst}: no shard reports (conversion_report.shard-I-of-N.csv)")
    if len(found) > 1:
        raise ValueError(f"{dst}: shard reports of different shard counts {sorted(found)}")
    count, shards = next(iter(found.items()))
    missing = sorted(set(range(count)) - set(shards))
    if missing:
        raise FileNotFoundError(f"{dst}: shard reports missing for shards {missing} of {count}")
    rows = []
    for i in range(count):
        with open(shards[i], newline="", encoding="utf-8") as file:
            rows.extend({column: row.get(column) or "" for column in REPORT_COLUMNS} for row in csv.DictReader(file))
    rows.sort(key=lambda row: row["source"])  # stable: a source's order within its shard is kept
    return ConversionReport(rows, atomic_write(dst / REPORT_NAME, _csv(rows)))
