"""Prediction tables a colleague can read: every input a row, UTF-8 ids, error cells without the caller's folders."""

from __future__ import annotations

import os

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
pytest.importorskip("onnxruntime")

from radiology.data import input_error  # noqa: E402
from radiology.io import write_image  # noqa: E402
from radiology.models import RadiographClassifier, load_bundle, save_bundle  # noqa: E402
from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402
from radiology.train.inference import (  # noqa: E402
    evaluate_predictions,
    predict_table,
    prediction_inputs,
)

SIZE = 32
PATIENT = "Doe_John"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny untrained two-class bundle (ONNX backend): what predict_table does with inputs is under test."""
    torch.manual_seed(0)
    model = RadiographClassifier("resnet10t", 2, in_chans=1)
    pipeline = Pipeline([Percentile(), Resize(longest=SIZE), PadSquare()])
    folder = save_bundle(tmp_path_factory.mktemp("bundle") / "bundle", model, pipeline,
                         {"classes": ["normal", "finding"]}, size=SIZE)
    return load_bundle(folder, backend="onnx")


def _patient_folder(tmp_path):
    """A folder named after a patient: one good image, and inputs that fail in three ways."""
    folder = tmp_path / PATIENT / "scans"
    write_phantom_dicom(folder / "good.dcm", phantom_radiograph((48, 40), seed=1))
    (folder / "broken.png").write_bytes(b"\x89PNG but not really")
    (folder / "empty.dcm").write_bytes(b"")
    os.symlink(folder / "deleted.dcm", folder / "gone.dcm")  # listed, but its file is gone
    return folder


def _leaks(cells, tmp_path) -> list[str]:
    return [c for c in cells if str(tmp_path) in c or PATIENT in c or "/tmp" in c or c.startswith("/")]


def test_error_cells_name_inputs_by_id_never_by_absolute_path(bundle, tmp_path):
    folder = _patient_folder(tmp_path)
    table = predict_table(bundle, prediction_inputs(folder), progress=False)
    errors = dict(zip(table["image"], table["error"]))
    assert errors["good.dcm"] == "" and set(errors) == {"good.dcm", "broken.png", "empty.dcm", "gone.dcm"}
    assert errors["broken.png"].startswith("broken.png: ")
    assert errors["empty.dcm"].startswith("empty.dcm: ")
    assert "gone.dcm" in errors["gone.dcm"]
    assert not _leaks(errors.values(), tmp_path), errors

    # A CSV input: the missing row's cell names the CSV value, not the root folder (the patient's).
    csv = tmp_path / "inputs.csv"
    pd.DataFrame({"image": ["good.dcm", "missing.dcm"]}).to_csv(csv, index=False)
    table = predict_table(bundle, prediction_inputs(csv, root=folder), progress=False)
    assert table["error"].tolist()[0] == "" and table["error"].tolist()[1].startswith("missing.dcm: ")
    assert not _leaks(table["error"], tmp_path), table["error"].tolist()


def test_an_undecodable_file_name_gets_its_row_in_a_utf8_table(bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_image(folder / os.fsdecode(b"bad\xff.png"), phantom_radiograph((40, 40), seed=2))
    write_phantom_dicom(folder / "good.dcm", phantom_radiograph((40, 40), seed=3))
    table = predict_table(bundle, prediction_inputs(folder), progress=False)
    assert table["image"].tolist() == ["bad\\xff.png", "good.dcm"]  # the bytes escaped, as convert's report shows
    assert (table["error"] == "").all() and table["prediction"].isin(["normal", "finding"]).all()
    text = table.to_csv(index=False).encode("utf-8")  # raised UnicodeEncodeError: no predictions file at all
    assert b"bad\\xff.png" in text


def test_input_error_replaces_every_form_of_the_path(tmp_path):
    (tmp_path / PATIENT).mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / PATIENT, target_is_directory=True)
    path = link / "a.dcm"
    error = OSError(f"cannot read {path.resolve()} (also known as {path}); see {tmp_path / 'other.dcm'}")
    assert input_error(error, [path], "a.dcm") == "cannot read a.dcm (also known as a.dcm); see <path>"
    # Two views: each path becomes its own view's id.
    views = input_error(ValueError(f"{tmp_path / 'l.dcm'} and {tmp_path / 'r.dcm'} differ"),
                        [tmp_path / "l.dcm", tmp_path / "r.dcm"], "l.dcm|r.dcm")
    assert views == "l.dcm and r.dcm differ"


def test_a_saved_bundle_scores_its_own_predictions(bundle, tmp_path):
    folder = tmp_path / "in"
    for seed in range(4):
        write_phantom_dicom(folder / f"{seed}.dcm", phantom_radiograph((40, 40), seed=seed))
    table = predict_table(bundle, prediction_inputs(folder), progress=False)
    labels = pd.DataFrame({"image": table["image"], "label": table["prediction"]})
    metrics = evaluate_predictions(table, labels, bundle=bundle.folder)
    assert metrics["multi_label"] is False and metrics["accuracy"] == 1.0 and metrics["n"] == 4


def test_csv_values_outside_the_root_get_an_error_row_and_are_not_read(bundle, tmp_path):
    # The rule training applies (radiology.data.escapes_root), as a row: every input keeps its row.
    root = tmp_path / "images"
    write_phantom_dicom(root / "inside.dcm", phantom_radiograph((48, 40), seed=1))
    outside = write_phantom_dicom(tmp_path / "outside.dcm", phantom_radiograph((48, 40), seed=2))
    csv = tmp_path / "test.csv"
    pd.DataFrame({"image": ["inside.dcm", "../outside.dcm", str(outside), "/etc/passwd"]}).to_csv(csv, index=False)
    inputs = prediction_inputs(csv, root=root, progress=False)
    assert inputs.errors[0] == "" and inputs.sources[0] is not None
    assert all("points outside the root folder" in e for e in inputs.errors[1:])
    assert inputs.sources[1:] == [None, None, None]
    table = predict_table(bundle, inputs, progress=False)
    assert list(table["error"] != "") == [False, True, True, True]
    allowed = prediction_inputs(csv, root=root, progress=False, allow_outside_root=True)
    assert allowed.sources[1] is not None and allowed.sources[2] is not None and allowed.errors[:3] == ["", "", ""]
