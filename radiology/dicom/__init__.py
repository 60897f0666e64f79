"""Decode: read any DICOM file into pixels plus a non-PHI metadata record (no torch).

Conventions: raw decoded pixels keep their native dtype (or ``float32`` after a rescale)
until normalization by :mod:`radiology.intensity` or :func:`apply_voi`, which map them into
``float32`` ``[0, 1]``, bone bright.
"""

from radiology.dicom.errors import (
    CorruptPixelDataError,
    DicomError,
    DicomWarning,
    ImageTooLargeError,
    InconsistentAttributesError,
    NoPixelDataError,
    NotDicomError,
    PixelDecodeError,
    TruncatedPixelDataError,
    UnsupportedEncodingError,
)
from radiology.dicom.lut import apply_modality_lut, apply_voi, has_voi, mask_bits, to_grayscale
from radiology.dicom.metadata import (
    DICOM_SUFFIXES,
    PHI_KEYWORDS,
    DicomMetadata,
    hashed_name,
    metadata_from_dataset,
)
from radiology.dicom.read import DEFAULT_MAX_PIXELS, DicomImage, read_dataset, read_dicom
from radiology.dicom.table import TABLE_COLUMNS, metadata_table
from radiology.files import find_files  # the walk DICOM archives are read with

__all__ = [
    "read_dicom",
    "read_dataset",
    "find_files",
    "DicomImage",
    "DicomMetadata",
    "metadata_from_dataset",
    "metadata_table",
    "TABLE_COLUMNS",
    "hashed_name",
    "PHI_KEYWORDS",
    "DICOM_SUFFIXES",
    "mask_bits",
    "apply_modality_lut",
    "apply_voi",
    "has_voi",
    "to_grayscale",
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
    "DEFAULT_MAX_PIXELS",
]
