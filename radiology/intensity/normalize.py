"""Metadata-independent intensity normalization into ``float32`` ``[0, 1]``.

Window tags are often missing or wrong, and vendors store radiographs with different
bit depths, offsets and gains. These functions look only at the pixel distribution, so
images from different sources come out alike:

- :func:`percentile_window` clips at low/high percentiles (default 0.5 / 99.5) and
  scales linearly; robust to a few saturated or dead pixels and to collimation.
- :func:`histogram_scale` maps pixel values through equal-frequency bins (the
  ``hist_scaled`` approach of fastai), so every bin of the histogram gets the same share of
  the output range: a strong, contrast-equalizing normalization. The bins come from the
  image itself, or are fitted once on a sample of a dataset with :func:`histogram_bins`
  and saved, so every image of the dataset gets the same mapping.

Inputs may be any real dtype; integer inputs take a histogram fast path with exactly the
same result as :func:`numpy.quantile` (linear interpolation). Larger input values map to
brighter output: invert polarity (e.g. MONOCHROME1) *before* normalizing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

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

# Above this value range, a histogram costs more than a partial sort.
_MAX_HISTOGRAM_RANGE = 1 << 20


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError("empty image")
    if image.dtype.kind not in "iuf" and image.dtype != bool:
        raise TypeError(f"expected a real-valued image, got dtype {image.dtype}")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise ValueError("image contains NaN or infinite values")
    return image


def quantiles(image: np.ndarray, q: Sequence[float] | np.ndarray) -> np.ndarray:
    """Quantiles of all pixel values, as :func:`numpy.quantile` with linear interpolation.

    Parameters
    ----------
    image : numpy.ndarray
        Any shape, any real dtype.
    q : sequence of float in [0, 1]
        Quantile levels.

    Returns
    -------
    numpy.ndarray of float64
        One value per level. Integer images are counted with a histogram (several times
        faster than sorting for 1k² radiographs), float images with a partial sort.

    Examples
    --------
    >>> quantiles(np.arange(101, dtype=np.uint16), [0.0, 0.5, 0.995])
    array([ 0. , 50. , 99.5])
    """
    image = _check_image(image)
    levels = np.asarray(q, dtype=np.float64)
    if ((levels < 0) | (levels > 1)).any():
        raise ValueError("quantile levels must be in [0, 1]")
    flat = image.reshape(-1)
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    if flat.dtype.kind == "f":
        return np.quantile(flat, levels)
    low, high = int(flat.min()), int(flat.max())
    if high - low > _MAX_HISTOGRAM_RANGE:
        return np.quantile(flat, levels)
    offset = flat if low == 0 and flat.dtype.kind == "u" else flat.astype(np.int64) - low
    cumulative = np.cumsum(np.bincount(offset, minlength=high - low + 1))
    position = levels * (flat.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, flat.size - 1)
    value_below = np.searchsorted(cumulative, below, side="right")
    value_above = np.searchsorted(cumulative, above, side="right")
    fraction = position - below
    return low + value_below + fraction * (value_above - value_below)


def _scale(image: np.ndarray, low: float, high: float) -> np.ndarray:
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)
    out = image.astype(np.float32)
    out -= np.float32(low)
    out *= np.float32(1.0 / (high - low))
    return np.clip(out, 0.0, 1.0, out=out)


def percentile_window(image: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip at the ``low`` and ``high`` percentiles and scale linearly to ``[0, 1]``.

    Parameters
    ----------
    image : numpy.ndarray
        Grayscale (or any shape; percentiles are over all values).
    low, high : float, optional
        Percentiles in ``[0, 100]``, ``low < high``.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        All zeros for a constant image. Symmetric: inverting the input (``-image``)
        gives exactly ``1 - out``.

    Examples
    --------
    >>> out = percentile_window(np.arange(1000, dtype=np.uint16))
    >>> round(float(out[500]), 2), float(out[0]), float(out[-1])
    (0.5, 0.0, 1.0)
    """
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    image = _check_image(image)
    lo, hi = quantiles(image, [low / 100.0, high / 100.0])
    if hi <= lo:  # a mostly-constant image: fall back to the full range
        lo, hi = quantiles(image, [0.0, 1.0])
    return _scale(image, lo, hi)


def minmax_scale(image: np.ndarray) -> np.ndarray:
    """Scale the full value range linearly to ``[0, 1]`` (zeros for a constant image).

    Parameters
    ----------
    image : numpy.ndarray
        Image of any numeric dtype and shape.

    Examples
    --------
    >>> minmax_scale(np.array([10, 20, 30]))
    array([0. , 0.5, 1. ], dtype=float32)
    """
    image = _check_image(image)
    return _scale(image, float(image.min()), float(image.max()))


def _bin_levels(n_bins: int) -> np.ndarray:
    # fastai's freqhist_bins levels: bin centres plus 0.1 % / 99.9 % ends, symmetric in q.
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    centres = np.arange(n_bins) / n_bins + 0.5 / n_bins
    return np.concatenate([[0.001], centres, [0.999]])


