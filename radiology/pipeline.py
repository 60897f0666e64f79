"""Declarative preprocessing: an ordered list of named, parameterized steps.

A :class:`Pipeline` is data: it serializes to JSON or YAML, so a trained model can store
exactly the preprocessing it was trained with, and inference cannot drift from training.
Each step is a small frozen dataclass with a ``name`` and its parameters, callable on a
numpy image. Steps follow the package convention (``float32`` ``[0, 1]``, ``(H, W)`` or
``(H, W, 3)``); a *normalizing* step (``percentile``, ``histogram``, ``minmax``) also
accepts raw pixel values and must then come first.

Example (JSON)::

    {"format": "radiology.pipeline", "version": 1, "steps": [
        {"name": "percentile", "low": 0.5, "high": 99.5},
        {"name": "clean_background"},
        {"name": "clahe", "clip_limit": 2.0, "tile_grid": [8, 8]},
        {"name": "resize", "width": 512}]}
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from radiology.geometry import pad_to_square, resize
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
)

__all__ = [
    "Step", "Percentile", "Histogram", "MinMax", "CLAHE", "Enhance", "Resize", "PadSquare", "FOVCrop",
    "CircleCrop", "FundusCrop", "CleanBackground", "KneeCrop", "Pipeline", "STEPS",
]

FORMAT = "radiology.pipeline"


class Step:
    """Base of pipeline steps: a frozen dataclass with a ``name``, callable on an image."""

    name: ClassVar[str] = ""
    normalizes: ClassVar[bool] = False

    def __call__(self, image: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """Parameters as JSON-ready values."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else image.mean(axis=2).astype(np.float32)


@dataclass(frozen=True)
class Percentile(Step):
    """Percentile clipping to ``[0, 1]`` (:func:`radiology.intensity.percentile_window`)."""

    name: ClassVar[str] = "percentile"
    normalizes: ClassVar[bool] = True
    low: float = 0.5
    high: float = 99.5

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
        if self.bins is not None:
            object.__setattr__(self, "bins", tuple(float(b) for b in self.bins))

    @classmethod
    def fit(cls, images: Iterable[np.ndarray], n_bins: int = 100, seed: int = 0) -> Histogram:
        """A step whose bins are fitted on a sample of images (same space as at apply time)."""
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
class CLAHE(Step):
    """OpenCV CLAHE on the gray image (:func:`radiology.intensity.clahe`)."""

    name: ClassVar[str] = "clahe"
    clip_limit: float = 2.0
    tile_grid: tuple[int, int] = (8, 8)

    def __post_init__(self):
        object.__setattr__(self, "tile_grid", tuple(int(v) for v in self.tile_grid))

    def __call__(self, image):
        return clahe(_gray(image), self.clip_limit, self.tile_grid)


@dataclass(frozen=True)
class Enhance(Step):
    """Global brightness/contrast (:func:`radiology.intensity.enhance_contrast`)."""

    name: ClassVar[str] = "enhance"
    brightness: float = 0.0
    contrast: float = 1.0

    def __call__(self, image):
        return enhance_contrast(image, self.brightness, self.contrast)


@dataclass(frozen=True)
class Resize(Step):
    """Aspect-preserving resize (:func:`radiology.geometry.resize`)."""

    name: ClassVar[str] = "resize"
    width: int | None = None
    height: int | None = None
    longest: int | None = None

    def __call__(self, image):
        return resize(image, width=self.width, height=self.height, longest=self.longest)


@dataclass(frozen=True)
class PadSquare(Step):
    """Pad to a square (:func:`radiology.geometry.pad_to_square`)."""

    name: ClassVar[str] = "pad_square"
    value: float = 0.0

    def __call__(self, image):
        return pad_to_square(image, self.value)


@dataclass(frozen=True)
class FOVCrop(Step):
    """Crop to the field of view (:func:`radiology.geometry.fov.crop_to_fov`)."""

    name: ClassVar[str] = "fov_crop"
    threshold: float | None = None

    def __call__(self, image):
        return crop_to_fov(image, self.threshold)


@dataclass(frozen=True)
class CircleCrop(Step):
    """Circular retina crop (:func:`radiology.geometry.fov.circle_crop`)."""

    name: ClassVar[str] = "circle_crop"
    threshold: float | None = None

    def __call__(self, image):
        return circle_crop(image, self.threshold)


@dataclass(frozen=True)
class FundusCrop(Step):
    """FOV → circle → FOV crop, the ODIR-5K recipe (:func:`radiology.geometry.fov.fundus_crop`)."""

    name: ClassVar[str] = "fundus_crop"
    threshold: float | None = None

    def __call__(self, image):
        return fundus_crop(image, self.threshold)


