"""radiology.train.plots: the old import path of the evaluation plots, deprecated for one release."""

from __future__ import annotations

import importlib
import sys

import pytest

pytest.importorskip("fastai")


def test_old_import_path_warns_and_gives_the_same_functions(monkeypatch):
    import radiology.evaluate
    import radiology.train  # noqa: F401 - the package first: only the plots module's own warning is under test

    monkeypatch.delitem(sys.modules, "radiology.train.plots", raising=False)
    with pytest.warns(DeprecationWarning, match=r"radiology\.train\.plots is deprecated.*radiology\.evaluate"):
        plots = importlib.import_module("radiology.train.plots")
    assert plots.plot_roc is radiology.evaluate.plot_roc
    assert plots.plot_confusion_matrix is radiology.evaluate.plot_confusion_matrix
