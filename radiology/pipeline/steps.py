"""The :class:`Step` protocol and the intensity steps: normalizing and contrast (no torch).

Each step is a small frozen dataclass with a ``name`` (its JSON name) and its parameters,
callable on a numpy image and validated when built. Steps follow the package convention
(``float32`` ``[0, 1]``, ``(H, W)`` or ``(H, W, 3)``).

- Normalizing steps map raw pixel values into ``[0, 1]`` and must come first in a pipeline:
  :class:`Percentile`, :class:`Histogram`, :class:`MinMax`, :class:`VOI`.
- Contrast steps keep every pixel where it is: :class:`CLAHE`, :class:`Enhance`.

The steps that resize, pad or crop are in :mod:`radiology.pipeline.geometry_steps`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from radiology.dicom import DicomImage, apply_voi, has_voi
from radiology.intensity import (
    clahe,
    enhance_contrast,
    histogram_bins,
    histogram_scale,
    minmax_scale,
    percentile_window,
    to_gray,
)
from radiology.pipeline.validation import _fail, _integer, _percentiles, _real

__all__ = ["Step", "Percentile", "Histogram", "MinMax", "VOI", "CLAHE", "Enhance"]


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

        Parameters
        ----------
        image : numpy.ndarray
            The step's input: ``(H, W)`` or ``(H, W, 3)``.
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

    Parameters
    ----------
    low, high : float
        Percentiles in ``[0, 100]`` mapped to 0 and 1, ``low < high``.

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
    """Equal-frequency histogram scaling; ``bins`` fitted on a dataset are stored in the step.

    Parameters
    ----------
    bins : tuple of float, optional
        Bin edges fitted on a dataset (:meth:`fit`); when ``None`` each image is scaled by bins
        computed from itself.
    n_bins : int
        Number of bins when they are computed from the image.
    """

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

        Parameters
        ----------
        images : iterable of numpy.ndarray
            Images in the space the step will receive; their pixels are pooled (a sample of each).
        n_bins : int
            Number of equal-frequency bins.
        seed : int
            Seed of the pixel sampling.
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

    Parameters
    ----------
    index : int
        Which of the header's windows (or VOI LUTs) to apply, from 0.
    low, high : float
        Percentiles of the fallback percentile clipping.

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
        """Window a decoded DICOM into ``[0, 1]`` (bone bright when ``polarity``).

        Parameters
        ----------
        image : DicomImage
            The decoded DICOM, with its header.
        polarity : bool
            Invert MONOCHROME1 images so that bone is bright.
        """
        meta = image.metadata
        if has_voi(meta) and not meta.is_color:
            out = apply_voi(image.pixels, meta, image.dataset, self.index)
            return 1.0 - out if polarity and meta.inverted else out
        return self(_display_ordered(image, polarity))


@dataclass(frozen=True)
class CLAHE(Step):
    """OpenCV CLAHE on the gray image (:func:`radiology.intensity.clahe`).

    Parameters
    ----------
    clip_limit : float
        OpenCV's clip limit, relative to the mean bin count of a tile (higher = more contrast and
        noise).
    tile_grid : (int, int)
        Tiles per ``(rows, columns)``.
    """

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
    """Global brightness/contrast (:func:`radiology.intensity.enhance_contrast`).

    Parameters
    ----------
    brightness : float
        Offset added to every pixel, in ``[-1, 1]``.
    contrast : float
        Gain around mid-gray, ``> 0``.
    """

    name: ClassVar[str] = "enhance"
    brightness: float = 0.0
    contrast: float = 1.0

    def __post_init__(self):
        self._set("brightness", _real(self.name, "brightness", self.brightness, ge=-1, le=1))
        self._set("contrast", _real(self.name, "contrast", self.contrast, gt=0))

    def __call__(self, image):
        return enhance_contrast(image, self.brightness, self.contrast)
