"""Declarative preprocessing: everything from a file to a model's input, as data.

A :class:`Pipeline` is a :class:`Decode` (how a DICOM becomes raw pixels) plus an ordered
list of named, parameterized steps. It serializes to JSON or YAML, so a trained model
stores exactly the preprocessing it was trained with, and conversion, training and
inference all run the same object through :meth:`Pipeline.read`.

Each step is a small frozen dataclass with a ``name`` and its parameters, callable on a
numpy image and validated when built (a bad parameter fails at load time, naming the step
and the parameter). Steps follow the package convention (``float32`` ``[0, 1]``,
``(H, W)`` or ``(H, W, 3)``); a *normalizing* step (``percentile``, ``histogram``,
``minmax``, ``voi``) maps raw pixel values into ``[0, 1]`` and must come first. A DICOM
read through a pipeline whose first step does not normalize gets an implied
``Percentile()`` first, so raw values never leak into the other steps.

Example (JSON, version 2)::

    {"format": "radiology.pipeline", "version": 2,
     "decode": {"frame": 0, "bits": true, "modality_lut": true, "polarity": true, "color": "gray"},
     "steps": [
        {"name": "percentile", "low": 0.5, "high": 99.5},
        {"name": "clean_background"},
        {"name": "clahe", "clip_limit": 2.0, "tile_grid": [8, 8]},
        {"name": "resize", "width": 512}]}

Version 1 files (no ``decode``) still load, with the default :class:`Decode`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from radiology.dicom import DEFAULT_MAX_PIXELS, DicomError, DicomImage, apply_voi, has_voi, read_dicom
from radiology.errors import RadiologyError, one_line
from radiology.geometry import pad_to_square, resize
from radiology.geometry.affine import resize_matrix, translation_matrix
from radiology.geometry.background import clean_background
from radiology.geometry.fov import circle_crop, crop_to_fov, fundus_crop
from radiology.geometry.knee import KneeLocalizer, crop_around
from radiology.intensity import (
    clahe,
    enhance_contrast,
    histogram_bins,
    histogram_scale,
    minmax_scale,
    percentile_window,
    to_gray,
)
from radiology.io import IMAGE_SUFFIXES, atomic_write, read_image

__all__ = [
    "Step", "Percentile", "Histogram", "MinMax", "VOI", "CLAHE", "Enhance", "Resize", "PadSquare", "FOVCrop",
    "CircleCrop", "FundusCrop", "CleanBackground", "KneeCrop", "Decode", "Pipeline", "PipelineError", "STEPS",
    "FORMAT", "VERSION",
]

FORMAT = "radiology.pipeline"
#: Version written by :meth:`Pipeline.to_dict`; :meth:`Pipeline.from_dict` also reads version 1.
VERSION = 2


class PipelineError(RadiologyError, ValueError):
    """A pipeline file is invalid, or a file could not be read or processed by a pipeline.

    The message is one line naming the file (and the step and parameter when one is at fault).
    """


# --------------------------------------------------------------------------- validation


def _fail(step: str, message: str) -> None:
    raise ValueError(f"{step}: {message}")


def _real(step: str, param: str, value, *, optional: bool = False, gt: float | None = None,
          ge: float | None = None, le: float | None = None, lt: float | None = None) -> float | None:
    if value is None:
        if not optional:
            _fail(step, f"{param} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(step, f"{param} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        _fail(step, f"{param} must be finite, got {value}")
    for bound, ok, text in ((gt, lambda b: value > b, ">"), (ge, lambda b: value >= b, ">="),
                            (le, lambda b: value <= b, "<="), (lt, lambda b: value < b, "<")):
        if bound is not None and not ok(bound):
            _fail(step, f"{param} must be {text} {bound:g}, got {value:g}")
    return value


def _integer(step: str, param: str, value, *, optional: bool = False, ge: int | None = None) -> int | None:
    if value is None:
        if not optional:
            _fail(step, f"{param} is required")
        return None
    whole = isinstance(value, (float, np.floating)) and float(value).is_integer()
    if isinstance(value, bool) or not (isinstance(value, (int, np.integer)) or whole):
        _fail(step, f"{param} must be an integer, got {value!r}")
    value = int(value)
    if ge is not None and value < ge:
        _fail(step, f"{param} must be >= {ge}, got {value}")
    return value


def _flag(step: str, param: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(step, f"{param} must be true or false, got {value!r}")
    return bool(value)


def _percentiles(step: str, low, high) -> tuple[float, float]:
    low = _real(step, "low", low, ge=0, lt=100)
    high = _real(step, "high", high, gt=0, le=100)
    if not low < high:
        _fail(step, f"low must be < high, got low={low:g}, high={high:g}")
    return low, high


def _threshold(step: str, value) -> float | None:
    return _real(step, "threshold", value, optional=True, ge=0, lt=1)


# --------------------------------------------------------------------------- steps


class Step:
    """Base of pipeline steps: a frozen dataclass with a ``name``, callable on an image.

    Class attributes: ``name`` (the JSON name), ``normalizes`` (maps raw pixel values into
    ``[0, 1]``; must then be the first step) and ``file_params`` (parameters holding file
    paths, see :meth:`Pipeline.files`).
    """

    name: ClassVar[str] = ""
    normalizes: ClassVar[bool] = False
    file_params: ClassVar[tuple[str, ...]] = ()

    def __call__(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def apply_with_geometry(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The step's output and the 3×3 matrix mapping input pixels ``(x, y, 1)`` to output pixels.

        Steps that keep every pixel where it is (intensity steps) report the identity; steps
        that resize, pad or crop override this and report what they did (data-dependent
        crops their actual box). A step that changes the image size without overriding it
        reports ``None`` (unknown geometry). See :mod:`radiology.geometry.affine`.
        """
        out = self(image)
        return out, (np.eye(3) if out.shape[:2] == np.shape(image)[:2] else None)

    def _set(self, param: str, value) -> None:
        object.__setattr__(self, param, value)  # frozen dataclass: normalize once, at construction

    def params(self) -> dict[str, Any]:
        """Parameters as JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _display_ordered(image: DicomImage, polarity: bool) -> np.ndarray:
    # Negating inverted images makes larger = brighter before any normalization, so
    # percentiles, per-image histograms and dataset-fitted bins all see bone as high.
    pixels = image.pixels
    if polarity and image.metadata.inverted and not image.metadata.is_color:
        pixels = np.negative(pixels.astype(np.int32) if pixels.dtype.kind == "u" else pixels)
    return pixels


@dataclass(frozen=True)
class Percentile(Step):
    """Percentile clipping to ``[0, 1]`` (:func:`radiology.intensity.percentile_window`).

    Examples
    --------
    >>> Percentile(1, 99)(np.arange(101, dtype=np.float32)).max()
    np.float32(1.0)
    >>> Percentile(low=60, high=50)
    Traceback (most recent call last):
    ...
    ValueError: percentile: low must be < high, got low=60, high=50
    """

    name: ClassVar[str] = "percentile"
    normalizes: ClassVar[bool] = True
    low: float = 0.5
    high: float = 99.5

    def __post_init__(self):
        low, high = _percentiles(self.name, self.low, self.high)
        self._set("low", low)
        self._set("high", high)

    def __call__(self, image):
        return percentile_window(image, self.low, self.high)


@dataclass(frozen=True)
class Histogram(Step):
    """Equal-frequency histogram scaling; ``bins`` fitted on a dataset are stored in the step."""

    name: ClassVar[str] = "histogram"
    normalizes: ClassVar[bool] = True
    bins: tuple[float, ...] | None = None
    n_bins: int = 100

    def __post_init__(self):
        self._set("n_bins", _integer(self.name, "n_bins", self.n_bins, ge=2))
        if self.bins is not None:
            if isinstance(self.bins, (str, bytes)) or not isinstance(self.bins, Iterable):
                _fail(self.name, f"bins must be a list of numbers, got {self.bins!r}")
            bins = tuple(_real(self.name, "bins", b) for b in self.bins)
            if len(bins) < 2 or any(b >= a for b, a in zip(bins, bins[1:])):
                _fail(self.name, "bins must hold at least 2 strictly increasing values")
            self._set("bins", bins)

    @classmethod
    def fit(cls, images: Iterable[np.ndarray], n_bins: int = 100, seed: int = 0) -> Histogram:
        """A step whose bins are fitted on a sample of images (same space as at apply time).

        For DICOMs, give it :meth:`Pipeline.raw` of each file (what the step will receive).
        """
        return cls(bins=tuple(histogram_bins(images, n_bins, seed=seed)), n_bins=n_bins)

    def __call__(self, image):
        return histogram_scale(image, None if self.bins is None else np.asarray(self.bins), self.n_bins)


@dataclass(frozen=True)
class MinMax(Step):
    """Full-range linear scaling (:func:`radiology.intensity.minmax_scale`)."""

    name: ClassVar[str] = "minmax"
    normalizes: ClassVar[bool] = True

    def __call__(self, image):
        return minmax_scale(image)


@dataclass(frozen=True)
class VOI(Step):
    """The DICOM header's VOI window or VOI LUT number ``index`` (:func:`radiology.dicom.apply_voi`).

    Files without a usable VOI (and colour images) fall back to percentile clipping with
    ``low``/``high``, as do plain arrays and image files, which carry no header.

    Examples
    --------
    >>> VOI(index=-1)
    Traceback (most recent call last):
    ...
    ValueError: voi: index must be >= 0, got -1
    """

    name: ClassVar[str] = "voi"
    normalizes: ClassVar[bool] = True
    index: int = 0
    low: float = 0.5
    high: float = 99.5

    def __post_init__(self):
        self._set("index", _integer(self.name, "index", self.index, ge=0))
        low, high = _percentiles(self.name, self.low, self.high)
        self._set("low", low)
        self._set("high", high)

    def __call__(self, image):
        return percentile_window(image, self.low, self.high)

    def render(self, image: DicomImage, polarity: bool = True) -> np.ndarray:
        """Window a decoded DICOM into ``[0, 1]`` (bone bright when ``polarity``)."""
        meta = image.metadata
        if has_voi(meta) and not meta.is_color:
            out = apply_voi(image.pixels, meta, image.dataset, self.index)
            return 1.0 - out if polarity and meta.inverted else out
        return self(_display_ordered(image, polarity))


@dataclass(frozen=True)
class CLAHE(Step):
    """OpenCV CLAHE on the gray image (:func:`radiology.intensity.clahe`)."""

    name: ClassVar[str] = "clahe"
    clip_limit: float = 2.0
    tile_grid: tuple[int, int] = (8, 8)

    def __post_init__(self):
        self._set("clip_limit", _real(self.name, "clip_limit", self.clip_limit, gt=0))
        grid = self.tile_grid
        if isinstance(grid, (str, bytes)) or not isinstance(grid, Iterable) or len(tuple(grid)) != 2:
            _fail(self.name, f"tile_grid must be 2 positive integers, got {grid!r}")
        self._set("tile_grid", tuple(_integer(self.name, "tile_grid", v, ge=1) for v in grid))

    def __call__(self, image):
        return clahe(to_gray(image), self.clip_limit, self.tile_grid)


@dataclass(frozen=True)
class Enhance(Step):
    """Global brightness/contrast (:func:`radiology.intensity.enhance_contrast`)."""

    name: ClassVar[str] = "enhance"
    brightness: float = 0.0
    contrast: float = 1.0

    def __post_init__(self):
        self._set("brightness", _real(self.name, "brightness", self.brightness, ge=-1, le=1))
        self._set("contrast", _real(self.name, "contrast", self.contrast, gt=0))

    def __call__(self, image):
        return enhance_contrast(image, self.brightness, self.contrast)


@dataclass(frozen=True)
class Resize(Step):
    """Aspect-preserving resize (:func:`radiology.geometry.resize`): ``width``, ``height``, both, or ``longest``."""

    name: ClassVar[str] = "resize"
    width: int | None = None
    height: int | None = None
    longest: int | None = None

    def __post_init__(self):
        for param in ("width", "height", "longest"):
            self._set(param, _integer(self.name, param, getattr(self, param), optional=True, ge=1))
        if self.width is None and self.height is None and self.longest is None:
            _fail(self.name, "give width, height or longest")
        if self.longest is not None and (self.width is not None or self.height is not None):
            _fail(self.name, "longest cannot be combined with width or height")

    def __call__(self, image):
        return resize(image, width=self.width, height=self.height, longest=self.longest)

    def apply_with_geometry(self, image):
        out = self(image)
        return out, resize_matrix(image.shape, out.shape)


@dataclass(frozen=True)
class PadSquare(Step):
    """Pad to a square (:func:`radiology.geometry.pad_to_square`) with ``value`` in ``[0, 1]``."""

    name: ClassVar[str] = "pad_square"
    value: float = 0.0

    def __post_init__(self):
        self._set("value", _real(self.name, "value", self.value, ge=0, le=1))

    def __call__(self, image):
        return pad_to_square(image, self.value)

    def apply_with_geometry(self, image):
        out = self(image)
        # pad_to_square centres the image: the odd pixel goes to the bottom/right.
        rows, cols = image.shape[:2]
        return out, translation_matrix((out.shape[1] - cols) // 2, (out.shape[0] - rows) // 2)


def _cropped(result: tuple[np.ndarray, tuple[int, int, int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """A crop's ``(image, (x, y, width, height))`` as the ``(image, matrix)`` of ``apply_with_geometry``."""
    image, (x, y, _, _) = result
    return image, translation_matrix(-x, -y)


