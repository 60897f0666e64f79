"""The default pipeline: the preprocessing training uses unless told otherwise (no torch)."""

from __future__ import annotations

from radiology.pipeline.core import Pipeline
from radiology.pipeline.decode import Decode
from radiology.pipeline.geometry_steps import PadSquare, Resize
from radiology.pipeline.steps import Percentile

__all__ = ["default_pipeline"]


def default_pipeline(size: int, channels: int = 1) -> Pipeline:
    """Percentile normalization → longest side to ``size`` → pad to a square.

    Parameters
    ----------
    size : int
        Side of the square output images, in pixels.
    channels : {1, 3}
        3 keeps the colour of colour photographs (fundus); 1 makes every image gray.

    Returns
    -------
    Pipeline
        ``Percentile()``, ``Resize(longest=size)``, ``PadSquare()``: ``(size, size)`` float32 images
        in ``[0, 1]`` (``(size, size, 3)`` for colour input with ``channels=3``).

    Raises
    ------
    ValueError
        ``size`` below 1, or ``channels`` neither 1 nor 3.

    Examples
    --------
    >>> [step.name for step in default_pipeline(224).steps]
    ['percentile', 'resize', 'pad_square']
    >>> default_pipeline(224, channels=3).decode.color
    'keep'
    """
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return Pipeline([Percentile(), Resize(longest=int(size)), PadSquare()],
                    decode=Decode(color="keep" if channels == 3 else "gray"))
