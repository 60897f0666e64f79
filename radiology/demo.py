"""The offline demo: convert a real variety of DICOMs that needs no download.

Inputs are the image files shipped inside the pydicom wheel (CR MONOCHROME1, CT, MR, US,
JPEG, JPEG-LS, JPEG 2000, RLE, big endian, colour, palette, multi-frame, and broken
files) plus synthetic chest phantoms written in several encodings, bit depths and
polarities. Output: the images, the conversion report and a before/after contact sheet.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radiology.convert import ConversionReport, ConvertOptions, convert_folder
from radiology.dicom import DicomError, read_dataset, read_dicom
from radiology.dicom.read import PIXEL_DATA_KEYWORDS
from radiology.intensity import minmax_scale
from radiology.io import read_image, write_image
from radiology.preview import contact_sheet
from radiology.synthetic import phantom_radiograph, write_phantom_dicom

__all__ = ["DemoResult", "run_demo", "pydicom_test_files", "PHANTOMS"]

logger = logging.getLogger(__name__)

#: The phantom files of the demo: name → keyword arguments of :func:`radiology.synthetic.phantom_dicom`.
PHANTOMS = {
    "chest_mono1_12bit_explicit": dict(photometric="MONOCHROME1", bits_stored=12, encoding="explicit"),
    "chest_mono2_16bit_rle": dict(photometric="MONOCHROME2", bits_stored=16, encoding="rle"),
    "chest_mono1_14bit_j2k_rescaled": dict(photometric="MONOCHROME1", bits_stored=14, encoding="jpeg2000",
                                           rescale=(0.5, -1024.0)),
    "chest_mono2_10bit_jpegls_window": dict(photometric="MONOCHROME2", bits_stored=10, encoding="jpegls",
                                            window=(300.0, 200.0)),
    "chest_mono1_12bit_deflated": dict(photometric="MONOCHROME1", bits_stored=12, encoding="deflated"),
    "chest_mono2_8bit_implicit": dict(photometric="MONOCHROME2", bits_stored=8, encoding="implicit"),
}
_SHOWCASE = ("CT_small.dcm", "MR_small.dcm", "examples_palette.dcm", "JPEG2000.dcm")


@dataclass
class DemoResult:
    """Paths and report of :func:`run_demo`."""

    report: ConversionReport
    images: Path
    contact_sheet: Path


def pydicom_test_files() -> list[Path]:
    """Every file in the ``test_files`` folder shipped inside the pydicom wheel, sorted.

    Walks the installed folder directly: pydicom's own lookup helpers may try to
    download its extended test data, which fails offline.

    Examples
    --------
    >>> any(p.name == "CT_small.dcm" for p in pydicom_test_files())
    True
    """
    return sorted(p for p in _pydicom_test_root().rglob("*") if p.is_file())


def _pydicom_test_root() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def _copy_pydicom_images(target: Path) -> list[Path]:
    copied = []
    root = _pydicom_test_root()
    for source in pydicom_test_files():
        try:
            has_pixels = any(k in read_dataset(source) for k in PIXEL_DATA_KEYWORDS)
        except DicomError:
            continue
        if has_pixels:
            destination = target / source.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
            copied.append(destination)
    return copied


def run_demo(
    out: str | os.PathLike, *, workers: int = 1, options: ConvertOptions | None = None, progress: bool = True
) -> DemoResult:
    """Build the demo inputs in ``out/inputs``, convert them to ``out/images``, draw the sheet.

    Parameters
    ----------
    out : path
        Output folder (created; existing demo files are replaced).
    workers : int, optional
        Conversion processes.
    options : ConvertOptions, optional
        Conversion settings (defaults: percentile normalization, 8-bit PNG).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    DemoResult
        ``out/images/conversion_report.csv`` and ``out/contact_sheet.png`` (raw stored
        values vs converted output, MONOCHROME1 files included).

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), progress=False)  # doctest: +SKIP
    >>> result.report.summary  # doctest: +SKIP
    '102 converted, 5 failed, 0 skipped'
    """
    out = Path(out)
    inputs, images = out / "inputs", out / "images"
    shutil.rmtree(inputs, ignore_errors=True)
    pydicom_files = _copy_pydicom_images(inputs / "pydicom")
    phantom = phantom_radiograph((512, 448), seed=7)
    phantom_files = [
        write_phantom_dicom(inputs / "phantoms" / f"{name}.dcm", phantom, **kwargs)
        for name, kwargs in PHANTOMS.items()
    ]
    logger.info("demo inputs: %d pydicom files, %d phantoms", len(pydicom_files), len(phantom_files))
    report = convert_folder(inputs, images, options, workers=workers, progress=progress)

    shown = phantom_files + [p for p in pydicom_files if _is_monochrome1(p) or p.name in _SHOWCASE]
    rows = []
    converted = report.table.set_index("source")
    for path in shown:
        label = os.path.relpath(path, inputs)
        if label not in converted.index or converted.loc[label, "status"] != "ok":
            continue
        raw = read_dicom(path, modality_lut=False).pixels
        after = read_image(images / converted.loc[label, "output"])
        title = f"{label} ({converted.loc[label, 'photometric']}, {converted.loc[label, 'transfer_syntax']})"
        rows.append((title, [minmax_scale(raw.astype(np.float32)), after]))
    sheet = write_image(out / "contact_sheet.png",
                        contact_sheet(rows, ("stored values (min-max)", "radiology convert"), tile=224))
    return DemoResult(report=report, images=images, contact_sheet=sheet)


def _is_monochrome1(path: Path) -> bool:
    try:
        return read_dataset(path, stop_before_pixels=True).get("PhotometricInterpretation") == "MONOCHROME1"
    except DicomError:
        return False

