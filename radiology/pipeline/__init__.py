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

The package's modules, one concern each (everything is importable from here):

- :mod:`radiology.pipeline.steps`: the :class:`Step` protocol and the intensity steps.
- :mod:`radiology.pipeline.geometry_steps`: resize, pad and crop steps.
- :mod:`radiology.pipeline.decode`: :class:`Decode`.
- :mod:`radiology.pipeline.core`: :class:`Pipeline`, the step registry :data:`STEPS` and the file format.
- :mod:`radiology.pipeline.default`: :func:`default_pipeline`, the preprocessing training uses.
- :mod:`radiology.pipeline.validation`: parameter checks and :class:`PipelineError`.
"""

from radiology.pipeline.core import FORMAT, STEPS, VERSION, Pipeline
from radiology.pipeline.decode import Decode
from radiology.pipeline.default import default_pipeline
from radiology.pipeline.geometry_steps import (
    CircleCrop,
    CleanBackground,
    FOVCrop,
    FundusCrop,
    KneeCrop,
    PadSquare,
    Resize,
)
from radiology.pipeline.steps import CLAHE, VOI, Enhance, Histogram, MinMax, Percentile, Step
from radiology.pipeline.validation import PipelineError

__all__ = [
    "Step", "Percentile", "Histogram", "MinMax", "VOI", "CLAHE", "Enhance", "Resize", "PadSquare", "FOVCrop",
    "CircleCrop", "FundusCrop", "CleanBackground", "KneeCrop", "Decode", "Pipeline", "PipelineError", "STEPS",
    "FORMAT", "VERSION", "default_pipeline",
]
