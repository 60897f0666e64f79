"""Tiny untrained bundles: what the prediction code does with inputs is under test, not the model."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from radiology.models import RadiographClassifier, load_bundle, save_bundle  # noqa: E402
from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize  # noqa: E402

SIZE = 32
CLASSES = ["normal", "finding"]


@pytest.fixture(scope="session")
def bundle_folder(tmp_path_factory):
    """A two-class, one-channel resnet10t bundle (saving exports twice: seconds, so once per session)."""
    torch.manual_seed(0)
    model = RadiographClassifier("resnet10t", len(CLASSES), in_chans=1)
    pipeline = Pipeline([Percentile(), Resize(longest=SIZE), PadSquare()])
    return save_bundle(tmp_path_factory.mktemp("bundle") / "bundle", model, pipeline, {"classes": CLASSES}, size=SIZE)


@pytest.fixture(scope="session")
def bundle(bundle_folder):
    """The bundle on the ONNX backend."""
    return load_bundle(bundle_folder, backend="onnx")
