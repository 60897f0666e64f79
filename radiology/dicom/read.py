"""One entry point to read any DICOM file into pixels plus a metadata record.

Decoding goes through pydicom's pluggable pixel-data backends; the codecs installed with
this package (pylibjpeg with libjpeg/openjpeg/rle, pyjpegls, python-gdcm) cover uncompressed
little/big endian, deflated, JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, HTJ2K and
RLE. pydicom tries every available plugin in turn, so GDCM acts as the fallback decoder.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

import numpy as np
import pydicom
import pydicom.pixels
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGExtended12Bit,
)

from radiology.dicom.errors import (
    CorruptPixelDataError,
    DicomError,
    DicomWarning,
    ImageTooLargeError,
    InconsistentAttributesError,
    NoPixelDataError,
    NotDicomError,
    TruncatedPixelDataError,
    UnsupportedEncodingError,
)
from radiology.dicom.lut import apply_modality_lut, mask_bits, to_grayscale
from radiology.dicom.metadata import DicomMetadata, metadata_from_dataset
from radiology.errors import one_line

__all__ = ["DicomImage", "read_dataset", "read_dicom", "PIXEL_DATA_KEYWORDS", "DEFAULT_MAX_PIXELS"]

logger = logging.getLogger(__name__)

#: The three elements that can hold an image.
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
#: Largest image :func:`read_dicom` decodes by default, in samples (rows × columns × samples
#: per pixel × decoded frames): 100 million, above full-field mammograms (~30 MPixel) and
#: stitched long-leg / full-spine radiographs (~40 MPixel). Peak memory of one decode is
#: about 16 bytes per sample (raw + float32 copies), so ~1.6 GB at the limit.
DEFAULT_MAX_PIXELS = 100_000_000

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO


@dataclass
class DicomImage:
    """Pixels of one DICOM image and what is needed to render them.

    Attributes
    ----------
    pixels : numpy.ndarray
        ``(H, W)`` grayscale, ``(H, W, 3)`` colour, or with a leading frame axis when all
        frames were requested. Values are in the Modality LUT output space (native integer
        dtype when no rescale applies, ``float32`` otherwise), *not* normalized and *not*
        polarity-corrected: see :attr:`DicomMetadata.inverted`.
    metadata : DicomMetadata
        Non-PHI header record.
    source : str
        File name used in error messages.
    dataset : pydicom.dataset.Dataset
        The parsed dataset, for callers that need more than the record (e.g. VOI LUTs).
    warnings : list of str
        Recoverable defects that were ignored while reading (also issued as
        :class:`~radiology.dicom.DicomWarning`), e.g. an empty Modality LUT Sequence item.
    """

    pixels: np.ndarray
    metadata: DicomMetadata
    source: str
    dataset: Dataset = field(repr=False)
    warnings: list[str] = field(default_factory=list)


def _source_name(source: Source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(getattr(source, "name", "<stream>"))


def _open(source: Source) -> BinaryIO | str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    if isinstance(source, os.PathLike):
        return os.fspath(source)
    return source


def _looks_like_dicom(ds: Dataset) -> bool:
    # A forced parse of arbitrary bytes yields a few random tags; real data has
    # elements in the standard groups an image or a DICOM object must carry.
    groups = {tag.group for tag in ds.keys()}
    return bool(groups & {0x0008, 0x0010, 0x0020, 0x0028, 0x7FE0})


def read_dataset(source: Source, *, stop_before_pixels: bool = False, max_bytes: int | None = None) -> Dataset:
    """Parse a DICOM file, with or without preamble and file meta information.

    Parameters
    ----------
    source : path, bytes or binary file-like
        The file; the extension does not matter.
    stop_before_pixels : bool, optional
        Skip the pixel data (fast header-only read).
    max_bytes : int, optional
        Refuse a *deflated* file whose data inflates to more than this many bytes
        (pydicom inflates the whole file before reading any element, so a small file
        could otherwise claim gigabytes of memory).

    Returns
    -------
    pydicom.dataset.Dataset
        With ``file_meta.TransferSyntaxUID`` always set: inferred from the encoding
        actually found when the file has no file meta information.

    Raises
    ------
    NotDicomError
        The bytes are not DICOM.
    InconsistentAttributesError
        The file is DICOM but its structure cannot be parsed.
    ImageTooLargeError
        A deflated file inflates beyond ``max_bytes``.

    Examples
    --------
    >>> from pathlib import Path
    >>> from pydicom.data import get_testdata_file
    >>> ds = read_dataset(Path(get_testdata_file("MR_small_bigendian.dcm")).read_bytes())
    >>> ds.file_meta.TransferSyntaxUID.name
    'Explicit VR Big Endian'
    """
    name = _source_name(source)
    handle = _open(source)
    if isinstance(source, (str, os.PathLike)) and not os.path.isfile(handle):
        raise NotDicomError(f"{name}: not a file")
    if max_bytes is not None:
        _check_inflated_size(handle, name, max_bytes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels)
        except InvalidDicomError:
            if hasattr(handle, "seek"):
                handle.seek(0)
            try:
                ds = pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels, force=True)
            except Exception as error:  # noqa: BLE001 - forced parse of garbage raises anything
                raise NotDicomError(f"{name}: not a DICOM file ({type(error).__name__})") from error
            if not _looks_like_dicom(ds):
                raise NotDicomError(f"{name}: not a DICOM file") from None
        except Exception as error:  # noqa: BLE001 - pydicom raises many types on broken files
            raise InconsistentAttributesError(f"{name}: cannot parse DICOM structure: {_one_line(error)}") from error
    for warning in caught:
        logger.debug("%s: %s", name, warning.message)
    ds.radiology_truncated = any("End of file reached" in str(w.message) for w in caught)
    _ensure_transfer_syntax(ds)
    return ds


def _check_inflated_size(handle, name: str, max_bytes: int) -> None:
    """Inflate a deflated file's body in bounded chunks, counting bytes, before pydicom inflates it whole."""
    import zlib

    from pydicom.filereader import _read_file_meta_info, read_preamble

    opened = isinstance(handle, str)
    stream = open(handle, "rb") if opened else handle
    start = stream.tell()
    try:
        try:
            read_preamble(stream, True)
            meta = _read_file_meta_info(stream)
        except Exception:  # noqa: BLE001 - not a well-formed Part 10 file: pydicom's parse reports it
            return
        if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return
        inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
        while chunk := stream.read(1 << 20):
            data = inflater.decompress(chunk, max_bytes + 1 - total)
            while data:
                total += len(data)
                if total > max_bytes:
                    raise ImageTooLargeError(f"{name}: deflated data inflates to more than {max_bytes:,} bytes")
                data = inflater.decompress(inflater.unconsumed_tail, max_bytes + 1 - total)
    except zlib.error:
        return  # corrupt stream: pydicom's own parse gives the reason
    finally:
        if opened:
            stream.close()
        else:
            stream.seek(start)


