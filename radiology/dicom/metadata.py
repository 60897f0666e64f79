"""The small, non-PHI metadata record of a DICOM image, and a table of them for a folder."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from radiology.files import DICOM_SUFFIXES  # re-exported here for compatibility

__all__ = ["DicomMetadata", "metadata_from_dataset", "hashed_name", "PHI_KEYWORDS", "DICOM_SUFFIXES"]

logger = logging.getLogger(__name__)

#: Attributes that identify a patient; written only when a caller asks for them.
PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "AccessionNumber")



def hashed_name(relative: str | os.PathLike) -> str:
    """The relative path with every component replaced by a 16-hex SHA-256 digest.

    A known DICOM extension is kept. Used by ``source_names="hashed"`` so that folder
    and file names (often patient names or IDs) never reach an output; the same input
    always gets the same name (resume works). Unsalted: short guessable names can be
    recovered by trying candidates, so treat the result as pseudonymous, not anonymous.

    Parameters
    ----------
    relative : str or os.PathLike
        Path of an input relative to the input folder.

    Examples
    --------
    >>> hashed_name("Doe^Jane/IM0001.dcm")
    'ff37cfdaa95116a3/c3131772ca5d3664.dcm'
    """
    parts = [p for p in Path(relative).parts if p not in ("", "/")]
    out = []
    for index, part in enumerate(parts):
        suffix = Path(part).suffix if index == len(parts) - 1 else ""
        suffix = suffix if suffix.lower() in DICOM_SUFFIXES else ""
        stem = part[: len(part) - len(suffix)] if suffix else part
        out.append(hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:16] + suffix)
    return "/".join(out)


@dataclass(frozen=True)
class DicomMetadata:
    """What the pixel pipeline and a dataset table need to know about an image; no PHI.

    Attributes
    ----------
    modality, body_part, view_position, manufacturer : str or None
        Header values as stored (``Modality``, ``BodyPartExamined``, ``ViewPosition``,
        ``Manufacturer``); often wrong in real archives, which is why the pixel
        pipeline never depends on them.
    rows, columns, frames, samples_per_pixel : int
        Image geometry.
    photometric : str
        ``PhotometricInterpretation`` of the stored pixels.
    bits_allocated, bits_stored : int
        Container and meaningful bit depth of the stored pixels (0 for float data).
    signed : bool
        ``PixelRepresentation == 1``.
    transfer_syntax : str
        Name of the transfer syntax the file was encoded with.
    spacing_mm : tuple of float or None
        ``(row, column)`` spacing from ``PixelSpacing`` or else ``ImagerPixelSpacing``.
    sop_instance_uid : str or None
        The instance UID (not PHI; unique per image).
    rescale_slope, rescale_intercept : float
        Linear Modality LUT (1 and 0 when absent).
    has_modality_lut_sequence, has_voi_lut_sequence : bool
        Whether a tabulated Modality or VOI LUT is present.
    window_centers, window_widths : tuple of float
        All VOI windows stored in the header (possibly empty).
    voi_function : str
        ``VOILUTFunction`` (``LINEAR`` when absent).
    presentation_lut_shape : str or None
        ``PresentationLUTShape`` (``IDENTITY``/``INVERSE``) if present.
    """

    modality: str | None
    body_part: str | None
    view_position: str | None
    manufacturer: str | None
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric: str
    bits_allocated: int
    bits_stored: int
    signed: bool
    transfer_syntax: str
    spacing_mm: tuple[float, float] | None
    sop_instance_uid: str | None
    rescale_slope: float
    rescale_intercept: float
    has_modality_lut_sequence: bool
    has_voi_lut_sequence: bool
    window_centers: tuple[float, ...]
    window_widths: tuple[float, ...]
    voi_function: str
    presentation_lut_shape: str | None

    @property
    def inverted(self) -> bool:
        """True when the stored values must be inverted to show bone bright.

        That is the case for ``MONOCHROME1`` and for a ``MONOCHROME2`` image with
        Presentation LUT Shape ``INVERSE``. (Modalities that require ``INVERSE``
        together with ``MONOCHROME1``, such as DX, mean a single inversion.)
        """
        return self.photometric == "MONOCHROME1" or self.presentation_lut_shape == "INVERSE"

    @property
    def is_color(self) -> bool:
        """True for RGB, YBR_* and PALETTE COLOR images."""
        return self.samples_per_pixel > 1 or self.photometric == "PALETTE COLOR"


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return str(value).strip() or None


def _number(ds: Dataset, keyword: str, default: float) -> float:
    try:
        value = ds.get(keyword)
        return default if value in (None, "") else float(value)
    except (TypeError, ValueError):
        return default


def _numbers(ds: Dataset, keyword: str) -> tuple[float, ...]:
    value = ds.get(keyword)
    if value in (None, ""):
        return ()
    values = [value] if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) else value
    out = []
    for item in values:
        try:
            out.append(float(item))
        except (TypeError, ValueError):
            return ()
    return tuple(out)


def metadata_from_dataset(ds: Dataset) -> DicomMetadata:
    """Build the :class:`DicomMetadata` record of a parsed dataset.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A dataset as returned by :func:`radiology.dicom.read_dataset`.

    Returns
    -------
    DicomMetadata
        Tolerant of malformed optional values (they read as absent).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from radiology.dicom import read_dataset
    >>> meta = metadata_from_dataset(read_dataset(get_testdata_file("CT_small.dcm")))
    >>> meta.modality, meta.rows, meta.inverted
    ('CT', 128, False)
    """
    spacing = _numbers(ds, "PixelSpacing") or _numbers(ds, "ImagerPixelSpacing")
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return DicomMetadata(
        modality=_text(ds, "Modality"),
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        manufacturer=_text(ds, "Manufacturer"),
        rows=int(_number(ds, "Rows", 0)),
        columns=int(_number(ds, "Columns", 0)),
        frames=max(1, int(_number(ds, "NumberOfFrames", 1))),
        samples_per_pixel=int(_number(ds, "SamplesPerPixel", 1)),
        photometric=(_text(ds, "PhotometricInterpretation") or "MONOCHROME2").upper(),
        bits_allocated=int(_number(ds, "BitsAllocated", 0)),
        bits_stored=int(_number(ds, "BitsStored", _number(ds, "BitsAllocated", 0))),
        signed=int(_number(ds, "PixelRepresentation", 0)) == 1,
        transfer_syntax=syntax.name if syntax is not None else "unknown",
        spacing_mm=(spacing[0], spacing[1]) if len(spacing) == 2 else None,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        rescale_slope=_number(ds, "RescaleSlope", 1.0),
        rescale_intercept=_number(ds, "RescaleIntercept", 0.0),
        has_modality_lut_sequence="ModalityLUTSequence" in ds,
        has_voi_lut_sequence="VOILUTSequence" in ds,
        window_centers=_numbers(ds, "WindowCenter"),
        window_widths=_numbers(ds, "WindowWidth"),
        voi_function=(_text(ds, "VOILUTFunction") or "LINEAR").upper(),
        presentation_lut_shape=(_text(ds, "PresentationLUTShape") or "").upper() or None,
    )
