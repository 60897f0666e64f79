"""Scoring imports neither torch nor fastai: ``radiology.evaluate`` and ``radiology evaluate`` run without them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from hashlib import sha256

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

# Four softmax rows over two classes: a, b and d right, c wrong (accuracy 0.75, recall x 0.5, y 1.0).
PREDICTIONS = """image,prediction,prob_x,prob_y,error
a.png,x,0.9,0.1,
b.png,y,0.2,0.8,
c.png,y,0.4,0.6,
d.png,y,0.3,0.7,
"""
LABELS = """image,label
a.png,x
b.png,y
c.png,x
d.png,y
"""


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_importing_radiology_evaluate_imports_no_torch_and_no_fastai():
    printed = _run("""
        import sys
        import radiology.evaluate
        print(sorted(m for m in ("torch", "fastai", "timm") if m in sys.modules))
    """)
    assert printed.strip() == "[]"


def test_the_evaluate_command_imports_no_torch_and_no_fastai(tmp_path):
    (tmp_path / "predictions.csv").write_text(PREDICTIONS)
    (tmp_path / "labels.csv").write_text(LABELS)
    printed = _run(f"""
        import sys
        from radiology.cli import main
        code = main(["evaluate", "--predictions", {str(tmp_path / "predictions.csv")!r},
                     "--labels", {str(tmp_path / "labels.csv")!r}, "--out", {str(tmp_path / "eval")!r}])
        assert code == 0, code
        print(sorted(m for m in ("torch", "fastai") if m in sys.modules))
    """)
    assert printed.splitlines()[-1] == "[]"
    assert printed.splitlines()[0].startswith("4 scored (0 without prediction): accuracy 0.750")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert (metrics["n"], metrics["accuracy"], metrics["multi_label"]) == (4, 0.75, False)
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]] and metrics["recall"] == {"x": 0.5, "y": 1.0}
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == [
        "calibration.png", "confusion_matrix.png", "metrics.json", "report.txt", "roc.png"]
    assert "  accuracy 0.750 [" in printed and len(metrics["ci95"]["accuracy"]) == 2


def test_a_changed_bundle_is_refused_in_one_line_without_torch(tmp_path):
    # torch made unimportable: the bundle check still runs, and refuses with the message verify_bundle gives.
    (tmp_path / "predictions.csv").write_text(PREDICTIONS)
    (tmp_path / "labels.csv").write_text(LABELS)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    labels = json.dumps({"classes": ["x", "y"], "multi_label": False}).encode()
    (bundle / "labels.json").write_bytes(labels)
    (bundle / "bundle.json").write_text(json.dumps({"format": "radiology.bundle", "version": 1,
                                                    "files": {"labels.json": sha256(labels).hexdigest()}}))
    command = ["evaluate", "--predictions", str(tmp_path / "predictions.csv"), "--labels", str(tmp_path / "labels.csv"),
               "--bundle", str(bundle)]
    code = f"""
        import sys

        class NoTorch:  # import torch raises ImportError, as where it is not installed
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ModuleNotFoundError(f"No module named {{name!r}}")

        sys.meta_path.insert(0, NoTorch())
        from radiology.cli import main
        print(main({[*command, "--out", str(tmp_path / "first")]!r}))
        with open({str(bundle / "labels.json")!r}, "w") as stream:
            stream.write('{{"classes": ["x", "y"], "multi_label": true}}')
        print(main({[*command, "--out", str(tmp_path / "second")]!r}))
        print("torch" in sys.modules)
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True)
    assert result.stdout.splitlines()[0].startswith("4 scored"), result.stderr
    assert result.stdout.splitlines()[-3:] == ["0", "2", "False"], result.stderr
    assert result.stderr.strip().splitlines() == [
        f"radiology evaluate: error: {bundle / 'labels.json'}: sha256 does not match bundle.json "
        f"(damaged or changed after saving)"]
    assert not (tmp_path / "second").exists()
