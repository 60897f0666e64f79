"""Pixel-coordinate bookkeeping: 3×3 affine matrices between an image and a resized, padded or cropped copy.

Coordinates are ``(x, y)`` = (column, row) with pixel *centres* at integers, the OpenCV
convention (:func:`cv2.resize` and :func:`cv2.warpAffine` use it). A matrix ``M`` maps a
point of the input image, as the homogeneous column ``(x, y, 1)``, to the same anatomical
point in the output image; matrices of successive steps compose by multiplication
(``M2 @ M1``). :meth:`radiology.pipeline.Pipeline.read` with ``with_geometry=True`` returns the
matrix from the original image to the model's input; :func:`warp_back` uses it to bring a
map computed on the model input (e.g. a class activation map) back onto the original image.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["translation_matrix", "resize_matrix", "map_points", "warp_back"]


def translation_matrix(dx: float, dy: float) -> np.ndarray:
    """Matrix of a shift by ``(dx, dy)``: a crop at ``(x0, y0)`` is ``translation_matrix(-x0, -y0)``,
    padding ``left``/``top`` pixels is ``translation_matrix(left, top)``.

    Parameters
    ----------
    dx : float
        Shift along x (columns), in pixels.
    dy : float
        Shift along y (rows), in pixels.

    Examples
    --------
    >>> map_points(translation_matrix(-10, -5), [(12, 7)]).tolist()
    [[2.0, 2.0]]
    """
    matrix = np.eye(3)
    matrix[0, 2], matrix[1, 2] = float(dx), float(dy)
    return matrix


def resize_matrix(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> np.ndarray:
    """Matrix of a resize from ``in_shape`` ``(rows, cols, ...)`` to ``out_shape``, pixel centres aligned.

    An output pixel centre ``u`` samples the input at ``(u + 0.5) * in / out - 0.5`` (as
    :func:`cv2.resize` does), so ``x`` maps to ``(x + 0.5) * out / in - 0.5``.

    Parameters
    ----------
    in_shape : tuple of int
        Shape of the input image; only its first two entries (rows, columns) are used.
    out_shape : tuple of int
        Shape of the resized image, likewise.

    Examples
    --------
    >>> map_points(resize_matrix((100, 200), (50, 100)), [(1.5, 0.5), (199.5, 99.5)]).tolist()
    [[0.5, 0.0], [99.5, 49.5]]
    """
    (rows, cols), (out_rows, out_cols) = in_shape[:2], out_shape[:2]
    if min(rows, cols, out_rows, out_cols) < 1:
        raise ValueError(f"shapes must be positive, got {in_shape} -> {out_shape}")
    sx, sy = out_cols / cols, out_rows / rows
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


def _check_matrix(matrix) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (3, 3) or not np.allclose(matrix[2], (0, 0, 1)):
        raise ValueError(f"expected a 3x3 affine matrix with last row (0, 0, 1), got {matrix.tolist()}")
    if abs(np.linalg.det(matrix[:2, :2])) < 1e-12:
        raise ValueError("the matrix is singular (not invertible)")
    return matrix


def map_points(matrix, points) -> np.ndarray:
    """Apply a 3×3 affine matrix to ``(x, y)`` points.

    Parameters
    ----------
    matrix : array-like, shape (3, 3)
        Affine matrix with last row ``(0, 0, 1)``, invertible.
    points : array-like, shape (N, 2) or (2,)
        One point or a list of points, as ``(x, y)`` = (column, row).

    Returns
    -------
    numpy.ndarray of float64, the shape of ``points``

    Examples
    --------
    >>> m = resize_matrix((10, 10), (20, 20))
    >>> map_points(m, (4.5, 4.5)).tolist()
    [9.5, 9.5]
    >>> map_points(np.linalg.inv(m), [(9.5, 9.5)]).tolist()
    [[4.5, 4.5]]
    """
    matrix = _check_matrix(matrix)
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (2,) or points.ndim > 2:
        raise ValueError(f"expected (N, 2) or (2,) points, got shape {points.shape}")
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def warp_back(image: np.ndarray, matrix, shape: tuple[int, ...], *, fill: float = 0.0) -> np.ndarray:
    """Bring an image from a matrix's output space back to its input space (bilinear).

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W) or (H, W, C)
        Lives in the *output* space of ``matrix`` (e.g. a map at the model's input size).
    matrix : array-like, shape (3, 3)
        Maps input-space points to output-space points (original image → model input).
    shape : tuple of int
        ``(rows, cols)`` of the input space (the original image); extra entries are ignored.
    fill : float, optional
        Value where the input space was not seen by the output (cropped-away parts).

    Returns
    -------
    numpy.ndarray of float32, shape ``(rows, cols[, C])``

    Examples
    --------
    >>> small = np.zeros((4, 4), np.float32); small[1, 2] = 1
    >>> big = warp_back(small, translation_matrix(-3, -3), (8, 8))
    >>> [int(v) for v in np.unravel_index(big.argmax(), big.shape)]
    [4, 5]
    """
    matrix = _check_matrix(matrix)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C), got shape {image.shape}")
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 1 or cols < 1:
        raise ValueError(f"shape must be positive, got {shape}")
    # WARP_INVERSE_MAP: out(x, y) = image(M @ (x, y)), i.e. M maps destination (original) to source.
    out = cv2.warpAffine(image, matrix[:2], (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=float(fill))
    return out.reshape((rows, cols) + image.shape[2:])
