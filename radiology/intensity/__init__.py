"""Intensity: metadata-independent normalization to ``float32`` ``[0, 1]`` (numpy only, no torch)."""

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
