"""Deprecated: the evaluation plots moved to :mod:`radiology.evaluate.plots`.

``from radiology.train.plots import plot_roc`` keeps working for one release, with a
:class:`DeprecationWarning`; import :func:`radiology.evaluate.plot_confusion_matrix` and
:func:`radiology.evaluate.plot_roc` instead.
"""

from __future__ import annotations

import warnings

from radiology.evaluate.plots import plot_confusion_matrix, plot_roc

__all__ = ["plot_confusion_matrix", "plot_roc"]

warnings.warn(
    "radiology.train.plots is deprecated and will be removed in the next release; "
    "import plot_confusion_matrix and plot_roc from radiology.evaluate",
    DeprecationWarning,
    stacklevel=2,
)
