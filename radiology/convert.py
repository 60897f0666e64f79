"""DICOM to training-ready images: one file (:func:`dicom_to_image`) or a whole folder
(:func:`convert_folder`, behind ``radiology convert``).

A folder conversion discovers files, converts them in a process pool, writes every output
atomically, never lets two inputs claim the same output, never stops on a bad file, and
records one row per input in ``DST/conversion_report.csv``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import posixpath
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radiology.dicom import (
    DEFAULT_MAX_PIXELS,
    DICOM_SUFFIXES,
    DicomImage,
    DicomWarning,
    InconsistentAttributesError,
    read_dataset,
)
from radiology.dicom.metadata import hashed_name, metadata_from_dataset
from radiology.errors import RadiologyError, one_line
from radiology.intensity import NORMALIZATIONS, histogram_bins
from radiology.io import FORMATS, IMAGE_SUFFIXES, atomic_write, encode_image
from radiology.pipeline import VOI, Decode, Histogram, MinMax, PadSquare, Percentile, Pipeline, Resize, Step

__all__ = [
    "ConvertOptions",
    "render",
    "dicom_to_image",
    "pipeline_input",
    "fit_histogram_bins",
    "output_name",
    "sanitize_component",
    "display_name",
    "convert_folder",
    "merge_reports",
    "ConversionReport",
    "REPORT_COLUMNS",
    "REPORT_NAME",
]

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
_UNSAFE = re.compile(r"[^\w.\-+=@,()]")  # \w: letters and digits of any script, not surrogates
_NAME_BYTES = 255  # longest file name of common file systems, in bytes
_SCRATCH = ".radiology-tmp-"


@dataclass(frozen=True)
class ConvertOptions:
    """Everything that decides how a DICOM becomes an image file.

    Parameters
    ----------
    normalization : {"percentile", "histogram", "minmax", "voi"}
        Metadata-independent methods of :func:`radiology.intensity.normalize`, or ``"voi"``
        to trust the header's window / VOI LUT (falling back to ``"percentile"`` for files
        without one).
    low, high : float
        Percentiles for ``"percentile"``.
    n_bins : int
        Equal-frequency bins per image for ``"histogram"`` when ``bins`` is not given.
    bins : tuple of float, optional
        Histogram bins fitted on the dataset (:func:`fit_histogram_bins`), used by
        ``"histogram"`` for every image.
    voi_index : int
        Which header window to use with ``"voi"``.
    bits, modality_lut : bool
        Steps of :func:`radiology.dicom.read_dicom`.
    polarity : bool
        Show bone bright (invert MONOCHROME1 / Presentation LUT ``INVERSE``).
    frame : int
        Frame of multi-frame files.
    color : {"gray", "keep"}
        Colour images to luma, or kept RGB.
    width, longest : int, optional
        Aspect-preserving resize to this width, or this longest side (not both).
    pad_square : bool
        Pad to a square after resizing.
    fmt : {"png", "jpeg", "npy"}
        Output format.
    bit_depth : {8, 16}
        PNG bit depth.
    naming : {"path", "uid"}
        Output named after the input's relative path, or its sanitized SOP Instance UID.
    png_compression, jpeg_quality : int
        Encoder settings (see :func:`radiology.io.encode_image`).
    max_pixels : int or None
        Files declaring more samples than this fail before decoding
        (:data:`radiology.dicom.DEFAULT_MAX_PIXELS`, 100 million; ``None``: no limit).
    source_names : {"relative", "hashed"}
        How inputs are named in the report's ``source`` column and in output paths:
        relative to SRC, or every path component replaced by its SHA-256 digest
        (:func:`hashed_name`), so folder names such as patient names reach no output.
    pipeline : radiology.pipeline.Pipeline, optional
        Preprocessing steps applied after decoding. When its first step normalizes
        (``percentile``, ``histogram``, ``minmax``, ``voi``) it replaces ``normalization``
        and gets the polarity-corrected raw pixels; otherwise it runs on the normalized
        image. ``width``/``longest``/``pad_square`` still apply after it. Its ``decode`` is
        replaced by the decoding fields above.

    Notes
    -----
    All of it is one :class:`~radiology.pipeline.Pipeline` (:meth:`to_pipeline`), which is
    what :func:`render`, :func:`dicom_to_image`, :func:`convert_folder` and the CLI run.
    """

    normalization: str = "percentile"
    low: float = 0.5
    high: float = 99.5
    n_bins: int = 100
    bins: tuple[float, ...] | None = None
    voi_index: int = 0
    bits: bool = True
    modality_lut: bool = True
    polarity: bool = True
    frame: int = 0
    color: str = "gray"
    width: int | None = None
    longest: int | None = None
    pad_square: bool = False
    fmt: str = "png"
    bit_depth: int = 8
    naming: str = "path"
    png_compression: int = 1
    jpeg_quality: int = 95
    pipeline: Pipeline | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    source_names: str = "relative"

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS + ("voi",):
            raise ValueError(f"normalization must be one of {NORMALIZATIONS + ('voi',)}, not {self.normalization!r}")
        if not 0 <= self.low < self.high <= 100:
            raise ValueError(f"need 0 <= low < high <= 100, got {self.low}, {self.high}")
        if self.bins is not None:
            object.__setattr__(self, "bins", tuple(float(b) for b in self.bins))
        if self.color not in ("gray", "keep"):
            raise ValueError(f"color must be 'gray' or 'keep', not {self.color!r}")
        if self.width is not None and self.longest is not None:
            raise ValueError("give width or longest, not both")
        for name in ("width", "longest"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        fmt = {"jpg": "jpeg"}.get(self.fmt.lower(), self.fmt.lower())
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, not {self.fmt!r}")
        object.__setattr__(self, "fmt", fmt)
        if self.bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, not {self.bit_depth}")
        if fmt == "jpeg" and self.bit_depth == 16:
            raise ValueError("JPEG output is 8-bit only; use PNG for 16-bit")
        if self.naming not in ("path", "uid"):
            raise ValueError(f"naming must be 'path' or 'uid', not {self.naming!r}")
        if self.source_names not in ("relative", "hashed"):
            raise ValueError(f"source_names must be 'relative' or 'hashed', not {self.source_names!r}")
        if self.max_pixels is not None and (isinstance(self.max_pixels, bool) or int(self.max_pixels) < 1):
            raise ValueError(f"max_pixels must be a positive integer or None, got {self.max_pixels!r}")

    @property
    def extension(self) -> str:
        """File extension of the outputs (``.png``, ``.jpg`` or ``.npy``)."""
        return FORMATS[self.fmt]

    @property
    def decode(self) -> Decode:
        """The decoding fields as a :class:`~radiology.pipeline.Decode`."""
        return Decode(frame=self.frame, bits=self.bits, modality_lut=self.modality_lut, polarity=self.polarity,
                      color=self.color, max_pixels=self.max_pixels)

    def normalization_step(self) -> Step:
        """``normalization`` and its parameters as a normalizing pipeline step."""
        if self.normalization == "histogram":
            return Histogram(bins=self.bins, n_bins=self.n_bins)
        if self.normalization == "minmax":
            return MinMax()
        if self.normalization == "voi":
            return VOI(index=self.voi_index, low=self.low, high=self.high)
        return Percentile(self.low, self.high)

    def to_pipeline(self) -> Pipeline:
        """The one :class:`~radiology.pipeline.Pipeline` these options describe.

        Decoding → normalization (``pipeline``'s own normalizing first step when it has one)
        → ``pipeline`` steps → ``Resize`` → ``PadSquare``. The default percentile
        normalization is left implied (a pipeline reading a DICOM adds it anyway), so the
        pipeline does not re-stretch image files that are already in ``[0, 1]``.

        Examples
        --------
        >>> ConvertOptions(normalization="voi", width=256, pad_square=True).to_pipeline()
        Pipeline([VOI(index=0, low=0.5, high=99.5), Resize(width=256, height=None, longest=None), \
PadSquare(value=0.0)])
        >>> ConvertOptions().to_pipeline() == Pipeline()
        True
        """
        user = self.pipeline.steps if self.pipeline is not None else ()
        steps: list[Step] = list(user)
        if self.pipeline is None or not self.pipeline.normalizes:
            first = self.normalization_step()
            if first != Percentile():  # the implied default: writing it would only change image files
                steps.insert(0, first)
        if self.width is not None or self.longest is not None:
            steps.append(Resize(width=self.width, longest=self.longest))
        if self.pad_square:
            steps.append(PadSquare())
        return Pipeline(steps, self.decode)


def render(image: DicomImage, options: ConvertOptions | None = None) -> np.ndarray:
    """Turn a decoded :class:`~radiology.dicom.DicomImage` into a training-ready image.

    Normalization (or VOI) → polarity → pipeline steps → resize → pad, as set by ``options``:
    ``options.to_pipeline().render(image)``.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        Bone bright when ``options.polarity``.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from radiology.dicom import read_dicom
    >>> out = render(read_dicom(get_testdata_file("CT_small.dcm")), ConvertOptions(width=64))
    >>> out.shape, out.dtype
    ((64, 64), dtype('float32'))
    """
    return (options or ConvertOptions()).to_pipeline().render(image)


def dicom_to_image(source, options: ConvertOptions | None = None, **overrides) -> np.ndarray:
    """Read a DICOM file and return the normalized image (``float32``, ``[0, 1]``, bone bright).

    Parameters
    ----------
    source : path, bytes or binary file-like
        Any DICOM file :func:`radiology.dicom.read_dicom` accepts.
    options : ConvertOptions, optional
        Defaults to percentile normalization with polarity correction, original size.
    **overrides
        Fields of :class:`ConvertOptions` to change, e.g. ``width=512``.

    Raises
    ------
    radiology.dicom.DicomError
        A typed, one-line reason when the file cannot be converted.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> image = dicom_to_image(get_testdata_file("MR_small.dcm"), normalization="histogram")
    >>> image.shape, float(image.min()), float(image.max())
    ((64, 64), 0.0, 1.0)
    """
    options = replace(options or ConvertOptions(), **overrides) if overrides else (options or ConvertOptions())
    pipeline = options.to_pipeline()
    return pipeline.render(pipeline.decode.read(source))  # DICOM only, whatever the file name


def pipeline_input(path: str | os.PathLike, options: ConvertOptions | None = None) -> np.ndarray:
    """The image ``options.pipeline`` receives for a file.

    For DICOM: the polarity-corrected raw pixels when the pipeline starts with a
    normalizing step, else the normalized image (:func:`render` without pipeline and
    geometry). For PNG/JPEG/NPY/TIFF: the image in ``float32`` ``[0, 1]`` (RGB kept unless
    ``options.color == "gray"``, then BT.601 luma). ``radiology preview`` now shows every
    stage of :meth:`ConvertOptions.to_pipeline` instead (:meth:`~radiology.pipeline.Pipeline.trace`).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> pipeline_input(get_testdata_file("CT_small.dcm")).shape
    (128, 128)
    """
    options = options or ConvertOptions()
    normalizer = replace(options, pipeline=None, width=None, longest=None, pad_square=False).to_pipeline()
    if Path(path).suffix.lower() in IMAGE_SUFFIXES or (options.pipeline is not None and options.pipeline.normalizes):
        return normalizer.raw(path)
    return normalizer.read(path)


def fit_histogram_bins(
    sources: Iterable[str | os.PathLike],
    options: ConvertOptions | Pipeline | None = None,
    *,
    n_bins: int = 100,
    samples_per_image: int = 100_000,
    seed: int = 0,
) -> np.ndarray:
    """Fit equal-frequency histogram bins on a sample of a DICOM dataset.

    Pixels are taken in the same space :func:`render` normalizes (after the Modality LUT,
    polarity corrected: :meth:`Pipeline.raw <radiology.pipeline.Pipeline.raw>`), so the bins
    can be passed as ``ConvertOptions(bins=...)`` with ``normalization="histogram"`` or as
    ``Histogram(bins=...)``. Unreadable files are skipped with a log message.

    Parameters
    ----------
    sources : iterable of path
    options : ConvertOptions or Pipeline, optional
        Only its decoding settings matter.
    n_bins, samples_per_image, seed
        See :func:`radiology.intensity.histogram_bins`.

    Returns
    -------
    numpy.ndarray of float64
        Strictly increasing edges; save with :func:`radiology.intensity.save_histogram_bins`.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> bins = fit_histogram_bins([get_testdata_file("MR_small.dcm")], n_bins=10)
    >>> bool(np.all(np.diff(bins) > 0))
    True
    """
    pipeline = options if isinstance(options, Pipeline) else (options or ConvertOptions()).to_pipeline()

    def pixels():
        for source in sources:
            try:
                yield pipeline.raw(source)
            except RadiologyError as error:
                logger.warning("skipped while fitting bins: %s", error)

    return histogram_bins(pixels(), n_bins, samples_per_image=samples_per_image, seed=seed)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def display_name(text: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text: NFC-normalized, undecodable bytes as ``\\xNN`` escapes.

    File names are bytes on POSIX; Python hands undecodable ones over as surrogate escapes,
    which cannot be written to a UTF-8 report. This is how the report shows them.

    Examples
    --------
    >>> display_name("caf\\u0065\\u0301/b\\udcff.dcm")
    'café/b\\\\xff.dcm'
    """
    raw = os.fspath(text).encode("utf-8", "surrogateescape")
    return _nfc(raw.decode("utf-8", "backslashreplace"))


def _fit(name: str, limit: int = _NAME_BYTES, keep: str = "") -> str:
    """``name`` + ``keep`` within ``limit`` UTF-8 bytes: too long names keep a prefix and a hash of the whole."""
    if len((name + keep).encode("utf-8", "surrogatepass")) <= limit:
        return name + keep
    digest = hashlib.sha256((name + keep).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    room = limit - len(keep.encode()) - len(digest) - 1
    prefix = name.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return f"{prefix}-{digest}{keep}"


def sanitize_component(text: str) -> str:
    """Make one path component safe: no separators, no ``..``, no hidden or empty names.

    Letters and digits of any script are kept (NFC-normalized); other characters outside
    ``._-+=@,()`` become ``_``; a leading dot becomes ``_``; names over 255 bytes are
    shortened, keeping a hash of the full name.

    Examples
    --------
    >>> sanitize_component("../../etc/passwd")
    '_._.._etc_passwd'
    >>> sanitize_component("1.2.840.10008")
    '1.2.840.10008'
    >>> sanitize_component("Müller Röntgen")
    'Müller_Röntgen'
    """
    cleaned = _UNSAFE.sub("_", _nfc(text.strip()))
    if not cleaned or set(cleaned) == {"."}:
        return "_" * max(1, len(cleaned))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return _fit(cleaned)


def output_name(relative: str | os.PathLike, extension: str) -> str:
    """Output path (POSIX, relative to DST) for an input at ``relative`` (relative to SRC).

    Known DICOM extensions are replaced; any other suffix is kept (files named by UID
    contain dots), so ``a.dcm`` and ``a`` both map to ``a.png`` — the converter then gives
    the later one a ``_2`` suffix and says so in the report. Every component fits in 255
    bytes (long names are shortened with a hash suffix).

    Examples
    --------
    >>> output_name("study/1.2.3.4", ".png")
    'study/1.2.3.4.png'
    >>> output_name("study/IM0001.DCM", ".png")
    'study/IM0001.png'
    >>> len(output_name("x" * 300 + ".dcm", ".png").encode())
    255
    """
    parts = [sanitize_component(p) for p in Path(relative).parts if p not in ("", "/")]
    if not parts:
        raise ValueError(f"empty input path {relative!r}")
    stem = parts[-1]
    suffix = Path(stem).suffix
    if suffix.lower() in DICOM_SUFFIXES and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    parts[-1] = _fit(stem, keep=extension)
    return "/".join(parts)


class ConversionReport:
    """Outcome of :func:`convert_folder`: one row per input (columns :data:`REPORT_COLUMNS`).

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
        """Number of inputs with this status (``ok``, ``failed`` or ``skipped``)."""
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


# --------------------------------------------------------------------------- work units


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    label: str  # what the report shows (relative, hashed or not)
    output: str | None  # known up front for path naming; from the UID otherwise
    header_only: bool = False  # resume: the output exists; read the header for the row, do not decode
    force: bool = False  # uid naming: convert even if the output exists (options changed)


@dataclass(frozen=True)
class _Context:
    options: ConvertOptions
    pipeline: Pipeline
    store: object  # _LocalStore or _FsspecStore
    skip_existing: bool


_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _uid_output(ds, path: str, options: ConvertOptions) -> str:
    uid = ds.get("SOPInstanceUID")
    if not uid:
        raise InconsistentAttributesError(f"{path}: no SOPInstanceUID to name the output")
    return sanitize_component(str(uid)) + options.extension


def _convert_one(job: _Job, ctx: _Context) -> tuple[dict, bytes | None]:
    """Decode, render and encode one file; returns its report row and the encoded bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # recorded in the row's warnings column instead
        return _convert_file(job, ctx)


def _convert_file(job: _Job, ctx: _Context) -> tuple[dict, bytes | None]:
    meta: dict = {}
    options = ctx.options
    try:
        output = job.output  # None with UID naming: the header decides the name
        source = _read_source(job.path)
        if job.header_only or (output is None and ctx.skip_existing and not job.force):
            ds = read_dataset(source, stop_before_pixels=True)
            meta = _header_fields(ds)
            output = output or _uid_output(ds, job.path, options)
            if job.header_only or ctx.store.exists(output):
                return _row(job.label, "skipped", "output exists", output, meta), None
        image = ctx.pipeline.decode.read(source)
        meta = _meta_fields(image.metadata)
        meta["warnings"] = "; ".join(image.warnings)
        output = output or _uid_output(image.dataset, job.path, options)
        data = encode_image(ctx.pipeline.render(image), options.fmt, options.bit_depth,
                            png_compression=options.png_compression, jpeg_quality=options.jpeg_quality)
        return _row(job.label, "ok", "", output, meta), data
    except BaseException as error:  # noqa: BLE001 - a codec may raise a non-Exception (pyo3 PanicException)
        if isinstance(error, _FATAL):
            raise
        return _row(job.label, "failed", _reason(error, job.path), "", meta), None


def _convert_batch(jobs: list[_Job], ctx: _Context) -> list[tuple[dict, bytes | None]]:
    """One executor task: several files, so small files do not pay one task each."""
    return [_convert_one(job, ctx) for job in jobs]


# --------------------------------------------------------------------------- isolated worker processes


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)

    def watch() -> None:  # other systems (and belt and braces): poll the parent
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _quiet_native_stderr() -> None:
    # Codecs written in C (libjpeg, OpenJPEG, GDCM) print to file descriptor 2 and would scatter
    # their messages over the progress bar; each file's failure reason is in the report instead.
    # Debug logging (radiology -v) keeps them.
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _worker_main(conn, ctx: _Context, parent: int) -> None:
    _die_with_parent(parent)
    _quiet_native_stderr()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(_convert_one(job, ctx))


class _Worker:
    def __init__(self, mp, ctx: _Context):
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_worker_main, args=(child, ctx, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.job: _Job | None = None

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self.conn.close()


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _run_isolated(jobs: list[_Job], ctx: _Context, workers: int) -> Iterator[tuple[_Job, dict, bytes | None]]:
    """Each file is decoded in a worker process that handles one file at a time, so a codec that
    kills its process (SIGABRT, SIGSEGV, out of memory) fails exactly that file; the worker is replaced."""
    from multiprocessing.connection import wait as wait_for

    methods = multiprocessing.get_all_start_methods()
    mp = multiprocessing.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")
    pending = list(reversed(jobs))
    pool = [_Worker(mp, ctx) for _ in range(min(workers, max(1, len(jobs))))]

    def feed(index: int) -> None:
        worker = pool[index]
        if worker.job is not None or not pending:
            return
        job = pending.pop()
        try:
            worker.conn.send(job)
        except OSError:  # the idle worker died (killed from outside): replace it, try once more
            worker.stop()
            worker = pool[index] = _Worker(mp, ctx)
            worker.conn.send(job)
        worker.job = job

    try:
        while pending or any(w.job is not None for w in pool):
            for index in range(len(pool)):
                feed(index)
            busy = [w for w in pool if w.job is not None]
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for index, worker in enumerate(pool):
                job = worker.job
                if job is None or (worker.conn not in ready and worker.process.sentinel not in ready):
                    continue
                result = None
                try:
                    if worker.conn.poll():
                        result = worker.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    worker.job = None
                    feed(index)  # the worker decodes the next file while this one is written
                    yield job, result[0], result[1]
                    continue
                worker.process.join(timeout=5)
                reason = f"the decoder crashed its worker process ({_death(worker.process)})"
                logger.warning("%s: %s; starting a new worker", job.label, reason)
                worker.job = None
                worker.stop()
                pool[index] = _Worker(mp, ctx)
                yield job, _row(job.label, "failed", reason), None
    finally:
        for worker in pool:
            worker.stop()


def _run_executor(jobs: list[_Job], ctx: _Context, executor: Executor,
                  batch_size: int) -> Iterator[tuple[_Job, dict, bytes | None]]:
    """Batches of files as tasks of any ``concurrent.futures.Executor``; a batch whose task fails
    (a worker died) is retried one file per task, and a file whose own task fails is reported."""
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    window = max(2, 2 * (getattr(executor, "_max_workers", 0) or 32))
    pending = list(reversed(batches))
    running: dict = {}
    while pending or running:
        while pending and len(running) < window:
            batch = pending.pop()
            try:
                running[executor.submit(_convert_batch, batch, ctx)] = batch
            except Exception as error:  # noqa: BLE001 - e.g. a broken pool refuses new work
                for job in batch:
                    yield job, _row(job.label, "failed", f"executor refused the task: {one_line(error)}"), None
        if not running:
            continue
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            batch = running.pop(future)
            try:
                results = future.result()
            except BaseException as error:  # noqa: BLE001 - the task itself died (worker lost, pickling ...)
                if isinstance(error, _FATAL):
                    raise
                if len(batch) > 1:
                    pending.extend([job] for job in reversed(batch))  # alone, to find the culprit
                    continue
                results = [(_row(batch[0].label, "failed", f"worker task failed: {_reason(error, '')}"), None)]
            for job, (row, data) in zip(batch, results):
                yield job, row, data


# --------------------------------------------------------------------------- discovery and planning


def _is_url(value) -> bool:
    return isinstance(value, str) and "://" in value


def _local(value):
    """``file://`` URLs are plain paths (with every local guarantee)."""
    return value[len("file://"):] if isinstance(value, str) and value.startswith("file://") else value


def _url_sources(url: str, pattern: str) -> tuple[list[str], str]:
    import fnmatch

    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if fs.isfile(root):
        return [url], url.rsplit("/", 1)[0]
    if not fs.isdir(root):
        raise FileNotFoundError(f"{url}: no such file or folder")
    found = sorted(f for f in fs.find(root) if fnmatch.fnmatch(f.rsplit("/", 1)[-1], pattern))
    return [fs.unstrip_protocol(f) for f in found], fs.unstrip_protocol(root)


def _sources(src, dst, pattern: str) -> tuple[list[str], str, list[tuple[str, str]]]:
    """Input files (paths or URLs), the root their report names are relative to, and the paths the
    walk passed over with the reason of each (:func:`_passed_over`)."""
    from radiology.dicom import find_files

    if isinstance(src, (str, os.PathLike)):
        src = [src]
    items = [_local(os.fspath(p) if isinstance(p, os.PathLike) else p) for p in src]
    if not items:
        return [], ".", []
    if any(_is_url(item) for item in items):
        if len(items) > 1:
            raise ValueError("give one URL source at a time")
        return (*_url_sources(items[0], pattern), [])
    items = [Path(item) for item in items]
    real_dst = None if _is_url(dst) else os.path.realpath(dst)
    for item in items:
        if not item.exists() and not item.is_symlink():
            raise FileNotFoundError(f"{item}: no such file or folder")
        if item.is_dir() and os.path.realpath(item) == real_dst:
            raise ValueError("DST must be a different folder from SRC")
    roots = [item if item.is_dir() else item.parent for item in items]
    root = roots[0] if len(items) == 1 else Path(os.path.commonpath([os.path.abspath(r) for r in roots]))
    paths: list[Path] = []
    passed: dict[Path, str] = {}
    for item in items:
        if item.is_dir():
            found = find_files(item, pattern, exclude=None if real_dst is None else dst, hidden=True,
                               follow_links=True)
            paths.extend(found if len(items) == 1 else [Path(os.path.abspath(p)) for p in found])
            for path, reason in _passed_over(item, real_dst, pattern):
                passed.setdefault(path if len(items) == 1 else Path(os.path.abspath(path)), reason)
        else:
            paths.append(item if len(items) == 1 else Path(os.path.abspath(item)))
    return [str(p) for p in dict.fromkeys(paths)], str(root), [(str(p), r) for p, r in passed.items()]


_LOOP = "linked folder loops back to a folder it is in; not followed again"
_DUPLICATE = "same folder as one reached earlier through another path (a symbolic link); not read twice"
_INSIDE_DST = "inside DST, the output folder, which lies inside SRC; not converted"


def _passed_over(folder: Path, real_dst: str | None, pattern: str) -> Iterator[tuple[Path, str]]:
    """What the walk of :func:`radiology.dicom.find_files` leaves out of ``folder``, and why.

    It enters each real folder once and never enters DST, so a link loop, a second link to one
    folder and the files inside DST (when DST lies inside SRC) would leave no trace in the
    report. This walk takes the same path (top-down, sorted, the same real folders seen), so the
    folder it names is the one find_files skipped, not the one it converted.
    """
    seen = {os.path.realpath(folder)}
    for here, subfolders, _ in os.walk(folder, followlinks=True):
        real_here = os.path.realpath(here)
        keep = []
        for name in sorted(subfolders):
            path = Path(here) / name
            real = os.path.realpath(path)
            if real == real_dst and real not in seen:
                seen.add(real)  # a second path to DST is reported as one, not its files twice
                yield from ((file, _INSIDE_DST) for file in _user_files(path, pattern))
            elif real in seen:
                looped = real_here == real or real_here.startswith(real.rstrip(os.sep) + os.sep)
                yield path, _LOOP if looped else _DUPLICATE
            else:
                seen.add(real)
                keep.append(name)
        subfolders[:] = keep


def _user_files(dst: Path, pattern: str) -> Iterator[Path]:
    """Files in DST that no conversion wrote: not an image, a report, or a scratch file of a run."""
    from radiology.dicom import find_files

    own = re.compile(rf"\.?conversion_report.*\.(csv|tmp)|{re.escape(_SCRATCH)}.*")
    for path in find_files(dst, pattern, hidden=True, follow_links=True):
        relative = path.relative_to(dst)
        if path.suffix.lower() not in FORMATS.values() and not own.fullmatch(relative.parts[0]):
            yield path


class _LocalStore:
    """DST on a local file system: atomic renames from a scratch folder, no writes through links."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.scratch: Path | None = None

    @property
    def name(self) -> str:
        return str(self.root)

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _clean_stale(self.root)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{socket.gethostname()}-{os.getpid()}-",
                                             dir=self.root))

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes):
        return atomic_write(self.root / name, data)

    def write(self, relative: str, data: bytes, key: str) -> None:
        target = _target(self.root, relative)
        temporary = self.scratch / key
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def overwrites(self, relative: str, sources: set[str]) -> bool:
        return os.path.realpath(os.path.join(self.root, relative)) in sources


class _FsspecStore:
    """DST as an fsspec URL (``memory://``, ``s3://`` ...): each object is written whole, in one put."""

    def __init__(self, url: str):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    @property
    def name(self) -> str:
        return self.url

    def open(self) -> None:
        if self.fs.isfile(self.root):
            raise NotADirectoryError(f"{self.url}: DST exists and is not a folder")
        self.fs.makedirs(self.root, exist_ok=True)

    def close(self) -> None:
        pass

    def exists(self, relative: str) -> bool:
        return self.fs.exists(f"{self.root}/{relative}")

    def read(self, name: str) -> bytes | None:
        path = f"{self.root}/{name}"
        return self.fs.cat_file(path) if self.fs.isfile(path) else None

    def put(self, name: str, data: bytes):
        self.fs.pipe_file(f"{self.root}/{name}", data)
        return f"{self.url}/{name}"

    def write(self, relative: str, data: bytes, key: str) -> None:
        path = f"{self.root}/{relative}"
        if self.fs.isdir(path):
            raise OSError(f"{relative} exists as a folder")
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def overwrites(self, relative: str, sources: set[str]) -> bool:
        return self.fs.unstrip_protocol(f"{self.root}/{relative}") in sources


def _read_source(path: str):
    """What the readers get: the path, or the bytes of a URL source."""
    if not _is_url(path):
        return path
    import fsspec

    with fsspec.open(path, "rb") as file:
        return file.read()


def _options_fingerprint(options: ConvertOptions) -> str:
    data = options.to_pipeline().to_dict()
    data["decode"].pop("max_pixels", None)  # a resource limit: outputs do not depend on it
    data.update(fmt=options.fmt, bit_depth=options.bit_depth, png_compression=options.png_compression,
                jpeg_quality=options.jpeg_quality, naming=options.naming, source_names=options.source_names)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def _clean_stale(dst: Path) -> None:
    """Remove scratch folders of killed runs (this host, process gone; or any host, older than a day)."""
    host = socket.gethostname()
    now = time.time()
    for entry in dst.glob(_SCRATCH + "*"):
        parts = entry.name[len(_SCRATCH):].split("-")
        try:
            pid = int(parts[-2])
            same_host = "-".join(parts[:-2]) == host
            alive = True
            if same_host:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    pass
            if not alive or now - entry.lstat().st_mtime > 86400:
                shutil.rmtree(entry, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue
    for entry in dst.glob(".conversion_report*.tmp"):  # atomic_write's temporary of a killed run
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime > 600:
                entry.unlink()


class _Claims:
    """Outputs and the folders they need, so no file lands on a folder or inside a file."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    def clash(self, output: str) -> str | None:
        if output in self.files:
            return f"output {output} collides with {self.files[output]}"
        if output in self.folders:
            return f"output {output} is a folder needed by {self.folders[output]}"
        parts = output.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in self.files:
                return f"output folder {folder} is the output of {self.files[folder]}"
        return None

    def take(self, output: str, label: str) -> None:
        self.files[output] = label
        parts = output.split("/")
        for i in range(1, len(parts)):
            self.folders.setdefault("/".join(parts[:i]), label)


def _renamed(output: str, claims: _Claims) -> str | None:
    """``a.png`` → ``a_2.png`` (``_3`` ...) until free; None when the folder itself clashes."""
    folder, _, name = output.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, dot + ext) if stem else (name, "")
    for n in range(2, 10_000):
        candidate = _fit(f"{stem}_{n}", keep=ext)
        candidate = f"{folder}/{candidate}" if folder else candidate
        if claims.clash(candidate) is None:
            return candidate
        if candidate not in claims.files:  # a folder clash, which no further suffix avoids
            return None
    return None


def _shard_key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.lower().encode("utf-8", "surrogateescape")).digest()[:8], "big")


def _target(dst: Path, output: str) -> Path:
    """The output path, with its folders created one by one, never through a symbolic link."""
    here = dst
    parts = output.split("/")
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise OSError(f"{here.relative_to(dst)} is a symbolic link; not writing through it")
        if not here.is_dir():
            if here.exists():
                raise OSError(f"{here.relative_to(dst)} exists and is not a folder")
            here.mkdir(exist_ok=True)  # another shard may create it at the same moment
    target = here / parts[-1]
    if target.is_symlink():
        raise OSError(f"{output} is a symbolic link; not writing through it")
    if target.is_dir():
        raise OSError(f"{output} exists as a folder")
    return target


def _report_name(shard: tuple[int, int] | None) -> str:
    return REPORT_NAME if shard is None else f"conversion_report.shard-{shard[0]}-of-{shard[1]}.csv"


def convert_folder(
    src: str | os.PathLike | Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    options: ConvertOptions | None = None,
    *,
    workers: int = 1,
    skip_existing: bool = False,
    pattern: str = "*",
    progress: bool = True,
    executor: Executor | None = None,
    batch_size: int = 8,
    shard: tuple[int, int] | None = None,
    checkpoint_seconds: float = 30.0,
) -> ConversionReport:
    """Convert folders (recursively) or DICOM files to images, one report row per input.

    Parameters
    ----------
    src : path or sequence of paths
        A folder searched recursively (hidden files included, linked folders followed
        once, ``dst`` excluded when it is inside), a single file, or several folders
        and files (report paths are then relative to their common parent). What the
        search leaves out gets a ``skipped`` row saying why: a link loop, a second path
        to a folder already read, and each file inside ``dst`` that no conversion wrote.
    dst : path
        Output folder, created if needed. Outputs mirror the input tree (``naming="path"``)
        or are flat, named by SOP Instance UID (``naming="uid"``); names are sanitized so
        nothing can be written outside ``dst``, and never through a symbolic link in it.
    options : ConvertOptions, optional
    workers : int, optional
        Worker processes. Decoding always runs in worker processes (one file each at a
        time), so a codec that crashes its process fails only that file.
    skip_existing : bool, optional
        Resume: an input whose output exists *and* was written with the same options
        (per the earlier report in ``dst``) is reported ``skipped`` with its header
        fields and not decoded; an output written with other options is converted again.
    pattern : str, optional
        Glob on file names when ``src`` is a folder.
    progress : bool, optional
        Show a progress bar.
    executor : concurrent.futures.Executor, optional
        Run the work on this executor instead (e.g. ``dask.distributed.Client(address)
        .get_executor()``), ``batch_size`` files per task. Sources must be readable where
        the tasks run; encoded images come back and are written here. No crash isolation
        beyond what the executor gives (a failed batch is retried one file per task).
    batch_size : int, optional
        Files per executor task.
    shard : (int, int), optional
        ``(i, n)``: convert only the inputs of shard ``i`` of ``n`` (stable by output path,
        0-based) and write ``conversion_report.shard-i-of-n.csv``; join them with
        :func:`merge_reports`.
    checkpoint_seconds : float, optional
        Rewrite the report this often during the run, so a killed run can resume.

    Returns
    -------
    ConversionReport
        Also written to ``dst/conversion_report.csv`` (columns :data:`REPORT_COLUMNS`;
        ``output`` relative to ``dst``).

    Raises
    ------
    FileNotFoundError, ValueError
        A source is missing, ``dst`` is a file or the same folder as ``src``. Nothing is
        touched then.

    Notes
    -----
    Guarantees: every input gets exactly one row (``ok``, ``failed`` with a one-line
    reason, or ``skipped``); no exception raised while converting a file — including a
    codec's ``BaseException`` or a crashed worker — stops the batch (only
    ``KeyboardInterrupt``/``SystemExit`` do); outputs are written atomically by this
    process into ``dst`` only; no output overwrites an input or another output (a name
    taken by an earlier input gets a ``_2`` suffix, noted in ``reason``); memory is
    bounded by about ``workers`` × 16 bytes × ``options.max_pixels``. Scratch folders of
    killed runs are removed at the next run.

    Examples
    --------
    >>> import pathlib, tempfile, pydicom.data
    >>> files = [pydicom.data.get_testdata_file(n) for n in ("CT_small.dcm", "MR_truncated.dcm")]
    >>> report = convert_folder(files, tempfile.mkdtemp(), progress=False)
    >>> report.summary
    '1 converted, 1 failed, 0 skipped'
    """
    options = options or ConvertOptions()
    pipeline = options.to_pipeline()  # built once: every file runs this same object
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shard is not None:
        index, count = (int(v) for v in shard)
        if not 0 <= index < count:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
        shard = (index, count)
    dst = _local(os.fspath(dst) if isinstance(dst, os.PathLike) else dst)
    if not _is_url(dst) and os.path.exists(dst) and not os.path.isdir(dst):
        raise NotADirectoryError(f"{dst}: DST exists and is not a folder")
    paths, root, passed = _sources(src, dst, pattern)
    store = _FsspecStore(dst) if _is_url(dst) else _LocalStore(dst)
    store.open()
    try:
        return _convert_all(paths, root, passed, store, options, pipeline, workers=workers,
                            skip_existing=skip_existing, progress=progress, executor=executor,
                            batch_size=batch_size, shard=shard, checkpoint_seconds=checkpoint_seconds)
    finally:
        store.close()


def _named(relative: str, options: ConvertOptions) -> str:
    """How the report and the output tree name an input: its relative path, or that path hashed."""
    return hashed_name(relative) if options.source_names == "hashed" else relative


def _convert_all(paths, root, passed, store, options, pipeline, *, workers, skip_existing, progress, executor,
                 batch_size, shard, checkpoint_seconds) -> ConversionReport:
    """Plan outputs, run the jobs, settle each result, write the report (the body of :func:`convert_folder`)."""
    from tqdm.auto import tqdm

    fingerprint = _options_fingerprint(options)
    report_name = _report_name(shard)
    # The shard's own report and the merged one; without shards they are the same file, read once.
    previous = _previous_rows(store, dict.fromkeys([REPORT_NAME, report_name])) if skip_existing else {}
    real_sources = set(paths) if _is_url(root) else {os.path.realpath(p) for p in paths}
    rows: dict[int, dict] = {}
    claims = _Claims()
    jobs: list[_Job] = []

    def resumed(output: str) -> bool:
        earlier = previous.get(output)
        return earlier is not None and earlier.get("options") == fingerprint and store.exists(output)

    for index, path in enumerate(paths):
        relative = posixpath.relpath(path, root) if _is_url(root) else os.path.relpath(path, root)
        named = _named(relative, options)
        label = display_name(named)
        output = None
        note = ""
        if options.naming == "path":
            output = output_name(named, options.extension)
            if shard is not None and _shard_key(output) % shard[1] != shard[0]:
                continue
            reason = claims.clash(output)
            if reason is not None:
                renamed = _renamed(output, claims)
                if renamed is None:
                    rows[index] = _row(label, "failed", reason)
                    continue
                note = f"renamed: {reason}"
                output = renamed
            if store.overwrites(output, real_sources):
                rows[index] = _row(label, "failed", f"output {output} would overwrite an input file")
                continue
            claims.take(output, label)
            if skip_existing and resumed(output):
                jobs.append(_Job(index, path, label, output, header_only=True))
                continue
        elif shard is not None and _shard_key(relative) % shard[1] != shard[0]:
            continue
        jobs.append(_Job(index, path, label, output))
        if note:
            rows[index] = {"note": note}  # completed when the job settles
    for index, (path, reason) in enumerate(passed, start=len(paths)):
        relative = os.path.relpath(path, root)  # local folders only: a URL source has no links or DST inside
        if shard is None or _shard_key(relative) % shard[1] == shard[0]:
            rows[index] = _row(display_name(_named(relative, options)), "skipped", reason)

    uid_claims: dict[str, str] = {}
    redo: list[_Job] = []
    last_checkpoint = time.monotonic()

    def write_report():
        return store.put(report_name, _csv([rows[i] for i in sorted(rows) if "status" in rows[i]]))

    def settle(job: _Job, row: dict, data: bytes | None) -> None:
        nonlocal last_checkpoint
        note = rows.get(job.index, {}).get("note", "")
        output = row["output"]
        if row["status"] == "skipped" and job.output is None and not resumed(output):
            redo.append(replace(job, force=True))  # uid naming: the existing output has other options
            return
        if row["status"] == "ok":
            if options.naming == "uid":
                owner = uid_claims.get(output)
                if owner is not None:
                    row.update(status="failed", reason=f"output {output} collides with {owner}", output="")
                elif store.overwrites(output, real_sources):
                    row.update(status="failed", reason=f"output {output} would overwrite an input file", output="")
            if row["status"] == "ok":
                try:
                    store.write(output, data, f"{job.index}{options.extension}")
                    uid_claims[output] = job.label
                    if note:
                        row["reason"] = note
                except OSError as error:
                    text = display_name(error.strerror or str(error)) if error.filename else display_name(str(error))
                    row.update(status="failed", reason=f"cannot write {output}: {text}", output="")
        elif row["status"] == "skipped" and options.naming == "uid":
            uid_claims[output] = job.label
        if row["status"] in ("ok", "skipped"):
            row["options"] = fingerprint
        rows[job.index] = row
        bar.update()
        if time.monotonic() - last_checkpoint > checkpoint_seconds:
            write_report()
            last_checkpoint = time.monotonic()

    def run(batch: list[_Job]) -> None:
        ctx = _Context(options, pipeline, store, skip_existing)
        results = (_run_executor(batch, ctx, executor, batch_size) if executor is not None
                   else _run_isolated(batch, ctx, workers))
        for job, row, data in results:
            settle(job, row, data)

    bar = tqdm(total=len(jobs) + sum("status" in r for r in rows.values()),
               initial=sum("status" in r for r in rows.values()), disable=not progress, unit="file", desc="convert")
    try:
        run(jobs)
        if redo:
            run(redo)
    finally:
        bar.close()
        report_path = write_report()
    report = ConversionReport([rows[i] for i in sorted(rows) if "status" in rows[i]], report_path)
    logger.info("%s", report.summary)
    return report


def merge_reports(dst: str | os.PathLike) -> ConversionReport:
    """Join the shard reports of ``convert_folder(..., shard=(i, n))`` into ``dst/conversion_report.csv``.

    Raises
    ------
    FileNotFoundError
        No shard report, or one of the ``n`` shards is missing.

    Examples
    --------
    >>> import tempfile, pydicom.data
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
