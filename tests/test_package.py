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
    "radiology.geometry.knee", "radiology.intensity.contrast",
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


def test_augment_is_documented_when_torch_is_installed():
    pytest.importorskip("kornia")
    test_every_public_object_has_a_docstring("radiology.augment")
    assert "automodule:: radiology.augment" in (DOCS / "api" / "augment.rst").read_text()


def test_every_public_module_has_an_api_page():
    pages = " ".join(p.read_text() for p in (DOCS / "api").glob("*.rst"))
    for name in PUBLIC_MODULES[1:]:
        assert f"automodule:: {name}" in pages, name
