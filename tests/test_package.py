"""Package-level promises: light import, documented public API, docs coverage."""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PUBLIC_MODULES = [
    "radiology", "radiology.errors", "radiology.dicom", "radiology.intensity", "radiology.geometry",
    "radiology.io", "radiology.convert", "radiology.synthetic", "radiology.preview", "radiology.demo",
    "radiology.cli", "radiology.pipeline", "radiology.geometry.fov", "radiology.geometry.background",
    "radiology.geometry.knee", "radiology.geometry.affine", "radiology.intensity.contrast", "radiology.intensity.color",
]
#: Modules that import torch (the ``augment`` / ``models`` extras).
TORCH_MODULES = [
    "radiology.augment", "radiology.data", "radiology.data.labels", "radiology.data.cache", "radiology.data.dataset",
    "radiology.data.splits", "radiology.data.sampling", "radiology.data.loaders", "radiology.models",
    "radiology.models.classifier", "radiology.models.pretrained", "radiology.models.bundle", "radiology.train",
    "radiology.train.config", "radiology.train.learner", "radiology.train.inference", "radiology.train.metrics",
    "radiology.train.losses", "radiology.train.plots", "radiology.ssl", "radiology.ssl.contrastive",
    "radiology.ssl.metadata", "radiology.ssl.pretrain", "radiology.semisup", "radiology.semisup.augment",
    "radiology.semisup.callbacks", "radiology.semisup.data", "radiology.semisup.functional", "radiology.explain",
    "radiology.explain.cam", "radiology.explain.overlays",
]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_core_does_not_import_torch():
    code = "import sys, radiology, radiology.convert, radiology.cli, radiology.demo; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_object_has_a_docstring(name):
    module = importlib.import_module(name)
    assert inspect.getdoc(module)
    for attribute in getattr(module, "__all__", []):
        obj = getattr(module, attribute)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{name}.{attribute} has no docstring"


@pytest.mark.parametrize("name", TORCH_MODULES)
def test_torch_modules_are_documented_when_installed(name):
    pytest.importorskip("fastai")
    pytest.importorskip("timm")
    test_every_public_object_has_a_docstring(name)
    pages = " ".join(p.read_text() for p in (DOCS / "api").glob("*.rst"))
    documented = f"automodule:: {name}" in pages or f"automodule:: {name.rsplit('.', 1)[0]}" in pages
    assert documented, f"{name} has no API page"


def test_every_public_module_has_an_api_page():
    pages = " ".join(p.read_text() for p in (DOCS / "api").glob("*.rst"))
    for name in PUBLIC_MODULES[1:]:
        assert f"automodule:: {name}" in pages, name
