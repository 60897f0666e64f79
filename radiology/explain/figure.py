"""Explanation figures: a map over its image at a readable size, with a colour bar and a caption.

:func:`overlay` blends a map into an image pixel for pixel, at the image's own size: a 64-px
phantom comes out as a stamp, a 3000-px film as a poster, and neither says what the colours
mean or what was explained. :func:`explanation_figure` composes what can be shown to a
reader (and what :func:`~radiology.explain.explain_inputs` writes)::

    +------------------------------------------------+
    | lesion  p=0.93  Grad-CAM                       |  caption band (black, white text)
    +--------------------------------------+----+----+
    |                                      |1 - |  r |
    |   the original image with its map,   |    |  e |  colour bar: the colormap from 1
    |   scaled so that the figure's        |0.5-|  l |  (top) to 0 (bottom), labelled
    |   longest side is ``size``           |    |  . |  "relative evidence (per image)"
    |                                      |0 - |    |
    +--------------------------------------+----+----+

The image keeps its geometry (aspect ratio; peaks stay where they are, only scaled:
:func:`figure_layout` says where an original pixel lands). Upscaling is linear, downscaling
averages areas (no aliasing of fine structure); the map is scaled before it is coloured, so
the colours are the colormap's. Text is drawn with OpenCV's Hershey font, which only has ASCII:
accents are dropped (``é`` → ``e``) and other characters become ``?``. Nothing but the class,
its probability and the method is written: no file name, no header field.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import cv2
import numpy as np

from radiology.explain.cam import COLORMAPS, overlay

__all__ = ["FIGURE_SIZE", "MIN_FIGURE_SIZE", "MAX_FIGURE_SIZE", "BAR_LABEL", "FigureLayout", "figure_layout",
           "check_figure_size", "explanation_figure"]

#: Default longest side of a figure, in pixels.
FIGURE_SIZE = 768
#: Smallest ``size`` (room for the caption and the colour bar) and largest one.
MIN_FIGURE_SIZE, MAX_FIGURE_SIZE = 160, 8192
#: The colour bar's label: maps are scaled to [0, 1] one by one, so colours compare within an image only.
BAR_LABEL = "relative evidence (per image)"
#: Method names as a caption shows them.
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcampp": "Grad-CAM++", "hirescam": "HiResCAM", "layercam": "LayerCAM",
                "scorecam": "Score-CAM", "eigencam": "EigenCAM (class-agnostic)"}
_NATIVE_UNIT = 384  # decorations of native-size figures are sized as for this side at least
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class FigureLayout:
    """Where the parts of an :func:`explanation_figure` lie, in figure pixels.

    Attributes
    ----------
    shape : tuple of int
        The figure's ``(rows, cols)``.
    scale : float
        Figure pixels per original pixel (1.0 for native size).
    top, rows, cols : int
        The image occupies rows ``[top, top + rows)`` and columns ``[0, cols)``.
    bar_left, bar_width, bar_top, bar_rows : int
        The colour bar occupies rows ``[bar_top, bar_top + bar_rows)`` and columns
        ``[bar_left, bar_left + bar_width)``: 1.0 on its top row, 0.0 on its bottom row.
    unit : int
        The length decorations are sized from (``size``, or the image's longest side for native size).
    original : tuple of int
        The original image's ``(rows, cols)``.
    """

    shape: tuple[int, int]
    scale: float
    top: int
    rows: int
    cols: int
    bar_left: int
    bar_width: int
    bar_top: int
    bar_rows: int
    unit: int
    original: tuple[int, int]

    def to_figure(self, x: float, y: float) -> tuple[float, float]:
        """Figure ``(x, y)`` of the centre of original pixel ``(x, y)`` (pixel centres as OpenCV resizes them).

        Parameters
        ----------
        x, y : float
            Column and row of a pixel of the original image.
        """
        sx, sy = self.cols / self.original[1], self.rows / self.original[0]
        return (x + 0.5) * sx - 0.5, self.top + (y + 0.5) * sy - 0.5


def check_figure_size(size) -> int | None:
    """``size`` as an int, or None (native size); ValueError unless an integer in
    [:data:`MIN_FIGURE_SIZE`, :data:`MAX_FIGURE_SIZE`].

    Parameters
    ----------
    size : int or None
        Requested longest side of the figure in pixels; None for the image's own size.

    Examples
    --------
    >>> check_figure_size(768), check_figure_size(None)
    (768, None)
    """
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not (
            MIN_FIGURE_SIZE <= int(size) <= MAX_FIGURE_SIZE):
        raise ValueError(f"figure size must be an integer from {MIN_FIGURE_SIZE} to {MAX_FIGURE_SIZE} "
                         f"(the figure's longest side in pixels) or None for native size, got {size!r}")
    return int(size)


def _decorations(unit: int) -> tuple[int, int, int, int, int]:
    band = max(20, round(0.075 * unit))
    gap, strip = max(4, round(0.02 * unit)), max(8, round(0.035 * unit))
    ticks, label, margin = max(24, round(0.065 * unit)), max(14, round(0.04 * unit)), max(2, round(0.01 * unit))
    return band, gap, strip, ticks, gap + strip + ticks + label + margin


def figure_layout(shape: tuple[int, ...], size: int | None = FIGURE_SIZE) -> FigureLayout:
    """The layout of the figure of an original image of ``shape`` (``(rows, cols)``).

    With ``size``, the image is scaled (aspect ratio kept) as large as it can be with the
    figure's longest side at most ``size``, which it then is; with None it keeps its pixels.

    Parameters
    ----------
    shape : tuple of int
        Shape of the original image; only ``(rows, cols)`` are used.
    size : int, optional
        Longest side of the figure in pixels; None keeps the image's size.

    Examples
    --------
    >>> layout = figure_layout((64, 48), 768)
    >>> max(layout.shape), layout.rows, round(layout.scale, 3)
    (768, 710, 11.094)
    >>> figure_layout((64, 48), None).rows
    64
    """
    size = check_figure_size(size)
    if len(shape) < 2 or min(shape[:2]) < 1:
        raise ValueError(f"expected an image shape (rows, cols), got {shape}")
    h, w = int(shape[0]), int(shape[1])
    unit = size if size is not None else max(h, w, _NATIVE_UNIT)
    band, gap, strip, _, bar_area = _decorations(unit)
    if size is None:
        scale, rows, cols = 1.0, h, w
    else:
        scale = min((size - band) / h, (size - bar_area) / w)
        rows, cols = max(1, round(h * scale)), max(1, round(w * scale))
    # A short, wide image still gets a readable colour bar, a narrow one room for its caption.
    panel, panel_width = max(rows, round(0.3 * unit)), max(cols, round(0.45 * unit))
    margin = max(4, round(0.025 * unit))  # half a tick label above the top and below the bottom of the bar
    return FigureLayout(shape=(band + panel, panel_width + bar_area), scale=float(scale), top=band, rows=rows,
                        cols=cols, bar_left=panel_width + gap, bar_width=strip, bar_top=band + margin,
                        bar_rows=panel - 2 * margin,
                        unit=unit, original=(h, w))


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", " ".join(str(text).split()))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in kept)


def _text_scale(text: str, width: float, height: float) -> tuple[float, int]:
    """Font scale (and thickness) that fits ``text`` into ``width`` x ``height`` pixels."""
    (w, h), base = cv2.getTextSize(text, _FONT, 1.0, 1)
    scale = max(0.05, min(width / max(w, 1), height / max(h + base, 1)))
    return scale, max(1, round(scale * 1.6))


def _put(canvas: np.ndarray, text: str, left: int, middle: int, scale: float, thickness: int,
         align: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, _FONT, scale, thickness)
    x = left - w if align == "right" else left
    cv2.putText(canvas, text, (int(x), int(round(middle + h / 2))), _FONT, scale, _WHITE, thickness, cv2.LINE_AA)


def _probability_text(probability: float) -> str:
    text = f"{probability:.2f}"
    if text == "1.00" and probability < 1:
        return "p>0.99"
    if text == "0.00" and probability > 0:
        return "p<0.01"
    return f"p={text}"


def _caption(label: str, probability: float | None, method: str) -> tuple[str, str]:
    rest = "" if probability is None else f"  {_probability_text(probability)}"
    return _ascii(label), f"{rest}  {_ascii(METHOD_NAMES.get(method, method))}"


def explanation_figure(original: np.ndarray, cam: np.ndarray, *, label: str, probability: float | None,
                       method: str, size: int | None = FIGURE_SIZE, alpha: float = 0.4,
                       colormap: str | int = "jet") -> np.ndarray:
    """A map over its image as a figure: readable size, a caption and a colour bar.

    Parameters
    ----------
    original : numpy.ndarray
        ``(H, W)`` gray or ``(H, W, 3)`` RGB image in ``[0, 1]`` (or ``uint8``), e.g. the
        original image (:func:`~radiology.explain.original_view`).
    cam : numpy.ndarray, shape (H, W)
        Its map in ``[0, 1]`` (e.g. :func:`~radiology.explain.cam_to_original`).
    label : str
        The class explained, written in the caption.
    probability : float or None
        The model's probability of ``label`` (``p=0.93``; ``p>0.99``/``p<0.01`` near the
        ends), or None to leave it out.
    method : str
        The CAM method (a name of :data:`~radiology.explain.METHODS` is written as its
        paper's name, e.g. ``Grad-CAM++``; EigenCAM is marked class-agnostic).
    size : int or None, optional
        The figure's longest side in pixels (:data:`MIN_FIGURE_SIZE` to
        :data:`MAX_FIGURE_SIZE`): small images are scaled up (linear), large ones down
        (area averaging). None keeps the image's own pixels (decorations are added around it).
    alpha, colormap : optional
        As in :func:`~radiology.explain.overlay` (and the colour bar uses the same colormap).

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape (rows, cols, 3)
        RGB on black; :func:`figure_layout` gives where image and colour bar lie. Write it
        with :func:`radiology.io.write_image`.

    Examples
    --------
    >>> original = np.full((64, 48), 0.5, np.float32)
    >>> cam = np.zeros((64, 48), np.float32); cam[40, 12] = 1
    >>> figure = explanation_figure(original, cam, label="nodule", probability=0.93, method="gradcam")
    >>> figure.shape, figure.dtype
    ((768, 663, 3), dtype('float32'))
    >>> layout = figure_layout(original.shape)
    >>> bar = figure[layout.bar_top:layout.bar_top + layout.bar_rows, layout.bar_left]
    >>> (bar[0] * 255).round().tolist(), (bar[-1] * 255).round().tolist()  # jet at 1 and at 0
    ([128.0, 0.0, 0.0], [0.0, 0.0, 128.0])
    """
    image = np.asarray(original)
    cam = np.asarray(cam, dtype=np.float32)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {image.shape}")
    if cam.shape != image.shape[:2]:
        raise ValueError(f"map shape {cam.shape} differs from image shape {image.shape[:2]}")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    if not isinstance(method, str) or not method.strip():
        raise ValueError(f"method must be a non-empty string, got {method!r}")
    if probability is not None:
        if isinstance(probability, bool) or not isinstance(probability, (int, float, np.floating, np.integer)) \
                or not (math.isfinite(float(probability)) and 0 <= float(probability) <= 1):
            raise ValueError(f"probability must be in [0, 1] or None, got {probability!r}")
        probability = float(probability)
    if isinstance(colormap, str) and colormap not in COLORMAPS:
        raise ValueError(f"colormap must be one of {sorted(COLORMAPS)} or an OpenCV code, got {colormap!r}")
    code = int(COLORMAPS[colormap] if isinstance(colormap, str) else colormap)
    layout = figure_layout(image.shape, size)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    image = np.clip(np.nan_to_num(image.astype(np.float32)), 0, 1)
    cam = np.clip(np.nan_to_num(cam), 0, 1)
    if (layout.rows, layout.cols) != image.shape[:2]:
        interpolation = cv2.INTER_LINEAR if layout.scale > 1 else cv2.INTER_AREA
        image = cv2.resize(image, (layout.cols, layout.rows), interpolation=interpolation)
        cam = np.clip(cv2.resize(cam, (layout.cols, layout.rows), interpolation=interpolation), 0, 1)
    canvas = np.zeros((*layout.shape, 3), np.uint8)
    canvas[layout.top:layout.top + layout.rows, :layout.cols] = overlay(image, cam, alpha=alpha, colormap=code)

    # Colour bar: the colormap itself, 1 on the top row, 0 on the bottom row.
    n = layout.bar_rows
    values = np.round(np.linspace(1, 0, n) * 255).astype(np.uint8)[:, None]
    colours = cv2.cvtColor(cv2.applyColorMap(values, code), cv2.COLOR_BGR2RGB)
    canvas[layout.bar_top:layout.bar_top + n, layout.bar_left:layout.bar_left + layout.bar_width] = colours
    unit = layout.unit
    tick_left = layout.bar_left + layout.bar_width
    tick_len = max(2, round(0.008 * unit))
    tick_scale, tick_thickness = _text_scale("0.5", max(8, round(0.06 * unit) - tick_len - 2), 0.03 * unit)
    for value in (1.0, 0.5, 0.0):
        row = layout.bar_top + round((1 - value) * (n - 1))
        canvas[row, tick_left:tick_left + tick_len] = _WHITE
        _put(canvas, f"{value:g}", tick_left + tick_len + 2, row, tick_scale, tick_thickness)
    # Its label, written bottom to top beside the ticks.
    label_left = tick_left + max(24, round(0.065 * unit))
    label_width = layout.shape[1] - label_left - max(2, round(0.01 * unit))
    scale, thickness = _text_scale(BAR_LABEL, 0.95 * n, 0.8 * label_width)
    strip = np.zeros((label_width, n, 3), np.uint8)
    (text_width, _), _ = cv2.getTextSize(BAR_LABEL, _FONT, scale, thickness)
    _put(strip, BAR_LABEL, (n - text_width) // 2, label_width // 2, scale, thickness)
    canvas[layout.bar_top:layout.bar_top + n, label_left:label_left + label_width] = np.rot90(strip)

    # Caption: class, probability, method; a long class name is shortened, never the rest.
    name, rest = _caption(label, probability, method)
    pad = max(4, round(0.015 * unit))
    room, height = layout.shape[1] - 2 * pad, 0.5 * layout.top
    scale, thickness = _text_scale(name + rest, room, height)
    floor = _text_scale("Xg", 10 ** 6, min(height, 12))[0]  # below ~12 px of text, shorten the name instead
    while scale < floor and len(name) > 1:
        name = name[:-2] + "~" if len(name) > 2 else name[:1]
        scale, thickness = _text_scale(name + rest, room, height)
    _put(canvas, name + rest, pad, layout.top // 2, scale, thickness)
    return canvas.astype(np.float32) / 255
