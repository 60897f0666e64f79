"""The pointing game: does an explanation's peak fall on the finding a reader boxed?

A map "points" at its maximum (:func:`~radiology.explain.cam_peak`); it scores a hit when that
pixel lies in one of the image's finding boxes, each grown by a share of the image's longer
side (a map of stride 16 or 32 cannot be sharper than its cells). A hit rate means little on
its own, so :func:`pointing_game` reports it beside two baselines a model needs no evidence
for: the *image centre* (the share of images whose centre lies in a grown box: what a map
that always peaks in the middle would score) and a *random point* (the expected hit rate of
a peak drawn uniformly over the image's pixels: the share of pixels inside the union of the
grown boxes, averaged over images; exact, no sampling).

Conventions (those of :mod:`radiology.geometry.affine`):

- Boxes are ``(x, y, w, h)`` in pixels of the *stored* image (the DICOM's Rows x Columns, an
  image file's own size), as annotation tools and COCO write them: ``(x, y)`` is the top-left
  *corner* and pixel column ``i`` spans ``[i, i + 1)``, so a box covers the pixels whose
  centres lie inside it.
- Points (peaks) are ``(x, y)`` = (column, row) pixel coordinates of the stored image with
  pixel centres at integers, as ``peak_x``/``peak_y`` of ``explanations.csv``: the peak pixel
  ``(i, j)`` is a hit when its centre, ``(i + 0.5, j + 0.5)`` in box coordinates, lies in a
  grown box (edges included).
- The image centre is ``((cols - 1) / 2, (rows - 1) / 2)`` in point coordinates.

All functions are pure (arrays in, numbers out); :func:`radiology.explain.explain_inputs`
(``boxes=``) and ``radiology explain --boxes`` run them on files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["GROW", "parse_boxes", "grow_boxes", "boxes_mask", "point_in_boxes", "pointing_game", "PointingGame"]

#: Default growth of every box: this share of the image's longer side is added on each side.
GROW = 0.05


def parse_boxes(text) -> np.ndarray:
    """A boxes cell, ``"x y w h;x y w h"``, as an ``(N, 4)`` array (empty text: no box).

    Boxes are separated by ``;``, their four numbers by spaces (or commas). An empty cell,
    None or NaN (a CSV's missing value) is no box.

    Parameters
    ----------
    text : str, None or float NaN
        The cell, e.g. a ``boxes`` value of the fracture ``labels.csv``.

    Returns
    -------
    numpy.ndarray of float64, shape (N, 4)
        ``(x, y, w, h)`` per box, in the order written.

    Raises
    ------
    ValueError
        A part that is not four numbers, a number that is not finite, or a negative width or
        height.

    Examples
    --------
    >>> parse_boxes("304.8 222.5 38.9 25.7;98.6 201.7 36.2 23.6").tolist()
    [[304.8, 222.5, 38.9, 25.7], [98.6, 201.7, 36.2, 23.6]]
    >>> parse_boxes("").shape
    (0, 4)
    >>> parse_boxes("1 2 3")
    Traceback (most recent call last):
    ...
    ValueError: a box is 'x y w h', got '1 2 3'
    """
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return np.zeros((0, 4))
    if not isinstance(text, str):
        raise TypeError(f"expected the text of a boxes cell, got {type(text).__name__}")
    boxes = []
    for part in text.split(";"):
        values = part.replace(",", " ").split()
        if not values:
            continue
        if len(values) != 4:
            raise ValueError(f"a box is 'x y w h', got {part.strip()!r}")
        try:
            box = [float(value) for value in values]
        except ValueError:
            raise ValueError(f"a box is four numbers 'x y w h', got {part.strip()!r}") from None
        boxes.append(box)
    return _check_boxes(np.array(boxes, dtype=np.float64).reshape(-1, 4))


def _check_boxes(boxes) -> np.ndarray:
    if isinstance(boxes, str) or boxes is None:
        return parse_boxes(boxes)
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim == 1:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"expected (N, 4) boxes (x, y, w, h), got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"boxes must be finite, got {boxes.tolist()}")
    if (boxes[:, 2:] < 0).any():
        raise ValueError(f"box widths and heights must be >= 0, got {boxes.tolist()}")
    return boxes


def _check_shape(shape) -> tuple[int, int]:
    try:
        rows, cols = (int(v) for v in tuple(shape)[:2])
    except (TypeError, ValueError):
        raise ValueError(f"shape must be the image's (rows, cols), got {shape!r}") from None
    if len(tuple(shape)) < 2 or rows < 1 or cols < 1:
        raise ValueError(f"shape must be the image's (rows, cols), both >= 1, got {shape!r}")
    return rows, cols


def _check_grow(grow) -> float:
    grow = float(grow)
    if not (math.isfinite(grow) and grow >= 0):
        raise ValueError(f"grow must be a finite share >= 0 of the image's longer side, got {grow}")
    return grow


def grow_boxes(boxes, shape: tuple[int, ...], grow: float = GROW) -> np.ndarray:
    """Boxes grown by ``grow`` times the image's longer side on every side, clipped to the image.

    Parameters
    ----------
    boxes : array-like, shape (N, 4), or str
        ``(x, y, w, h)`` boxes in pixels of the image, or a boxes cell (:func:`parse_boxes`).
    shape : tuple of int
        The image's ``(rows, cols)``; extra entries are ignored.
    grow : float, optional
        Share of ``max(rows, cols)`` added on each side (default :data:`GROW`, 5 %).

    Returns
    -------
    numpy.ndarray of float64, shape (N, 4)
        ``(x0, y0, x1, y1)`` corners, within ``[0, cols] x [0, rows]``.

    Raises
    ------
    ValueError
        Malformed boxes, a shape that is not positive, a negative ``grow``, or a box that
        lies wholly outside the image (boxes in the pixels of another image?).

    Examples
    --------
    >>> grow_boxes([(10, 10, 20, 20)], (100, 200)).tolist()  # 5 % of 200 = 10 px, clipped at 0
    [[0.0, 0.0, 40.0, 40.0]]
    >>> grow_boxes([(10, 10, 20, 20)], (100, 200), grow=0).tolist()
    [[10.0, 10.0, 30.0, 30.0]]
    """
    boxes = _check_boxes(boxes)
    rows, cols = _check_shape(shape)
    margin = _check_grow(grow) * max(rows, cols)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    outside = (x1 < 0) | (y1 < 0) | (x0 > cols) | (y0 > rows)
    if outside.any():
        box = boxes[int(np.flatnonzero(outside)[0])].tolist()
        raise ValueError(f"box {box} lies outside the {cols} x {rows} image (x y w h in pixels of the stored image)")
    return np.stack([np.maximum(x0 - margin, 0.0), np.maximum(y0 - margin, 0.0),
                     np.minimum(x1 + margin, float(cols)), np.minimum(y1 + margin, float(rows))], axis=1)


def boxes_mask(boxes, shape: tuple[int, ...], grow: float = GROW) -> np.ndarray:
    """The pixels whose centres lie in the union of the grown boxes.

    Its mean is the chance that a point drawn uniformly over the image's pixels is a hit:
    the random-point baseline of :func:`pointing_game`.

    Parameters
    ----------
    boxes : array-like, shape (N, 4), or str
        ``(x, y, w, h)`` boxes in pixels of the image, or a boxes cell.
    shape : tuple of int
        The image's ``(rows, cols)``.
    grow : float, optional
        See :func:`grow_boxes`.

    Returns
    -------
    numpy.ndarray of bool, shape (rows, cols)

    Examples
    --------
    >>> boxes_mask([(1, 0, 2, 1)], (2, 4), grow=0).astype(int).tolist()
    [[0, 1, 1, 0], [0, 0, 0, 0]]
    >>> float(boxes_mask([(0, 0, 5, 5), (5, 0, 5, 5)], (10, 10), grow=0).mean())  # two halves of the top
    0.5
    """
    rows, cols = _check_shape(shape)
    mask = np.zeros((rows, cols), dtype=bool)
    for x0, y0, x1, y1 in grow_boxes(boxes, (rows, cols), grow):
        # Pixel i is covered when x0 <= i + 0.5 <= x1.
        i0, i1 = max(0, math.ceil(x0 - 0.5)), min(cols - 1, math.floor(x1 - 0.5))
        j0, j1 = max(0, math.ceil(y0 - 0.5)), min(rows - 1, math.floor(y1 - 0.5))
        if i0 <= i1 and j0 <= j1:
            mask[j0:j1 + 1, i0:i1 + 1] = True
    return mask


def _point(point, rows: int, cols: int) -> tuple[float, float] | None:
    if point is None:
        return None
    try:
        x, y = (float(v) if v is not None else math.nan for v in point)
    except (TypeError, ValueError):
        raise ValueError(f"a point is (x, y) or None, got {point!r}") from None
    if math.isnan(x) or math.isnan(y):
        return None  # an empty peak (all-zero map)
    if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5):
        raise ValueError(f"point ({x:g}, {y:g}) lies outside the {cols} x {rows} image (pixels of the stored image)")
    return x, y


def point_in_boxes(point, boxes, shape: tuple[int, ...], grow: float = GROW) -> bool:
    """Whether a point (a map's peak) lies in one of the grown boxes.

    Parameters
    ----------
    point : (float, float) or None
        ``(x, y)`` in pixels of the stored image, pixel centres at integers (``peak_x``,
        ``peak_y`` of ``explanations.csv``). None or NaN (no peak: an all-zero map) is a miss.
    boxes : array-like, shape (N, 4), or str
        ``(x, y, w, h)`` boxes in pixels of the image, or a boxes cell.
    shape : tuple of int
        The image's ``(rows, cols)``.
    grow : float, optional
        See :func:`grow_boxes`.

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        A point outside the image, or what :func:`grow_boxes` raises.

    Examples
    --------
    >>> box = [(10, 20, 10, 10)]           # pixels 10-19 x 20-29; grown by 5 px on a 100-px image
    >>> point_in_boxes((15, 25), box, (100, 80)), point_in_boxes((24, 34), box, (100, 80))
    (True, True)
    >>> point_in_boxes((24, 34), box, (100, 80), grow=0), point_in_boxes(None, box, (100, 80))
    (False, False)
    """
    rows, cols = _check_shape(shape)
    grown = grow_boxes(boxes, (rows, cols), grow)
    found = _point(point, rows, cols)
    if found is None:
        return False
    x, y = found[0] + 0.5, found[1] + 0.5  # the pixel's centre in box (corner) coordinates
    return bool(np.any((grown[:, 0] <= x) & (x <= grown[:, 2]) & (grown[:, 1] <= y) & (y <= grown[:, 3])))


@dataclass(frozen=True, eq=False)
class PointingGame:
    """The result of :func:`pointing_game`: summary numbers and one entry per input.

    Attributes
    ----------
    n : int
        Inputs scored (those with at least one box).
    hits : int
        Scored inputs whose peak lies in a grown box.
    centre_hits : int
        Scored inputs whose image centre lies in a grown box.
    hit_rate, centre_rate, random_rate : float or None
        ``hits / n``, ``centre_hits / n``, and the mean over scored inputs of the share of
        pixels in the union of grown boxes (the expected hit rate of a uniformly random
        peak); None when ``n`` is 0.
    grow : float
        The growth used.
    unscored : int
        Inputs without a box (not scored).
    scored, hit, centre_hit : numpy.ndarray of bool
        Per input, in input order (``hit`` and ``centre_hit`` are False where not scored).
    area : numpy.ndarray of float64
        Per input, the share of its pixels in the grown boxes (NaN where not scored).
    """

    n: int
    hits: int
    centre_hits: int
    hit_rate: float | None
    centre_rate: float | None
    random_rate: float | None
    grow: float
    unscored: int
    scored: np.ndarray = field(repr=False)
    hit: np.ndarray = field(repr=False)
    centre_hit: np.ndarray = field(repr=False)
    area: np.ndarray = field(repr=False)

    def summary(self) -> dict:
        """The numbers as a JSON-ready dict: ``n, hits, hit_rate, centre_hits, centre_rate, random_rate,
        grow, unscored`` (rates rounded to 6 digits; None when nothing was scored).

        Examples
        --------
        >>> pointing_game([(5, 5)], [[(0, 0, 10, 10)]], [(100, 100)]).summary()["hit_rate"]
        1.0
        """
        def rounded(value):
            return None if value is None else round(float(value), 6)

        return {"n": self.n, "hits": self.hits, "hit_rate": rounded(self.hit_rate), "centre_hits": self.centre_hits,
                "centre_rate": rounded(self.centre_rate), "random_rate": rounded(self.random_rate),
                "grow": self.grow, "unscored": self.unscored}


def pointing_game(peaks: Sequence, boxes: Sequence, shapes: Sequence, *, grow: float = GROW) -> PointingGame:
    """How often maps peak inside a (grown) finding box, beside the image-centre and random-point baselines.

    Parameters
    ----------
    peaks : sequence of (x, y) or None
        Each map's peak in pixels of the stored image (:func:`point_in_boxes`); None: a miss.
    boxes : sequence of array-like (N, 4) or str
        Each image's boxes, ``(x, y, w, h)`` in pixels of the stored image, or boxes cells;
        an image without a box is not scored.
    shapes : sequence of tuple of int
        Each stored image's ``(rows, cols)``.
    grow : float, optional
        See :func:`grow_boxes` (default 5 % of the image's longer side).

    Returns
    -------
    PointingGame
        ``n``, ``hits``, ``hit_rate``; ``centre_rate`` (share of scored images whose centre
        lies in a grown box); ``random_rate`` (mean over scored images of the share of their
        pixels inside the grown boxes: the exact expected hit rate of a uniformly random
        peak); per-input ``hit``, ``centre_hit``, ``area``.

    Raises
    ------
    ValueError
        Sequences of different lengths, or an input whose point, boxes or shape is malformed
        (the message names its index).

    Examples
    --------
    Three images of 100 x 100 pixels (boxes grow by 5 px): a hit, a miss, and one without a box.

    >>> game = pointing_game([(15, 15), (90, 90), (50, 50)],
    ...                      [[(10, 10, 10, 10)], "40 40 20 20", ""], [(100, 100)] * 3)
    >>> game.n, game.hits, game.hit_rate, game.centre_rate, game.unscored
    (2, 1, 0.5, 0.5, 1)
    >>> round(game.random_rate, 4)  # (20 x 20 + 30 x 30 pixels) / 10,000 / 2
    0.065
    """
    peaks, boxes, shapes = list(peaks), list(boxes), list(shapes)
    if not len(peaks) == len(boxes) == len(shapes):
        raise ValueError(f"peaks, boxes and shapes differ in length: {len(peaks)}, {len(boxes)}, {len(shapes)}")
    grow = _check_grow(grow)
    count = len(peaks)
    scored, hit, centre = np.zeros(count, bool), np.zeros(count, bool), np.zeros(count, bool)
    area = np.full(count, np.nan)
    for index, (peak, found, shape) in enumerate(zip(peaks, boxes, shapes)):
        try:
            found = _check_boxes(found)
            rows, cols = _check_shape(shape)
            if not len(found):
                _point(peak, rows, cols)  # still a point of this image
                continue
            scored[index] = True
            hit[index] = point_in_boxes(peak, found, (rows, cols), grow)
            centre[index] = point_in_boxes(((cols - 1) / 2, (rows - 1) / 2), found, (rows, cols), grow)
            area[index] = boxes_mask(found, (rows, cols), grow).mean()
        except (TypeError, ValueError) as error:
            raise ValueError(f"input {index}: {error}") from None
    n = int(scored.sum())
    return PointingGame(n=n, hits=int(hit.sum()), centre_hits=int(centre.sum()),
                        hit_rate=float(hit.sum() / n) if n else None,
                        centre_rate=float(centre.sum() / n) if n else None,
                        random_rate=float(np.nanmean(area)) if n else None,
                        grow=grow, unscored=count - n, scored=scored, hit=hit, centre_hit=centre, area=area)
