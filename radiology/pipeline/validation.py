"""Parameter checks of pipeline steps and :class:`PipelineError` (no torch).

Steps and :class:`~radiology.pipeline.Decode` validate their parameters when built, so a
bad pipeline file fails at load time. Each check raises ``ValueError`` with one line
naming the step and the parameter (``clahe: clip_limit must be > 0, got 0``);
:meth:`Pipeline.from_dict <radiology.pipeline.Pipeline.from_dict>` adds the step's index
and :meth:`Pipeline.load <radiology.pipeline.Pipeline.load>` the file name.
"""

from __future__ import annotations

import math

import numpy as np

from radiology.errors import RadiologyError

__all__ = ["PipelineError"]


class PipelineError(RadiologyError, ValueError):
    """A pipeline file is invalid, or a file could not be read or processed by a pipeline.

    The message is one line naming the file (and the step and parameter when one is at fault).
    """


def _fail(step: str, message: str) -> None:
    """Raise the one-line ``ValueError`` ``"<step>: <message>"``."""
    raise ValueError(f"{step}: {message}")


def _real(step: str, param: str, value, *, optional: bool = False, gt: float | None = None,
          ge: float | None = None, le: float | None = None, lt: float | None = None) -> float | None:
    """``value`` as a finite float within the given bounds (``None`` passes when ``optional``)."""
    if value is None:
        if not optional:
            _fail(step, f"{param} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(step, f"{param} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        _fail(step, f"{param} must be finite, got {value}")
    for bound, ok, text in ((gt, lambda b: value > b, ">"), (ge, lambda b: value >= b, ">="),
                            (le, lambda b: value <= b, "<="), (lt, lambda b: value < b, "<")):
        if bound is not None and not ok(bound):
            _fail(step, f"{param} must be {text} {bound:g}, got {value:g}")
    return value


def _integer(step: str, param: str, value, *, optional: bool = False, ge: int | None = None) -> int | None:
    """``value`` as an int (a whole float is accepted, a bool is not), at least ``ge`` when given."""
    if value is None:
        if not optional:
            _fail(step, f"{param} is required")
        return None
    whole = isinstance(value, (float, np.floating)) and float(value).is_integer()
    if isinstance(value, bool) or not (isinstance(value, (int, np.integer)) or whole):
        _fail(step, f"{param} must be an integer, got {value!r}")
    value = int(value)
    if ge is not None and value < ge:
        _fail(step, f"{param} must be >= {ge}, got {value}")
    return value


def _flag(step: str, param: str, value) -> bool:
    """``value`` as a bool; only true or false are accepted (not ``"yes"`` or 1)."""
    if not isinstance(value, (bool, np.bool_)):
        _fail(step, f"{param} must be true or false, got {value!r}")
    return bool(value)


def _percentiles(step: str, low, high) -> tuple[float, float]:
    """A ``(low, high)`` percentile pair with ``0 <= low < high <= 100``."""
    low = _real(step, "low", low, ge=0, lt=100)
    high = _real(step, "high", high, gt=0, le=100)
    if not low < high:
        _fail(step, f"low must be < high, got low={low:g}, high={high:g}")
    return low, high


def _threshold(step: str, value) -> float | None:
    """An optional crop threshold in ``[0, 1)`` (``None``: chosen per image)."""
    return _real(step, "threshold", value, optional=True, ge=0, lt=1)

