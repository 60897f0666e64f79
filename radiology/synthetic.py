"""Synthetic radiograph phantoms, written as DICOM in many encodings (demo and tests).

The phantom is a known answer: an image in the package convention (``float32``,
``[0, 1]``, bone bright) that :func:`phantom_dicom` stores with any bit depth, polarity,
rescale, window and transfer syntax. A correct metadata-independent conversion of the
file gives the phantom back (up to quantization and resampling).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

__all__ = [
    "phantom_radiograph", "phantom_dicom", "write_phantom_dicom", "add_findings", "write_findings_dataset",
    "ENCODINGS", "FINDINGS",
]

#: Transfer syntaxes :func:`phantom_dicom` can write, by short name.
ENCODINGS = {
    "explicit": ExplicitVRLittleEndian,
    "implicit": ImplicitVRLittleEndian,
    "deflated": DeflatedExplicitVRLittleEndian,
    "rle": RLELossless,
    "jpegls": JPEGLSLossless,
    "jpeg2000": JPEG2000Lossless,
}
_CR_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1")
#: Findings :func:`add_findings` can draw into a phantom.
FINDINGS = ("nodule", "effusion", "cardiomegaly")


def phantom_radiograph(shape: tuple[int, int] = (512, 512), seed: int = 0) -> np.ndarray:
    """A chest-radiograph-like phantom: body, lungs, ribs, spine, heart and a side marker.

    Parameters
    ----------
    shape : (int, int), optional
        ``(rows, columns)``.
    seed : int, optional
        Seed of the small anatomical jitter and quantum noise.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape ``shape``
        Bone bright, air dark; a burned-in bright "R" marker in the top-left corner.

    Examples
    --------
    >>> image = phantom_radiograph((256, 200))
    >>> image.shape, image.dtype, float(image.min()) >= 0, float(image.max()) <= 1
    ((256, 200), dtype('float32'), True, True)
    """
    rows, cols = shape
    if rows < 32 or cols < 32:
        raise ValueError(f"phantom needs at least 32x32 pixels, got {shape}")
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    u, v = (x - cols / 2) / (cols / 2), (y - rows / 2) / (rows / 2)  # -1..1
    jitter = rng.uniform(-0.03, 0.03, size=4)
    image = np.full(shape, 0.04, np.float32)
    body = (u / 0.86) ** 2 + ((v - 0.05) / 1.05) ** 2 < 1
    image[body] = 0.55
    for side in (-1, 1):
        lung = ((u - side * (0.38 + jitter[0])) / 0.28) ** 2 + ((v + 0.05 + jitter[1]) / 0.62) ** 2 < 1
        image[lung] = 0.2
        for k in range(8):  # ribs: bright arcs across each lung
            arc = np.abs(v - (-0.55 + 0.15 * k) - 0.18 * (u * side - 0.38) ** 2) < 0.025
            image[arc & lung] = 0.5
    image[(((u + 0.12 + jitter[2]) / 0.22) ** 2 + ((v - 0.2) / 0.25) ** 2 < 1) & body] = 0.58  # heart
    image[(np.abs(u) < 0.07) & body] = 0.85  # spine
    for side in (-1, 1):  # clavicles
        image[(np.abs(v + 0.62 - 0.25 * np.abs(u)) < 0.03) & (side * u > 0.05) & (side * u < 0.6)] = 0.8
    image = cv2.GaussianBlur(image, (0, 0), sigmaX=max(rows, cols) / 300)
    image += rng.normal(0, 0.01, size=shape).astype(np.float32)
    scale = max(rows, cols) / 400
    marker = np.zeros(shape, np.uint8)
    cv2.putText(marker, "R", (int(0.05 * cols), int(0.12 * rows)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, 255, max(1, int(2 * scale)), cv2.LINE_AA)
    image = np.maximum(image, marker.astype(np.float32) / 255)
    return np.clip(image, 0.0, 1.0)


def phantom_dicom(
    image: np.ndarray,
    *,
    bits_stored: int = 12,
    photometric: str = "MONOCHROME2",
    encoding: str = "explicit",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    modality: str = "CR",
    sop_instance_uid: str | None = None,
    pixel_spacing: tuple[float, float] | None = (0.2, 0.2),
    patient_name: str = "ANONYMOUS",
    patient_id: str = "PHANTOM",
) -> Dataset:
    """Store a ``[0, 1]`` image as a CR DICOM dataset with the requested encoding.

    Stored value ``s = round(image * (2**bits_stored - 1))``, inverted for MONOCHROME1, so
    the file *looks* different for every option while its content stays the same.

    Parameters
    ----------
    image : numpy.ndarray of float in [0, 1]
        ``(H, W)``, bone bright.
    bits_stored : int, optional
        8–16; stored in a 16-bit container when above 8.
    photometric : {"MONOCHROME2", "MONOCHROME1"}
        Photometric interpretation; MONOCHROME1 stores the inverted values (bright = low).
    encoding : str, optional
        A key of :data:`ENCODINGS`.
    rescale : (slope, intercept), optional
        Recorded Modality LUT.
    window : (center, width), optional
        Recorded VOI window, in modality units.
    modality, sop_instance_uid, pixel_spacing, patient_name, patient_id
        Header values (a fresh UID when none is given).

    Returns
    -------
    pydicom.dataset.Dataset
        Ready for ``dcmwrite`` / :func:`write_phantom_dicom`.

    Examples
    --------
    >>> ds = phantom_dicom(phantom_radiograph((64, 64)), photometric="MONOCHROME1", encoding="rle")
    >>> ds.file_meta.TransferSyntaxUID.name, ds.BitsStored
    ('RLE Lossless', 12)
    """
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) image, got shape {image.shape}")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be 8..16, got {bits_stored}")
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise ValueError(f"photometric must be MONOCHROME1 or MONOCHROME2, got {photometric!r}")
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}")
    top = (1 << bits_stored) - 1
    stored = np.round(np.clip(image, 0, 1) * top).astype(np.uint16 if bits_stored > 8 else np.uint8)
    if photometric == "MONOCHROME1":
        stored = (top - stored).astype(stored.dtype)
    uid = sop_instance_uid or generate_uid()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _CR_STORAGE
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = _CR_STORAGE
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Manufacturer = "radiology.synthetic"
    ds.Rows, ds.Columns = image.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if pixel_spacing is not None:
        ds.ImagerPixelSpacing = [f"{pixel_spacing[0]:g}", f"{pixel_spacing[1]:g}"]
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = f"{rescale[0]:g}", f"{rescale[1]:g}"
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = f"{window[0]:g}", f"{window[1]:g}"
    ds.PixelData = stored.tobytes()
    syntax = ENCODINGS[encoding]
    if syntax.is_compressed:
        ds.compress(syntax, stored, generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def write_phantom_dicom(path: str | os.PathLike, image: np.ndarray | None = None, **kwargs) -> Path:
    """Write :func:`phantom_dicom` of ``image`` (default: a 512² phantom) to ``path``.

    Keyword arguments are those of :func:`phantom_dicom`.

    Parameters
    ----------
    path : str or os.PathLike
        DICOM file to write; missing parent folders are created.
    image : numpy.ndarray, optional
        Float image in ``[0, 1]``; default :func:`phantom_radiograph` at 512².
    **kwargs
        Keyword arguments of :func:`phantom_dicom` (encoding, bit depth, header values).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = write_phantom_dicom(pathlib.Path(tempfile.mkdtemp()) / "p.dcm", encoding="deflated")
    >>> from radiology.dicom import read_dicom
    >>> read_dicom(path).metadata.transfer_syntax
    'Deflated Explicit VR Little Endian'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = phantom_dicom(phantom_radiograph() if image is None else image, **kwargs)
    syntax = ds.file_meta.TransferSyntaxUID
    pydicom.dcmwrite(path, ds, enforce_file_format=True, implicit_vr=syntax == ImplicitVRLittleEndian)
    return path


