"""Package-level promises: light import, documented public API, docs coverage."""

import importlib
import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "radiology"
#: Packages importable without torch (the base install); the others need the ``models`` extras.
LIGHT = {"", "errors", "files", "naming", "io", "manifest", "intensity", "dicom", "geometry", "synthetic", "pipeline",
         "convert", "preview", "evaluate", "demo", "cli"}


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__" or any(part.startswith("_") for part in parts[1:]):
            continue
        names.append(".".join(parts))
    return names


PUBLIC_MODULES = [name for name in _modules() if (name.split(".") + [""])[1] in LIGHT]
#: Modules that import torch (the ``augment`` / ``models`` extras).
TORCH_MODULES = [name for name in _modules() if name not in PUBLIC_MODULES]
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_core_does_not_import_torch():
    scoring = importlib.util.find_spec("sklearn") is not None  # radiology.evaluate needs the `evaluate` extra
    light = ", ".join(name for name in PUBLIC_MODULES if scoring or not name.startswith("radiology.evaluate"))
    code = f"import sys, {light}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_serving_does_not_import_fastai():
    """Bundles, prediction, scoring and explanations need torch (or onnxruntime) but never fastai."""
    pytest.importorskip("fastai")
    code = ("import sys, radiology.models, radiology.predict, radiology.evaluate, radiology.explain, radiology.data; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fastai', 'lightly')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_public_object_has_a_docstring(name):
    if name.startswith("radiology.evaluate"):
        pytest.importorskip("sklearn")  # the `evaluate` extra
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
