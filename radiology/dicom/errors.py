"""Typed errors raised while reading DICOM files.

Each message is one line: ``"<file>: <reason>"``. Batch tools catch
:class:`DicomError` per file and record the message in their report.
"""

from __future__ import annotations

from radiology.errors import RadiologyError

__all__ = [
    "DicomError",
    "NotDicomError",
    "NoPixelDataError",
    "PixelDecodeError",
    "UnsupportedEncodingError",
    "CorruptPixelDataError",
    "TruncatedPixelDataError",
    "InconsistentAttributesError",
    "ImageTooLargeError",
    "DicomWarning",
]


class DicomError(RadiologyError):
    """A DICOM file could not be turned into pixels."""


class NotDicomError(DicomError):
    """The input is not a DICOM file (no preamble, no parseable data elements)."""


class NoPixelDataError(DicomError):
    """The file is DICOM but holds no image (e.g. a structured report or DICOMDIR)."""


class PixelDecodeError(DicomError):
    """The pixel data is present but could not be decoded."""


class UnsupportedEncodingError(PixelDecodeError):
    """No installed codec can decode this transfer syntax."""


class CorruptPixelDataError(PixelDecodeError):
    """A codec was found but the compressed data is corrupt."""


class TruncatedPixelDataError(PixelDecodeError):
    """There are fewer pixel bytes than the image attributes require."""


class InconsistentAttributesError(DicomError):
    """Image attributes (rows, bits, photometric ...) are missing or contradict each other."""


class ImageTooLargeError(DicomError):
    """The image would decode to more pixels than the caller's limit (``max_pixels``)."""


class DicomWarning(UserWarning):
    """A recoverable defect of a file (e.g. an empty optional LUT item) that was ignored.

    :func:`radiology.dicom.read_dicom` issues it and also lists it in
    :attr:`DicomImage.warnings <radiology.dicom.DicomImage>`; batch tools copy it into
    their report's ``warnings`` column.
    """