@dataclass(frozen=True)
class FOVCrop(Step):
    """Crop to the field of view (:func:`radiology.geometry.fov.crop_to_fov`)."""

    name: ClassVar[str] = "fov_crop"
    threshold: float | None = None

    def __post_init__(self):
        self._set("threshold", _threshold(self.name, self.threshold))

    def __call__(self, image):
        return crop_to_fov(image, self.threshold)

    def apply_with_geometry(self, image):
        return _cropped(crop_to_fov(image, self.threshold, return_box=True))


@dataclass(frozen=True)
class CircleCrop(Step):
    """Circular retina crop (:func:`radiology.geometry.fov.circle_crop`)."""

    name: ClassVar[str] = "circle_crop"
    threshold: float | None = None

    def __post_init__(self):
        self._set("threshold", _threshold(self.name, self.threshold))

    def __call__(self, image):
        return circle_crop(image, self.threshold)

    def apply_with_geometry(self, image):
        return _cropped(circle_crop(image, self.threshold, return_box=True))


@dataclass(frozen=True)
class FundusCrop(Step):
    """FOV → circle → FOV crop, the ODIR-5K recipe (:func:`radiology.geometry.fov.fundus_crop`)."""

    name: ClassVar[str] = "fundus_crop"
    threshold: float | None = None

    def __post_init__(self):
        self._set("threshold", _threshold(self.name, self.threshold))

    def __call__(self, image):
        return fundus_crop(image, self.threshold)

    def apply_with_geometry(self, image):
        return _cropped(fundus_crop(image, self.threshold, return_box=True))


