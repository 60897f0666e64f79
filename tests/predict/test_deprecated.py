"""Old homes of moved names keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

pytest.importorskip("onnxruntime")

import radiology.models  # noqa: E402
import radiology.predict  # noqa: E402


def test_radiology_train_inference_warns_and_re_exports_radiology_predict(monkeypatch):
    pytest.importorskip("fastai")
    importlib.import_module("radiology.train")  # the package imports its modules first
    monkeypatch.delitem(sys.modules, "radiology.train.inference", raising=False)
    with pytest.warns(DeprecationWarning, match=r"radiology\.train\.inference is deprecated: use radiology\.predict"):
        old = importlib.import_module("radiology.train.inference")
    # The names that moved (radiology.predict has grown since: new names have no old home).
    moved = ["Ensemble", "PredictionInputs", "prediction_inputs", "predict_table", "kaggle_submission"]
    assert set(moved) <= set(radiology.predict.__all__)
    for name in moved:
        assert getattr(old, name) is getattr(radiology.predict, name)
    assert callable(old.evaluate_predictions)


@pytest.mark.parametrize("name", ["save_bundle", "export_program", "export_onnx"])
def test_writing_names_moved_from_models_bundle_to_models_export(name):
    import radiology.models.bundle as bundle
    import radiology.models.export as export

    with pytest.warns(DeprecationWarning, match=rf"radiology\.models\.bundle\.{name} moved"):
        moved = getattr(bundle, name)
    assert moved is getattr(export, name) is getattr(radiology.models, name)
    with pytest.raises(AttributeError):
        bundle.no_such_name  # noqa: B018