def histogram_bins(
    images: np.ndarray | Iterable[np.ndarray],
    n_bins: int = 100,
    *,
    samples_per_image: int | None = 100_000,
    seed: int = 0,
) -> np.ndarray:
    """Equal-frequency bin edges of one image or of a sample of a dataset.

    Parameters
    ----------
    images : numpy.ndarray or iterable of numpy.ndarray
        One image, or several (pixels are pooled). Use the same polarity and intensity
        space as the images the bins will be applied to.
    n_bins : int, optional
        Number of equal-frequency bins.
    samples_per_image : int or None, optional
        Random pixels drawn from each image of an iterable (``None``: all pixels), so
        that fitting on thousands of radiographs stays cheap.
    seed : int, optional
        Seed of the pixel sampling.

    Returns
    -------
    numpy.ndarray of float64
        Strictly increasing edges (duplicates from flat histograms removed); pass to
        :func:`histogram_scale` or :func:`save_histogram_bins`.

    Examples
    --------
    >>> edges = histogram_bins(np.arange(10_000, dtype=np.uint16), n_bins=4)
    >>> edges.round().tolist()
    [10.0, 1250.0, 3750.0, 6249.0, 8749.0, 9989.0]
    """
    levels = _bin_levels(n_bins)
    if isinstance(images, np.ndarray):
        pooled = _check_image(images)
    else:
        rng = np.random.default_rng(seed)
        parts = []
        for image in images:
            flat = _check_image(image).reshape(-1)
            if samples_per_image is not None and flat.size > samples_per_image:
                flat = flat[rng.choice(flat.size, samples_per_image, replace=False)]
            parts.append(flat)
        if not parts:
            raise ValueError("no images to fit histogram bins on")
        pooled = np.concatenate(parts)
    return np.unique(quantiles(pooled, levels))


def histogram_scale(image: np.ndarray, bins: np.ndarray | None = None, n_bins: int = 100) -> np.ndarray:
    """Map pixel values through equal-frequency bins onto ``[0, 1]``.

    Parameters
    ----------
    image : numpy.ndarray
        Any real dtype.
    bins : numpy.ndarray, optional
        Edges from :func:`histogram_bins` (fitted on a dataset); computed from this image
        when omitted.
    n_bins : int, optional
        Number of bins when they are computed from the image.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        Values below the first edge map to 0, above the last to 1, piecewise linear in
        between.

    Examples
    --------
    >>> ramp = np.arange(10_000, dtype=np.uint16) ** 2 // 10_000  # a skewed histogram
    >>> out = histogram_scale(ramp)
    >>> round(float(np.median(out)), 2)  # equalized: the median lands mid-range
    0.5
    """
    image = _check_image(image)
    edges = histogram_bins(image, n_bins) if bins is None else np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 1 or (np.diff(edges) <= 0).any():
        raise ValueError("bins must be a 1-D strictly increasing array")
    if edges.size == 1:
        return (image > edges[0]).astype(np.float32)
    targets = np.linspace(0.0, 1.0, edges.size)
    if image.dtype.kind in "ub" or (image.dtype.kind == "i"):
        low, high = int(image.min()), int(image.max())
        if high - low <= _MAX_HISTOGRAM_RANGE:
            # Tabulate once per distinct value, then look up: far cheaper than interp per pixel.
            table = np.interp(np.arange(low, high + 1), edges, targets).astype(np.float32)
            return table[image.astype(np.int64) - low] if low else table[image]
    return np.interp(image, edges, targets).astype(np.float32)


def save_histogram_bins(path: str | os.PathLike, bins: np.ndarray) -> Path:
    """Save bin edges as a small JSON file (portable, human-readable).

    Parameters
    ----------
    path : str or os.PathLike
        JSON file to write.
    bins : numpy.ndarray
        Strictly increasing bin edges, e.g. from :func:`histogram_bins`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "bins.json"
    >>> _ = save_histogram_bins(path, np.array([0.0, 1.5, 3.0]))
    >>> load_histogram_bins(path).tolist()
    [0.0, 1.5, 3.0]
    """
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or (np.diff(edges) <= 0).any():
        raise ValueError("bins must be a 1-D strictly increasing array")
    path = Path(path)
    payload = {"kind": "radiology.histogram_bins", "version": 1, "bins": edges.tolist()}
    path.write_text(json.dumps(payload))
    return path


def load_histogram_bins(path: str | os.PathLike) -> np.ndarray:
    """Load bin edges written by :func:`save_histogram_bins`.

    Parameters
    ----------
    path : str or os.PathLike
        JSON file written by :func:`save_histogram_bins`.

    Raises
    ------
    ValueError
        The file is not a histogram-bins file.
    """
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or payload.get("kind") != "radiology.histogram_bins":
        raise ValueError(f"{path}: not a radiology histogram-bins file")
    edges = np.asarray(payload["bins"], dtype=np.float64)
    if edges.ndim != 1 or (np.diff(edges) <= 0).any():
        raise ValueError(f"{path}: bins are not strictly increasing")
    return edges


#: Names accepted by :func:`normalize`.
NORMALIZATIONS = ("percentile", "histogram", "minmax")


def normalize(
    image: np.ndarray,
    method: str = "percentile",
    *,
    low: float = 0.5,
    high: float = 99.5,
    bins: np.ndarray | None = None,
    n_bins: int = 100,
) -> np.ndarray:
    """Normalize with one of :data:`NORMALIZATIONS` into ``float32`` ``[0, 1]``.

    Parameters
    ----------
    image : numpy.ndarray
        Image of stored or modality values (any numeric dtype).
    method : {"percentile", "histogram", "minmax"}
        :func:`percentile_window`, :func:`histogram_scale` or :func:`minmax_scale`.
    low, high : float
        Percentiles, for ``"percentile"``.
    bins, n_bins
        Fitted edges or the bin count, for ``"histogram"``.

    Examples
    --------
    >>> normalize(np.array([0, 5, 10]), "minmax").tolist()
    [0.0, 0.5, 1.0]
    """
    if method == "percentile":
        return percentile_window(image, low, high)
    if method == "histogram":
        return histogram_scale(image, bins, n_bins)
    if method == "minmax":
        return minmax_scale(image)
    raise ValueError(f"unknown normalization {method!r}; choose from {NORMALIZATIONS}")
