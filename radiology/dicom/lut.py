"""The DICOM grayscale transforms: stored-bit masking, Modality LUT, VOI LUT, colour to gray.

These implement the standard's pixel pipeline (PS3.3 C.11) on numpy arrays. They are the
*metadata-driven* path; :mod:`radiology.intensity` holds the metadata-independent one.
"""

from __future__ import annotations

import numpy as np
import pydicom.pixels
from pydicom.dataset import Dataset

from radiology.dicom.errors import InconsistentAttributesError
from radiology.dicom.metadata import DicomMetadata

# The one colour→gray conversion of the package lives in radiology.intensity (a pure numpy
# module), so DICOM colour decoding and every other path give the same gray image.
from radiology.intensity.color import LUMA_WEIGHTS, to_gray

__all__ = ["mask_bits", "apply_modality_lut", "apply_voi", "has_voi", "to_grayscale", "LUMA_WEIGHTS"]


def mask_bits(pixels: np.ndarray, bits_stored: int, signed: bool) -> np.ndarray:
    """Keep only the ``bits_stored`` low bits of integer pixels, sign-extending signed data.

    Parameters
    ----------
    pixels : numpy.ndarray of integers
        Stored values in their container dtype (8, 16 or 32 bits).
    bits_stored : int
        ``BitsStored``; values equal to or above the container width leave data unchanged.
    signed : bool
        ``PixelRepresentation == 1``: the top stored bit is the sign.

    Returns
    -------
    numpy.ndarray
        Same shape; signed container dtype when ``signed``, else the input dtype.

    Examples
    --------
    >>> mask_bits(np.array([0xF00F], dtype=np.uint16), 12, signed=False)
    array([15], dtype=uint16)
    >>> mask_bits(np.array([0x0FFF], dtype=np.uint16), 12, signed=True)
    array([-1], dtype=int16)
    """
    if pixels.dtype.kind not in "iu":
        raise TypeError(f"mask_bits needs integer pixels, got {pixels.dtype}")
    container = pixels.dtype.itemsize * 8
    if bits_stored <= 0 or bits_stored >= container:
        return pixels
    if signed:
        shift = container - bits_stored
        as_signed = pixels.view(np.dtype(f"i{pixels.dtype.itemsize}"))
        return (as_signed << shift) >> shift
    return pixels & pixels.dtype.type((1 << bits_stored) - 1)


def apply_modality_lut(pixels: np.ndarray, metadata: DicomMetadata, dataset: Dataset | None = None) -> np.ndarray:
    """Map stored values to modality values (e.g. Hounsfield units, optical density).

    Parameters
    ----------
    pixels : numpy.ndarray
        Stored (masked) grayscale values.
    metadata : DicomMetadata
        Gives the rescale slope/intercept.
    dataset : pydicom.dataset.Dataset, optional
        Needed only when the file has a Modality LUT Sequence.

    Returns
    -------
    numpy.ndarray
        Unchanged when the transform is the identity (integers stay integers, which keeps
        later histograms fast); ``float32`` after a rescale; the LUT's dtype after a
        Modality LUT Sequence.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from radiology.dicom import read_dicom
    >>> image = read_dicom(get_testdata_file("CT_small.dcm"), modality_lut=False)
    >>> hu = apply_modality_lut(image.pixels, image.metadata)
    >>> float(hu.min() - image.pixels.min())  # intercept of this CT
    -1024.0
    """
    if metadata.has_modality_lut_sequence:
        if dataset is None:
            raise ValueError("a Modality LUT Sequence needs the dataset")
        return pydicom.pixels.apply_modality_lut(pixels, dataset)
    slope, intercept = metadata.rescale_slope, metadata.rescale_intercept
    if slope == 1.0 and intercept == 0.0:
        return pixels
    return pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def has_voi(metadata: DicomMetadata) -> bool:
    """True when the header defines a VOI window or VOI LUT that :func:`apply_voi` can use.

    Parameters
    ----------
    metadata : DicomMetadata
        Header values of the image.
    """
    return metadata.has_voi_lut_sequence or (
        len(metadata.window_centers) > 0 and len(metadata.window_widths) > 0
    )


