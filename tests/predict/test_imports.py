"""Serving stands below training: predicting and explaining import neither fastai nor radiology.train,
and ONNX prediction not even timm (seconds of a predict process's start).

Each check runs in a fresh interpreter (this test process has imported fastai long ago).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
#: Prints what the interpreter imported from fastai and radiology.train, as JSON on the last line.
REPORT = ("import json, sys; print(json.dumps({'rc': rc, "
          "'fastai': sorted(m for m in sys.modules if m.split('.')[0] == 'fastai'), "
          "'train': sorted(m for m in sys.modules if m.startswith('radiology.train')), "
          "'timm': 'timm' in sys.modules}))")


def _run(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT}"], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cli(args: list[str]) -> dict:
    return _run(f"from radiology.cli import main\nrc = main({[str(a) for a in args]!r})")


def test_the_serving_packages_import_no_fastai():
    report = _run("import radiology.predict, radiology.models, radiology.explain, radiology.cli\nrc = 0")
    assert report == {"rc": 0, "fastai": [], "train": [], "timm": False}


def test_radiology_predict_with_onnx_imports_no_fastai(bundle_folder, tmp_path):
    images = tmp_path / "images"
    write_phantom_dicom(images / "a.dcm", phantom_radiograph((48, 40), seed=1))
    out = tmp_path / "predictions.csv"
    report = _cli(["predict", bundle_folder, images, "--out", out, "--backend", "onnx", "-q"])
    assert report == {"rc": 0, "fastai": [], "train": [], "timm": False}
    assert out.read_text().startswith("image,SOPInstanceUID,prediction,prob_normal,prob_finding,error\na.dcm,1.2.")


def test_radiology_explain_imports_no_fastai(bundle_folder, tmp_path):
    pytest.importorskip("pytorch_grad_cam")
    images = tmp_path / "images"
    write_phantom_dicom(images / "a.dcm", phantom_radiograph((48, 40), seed=1))
    out = tmp_path / "explained"
    # At 32 px resnet10t's last stage is 1 x 1: an earlier layer has a map to draw.
    report = _cli(["explain", bundle_folder, images, "--out", out, "--target-layer", "layer2", "--device", "cpu",
                   "-q"])
    assert report == {"rc": 0, "fastai": [], "train": [], "timm": True}  # GradCAM needs the eager model
    assert (out / "explanations.csv").is_file() and list(out.glob("a__*gradcam.png"))