@dataclass(frozen=True)
class CleanBackground(Step):
    """Collimation crop and body-region cleaning (:func:`radiology.geometry.background.clean_background`)."""

    name: ClassVar[str] = "clean_background"
    fill: float = 0.0
    crop_collimation: bool = True
    min_fraction: float = 0.2

    def __post_init__(self):
        self._set("fill", _real(self.name, "fill", self.fill, ge=0, le=1))
        self._set("crop_collimation", _flag(self.name, "crop_collimation", self.crop_collimation))
        self._set("min_fraction", _real(self.name, "min_fraction", self.min_fraction, gt=0, le=1))

    def __call__(self, image):
        return self.apply_with_geometry(image)[0]

    def apply_with_geometry(self, image):
        return _cropped(clean_background(to_gray(image), fill=self.fill, crop_collimation=self.crop_collimation,
                                         min_fraction=self.min_fraction, return_box=True))


@functools.lru_cache(maxsize=8)
def _knee_localizer(weights: str) -> KneeLocalizer:
    return KneeLocalizer.load(weights)


@dataclass(frozen=True)
class KneeCrop(Step):
    """Square crop centred on a detected knee joint (:class:`radiology.geometry.KneeLocalizer`).

    ``weights`` is the path of the detector's weights (a relative path in a pipeline file
    is relative to that file's folder). ``size_mm`` is used when ``spacing_mm`` (the
    image's pixel spacing) is given, else ``size_px``. ``knee`` picks which of the
    detected knees (0 = image-left); ``knees`` forces one or two knees per image
    (default: from the aspect ratio).
    """

    name: ClassVar[str] = "knee_crop"
    file_params: ClassVar[tuple[str, ...]] = ("weights",)
    weights: str = ""
    size_px: int = 256
    size_mm: float | None = None
    spacing_mm: float | None = None
    knee: int = 0
    knees: int | None = None

    def __post_init__(self):
        if not isinstance(self.weights, (str, os.PathLike)):
            _fail(self.name, f"weights must be a file path, got {self.weights!r}")
        self._set("weights", os.fspath(self.weights))
        self._set("size_px", _integer(self.name, "size_px", self.size_px, ge=1))
        self._set("size_mm", _real(self.name, "size_mm", self.size_mm, optional=True, gt=0))
        self._set("spacing_mm", _real(self.name, "spacing_mm", self.spacing_mm, optional=True, gt=0))
        self._set("knee", _integer(self.name, "knee", self.knee, ge=0))
        knees = _integer(self.name, "knees", self.knees, optional=True)
        if knees not in (None, 1, 2):
            _fail(self.name, f"knees must be 1, 2 or null, got {knees}")
        self._set("knees", knees)

    def __call__(self, image):
        return self.apply_with_geometry(image)[0]

    def apply_with_geometry(self, image):
        if not self.weights:
            raise ValueError("knee_crop needs the path of SVM weights (weights=...)")
        found = _knee_localizer(str(self.weights)).detect(to_gray(image), knees=self.knees)
        center = found[min(self.knee, len(found) - 1)].center
        return _cropped(crop_around(image, center, size_mm=self.size_mm, spacing_mm=self.spacing_mm,
                                    size_px=self.size_px, return_box=True))


