"""Aspect-preserving resize and pad-to-square (OpenCV; any dtype OpenCV resizes)."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["resize", "pad_to_square", "target_size"]


def target_size(
    shape: tuple[int, ...], *, width: int | None = None, height: int | None = None, longest: int | None = None
) -> tuple[int, int]:
    """Output ``(height, width)`` for :func:`resize` without touching pixels.

    Exactly one of ``width``, ``height``, ``longest`` fixes the scale and the other side
    follows the aspect ratio; ``width`` and ``height`` together force both.

    Parameters
    ----------
    shape : tuple of int
        Input shape; only ``(rows, columns)`` are used.
    width : int, optional
        Output width in pixels.
    height : int, optional
        Output height in pixels.
    longest : int, optional
        Output length of the longer side, in pixels.

    Examples
    --------
    >>> target_size((1000, 800), width=512)
    (640, 512)
    >>> target_size((1000, 800), longest=500)
    (500, 400)
    """
    rows, cols = int(shape[0]), int(shape[1])
    given = [v for v in (width, height, longest) if v is not None]
    if not given:
        raise ValueError("give width, height, longest, or width and height")
    if any(int(v) < 1 for v in given):
        raise ValueError(f"sizes must be positive, got {given}")
    if longest is not None:
        if width is not None or height is not None:
            raise ValueError("longest cannot be combined with width or height")
        scale = longest / max(rows, cols)
    elif width is not None and height is not None:
        return int(height), int(width)
    elif width is not None:
        scale = width / cols
    else:
        scale = height / rows
    out_rows = int(height) if height is not None else max(1, round(rows * scale))
    out_cols = int(width) if width is not None else max(1, round(cols * scale))
    return out_rows, out_cols


def resize(
    image: np.ndarray, *, width: int | None = None, height: int | None = None, longest: int | None = None
) -> np.ndarray:
    """Resize, preserving the aspect ratio unless both ``width`` and ``height`` are given.

    Shrinking uses area averaging (no aliasing of fine trabecular texture); enlarging uses
    bilinear interpolation.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``; dtype kept.
    width, height, longest : int, optional
        See :func:`target_size`.

    Returns
    -------
    numpy.ndarray
        Same dtype and channel count.

    Examples
    --------
    >>> resize(np.zeros((1000, 800), np.float32), width=512).shape
    (640, 512)
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {image.shape}")
    rows, cols = target_size(image.shape, width=width, height=height, longest=longest)
    if (rows, cols) == image.shape[:2]:
        return image
    shrinking = rows * cols < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (cols, rows), interpolation=interpolation).reshape((rows, cols) + image.shape[2:])


def pad_to_square(image: np.ndarray, value: float = 0) -> np.ndarray:
    """Pad the shorter side symmetrically so that the image becomes square.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, C)``.
    value : float, optional
        Fill value (0 is black in the ``[0, 1]`` convention).

    Returns
    -------
    numpy.ndarray
        ``(S, S[, C])`` with ``S = max(H, W)``; the odd pixel goes to the bottom/right.

    Examples
    --------
    >>> pad_to_square(np.ones((2, 4))).tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]
    """
    if image.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {image.shape}")
    rows, cols = image.shape[:2]
    side = max(rows, cols)
    top, left = (side - rows) // 2, (side - cols) // 2
    padding = [(top, side - rows - top), (left, side - cols - left)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, padding, mode="constant", constant_values=value)