def _check_size(meta: DicomMetadata, frame: int | None, name: str, max_pixels: int | None) -> None:
    if max_pixels is None:
        return
    frames = meta.frames if frame is None else 1
    samples = meta.rows * meta.columns * max(1, meta.samples_per_pixel) * frames
    if samples > max_pixels:
        raise ImageTooLargeError(
            f"{name}: image too large: {meta.rows} x {meta.columns} x {max(1, meta.samples_per_pixel)} samples"
            f" x {frames} frame(s) = {samples:,} exceeds max_pixels {max_pixels:,}"
        )


_LUT_SEQUENCES = ("ModalityLUTSequence", "VOILUTSequence")


def _drop_invalid_luts(ds: Dataset, name: str) -> list[str]:
    """Remove empty or incomplete optional LUT sequences (as DCMTK ignores them), returning why."""
    found = []
    for keyword in _LUT_SEQUENCES:
        if keyword not in ds:
            continue
        items = ds[keyword].value or []
        bad = not items or any(
            "LUTDescriptor" not in item or "LUTData" not in item or len(item.LUTDescriptor or ()) != 3
            or not item.LUTData for item in items
        )
        if bad:
            del ds[keyword]
            text = f"{keyword} empty or incomplete: ignored"
            warnings.warn(DicomWarning(f"{name}: {text}"), stacklevel=3)
            found.append(text)
    return found