@dataclass(frozen=True)
class CleanBackground(Step):
    """Collimation crop and body-region cleaning (:func:`radiology.geometry.background.clean_background`)."""

    name: ClassVar[str] = "clean_background"
    fill: float = 0.0
    crop_collimation: bool = True
    min_fraction: float = 0.2

    def __call__(self, image):
        return clean_background(_gray(image), fill=self.fill, crop_collimation=self.crop_collimation,
                                min_fraction=self.min_fraction)


@functools.lru_cache(maxsize=8)
def _knee_localizer(weights: str) -> KneeLocalizer:
    return KneeLocalizer.load(weights)


@dataclass(frozen=True)
class KneeCrop(Step):
    """Square crop centred on a detected knee joint (:class:`radiology.geometry.KneeLocalizer`).

    ``size_mm`` is used when ``spacing_mm`` (the image's pixel spacing) is given, else
    ``size_px``. ``knee`` picks which of the detected knees (0 = image-left); ``knees``
    forces one or two knees per image (default: from the aspect ratio).
    """

    name: ClassVar[str] = "knee_crop"
    weights: str = ""
    size_px: int = 256
    size_mm: float | None = None
    spacing_mm: float | None = None
    knee: int = 0
    knees: int | None = None

    def __call__(self, image):
        if not self.weights:
            raise ValueError("knee_crop needs the path of SVM weights (weights=...)")
        found = _knee_localizer(str(self.weights)).detect(_gray(image), knees=self.knees)
        center = found[min(self.knee, len(found) - 1)].center
        return crop_around(image, center, size_mm=self.size_mm, spacing_mm=self.spacing_mm, size_px=self.size_px)


#: Step classes by name.
STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (Percentile, Histogram, MinMax, CLAHE, Enhance, Resize, PadSquare, FOVCrop, CircleCrop,
                FundusCrop, CleanBackground, KneeCrop)
}


class Pipeline:
    """An ordered, serializable sequence of :class:`Step`.

    Parameters
    ----------
    steps : sequence of Step

    Examples
    --------
    >>> pipe = Pipeline([Percentile(1, 99), CLAHE(clip_limit=3.0), Resize(width=32)])
    >>> out = pipe(np.random.default_rng(0).integers(0, 4096, (64, 48)).astype(np.uint16))
    >>> out.shape, out.dtype
    ((43, 32), dtype('float32'))
    >>> Pipeline.from_json(pipe.to_json()) == pipe
    True
    """

    def __init__(self, steps: Sequence[Step] = ()):
        steps = tuple(steps)
        for index, step in enumerate(steps):
            if not isinstance(step, Step):
                raise TypeError(f"step {index} is not a pipeline Step: {step!r}")
            if step.normalizes and index > 0:
                raise ValueError(f"normalizing step {step.name!r} must come first (it is step {index})")
        self.steps = steps

    @property
    def normalizes(self) -> bool:
        """True when the first step maps raw pixel values into ``[0, 1]``."""
        return bool(self.steps) and self.steps[0].normalizes

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Apply every step in order."""
        for step in self.steps:
            image = step(image)
        return image

    def trace(self, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The input and the output of every step, as ``(name, image)`` pairs (for previews)."""
        out = [("input", image)]
        for step in self.steps:
            image = step(image)
            out.append((step.name, image))
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.steps == other.steps

    def __repr__(self) -> str:
        return f"Pipeline({list(self.steps)!r})"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what JSON/YAML files hold)."""
        return {"format": FORMAT, "version": 1,
                "steps": [{"name": step.name, **step.params()} for step in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        """Rebuild from :meth:`to_dict` output; unknown steps or parameters are errors."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a radiology pipeline (expected format {FORMAT!r})")
        if data.get("version") != 1:
            raise ValueError(f"unsupported pipeline version {data.get('version')!r}")
        steps = []
        for index, spec in enumerate(data.get("steps", [])):
            spec = dict(spec)
            name = spec.pop("name", None)
            if name not in STEPS:
                raise ValueError(f"step {index}: unknown step {name!r}; known: {sorted(STEPS)}")
            known = {f.name for f in fields(STEPS[name])}
            unknown = set(spec) - known
            if unknown:
                raise ValueError(f"step {index} ({name}): unknown parameters {sorted(unknown)}")
            steps.append(STEPS[name](**spec))
        return cls(steps)

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> Pipeline:
        """Parse JSON text."""
        return cls.from_dict(json.loads(text))

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON, or YAML when the extension is ``.yaml``/``.yml``."""
        from radiology.io import atomic_write

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = self.to_json()
        return atomic_write(path, text.encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Read a JSON or YAML pipeline file."""
        path = Path(path)
        text = path.read_text()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(text))
        return cls.from_json(text)
