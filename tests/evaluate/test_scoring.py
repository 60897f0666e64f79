"""Scoring with a bundle: its manifest is verified without torch, by the rule radiology.models.verify_bundle uses.

Both go through radiology.manifest (torch-free); the tests below hold them to the same verdicts,
messages and error class, on hand-made bundles and on a saved one.
"""

from __future__ import annotations

import json
from hashlib import sha256

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from radiology.errors import RadiologyError  # noqa: E402
from radiology.evaluate import evaluate_predictions  # noqa: E402
from radiology.models import BundleError, verify_bundle  # noqa: E402

CLASSES = ["normal", "finding"]

# Softmax rows of a two-class model: a, b, d right, c wrong (accuracy 0.75).
PREDICTIONS = pd.DataFrame({
    "image": ["a.dcm", "b.dcm", "c.dcm", "d.dcm"],
    "prediction": ["normal", "finding", "finding", "finding"],
    "prob_normal": [0.9, 0.2, 0.4, 0.3],
    "prob_finding": [0.1, 0.8, 0.6, 0.7],
    "error": ["", "", "", ""],
})
LABELS = pd.DataFrame({"image": ["a.dcm", "b.dcm", "c.dcm", "d.dcm"],
                       "label": ["normal", "finding", "normal", "finding"]})


def _hand_made(folder, files: dict[str, bytes] | None = None):
    """A bundle folder with labels.json and train.json listed, with their sha256, in bundle.json."""
    folder.mkdir()
    files = files or {"labels.json": json.dumps({"classes": CLASSES, "multi_label": False}).encode(),
                      "train.json": b"{}"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    manifest = {"format": "radiology.bundle", "version": 1,
                "files": {name: sha256(data).hexdigest() for name, data in files.items()}}
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


def _rewrite_manifest(folder, **changes):
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest.update(changes)
    (folder / "bundle.json").write_text(json.dumps(manifest))


DAMAGE = {
    "no manifest": lambda folder: (folder / "bundle.json").unlink(),
    "manifest not JSON": lambda folder: (folder / "bundle.json").write_text("{"),
    "manifest too large": lambda folder: (folder / "bundle.json").write_text(" " * (1 << 20) + "{}"),
    "another format": lambda folder: _rewrite_manifest(folder, format="zip"),
    "another version": lambda folder: _rewrite_manifest(folder, version=2),
    "a file outside the bundle": lambda folder: _rewrite_manifest(folder, files={"../labels.json": "0" * 64}),
    "a listed file missing": lambda folder: (folder / "train.json").unlink(),
    "a file changed": lambda folder: (folder / "train.json").write_text('{"metrics": "better"}'),
    "labels changed": lambda folder: (folder / "labels.json").write_text(
        json.dumps({"classes": CLASSES, "multi_label": True})),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_bundle_checks_give_verify_bundles_verdict(tmp_path, damage):
    folder = _hand_made(tmp_path / "bundle")
    assert evaluate_predictions(PREDICTIONS, LABELS, bundle=folder)["accuracy"] == 0.75
    DAMAGE[damage](folder)
    with pytest.raises(BundleError) as expected:
        verify_bundle(folder)
    with pytest.raises(BundleError) as caught:
        evaluate_predictions(PREDICTIONS, LABELS, bundle=folder)
    assert str(caught.value) == str(expected.value)
    assert isinstance(caught.value, RadiologyError) and len(str(caught.value).splitlines()) == 1


def test_unlisted_labels_are_refused(tmp_path):
    # verify_bundle only checks what the manifest lists; scoring also needs labels.json to be vouched for.
    folder = _hand_made(tmp_path / "bundle", {"train.json": b"{}"})
    (folder / "labels.json").write_text(json.dumps({"classes": CLASSES, "multi_label": False}))
    with pytest.raises(RadiologyError, match=r"bundle.labels.json: not listed in bundle.json$"):
        evaluate_predictions(PREDICTIONS, LABELS, bundle=folder)


def test_labels_that_are_not_json_are_refused_in_one_line(tmp_path):
    folder = _hand_made(tmp_path / "bundle", {"labels.json": b"\xff\xfe not json"})
    with pytest.raises(ValueError, match=r"labels.json: not valid JSON \(") as caught:
        evaluate_predictions(PREDICTIONS, LABELS, bundle=folder)
    assert not isinstance(caught.value, RadiologyError)  # the bundle is as saved; its labels are unusable


# ----------------------------------------------------------------------------- a saved bundle


@pytest.fixture(scope="module")
def saved_bundle(tmp_path_factory):
    """A tiny untrained two-class bundle (every file: programs, weights, pipeline, labels, manifest)."""
    pytest.importorskip("timm")
    pytest.importorskip("onnxruntime")
    from radiology.models import RadiographClassifier, save_bundle
    from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize

    torch.manual_seed(0)
    model = RadiographClassifier("resnet10t", 2, in_chans=1)
    pipeline = Pipeline([Percentile(), Resize(longest=32), PadSquare()])
    return save_bundle(tmp_path_factory.mktemp("bundle") / "bundle", model, pipeline, {"classes": CLASSES}, size=32)


def test_a_saved_bundle_vouches_for_hand_written_predictions(saved_bundle, tmp_path):
    metrics = evaluate_predictions(PREDICTIONS, LABELS, bundle=saved_bundle, out=tmp_path / "eval")
    assert (metrics["multi_label"], metrics["n"], metrics["accuracy"]) == (False, 4, 0.75)
    assert metrics["confusion_matrix"] == [[1, 1], [0, 2]] and metrics["recall"] == {"normal": 0.5, "finding": 1.0}
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == 0.75


def test_a_saved_bundle_with_a_changed_model_file_is_refused(saved_bundle, tmp_path):
    import shutil

    folder = shutil.copytree(saved_bundle, tmp_path / "copy")
    with open(folder / "model.onnx", "ab") as model:
        model.write(b"\0")
    with pytest.raises(RadiologyError, match=r"model.onnx: sha256 does not match bundle.json") as caught:
        evaluate_predictions(PREDICTIONS, LABELS, bundle=folder)
    with pytest.raises(BundleError) as expected:
        verify_bundle(folder)
    assert str(caught.value) == str(expected.value)


def test_a_saved_bundle_scores_its_own_predictions(saved_bundle, tmp_path):
    # Copied from tests/train/test_inference.py: the round trip predict -> evaluate.
    from radiology.models import load_bundle
    from radiology.predict import predict_table, prediction_inputs
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    folder = tmp_path / "in"
    for seed in range(4):
        write_phantom_dicom(folder / f"{seed}.dcm", phantom_radiograph((40, 40), seed=seed))
    bundle = load_bundle(saved_bundle, backend="onnx")
    table = predict_table(bundle, prediction_inputs(folder), progress=False)
    labels = pd.DataFrame({"image": table["image"], "label": table["prediction"]})
    metrics = evaluate_predictions(table, labels, bundle=bundle.folder)
    assert metrics["multi_label"] is False and metrics["accuracy"] == 1.0 and metrics["n"] == 4
