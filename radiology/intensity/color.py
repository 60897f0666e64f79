"""Colour to gray: the one conversion the whole package uses (ITU-R BT.601 luma)."""

from __future__ import annotations

import numpy as np

__all__ = ["to_gray", "LUMA_WEIGHTS"]

#: ITU-R BT.601 luma weights for R, G, B (what JPEG, OpenCV and most viewers use).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def to_gray(image: np.ndarray) -> np.ndarray:
    """BT.601 luma ``0.299 R + 0.587 G + 0.114 B`` of an RGB image, as ``float32``.

    Every place where a colour image becomes gray (DICOM colour decoding, pipeline steps
    that need one channel, image files read for a gray model) calls this function, so a
    colour input gives the same gray image whichever path it takes.

    Parameters
    ----------
    image : numpy.ndarray
        ``(..., 3)`` RGB in any value range, or ``(H, W)`` gray (returned as ``float32``,
        unchanged in value).

    Returns
    -------
    numpy.ndarray of float32
        The input's value range, last axis removed.

    Examples
    --------
    >>> to_gray(np.array([[[255, 255, 255], [255, 0, 0]]], dtype=np.uint8))
    array([[255.   ,  76.245]], dtype=float32)
    >>> to_gray(np.zeros((2, 3))).shape
    (2, 3)
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float32, copy=False)
    if image.ndim < 2 or image.shape[-1] != 3:
        raise ValueError(f"expected (H, W) gray or (..., 3) RGB, got shape {image.shape}")
    return image.astype(np.float32, copy=False) @ LUMA_WEIGHTS
