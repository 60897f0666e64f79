"""The scripts in examples/: they import, their --help works, and --quick skips cleanly without ../shared/data.

Their quick runs (training included) are CI steps of their own (.ci/run), not tests.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# _common.py is the examples' shared code (``from _common import ...``), not an example.
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))
# Examples whose quick mode reads ../shared/data (the synthetic NIH example always runs).
SHARED_DATA_EXAMPLES = [
    "bodypart_unifesp.py", "chest_views.py", "knee_fewlabels.py", "odir_fundus.py", "pneumonia.py",
]


def load(name: str):
    """Import an example as a module (its ``main`` is not run).

    Run as ``python examples/NAME.py``, an example finds ``_common`` in its own folder; here that
    folder is put on ``sys.path`` the same way.
    """
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_{Path(name).stem}", EXAMPLES / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_listed():
    assert set(SHARED_DATA_EXAMPLES) | {"chest_findings_nih.py"} == set(SCRIPTS)
    assert (EXAMPLES / "_common.py").is_file() and "_common.py" not in SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name, capsys):
    module = load(name)
    assert module.__doc__ and "Usage" in module.__doc__
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--quick" in text and "--out" in text


@pytest.mark.parametrize("name", SHARED_DATA_EXAMPLES)
def test_quick_skips_without_shared_data(name, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RADIOLOGY_SHARED_DATA", str(tmp_path / "absent"))
    module = load(name)
    assert module.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    assert "skipped:" in capsys.readouterr().out