#: Step classes by name.
STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (Percentile, Histogram, MinMax, VOI, CLAHE, Enhance, Resize, PadSquare, FOVCrop, CircleCrop,
                FundusCrop, CleanBackground, KneeCrop)
}


# --------------------------------------------------------------------------- decode


@dataclass(frozen=True)
class Decode:
    """How a DICOM becomes raw pixels (the steps of :func:`radiology.dicom.read_dicom`, plus polarity).

    Parameters
    ----------
    frame : int
        Frame of multi-frame files (negative counts from the end).
    bits : bool
        Mask stored values to ``BitsStored``.
    modality_lut : bool
        Apply rescale slope/intercept or the Modality LUT.
    polarity : bool
        Show bone bright (invert MONOCHROME1 / Presentation LUT ``INVERSE``).
    color : {"gray", "keep"}
        Colour images (DICOM or image files) to BT.601 luma, or kept ``(H, W, 3)`` RGB.
    max_pixels : int or None
        Refuse DICOMs larger than this many samples before decoding
        (:data:`radiology.dicom.DEFAULT_MAX_PIXELS`; ``None``: no limit). A resource
        limit, not preprocessing: written to pipeline files only when not the default.

    Examples
    --------
    >>> Decode(color="rgb")
    Traceback (most recent call last):
    ...
    ValueError: decode: color must be 'gray' or 'keep', got 'rgb'
    """

    frame: int = 0
    bits: bool = True
    modality_lut: bool = True
    polarity: bool = True
    color: str = "gray"
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        object.__setattr__(self, "frame", _integer("decode", "frame", self.frame))
        object.__setattr__(self, "max_pixels", _integer("decode", "max_pixels", self.max_pixels, optional=True, ge=1))
        for param in ("bits", "modality_lut", "polarity"):
            object.__setattr__(self, param, _flag("decode", param, getattr(self, param)))
        if self.color not in ("gray", "keep"):
            _fail("decode", f"color must be 'gray' or 'keep', got {self.color!r}")

    def read(self, source) -> DicomImage:
        """Decode one DICOM (path, bytes or binary file-like) with these settings."""
        return read_dicom(source, frame=self.frame, bits=self.bits, modality_lut=self.modality_lut,
                          color=self.color, max_pixels=self.max_pixels)

    def params(self) -> dict[str, Any]:
        """Parameters as JSON-ready values (``max_pixels`` only when not the default)."""
        out = asdict(self)
        if out["max_pixels"] == DEFAULT_MAX_PIXELS:
            del out["max_pixels"]
        return out


