"""Local and global contrast: CLAHE (OpenCV) and a documented brightness/contrast step."""

from __future__ import annotations

import threading

import cv2
import numpy as np

__all__ = ["clahe", "enhance_contrast"]

_local = threading.local()


def _clahe_operator(clip_limit: float, rows: int, cols: int) -> cv2.CLAHE:
    # Reuse one OpenCV object per setting and thread: a fresh one reallocates its tile
    # lookup tables (8 MB for 16-bit images at 8x8 tiles) on every call.
    cache = _local.__dict__.setdefault("clahe", {})
    key = (clip_limit, rows, cols)
    if key not in cache:
        cache[key] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(cols, rows))
    return cache[key]


def clahe(image: np.ndarray, clip_limit: float = 2.0, tile_grid: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Contrast-limited adaptive histogram equalization (OpenCV), dtype in = dtype out.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` ``uint8`` or ``uint16`` (processed natively, OpenCV speed), or float in
        ``[0, 1]`` (quantized to 16 bits, processed, returned as ``float32``).
    clip_limit : float, optional
        OpenCV's clip limit: the histogram of each tile is clipped at ``clip_limit`` times
        the mean bin count before equalization (higher = more contrast, more noise).
    tile_grid : (int, int), optional
        Tiles per ``(rows, columns)``.

    Returns
    -------
    numpy.ndarray
        Same shape; same dtype for integers, ``float32`` in ``[0, 1]`` for floats.

    Examples
    --------
    >>> flat = np.tile(np.linspace(0.4, 0.6, 64, dtype=np.float32), (64, 1))
    >>> out = clahe(flat)
    >>> float(out.max() - out.min()) > float(flat.max() - flat.min())  # contrast stretched
    True
    """
    if image.ndim != 2:
        raise ValueError(f"CLAHE needs a (H, W) grayscale image, got shape {image.shape}")
    if clip_limit <= 0:
        raise ValueError(f"clip_limit must be > 0, got {clip_limit}")
    rows, cols = (int(v) for v in tile_grid)
    if rows < 1 or cols < 1:
        raise ValueError(f"tile_grid must be positive, got {tile_grid}")
    operator = _clahe_operator(float(clip_limit), rows, cols)
    if image.dtype in (np.uint8, np.uint16):
        return operator.apply(image)
    if image.dtype.kind != "f":
        raise TypeError(f"CLAHE takes uint8, uint16 or float images in [0, 1], got {image.dtype}")
    quantized = (np.clip(image, 0.0, 1.0) * np.float32(65535) + np.float32(0.5)).astype(np.uint16)
    return operator.apply(quantized).astype(np.float32) / np.float32(65535)


def enhance_contrast(image: np.ndarray, brightness: float = 0.0, contrast: float = 1.0) -> np.ndarray:
    """Global brightness/contrast: ``clip((x - 0.5) * contrast + 0.5 + brightness, 0, 1)``.

    The enhancement pneumonia-tutorial users apply by hand, as an explicit step.

    Parameters
    ----------
    image : numpy.ndarray of float in [0, 1]
        Image to adjust; the result is clipped to ``[0, 1]``.
    brightness : float, optional
        Added offset, in ``[-1, 1]``.
    contrast : float, optional
        Gain around mid-gray, ``> 0``.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]

    Examples
    --------
    >>> enhance_contrast(np.array([0.25, 0.5, 0.75]), contrast=2.0).tolist()
    [0.0, 0.5, 1.0]
    """
    if contrast <= 0:
        raise ValueError(f"contrast must be > 0, got {contrast}")
    if not -1 <= brightness <= 1:
        raise ValueError(f"brightness must be in [-1, 1], got {brightness}")
    image = np.asarray(image)
    if image.dtype.kind != "f":
        raise TypeError(f"expected a float image in [0, 1], got {image.dtype}")
    out = (image.astype(np.float32) - np.float32(0.5)) * np.float32(contrast) + np.float32(0.5 + brightness)
    return np.clip(out, 0.0, 1.0, out=out)
