"""Geometry steps: resize, pad and crop, each reporting what it did to the pixel grid (no torch).

Every step here overrides :meth:`Step.apply_with_geometry <radiology.pipeline.Step.apply_with_geometry>`
to return the 3×3 matrix mapping input pixels to output pixels (data-dependent crops
report their actual box), so :meth:`Pipeline.read <radiology.pipeline.Pipeline.read>` can
map a processed image back to the original (:mod:`radiology.geometry.affine`).

- :class:`Resize`, :class:`PadSquare`: fixed size and aspect.
- :class:`FOVCrop`, :class:`CircleCrop`, :class:`FundusCrop`: field-of-view crops.
- :class:`CleanBackground`: collimation crop and body-region cleaning.
- :class:`KneeCrop`: square crop around a detected knee joint.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from radiology.geometry import pad_to_square, resize
from radiology.geometry.affine import resize_matrix, translation_matrix
from radiology.geometry.background import clean_background
from radiology.geometry.fov import circle_crop, crop_to_fov, fundus_crop
from radiology.geometry.knee import KneeLocalizer, crop_around
from radiology.intensity import to_gray
from radiology.pipeline.steps import Step
from radiology.pipeline.validation import _fail, _flag, _integer, _real, _threshold

__all__ = ["Resize", "PadSquare", "FOVCrop", "CircleCrop", "FundusCrop", "CleanBackground", "KneeCrop"]


@dataclass(frozen=True)
class Resize(Step):
    """Aspect-preserving resize (:func:`radiology.geometry.resize`): ``width``, ``height``, both, or ``longest``.

    Parameters
    ----------
    width : int, optional
        Output width in pixels.
    height : int, optional
        Output height in pixels.
    longest : int, optional
        Output length of the longer side (instead of ``width``/``height``).
    """

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
    """Pad to a square (:func:`radiology.geometry.pad_to_square`) with ``value`` in ``[0, 1]``.

    Parameters
    ----------
    value : float
        Value of the added pixels.
    """

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
    """Crop to the field of view (:func:`radiology.geometry.fov.crop_to_fov`).

    Parameters
    ----------
    threshold : float, optional
        FOV threshold as a fraction of the image's maximum; default as in
        :func:`radiology.geometry.fov.fov_mask`.
    """

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
    """Circular retina crop (:func:`radiology.geometry.fov.circle_crop`).

    Parameters
    ----------
    threshold : float, optional
        FOV threshold as a fraction of the image's maximum; default as in
        :func:`radiology.geometry.fov.fov_mask`.
    """

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
    """FOV → circle → FOV crop, the ODIR-5K recipe (:func:`radiology.geometry.fov.fundus_crop`).

    Parameters
    ----------
    threshold : float, optional
        FOV threshold as a fraction of the image's maximum; default as in
        :func:`radiology.geometry.fov.fov_mask`.
    """

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
    """Collimation crop and body-region cleaning (:func:`radiology.geometry.background.clean_background`).

    Parameters
    ----------
    fill : float
        Value written outside the body.
    crop_collimation : bool
        Crop the uniform edge bands (collimation) first.
    min_fraction : float
        Body regions smaller than this fraction of the largest are removed (see
        :func:`radiology.geometry.background.body_mask`).
    """

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

    Parameters
    ----------
    weights : str
        Path of the detector's weights (:meth:`radiology.geometry.KneeLocalizer.load`); a
        relative path in a pipeline file is relative to that file's folder.
    size_px : int
        Side of the crop in pixels, when the pixel spacing is unknown.
    size_mm : float, optional
        Side of the crop in millimetres, used with ``spacing_mm``.
    spacing_mm : float, optional
        Pixel spacing of the images, in millimetres.
    knee : int
        Which detected knee to crop, from image-left (0).
    knees : int, optional
        Knees per image, 1 or 2; default from the aspect ratio.
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
