"""Contact sheets: look at images side by side rather than read about them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from radiology.geometry import pad_to_square, resize

__all__ = ["contact_sheet", "pipeline_preview"]


def _tile(image: np.ndarray | None, size: int) -> np.ndarray:
    if image is None:
        return np.full((size, size, 3), 0.25, np.float32)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return pad_to_square(resize(image, longest=size), value=0.25)


def _label(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.4
    while len(text) > 3 and cv2.getTextSize(text, font, scale, 1)[0][0] > width - 4:
        text = text[:-4] + "..."
    cv2.putText(canvas, text, (x + 2, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(
    rows: Sequence[tuple[str, Sequence[np.ndarray | None]]],
    columns: Sequence[str] = (),
    *,
    tile: int = 192,
) -> np.ndarray:
    """Lay out images in a labelled grid.

    Parameters
    ----------
    rows : sequence of (label, images)
        One row per item; ``images`` are ``[0, 1]`` gray or RGB arrays of any size
        (letterboxed into square tiles), ``None`` for an empty tile.
    columns : sequence of str, optional
        Column titles (e.g. ``("before", "after")``).
    tile : int, optional
        Tile side in pixels.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape (H, W, 3)
        Write it with :func:`radiology.io.write_image`.

    Examples
    --------
    >>> sheet = contact_sheet([("a", [np.zeros((10, 20)), np.ones((5, 5))])], ("before", "after"), tile=64)
    >>> sheet.shape
    (102, 128, 3)
    """
    if not rows:
        raise ValueError("nothing to show")
    if tile < 16:
        raise ValueError(f"tile must be >= 16 pixels, got {tile}")
    n_cols = max(len(images) for _, images in rows)
    header, caption = (18 if columns else 0), 20
    height = header + len(rows) * (tile + caption)
    canvas = np.zeros((height, n_cols * tile, 3), np.uint8)
    for c, title in enumerate(columns):
        _label(canvas, title, c * tile, 13, tile)
    for r, (label, images) in enumerate(rows):
        top = header + r * (tile + caption)
        _label(canvas, label, 0, top + 14, n_cols * tile)
        for c in range(n_cols):
            image = images[c] if c < len(images) else None
            pixels = (np.clip(_tile(image, tile), 0, 1) * 255 + 0.5).astype(np.uint8)
            canvas[top + caption: top + caption + tile, c * tile: (c + 1) * tile] = pixels
    return canvas.astype(np.float32) / 255


def pipeline_preview(paths: Sequence, pipeline, options=None, *, tile: int = 192) -> np.ndarray:
    """Contact sheet of a pipeline: one row per file, one column per stage (input first).

    Each row is :meth:`Pipeline.trace <radiology.pipeline.Pipeline.trace>` of the file, so
    the last column is exactly what :meth:`Pipeline.read <radiology.pipeline.Pipeline.read>`
    (and conversion, training and inference) produce.

    Parameters
    ----------
    paths : sequence of path
        DICOM files or PNG/JPEG/NPY/TIFF images.
    pipeline : radiology.pipeline.Pipeline
        What the sheet shows, decoding included (build one from flat settings with
        :func:`radiology.convert.render_pipeline`).
    options : radiology.convert.ConvertOptions, optional
        Deprecated (a ``DeprecationWarning``): ``pipeline`` is the whole render description.
        When given, ``pipeline``'s steps are read with the decoding of ``options.pipeline``.
    tile : int, optional
        Tile side in pixels.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape (H, W, 3)
        The ``input`` column shows raw DICOM values min-max scaled. A DICOM read through a
        pipeline that does not normalize gets an implied ``percentile`` column (empty for
        image files, which skip it). Files that fail show their error in the row label
        and empty tiles.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from radiology.pipeline import CLAHE, Pipeline, Percentile
    >>> sheet = pipeline_preview([get_testdata_file("CT_small.dcm")], Pipeline([Percentile(), CLAHE()]), tile=64)
    >>> sheet.shape
    (102, 192, 3)
    """
    import warnings
    from pathlib import Path

    from radiology.errors import RadiologyError
    from radiology.pipeline import Pipeline

    if options is not None:
        warnings.warn("pipeline_preview(options=...) is deprecated and will be removed in the next release: pass "
                      "the whole render description as the pipeline (radiology.convert.render_pipeline)",
                      DeprecationWarning, stacklevel=2)
        pipeline = Pipeline(pipeline.steps, options.to_pipeline().decode)
    implied = [] if pipeline.normalizes else ["percentile"]
    columns = ["input"] + implied + [step.name for step in pipeline.steps]
    rows = []
    for path in paths:
        try:
            images = [image for _, image in pipeline.trace(path)]
            images[0] = _display(images[0])
            if len(images) < len(columns):  # an image file: no implied normalization
                images.insert(1, None)
            rows.append((Path(path).name, images))
        except (RadiologyError, ValueError) as error:
            rows.append((f"{Path(path).name}: {error}", [None] * len(columns)))
    return contact_sheet(rows, columns, tile=tile)


def _display(raw: np.ndarray) -> np.ndarray:
    # Raw pixel values (before a normalizing step) shown min-max scaled; [0, 1] images as they are.
    if raw.dtype.kind == "f" and raw.size and raw.min() >= 0 and raw.max() <= 1:
        return raw
    raw = raw.astype(np.float32)
    span = float(raw.max() - raw.min())
    return (raw - raw.min()) / span if span > 0 else np.zeros_like(raw)
