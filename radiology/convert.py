"""DICOM to training-ready images: one file (:func:`dicom_to_image`) or a whole folder
(:func:`convert_folder`, behind ``radiology convert``).

A folder conversion discovers files, converts them in a process pool, writes every output
atomically, never lets two inputs claim the same output, never stops on a bad file, and
records one row per input in ``DST/conversion_report.csv``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from radiology.dicom import DicomImage, InconsistentAttributesError, read_dataset
from radiology.dicom.metadata import metadata_from_dataset
from radiology.errors import RadiologyError
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
    "convert_folder",
    "ConversionReport",
    "REPORT_COLUMNS",
    "REPORT_NAME",
]

logger = logging.getLogger(__name__)

#: Columns of ``conversion_report.csv``; other tools read this file: keep them stable.
REPORT_COLUMNS = (
    "source", "status", "reason", "output", "rows", "columns", "photometric", "transfer_syntax", "modality",
)
#: File name of the report written into the destination folder.
REPORT_NAME = "conversion_report.csv"
_DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+=@,()]")


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

    @property
    def extension(self) -> str:
        """File extension of the outputs (``.png``, ``.jpg`` or ``.npy``)."""
        return FORMATS[self.fmt]

    @property
    def decode(self) -> Decode:
        """The decoding fields as a :class:`~radiology.pipeline.Decode`."""
        return Decode(frame=self.frame, bits=self.bits, modality_lut=self.modality_lut, polarity=self.polarity,
                      color=self.color)

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


def sanitize_component(text: str) -> str:
    """Make one path component safe: no separators, no ``..``, no hidden or empty names.

    Characters outside ``[A-Za-z0-9._-+=@,()]`` become ``_``; a leading dot becomes ``_``.

    Examples
    --------
    >>> sanitize_component("../../etc/passwd")
    '_._.._etc_passwd'
    >>> sanitize_component("1.2.840.10008")
    '1.2.840.10008'
    """
    cleaned = _UNSAFE.sub("_", text.strip())
    if not cleaned or set(cleaned) == {"."}:
        return "_" * max(1, len(cleaned))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return cleaned[:255]


def output_name(relative: str | os.PathLike, extension: str) -> str:
    """Output path (POSIX, relative to DST) for an input at ``relative`` (relative to SRC).

    Known DICOM extensions are replaced; any other suffix is kept (files named by UID
    contain dots), so ``a.dcm`` and ``a`` both map to ``a.png`` — a collision the converter
    reports rather than overwrites.

    Examples
    --------
    >>> output_name("study/1.2.3.4", ".png")
    'study/1.2.3.4.png'
    >>> output_name("study/IM0001.DCM", ".png")
    'study/IM0001.png'
    """
    parts = [sanitize_component(p) for p in Path(relative).parts if p not in ("", "/")]
    if not parts:
        raise ValueError(f"empty input path {relative!r}")
    stem = parts[-1]
    suffix = Path(stem).suffix
    if suffix.lower() in _DICOM_SUFFIXES and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    parts[-1] = stem + extension
    return "/".join(parts)


@dataclass
class ConversionReport:
    """Outcome of :func:`convert_folder`: one row per input (columns :data:`REPORT_COLUMNS`)."""

    table: pd.DataFrame
    path: Path

    def count(self, status: str) -> int:
        """Number of inputs with this status (``ok``, ``failed`` or ``skipped``)."""
        return int((self.table["status"] == status).sum())

    @property
    def summary(self) -> str:
        """``"N converted, M failed, K skipped"``."""
        return f"{self.count('ok')} converted, {self.count('failed')} failed, {self.count('skipped')} skipped"


def _row(source: str, status: str, reason: str = "", output: str = "", meta: dict | None = None) -> dict:
    row = dict.fromkeys(REPORT_COLUMNS, "")
    row.update(meta or {})
    row.update(source=source, status=status, reason=reason, output=output)
    return row


def _header_fields(ds) -> dict:
    meta = metadata_from_dataset(ds)
    return {"rows": meta.rows, "columns": meta.columns, "photometric": meta.photometric,
            "transfer_syntax": meta.transfer_syntax, "modality": meta.modality or ""}


def _reason(error: BaseException, name: str) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if text.startswith(name + ": "):
        text = text[len(name) + 2:]
    return text if isinstance(error, RadiologyError) else f"unexpected {type(error).__name__}: {text}"


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    label: str
    output: str | None  # known up front for path naming; from the UID otherwise
    temporary: str


def _uid_output(ds, path: str, options: ConvertOptions) -> str:
    uid = ds.get("SOPInstanceUID")
    if not uid:
        raise InconsistentAttributesError(f"{path}: no SOPInstanceUID to name the output")
    return sanitize_component(str(uid)) + options.extension


def _convert_job(job: _Job, options: ConvertOptions, pipeline: Pipeline, dst: str, skip_existing: bool) -> dict:
    """Worker: decode, render and encode one file into its temporary path."""
    meta: dict = {}
    try:
        output = job.output  # None with UID naming: the header decides the name
        if output is None and skip_existing:  # header only, so resuming does not decode
            ds = read_dataset(job.path, stop_before_pixels=True)
            meta = _header_fields(ds)
            output = _uid_output(ds, job.path, options)
            if os.path.exists(os.path.join(dst, output)):
                return _row(job.label, "skipped", "output exists", output, meta)
        image = pipeline.decode.read(job.path)
        meta = _header_fields(image.dataset)
        output = output or _uid_output(image.dataset, job.path, options)
        data = encode_image(pipeline.render(image), options.fmt, options.bit_depth,
                            png_compression=options.png_compression, jpeg_quality=options.jpeg_quality)
        with open(job.temporary, "wb") as file:
            file.write(data)
        return _row(job.label, "ok", "", output, meta)
    except Exception as error:  # noqa: BLE001 - a bad file must never stop the batch
        return _row(job.label, "failed", _reason(error, job.path), "", meta)


def _sources(src: str | os.PathLike | Sequence[str | os.PathLike], dst: Path, pattern: str) -> tuple[list[Path], Path]:
    from radiology.dicom import find_files

    if isinstance(src, (str, os.PathLike)):
        root = Path(src)
        if root.is_dir():
            if root.resolve() == dst.resolve():
                raise ValueError("DST must be a different folder from SRC")
            return find_files(root, pattern, exclude=dst), root
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such file or folder")
        return [root], root.parent
    paths = [Path(p) for p in src]
    if not paths:
        return [], Path(".")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"{missing[0]}: no such file ({len(missing)} missing)")
    root = Path(os.path.commonpath([p.resolve().parent for p in paths]))
    return [p.resolve() for p in paths], root


def convert_folder(
    src: str | os.PathLike | Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    options: ConvertOptions | None = None,
    *,
    workers: int = 1,
    skip_existing: bool = False,
    pattern: str = "*",
    progress: bool = True,
) -> ConversionReport:
    """Convert a folder (recursively) or a list of DICOM files to images.

    Parameters
    ----------
    src : path or sequence of paths
        A folder searched recursively (hidden files skipped; ``dst`` excluded when it is
        inside), a single file, or explicit files.
    dst : path
        Output folder, created if needed. Outputs mirror the input tree (``naming="path"``)
        or are flat, named by SOP Instance UID (``naming="uid"``); names are sanitized so
        nothing can be written outside ``dst``.
    options : ConvertOptions, optional
    workers : int, optional
        Processes; 1 converts in this process.
    skip_existing : bool, optional
        Resume: inputs whose output exists are reported ``skipped`` and not decoded.
    pattern : str, optional
        Glob on file names when ``src`` is a folder.
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    ConversionReport
        Also written to ``dst/conversion_report.csv`` (columns :data:`REPORT_COLUMNS`;
        ``output`` relative to ``dst``).

    Notes
    -----
    Each output is encoded into a temporary folder inside ``dst`` and renamed into place
    by the coordinating process, which also checks that no two inputs claim the same
    output (the later one fails with a ``collides with`` reason). An interrupted run
    leaves no partial images; rerun with ``skip_existing=True`` to resume.

    Examples
    --------
    >>> import pathlib, tempfile, pydicom.data
    >>> files = [pydicom.data.get_testdata_file(n) for n in ("CT_small.dcm", "MR_truncated.dcm")]
    >>> report = convert_folder(files, tempfile.mkdtemp(), progress=False)
    >>> report.summary
    '1 converted, 1 failed, 0 skipped'
    """
    from tqdm.auto import tqdm

    options = options or ConvertOptions()
    pipeline = options.to_pipeline()  # built once: every file runs this same object
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dst = Path(dst)
    paths, root = _sources(src, dst, pattern)
    dst.mkdir(parents=True, exist_ok=True)
    rows: dict[int, dict] = {}
    claimed: dict[str, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix=".radiology-tmp-", dir=dst))
    jobs: list[_Job] = []
    for index, path in enumerate(paths):
        label = os.path.relpath(path, root)
        output = None
        if options.naming == "path":
            output = output_name(label, options.extension)
            if output in claimed:
                rows[index] = _row(label, "failed", f"output {output} collides with {claimed[output]}")
                continue
            claimed[output] = label
            if skip_existing and (dst / output).exists():
                rows[index] = _row(label, "skipped", "output exists", output)
                continue
        jobs.append(_Job(index, str(path), label, output, str(scratch / f"{index}{options.extension}")))

    def settle(job: _Job, row: dict) -> None:
        if row["status"] == "ok":
            output = row["output"]
            owner = claimed.get(output) if options.naming == "uid" else None
            if owner is not None:
                row.update(status="failed", reason=f"output {output} collides with {owner}", output="")
            else:
                claimed[output] = job.label
                target = dst / output
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(job.temporary, target)
        Path(job.temporary).unlink(missing_ok=True)
        rows[job.index] = row

    bar = tqdm(total=len(paths), initial=len(rows), disable=not progress, unit="file", desc="convert")
    try:
        if workers == 1:
            for job in jobs:
                settle(job, _convert_job(job, options, pipeline, str(dst), skip_existing))
                bar.update()
        else:
            _run_pool(jobs, options, pipeline, dst, skip_existing, workers, settle, bar)
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
        table = pd.DataFrame([rows[i] for i in sorted(rows)], columns=list(REPORT_COLUMNS))
        report_path = atomic_write(dst / REPORT_NAME, table.to_csv(index=False).encode())
    report = ConversionReport(table=table, path=report_path)
    logger.info("%s", report.summary)
    return report


def _run_pool(jobs, options, pipeline, dst, skip_existing, workers, settle, bar) -> None:
    pending = list(reversed(jobs))
    window = workers * 4  # bounded in-flight work keeps memory flat on 100k-file runs
    while pending:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            running = {}
            try:
                while pending or running:
                    while pending and len(running) < window:
                        job = pending.pop()
                        running[pool.submit(_convert_job, job, options, pipeline, str(dst), skip_existing)] = job
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        row = future.result()  # raises first, so a broken job stays in `running`
                        settle(running.pop(future), row)
                        bar.update()
            except BrokenProcessPool:
                # A codec crashed a worker: we cannot tell which in-flight file did it,
                # so each is reported and the rest of the batch goes on in a new pool.
                for job in running.values():
                    settle(job, _row(job.label, "failed", "worker process died while converting this file"))
                    bar.update()