def add_findings(image: np.ndarray, findings: set[str] | frozenset[str] | tuple[str, ...], seed: int = 0) -> np.ndarray:
    """Draw synthetic findings into a :func:`phantom_radiograph` (known-answer labels).

    ``nodule``: a bright round opacity (radius 3–5 % of the width) at a random place in a
    lung; ``effusion``: the base of one lung filled in (a soft, rising opacity);
    ``cardiomegaly``: the heart shadow widened. Random placement comes from ``seed``.

    Parameters
    ----------
    image : numpy.ndarray of float32 in [0, 1], shape (H, W)
        The phantom to draw into; it is not modified.
    findings : collection of str
        Names from :data:`FINDINGS`.
    seed : int, optional
        Seed of the random placement and size of the findings.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        A new image; the centre of each nodule is inside a lung.

    Examples
    --------
    >>> base = phantom_radiograph((128, 128), seed=1)
    >>> sick = add_findings(base, {"nodule"}, seed=1)
    >>> bool((sick - base).max() > 0.1), sick.dtype
    (True, dtype('float32'))
    """
    unknown = set(findings) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown findings {sorted(unknown)}; known: {FINDINGS}")
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) image, got shape {image.shape}")
    rng = np.random.default_rng(seed)
    rows, cols = image.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    u, v = (x - cols / 2) / (cols / 2), (y - rows / 2) / (rows / 2)
    out = image.astype(np.float32, copy=True)
    if "cardiomegaly" in findings:
        heart = ((u + 0.12) / 0.36) ** 2 + ((v - 0.22) / 0.3) ** 2
        out = np.maximum(out, np.where(heart < 1, 0.6, 0).astype(np.float32))
    if "effusion" in findings:
        side = rng.choice((-1, 1))
        lung = ((u - side * 0.38) / 0.3) ** 2 + ((v + 0.05) / 0.64) ** 2 < 1
        level = rng.uniform(0.25, 0.4)
        fluid = lung & (v > level - 0.1 * np.abs(u - side * 0.38))
        out = np.where(fluid, np.maximum(out, 0.62), out)
    if "nodule" in findings:
        side = rng.choice((-1, 1))
        cu, cv = side * (0.38 + rng.uniform(-0.1, 0.1)), rng.uniform(-0.4, 0.3)
        radius = rng.uniform(0.03, 0.05) * 2  # in u units: fraction of the half-width
        blob = np.exp(-(((u - cu) ** 2 + ((v - cv) * rows / cols) ** 2) / (2 * radius**2)))
        out = out + 0.45 * blob.astype(np.float32)
    out = cv2.GaussianBlur(out, (0, 0), sigmaX=max(rows, cols) / 400)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def write_findings_dataset(
    folder: str | os.PathLike,
    count: int,
    *,
    findings: tuple[str, ...] = ("nodule",),
    size: tuple[int, int] = (160, 144),
    seed: int = 0,
    fmt: str = "dicom",
    prevalence: float = 0.5,
) -> Path:
    """Write a labeled set of phantoms with and without findings, and its label table.

    Each image is its own synthetic patient. DICOMs rotate through encodings and both
    polarities (so the set also exercises metadata-independent decoding).

    Parameters
    ----------
    folder : path
        Created; images go to ``folder/images``.
    count : int
        Number of images.
    findings : tuple of str
        One finding → single-label ``labels.csv`` (``file, label, patient``; label is the
        finding's name or ``normal``). Several → multi-label, in the NIH ChestX-ray14 layout:
        ``Data_Entry_2017.csv`` with ``Image Index``, ``Finding Labels`` (``A|B`` or
        ``No Finding``) and ``Patient ID``.
    size : (int, int)
        ``(rows, columns)`` of the images.
    seed : int
        Seeds anatomy, findings and labels; different seeds give different patients.
    fmt : {"dicom", "png"}
        Image files as DICOMs (``.dcm``) or 8-bit PNGs.
    prevalence : float
        Probability of each finding.

    Returns
    -------
    pathlib.Path
        The label table.

    Examples
    --------
    >>> import tempfile
    >>> table = write_findings_dataset(tempfile.mkdtemp(), 4, size=(64, 64), fmt="png")
    >>> table.name
    'labels.csv'
    """
    import pandas as pd

    from radiology.io import write_image

    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    if fmt not in ("dicom", "png"):
        raise ValueError(f"fmt must be 'dicom' or 'png', got {fmt!r}")
    if not findings:
        raise ValueError("give at least one finding")
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    encodings = ("explicit", "rle", "jpegls", "jpeg2000", "deflated", "implicit")
    rows = []
    for index in range(count):
        present = {f for f in findings if rng.random() < prevalence}
        patient_seed = int(rng.integers(0, 2**31))
        image = add_findings(phantom_radiograph(size, seed=patient_seed), present, seed=patient_seed)
        name = f"{seed:04d}_{index:05d}"
        patient = f"P{seed:04d}{index:05d}"
        if fmt == "dicom":
            file = f"images/{name}.dcm"
            write_phantom_dicom(folder / file, image, encoding=encodings[index % len(encodings)],
                                photometric=("MONOCHROME1", "MONOCHROME2")[index % 2], bits_stored=12,
                                patient_id=patient)
        else:
            file = f"images/{name}.png"
            write_image(folder / file, image)
        label = "|".join(f for f in findings if f in present)
        rows.append((file, label, patient))
    if len(findings) == 1:
        table = pd.DataFrame(rows, columns=["file", "label", "patient"])
        table["label"] = table["label"].replace("", "normal")
        path = folder / "labels.csv"
    else:
        table = pd.DataFrame(rows, columns=["Image Index", "Finding Labels", "Patient ID"])
        table["Image Index"] = [Path(f).name for f in table["Image Index"]]
        table["Finding Labels"] = table["Finding Labels"].replace("", "No Finding")
        path = folder / "Data_Entry_2017.csv"
    table.to_csv(path, index=False)
    return path
