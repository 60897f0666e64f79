"""The exception hierarchy shared by the whole package.

Every error the library raises on purpose derives from :class:`RadiologyError`, so
batch tools can catch one type per input, record the one-line reason and go on.
"""

from __future__ import annotations

__all__ = ["RadiologyError", "one_line"]


class RadiologyError(Exception):
    """Base class of every error raised on purpose by :mod:`radiology`.

    The message is always a single line naming the input (when there is one) and
    the reason, so that it can be written as-is into a report.
    """


def one_line(error: BaseException) -> str:
    r"""An exception's message on one line (whitespace runs collapsed), or its type name when it has none.

    The form every report and usage error of the package shows.

    Parameters
    ----------
    error : BaseException
        The exception to describe.

    Examples
    --------
    >>> one_line(ValueError("bad value\n  in line 2"))
    'bad value in line 2'
    >>> one_line(KeyError())
    'KeyError'
    """
    return " ".join(str(error).split()) or type(error).__name__
