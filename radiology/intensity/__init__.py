"""Intensity: normalization to ``float32`` ``[0, 1]``, CLAHE and contrast (numpy/OpenCV, no torch)."""

from radiology.intensity.color import LUMA_WEIGHTS, to_gray
from radiology.intensity.contrast import clahe, enhance_contrast
from radiology.intensity.normalize import (
    NORMALIZATIONS,
    histogram_bins,
    histogram_scale,
    load_histogram_bins,
    minmax_scale,
    normalize,
    percentile_window,
    quantiles,
    save_histogram_bins,
)

__all__ = [
    "to_gray",
    "LUMA_WEIGHTS",
    "clahe",
    "enhance_contrast",
    "quantiles",
    "percentile_window",
    "minmax_scale",
    "histogram_bins",
    "histogram_scale",
    "save_histogram_bins",
    "load_histogram_bins",
    "normalize",
    "NORMALIZATIONS",
]