def _gdcm_pixels(path: str, meta: DicomMetadata, frame: int | None) -> np.ndarray:
    """Decode with GDCM directly (pydicom's GDCM plugin refuses 12-bit lossy JPEG that GDCM reads)."""
    import gdcm

    reader = gdcm.ImageReader()
    reader.SetFileName(path)
    if not reader.Read():
        raise RuntimeError("GDCM could not read the file")
    image = reader.GetImage()
    kinds = {"UINT8": np.uint8, "INT8": np.int8, "UINT16": np.uint16, "INT16": np.int16,
             "UINT32": np.uint32, "INT32": np.int32}
    kind = image.GetPixelFormat().GetScalarTypeAsString()
    if kind not in kinds:
        raise RuntimeError(f"GDCM pixel type {kind} not handled")
    data = np.frombuffer(image.GetBuffer().encode("utf-8", "surrogateescape"), dtype=kinds[kind])
    samples = max(1, meta.samples_per_pixel)
    shape = (meta.frames, meta.rows, meta.columns) + ((samples,) if samples > 1 else ())
    if data.size != int(np.prod(shape)):
        raise RuntimeError(f"GDCM returned {data.size} values for shape {shape}")
    pixels = data.reshape(shape)
    if frame is None:
        return pixels if meta.frames > 1 else pixels[0]
    return pixels[frame % meta.frames]


def _ensure_transfer_syntax(ds: Dataset) -> None:
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
    if "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit:
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def _one_line(error: BaseException) -> str:
    return one_line(error)[:300]  # a codec may put a whole buffer in its message


def _decode_error(name: str, error: BaseException) -> DicomError:
    text = _one_line(error)
    lowered = text.lower()
    if "less than expected" in lowered or "truncated" in lowered or "too short" in lowered:
        return TruncatedPixelDataError(f"{name}: truncated pixel data: {text}")
    if "raised by all available plugins" in lowered:
        return CorruptPixelDataError(f"{name}: no codec could decode the pixel data: {text}")
    if "no pixel data decoders" in lowered or "plugins are available" in lowered or "not supported" in lowered:
        return UnsupportedEncodingError(f"{name}: unsupported encoding: {text}")
    if isinstance(error, (AttributeError, KeyError, TypeError)) or "invalid literal" in lowered or "must be" in lowered:
        return InconsistentAttributesError(f"{name}: inconsistent image attributes: {text}")
    return CorruptPixelDataError(f"{name}: corrupt pixel data: {text}")


def _decode(ds: Dataset, meta: DicomMetadata, frame: int | None, name: str, bits: bool,
            path: str | None = None) -> np.ndarray:
    if not any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        if getattr(ds, "radiology_truncated", False):
            raise TruncatedPixelDataError(f"{name}: file ends before the pixel data is complete")
        raise NoPixelDataError(f"{name}: no pixel data")
    if meta.rows <= 0 or meta.columns <= 0:
        raise InconsistentAttributesError(f"{name}: Rows/Columns missing or zero")
    if frame is not None and not -meta.frames <= frame < meta.frames:
        raise InconsistentAttributesError(f"{name}: frame {frame} requested but the file has {meta.frames}")
    index = None if frame is None else frame % meta.frames
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # pydicom masks unused bits of native data by default; follow `bits` so that
            # bits=False really returns the stored values (mask_bits covers the codecs).
            pixels = pydicom.pixels.pixel_array(ds, index=index, correct_unused_bits=bits)
        except Exception as error:  # noqa: BLE001 - codecs raise anything on bad data
            syntax = ds.file_meta.get("TransferSyntaxUID")
            if path is None or syntax != JPEGExtended12Bit:
                raise _decode_error(name, error) from error
            try:  # 12-bit lossy JPEG: GDCM decodes what pylibjpeg and pydicom's GDCM plugin refuse
                pixels = _gdcm_pixels(path, meta, index)
            except Exception:  # noqa: BLE001 - report the first decoder's reason
                raise _decode_error(name, error) from error
    if frame is None and meta.frames == 1:
        pixels = pixels[np.newaxis]
    return pixels


