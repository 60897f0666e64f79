"""The exception hierarchy shared by the whole package.

Every error the library raises on purpose derives from :class:`RadiologyError`, so
batch tools can catch one type per input, record the one-line reason and go on.
"""

from __future__ import annotations

__all__ = ["RadiologyError"]


class RadiologyError(Exception):
    """Base class of every error raised on purpose by :mod:`radiology`.

    The message is always a single line naming the input (when there is one) and
    the reason, so that it can be written as-is into a report.
    """