def apply_voi(
    pixels: np.ndarray, metadata: DicomMetadata, dataset: Dataset | None = None, index: int = 0
) -> np.ndarray:
    """Apply the header's VOI window or VOI LUT and scale the result to ``[0, 1]``.

    A VOI LUT Sequence takes precedence over window center/width, as in the standard.
    Windows follow ``VOILUTFunction``: ``LINEAR`` (PS3.3 C.11.2.1.2.1), ``LINEAR_EXACT``
    and ``SIGMOID``.

    Parameters
    ----------
    pixels : numpy.ndarray
        Modality values (output of :func:`apply_modality_lut`).
    metadata : DicomMetadata
        Holds the windows.
    dataset : pydicom.dataset.Dataset, optional
        Needed only for a VOI LUT Sequence.
    index : int, optional
        Which of several windows or LUTs to use.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        Not polarity-corrected: invert with ``1 - out`` when ``metadata.inverted``.

    Raises
    ------
    InconsistentAttributesError
        The header defines no usable VOI, the index is out of range, or the width is not positive.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from radiology.dicom import read_dicom
    >>> from radiology.synthetic import write_phantom_dicom
    >>> path = write_phantom_dicom(pathlib.Path(tempfile.mkdtemp()) / "w.dcm", window=(2048, 4096))
    >>> image = read_dicom(path)
    >>> out = apply_voi(image.pixels, image.metadata)
    >>> out.dtype, float(out.min()) >= 0, float(out.max()) <= 1
    (dtype('float32'), True, True)
    """
    if metadata.has_voi_lut_sequence:
        if dataset is None:
            raise ValueError("a VOI LUT Sequence needs the dataset")
        items = dataset.VOILUTSequence
        if not 0 <= index < len(items):
            raise InconsistentAttributesError(f"VOI LUT {index} requested but the file has {len(items)}")
        nbits = int(items[index].LUTDescriptor[2])
        out = pydicom.pixels.apply_voi(pixels, dataset, index=index).astype(np.float32)
        return np.clip(out / np.float32(2**nbits - 1), 0.0, 1.0)
    if not has_voi(metadata):
        raise InconsistentAttributesError("no VOI window or VOI LUT in the header")
    count = min(len(metadata.window_centers), len(metadata.window_widths))
    if not 0 <= index < count:
        raise InconsistentAttributesError(f"window {index} requested but the file has {count}")
    center, width = metadata.window_centers[index], metadata.window_widths[index]
    x = pixels.astype(np.float32)
    function = metadata.voi_function
    if function == "SIGMOID":
        if width <= 0:
            raise InconsistentAttributesError(f"window width {width} must be > 0")
        return (1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))).astype(np.float32)
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise InconsistentAttributesError(f"window width {width} must be > 0")
        out = (x - np.float32(center)) / np.float32(width) + np.float32(0.5)
    else:
        if width < 1:
            raise InconsistentAttributesError(f"window width {width} must be >= 1")
        span = max(width - 1.0, 1.0)
        out = (x - np.float32(center - 0.5)) / np.float32(span) + np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """Luma of RGB pixels, ``(..., 3)`` → ``(...)`` float32 in the input's value range.

    The DICOM-facing name of :func:`radiology.intensity.to_gray` (ITU-R BT.601).

    Parameters
    ----------
    rgb : numpy.ndarray
        Pixels with a trailing axis of 3 colour samples (R, G, B).

    Examples
    --------
    >>> to_grayscale(np.array([[[255, 255, 255]]], dtype=np.uint8))
    array([[255.]], dtype=float32)
    """
    if rgb.shape[-1] != 3:
        raise ValueError(f"expected a trailing axis of 3 colour samples, got shape {rgb.shape}")
    return to_gray(rgb)