def read_dicom(
    source: Source,
    *,
    frame: int | None = 0,
    bits: bool = True,
    modality_lut: bool = True,
    color: Literal["gray", "keep"] = "gray",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> DicomImage:
    """Read a DICOM file into pixels in the Modality LUT output space.

    The steps, each switchable, are those of the DICOM grayscale pipeline up to (not
    including) the VOI LUT: decode any transfer syntax → mask to ``BitsStored`` and
    sign-extend → Modality LUT (rescale slope/intercept or a Modality LUT Sequence) →
    colour handling. VOI windows and polarity are applied later, by
    :func:`radiology.dicom.apply_voi` or by metadata-independent normalization
    (:mod:`radiology.intensity`), with :attr:`DicomMetadata.inverted` telling when to flip.

    Parameters
    ----------
    source : path, bytes or binary file-like
        A DICOM file, with or without preamble, file meta or ``.dcm`` extension.
    frame : int or None, optional
        Frame of a multi-frame image (negative counts from the end); ``None`` returns
        all frames with a leading frame axis. Only the requested frame is decoded.
    bits : bool, optional
        Mask stored values to ``BitsStored`` and sign-extend signed data (guards
        against garbage in unused high bits).
    modality_lut : bool, optional
        Apply the Modality LUT; when off, stored values are returned.
    color : {"gray", "keep"}, optional
        ``"gray"`` turns RGB/YBR/PALETTE COLOR into float32 luma (ITU-R BT.601);
        ``"keep"`` returns ``(H, W, 3)`` RGB. YBR is always converted to RGB first.
    max_pixels : int or None, optional
        Refuse, before decoding, an image of more than this many samples (rows × columns ×
        samples per pixel × decoded frames; default :data:`DEFAULT_MAX_PIXELS`), and a
        deflated file that inflates beyond 8 bytes per allowed sample. ``None``: no limit.

    Returns
    -------
    DicomImage

    Raises
    ------
    NotDicomError, NoPixelDataError, UnsupportedEncodingError, CorruptPixelDataError,
    TruncatedPixelDataError, InconsistentAttributesError, ImageTooLargeError
        All subclasses of :class:`radiology.dicom.DicomError`, with a one-line reason.

    Notes
    -----
    Empty or incomplete Modality / VOI LUT Sequences are ignored (as DCMTK does) with a
    :class:`~radiology.dicom.DicomWarning`, listed in :attr:`DicomImage.warnings`. Lossy
    12-bit JPEG (Extended, process 2/4) that the pydicom plugins refuse is decoded with
    GDCM directly (path sources only).

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> image = read_dicom(get_testdata_file("MR_small_RLE.dcm"))
    >>> image.pixels.shape, image.metadata.transfer_syntax
    ((64, 64), 'RLE Lossless')
    """
    if color not in ("gray", "keep"):
        raise ValueError(f"color must be 'gray' or 'keep', not {color!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) < 1):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    name = _source_name(source)
    ds = read_dataset(source, max_bytes=None if max_pixels is None else 8 * int(max_pixels))
    found = _drop_invalid_luts(ds, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed optional values read as absent
        meta = metadata_from_dataset(ds)
    if any(keyword in ds for keyword in PIXEL_DATA_KEYWORDS):
        _check_size(meta, frame, name, max_pixels)
    path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    pixels = _decode(ds, meta, frame, name, bits, path)
    photometric = meta.photometric
    try:
        if photometric == "PALETTE COLOR":
            pixels = pydicom.pixels.apply_color_lut(pixels, ds)
        elif pixels.dtype.kind in "iu" and not meta.is_color:
            if bits:
                pixels = mask_bits(pixels, meta.bits_stored, meta.signed)
            if modality_lut:
                pixels = apply_modality_lut(pixels, meta, ds)
    except DicomError:
        raise
    except Exception as error:  # noqa: BLE001 - malformed LUT sequences raise anything
        raise InconsistentAttributesError(f"{name}: cannot apply LUT: {_one_line(error)}") from error
    if meta.is_color and color == "gray":
        pixels = to_grayscale(pixels)
    return DicomImage(pixels=pixels, metadata=meta, source=name, dataset=ds, warnings=found)