# --------------------------------------------------------------------------- pipeline


def _is_image_file(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in IMAGE_SUFFIXES


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, DicomImage):
        return source.source
    return str(getattr(source, "name", "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else "<stream>"))


def _compose(step: np.ndarray | None, before: np.ndarray | None) -> np.ndarray | None:
    # Matrix from the input to after `step`; unknown once any step's geometry is unknown.
    return None if step is None or before is None else step @ before


class Pipeline:
    """Decoding plus an ordered, serializable sequence of :class:`Step`.

    Parameters
    ----------
    steps : sequence of Step
        A normalizing step (``percentile``, ``histogram``, ``minmax``, ``voi``) may only come first.
    decode : Decode, optional
        How DICOMs are decoded (default ``Decode()``).

    Examples
    --------
    >>> pipe = Pipeline([Percentile(1, 99), CLAHE(clip_limit=3.0), Resize(width=32)])
    >>> out = pipe(np.random.default_rng(0).integers(0, 4096, (64, 48)).astype(np.uint16))
    >>> out.shape, out.dtype
    ((43, 32), dtype('float32'))
    >>> Pipeline.from_json(pipe.to_json()) == pipe
    True

    Reading a file (DICOM or image) is :meth:`read`:

    >>> from pydicom.data import get_testdata_file
    >>> Pipeline([Resize(width=32)]).read(get_testdata_file("CT_small.dcm")).shape
    (32, 32)
    """

    def __init__(self, steps: Sequence[Step] = (), decode: Decode | None = None):
        steps = tuple(steps)
        for index, step in enumerate(steps):
            if not isinstance(step, Step):
                raise TypeError(f"step {index} is not a pipeline Step: {step!r}")
            if step.normalizes and index > 0:
                raise ValueError(f"normalizing step {step.name!r} must come first (it is step {index})")
        decode = Decode() if decode is None else decode
        if not isinstance(decode, Decode):
            raise TypeError(f"decode must be a Decode, got {decode!r}")
        self.steps = steps
        self.decode = decode

    @property
    def normalizes(self) -> bool:
        """True when the first step maps raw pixel values into ``[0, 1]``."""
        return bool(self.steps) and self.steps[0].normalizes

    # ----------------------------------------------------------------- applying

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Apply every step in order to an array (no decoding, no implied normalization)."""
        for step in self.steps:
            image = step(image)
        return image

    def read(self, source, *, with_geometry: bool = False):
        """Read one file into the model's input: THE entry point of conversion, training and inference.

        Parameters
        ----------
        source : path, bytes or binary file-like
            A DICOM file, or an image file (``radiology.io.IMAGE_SUFFIXES``: PNG, JPEG,
            NPY, TIFF, BMP; recognized by a path's extension).
        with_geometry : bool, optional
            Also return the 3×3 matrix mapping pixel ``(x, y, 1)`` of the original image
            (the decoded file) to the same point of the returned image: the composition of
            what every resize, pad and crop step did to *this* input (data-dependent crops
            report their actual box). See :mod:`radiology.geometry.affine`.

        Returns
        -------
        numpy.ndarray of float32 in [0, 1]
            ``(H, W)``, or ``(H, W, 3)`` with ``decode.color == "keep"`` and colour input.
        numpy.ndarray of float64, shape (3, 3)
            With ``with_geometry=True`` only: ``(image, matrix)``.

        Notes
        -----
        A DICOM is decoded with :attr:`decode`, polarity-ordered (bone = high values), then
        normalized by the first step if it normalizes, else by an implied ``Percentile()``,
        then the other steps run. An image file is read into ``[0, 1]``, turned gray with
        :func:`radiology.intensity.to_gray` unless ``decode.color == "keep"``, and then
        *all* steps run (a normalizing first step applies to it too).

        Raises
        ------
        radiology.dicom.DicomError
            The DICOM cannot be decoded (one line naming the file).
        PipelineError
            An image file cannot be read, or a step fails on this file (names the file and step),
            or (``with_geometry``) a step changes the image size without reporting how.

        Examples
        --------
        >>> from pydicom.data import get_testdata_file
        >>> from radiology.geometry import map_points
        >>> pipe = Pipeline([Resize(longest=32), PadSquare()])
        >>> image, matrix = pipe.read(get_testdata_file("JPEG2000.dcm"), with_geometry=True)  # 1024 x 256
        >>> image.shape, map_points(matrix, [(-0.5, -0.5), (255.5, 1023.5)]).tolist()
        ((32, 32), [[11.5, -0.5], [19.5, 31.5]])
        """
        stages = self._run(source)
        if not with_geometry:
            return stages[-1][1]
        return stages[-1][1], self._known(stages, source)

    def render(self, image: DicomImage) -> np.ndarray:
        """The DICOM half of :meth:`read`, on an already decoded image (decode settings other than
        ``polarity`` were applied when it was decoded)."""
        if not isinstance(image, DicomImage):
            raise TypeError(f"render takes a radiology.dicom.DicomImage, got {type(image).__name__}")
        return self._run(image)[-1][1]

    @staticmethod
    def _known(stages, source) -> np.ndarray:
        # Name the step that lost the geometry, not the last one.
        for name, _, matrix in stages:
            if matrix is None:
                raise PipelineError(f"{_source_name(source)}: step {name!r} changes the image size without "
                                    f"reporting its geometry (define apply_with_geometry)")
        return stages[-1][2]

    def raw(self, source) -> np.ndarray:
        """What the first step receives for a file: polarity-ordered decoded DICOM pixels (native
        dtype, not normalized), or an image file in ``[0, 1]`` (gray unless ``decode.color == "keep"``).

        Use it to fit :class:`Histogram` bins in the space the step will see.
        """
        if isinstance(source, DicomImage):
            return _display_ordered(source, self.decode.polarity)
        if _is_image_file(source):
            return self._image_file(source)
        return _display_ordered(self.decode.read(source), self.decode.polarity)

    def trace(self, source, *, with_geometry: bool = False) -> list[tuple]:
        """Every stage of processing one input, as ``(name, image)`` pairs, ``("input", ...)`` first.

        ``source`` is an array (the steps are applied to it as is), a decoded
        :class:`~radiology.dicom.DicomImage`, or a file as in :meth:`read` (then ``input``
        is :meth:`raw` and an implied ``percentile`` stage appears for DICOMs when the
        pipeline does not normalize). The last image is what :meth:`read` returns.

        With ``with_geometry=True`` the stages are ``(name, image, matrix)`` triples: ``matrix``
        maps pixels of the input to that stage's image (the identity until a step resizes,
        pads or crops; ``None`` from a step whose geometry is unknown on).

        Examples
        --------
        >>> stages = Pipeline([MinMax(), Resize(width=4)]).trace(np.zeros((4, 8)), with_geometry=True)
        >>> [(name, image.shape, matrix[0, 0]) for name, image, matrix in stages]
        [('input', (4, 8), np.float64(1.0)), ('minmax', (4, 8), np.float64(1.0)), ('resize', (2, 4), np.float64(0.5))]
        """
        if isinstance(source, np.ndarray):
            stages = [("input", source, np.eye(3))]
            for step in self.steps:
                source, matrix = step.apply_with_geometry(source)
                stages.append((step.name, source, _compose(matrix, stages[-1][2])))
        else:
            stages = self._run(source)
        return stages if with_geometry else [(name, image) for name, image, _ in stages]

    def _image_file(self, path) -> np.ndarray:
        try:
            image = read_image(path)
        except FileNotFoundError:
            raise
        except (ValueError, OSError) as error:
            text = one_line(error)
            raise PipelineError(text if text.startswith(os.fspath(path)) else f"{path}: {text}") from error
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise PipelineError(f"{path}: expected a gray or RGB image, got shape {image.shape}")
        if image.ndim == 3 and self.decode.color == "gray":
            image = to_gray(image)
        return image

    def _run(self, source) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        # (name, image, matrix from the input's pixels to this image's) per stage.
        name = _source_name(source)
        steps: list[Step] = list(self.steps)
        if _is_image_file(source):
            out = self._image_file(source)
            stages = [("input", out, np.eye(3))]
        else:
            image = source if isinstance(source, DicomImage) else self.decode.read(source)
            pixels = image.pixels
            if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
                raise PipelineError(f"{name}: expected one gray or RGB frame, got pixels of shape {pixels.shape}")
            first = steps.pop(0) if self.normalizes else Percentile()  # raw values never leak
            raw = _display_ordered(image, self.decode.polarity)
            try:
                out = first.render(image, self.decode.polarity) if isinstance(first, VOI) else first(raw)
            except (DicomError, PipelineError):
                raise
            except (ValueError, TypeError) as error:
                raise PipelineError(f"{name}: {first.name}: {one_line(error)}") from error
            geometry = np.eye(3) if out.shape[:2] == raw.shape[:2] else None
            stages = [("input", raw, np.eye(3)), (first.name, out, geometry)]
        for step in steps:
            try:
                out, matrix = step.apply_with_geometry(out)
            except (ValueError, TypeError) as error:
                raise PipelineError(f"{name}: {step.name}: {one_line(error)}") from error
            stages.append((step.name, out, _compose(matrix, stages[-1][2])))
        return stages

    # ----------------------------------------------------------------- comparing

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.steps == other.steps and self.decode == other.decode

    __hash__ = None  # mutable attributes; compare, do not hash

    def __repr__(self) -> str:
        decode = "" if self.decode == Decode() else f", decode={self.decode!r}"
        return f"Pipeline({list(self.steps)!r}{decode})"

    # ----------------------------------------------------------------- files

    def files(self) -> list[Path]:
        """Files the steps refer to (e.g. :class:`KneeCrop` weights), in step order, without repeats."""
        found: list[Path] = []
        for step in self.steps:
            for param in step.file_params:
                value = getattr(step, param)
                if value and Path(value) not in found:
                    found.append(Path(value))
        return found

    def _with_files(self, mapping) -> Pipeline:
        steps = []
        for step in self.steps:
            changes = {p: mapping(getattr(step, p)) for p in step.file_params if getattr(step, p)}
            steps.append(replace(step, **changes) if changes else step)
        return Pipeline(steps, self.decode)

    # ----------------------------------------------------------------- serialization

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what JSON/YAML files hold), format version 2."""
        return {"format": FORMAT, "version": VERSION, "decode": self.decode.params(),
                "steps": [{"name": step.name, **step.params()} for step in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: str | os.PathLike | None = None) -> Pipeline:
        """Rebuild from :meth:`to_dict` output (version 1 or 2); unknown steps or parameters are errors.

        Parameters
        ----------
        data : dict
        root : path, optional
            Folder that relative file references (e.g. ``knee_crop.weights``) are relative to;
            :meth:`load` passes the pipeline file's folder.

        Raises
        ------
        ValueError
            One line naming the step (``step 2 (clahe): clip_limit must be > 0, got 0``).

        Examples
        --------
        >>> Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "minmax"}]})
        Pipeline([MinMax()])
        >>> Pipeline.from_dict({"format": "radiology.pipeline", "version": 2,
        ...                     "steps": [{"name": "clahe", "clip_limit": 0}]})
        Traceback (most recent call last):
        ...
        ValueError: step 0 (clahe): clip_limit must be > 0, got 0
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a radiology pipeline (expected format {FORMAT!r})")
        version = data.get("version")
        if version not in (1, VERSION):
            raise ValueError(f"unsupported pipeline version {version!r} (this radiology reads 1 and {VERSION})")
        allowed = {"format", "version", "steps"} | ({"decode"} if version >= 2 else set())
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} in a version {version} pipeline")
        decode_spec = data.get("decode") or {}
        if not isinstance(decode_spec, dict):
            raise ValueError(f"decode must be a mapping, got {decode_spec!r}")
        known = {f.name for f in fields(Decode)}
        if set(decode_spec) - known:
            raise ValueError(f"decode: unknown parameters {sorted(set(decode_spec) - known)}")
        decode = Decode(**decode_spec)
        specs = data.get("steps", [])
        if not isinstance(specs, list):
            raise ValueError(f"steps must be a list, got {type(specs).__name__}")
        steps = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise ValueError(f"step {index}: expected a mapping with a name, got {spec!r}")
            spec = dict(spec)
            name = spec.pop("name", None)
            if name not in STEPS:
                raise ValueError(f"step {index}: unknown step {name!r}; known: {sorted(STEPS)}")
            step_cls = STEPS[name]
            unknown = set(spec) - {f.name for f in fields(step_cls)}
            if unknown:
                raise ValueError(f"step {index} ({name}): unknown parameters {sorted(unknown)}")
            if root is not None:
                for param in step_cls.file_params:
                    value = spec.get(param)
                    if isinstance(value, str) and value and not os.path.isabs(value):
                        spec[param] = os.fspath(Path(root) / value)
            try:
                steps.append(step_cls(**spec))
            except (ValueError, TypeError) as error:
                text = one_line(error)
                text = text[len(name) + 2:] if text.startswith(f"{name}: ") else text
                raise ValueError(f"step {index} ({name}): {text}") from error
        try:
            return cls(steps, decode)
        except (ValueError, TypeError) as error:
            raise ValueError(one_line(error)) from error

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, root: str | os.PathLike | None = None) -> Pipeline:
        """Parse JSON text (``root`` as in :meth:`from_dict`)."""
        return cls.from_dict(json.loads(text), root)

    def save(self, path: str | os.PathLike, copy_files: bool = False) -> Path:
        """Write JSON, or YAML when the extension is ``.yaml``/``.yml``.

        Parameters
        ----------
        path : path
        copy_files : bool, optional
            Copy the files the steps refer to (:meth:`files`) next to the pipeline file and
            refer to them by name, so the folder can be moved or shipped as a whole (a model
            bundle does this). Otherwise references are written relative to the pipeline's
            folder when the file lies inside it, else as absolute paths.

        Returns
        -------
        pathlib.Path
            ``path``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> pipe = Pipeline([VOI(), CLAHE()], Decode(color="keep"))
        >>> Pipeline.load(pipe.save(folder / "pipeline.yaml")) == pipe
        True
        """
        path = Path(path)
        folder = path.parent.absolute()
        if copy_files:
            names: dict[Path, str] = {}

            def mapping(value: str) -> str:
                source = Path(value)
                if not source.is_file():
                    raise FileNotFoundError(f"{source}: file referenced by the pipeline not found")
                key = source.resolve()
                if key not in names:
                    name, n = source.name, 1
                    while name in names.values():  # two different files with one name
                        name, n = f"{source.stem}-{n}{source.suffix}", n + 1
                    names[key] = name
                    target = folder / name
                    if not target.exists() or target.resolve() != key:
                        folder.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, target)
                return names[key]
        else:

            def mapping(value: str) -> str:
                absolute = Path(value).absolute()
                try:
                    return absolute.relative_to(folder).as_posix()
                except ValueError:
                    return os.fspath(absolute)

        data = self._with_files(mapping).to_dict()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2)
        return atomic_write(path, text.encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Read a JSON or YAML pipeline file; relative file references resolve against its folder.

        Raises
        ------
        FileNotFoundError
            No such file.
        PipelineError
            One line naming the file and what is wrong (``p.json: step 1 (clahe): clip_limit must be > 0, got 0``).
        """
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as error:
                    raise ValueError(f"not valid YAML: {one_line(error)}") from error
            else:
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not valid JSON: {error}") from error
            return cls.from_dict(data, root=path.parent)
        except (ValueError, TypeError) as error:
            raise PipelineError(f"{path}: {one_line(error)}") from error
