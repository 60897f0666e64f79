"""Prediction tables a colleague can read: every input a row, UTF-8 ids, error cells without the caller's folders."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime")

from radiology.data import input_error  # noqa: E402
from radiology.io import write_image  # noqa: E402
from radiology.models import decide  # noqa: E402
from radiology.predict import Ensemble, PredictionInputs, kaggle_submission, predict_table, prediction_inputs  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402
from tests.predict.conftest import CLASSES  # noqa: E402

PATIENT = "Doe_John"


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


def test_a_folder_predicts_the_files_training_would_read(tmp_path):
    """The one rule of radiology.files: tables, notes and archives beside the images are not inputs."""
    from radiology.files import find_inputs

    for name in ("a.png", "1.2.840.113619.321", "IM0001", "report.csv", "README.txt", "notes.md", "scans.zip",
                 "meta.yaml", "log.log"):
        (tmp_path / name).write_bytes(b"")
    inputs = prediction_inputs(tmp_path)
    assert inputs.ids == ["1.2.840.113619.321", "IM0001", "a.png"]
    assert [s[0] for s in inputs.sources] == find_inputs(tmp_path)
    empty = tmp_path / "tables"
    empty.mkdir()
    (empty / "labels.csv").write_bytes(b"")
    with pytest.raises(ValueError, match="no files to predict"):
        prediction_inputs(empty)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        prediction_inputs(tmp_path / "nowhere")


def test_the_table_decides_as_the_bundle_does(bundle, tmp_path):
    folder = tmp_path / "in"
    for seed in range(3):
        write_phantom_dicom(folder / f"{seed}.dcm", phantom_radiograph((40, 40), seed=seed))
    inputs = prediction_inputs(folder)
    table = predict_table(bundle, inputs, progress=False)
    probs = table[[f"prob_{c}" for c in CLASSES]].to_numpy()
    np.testing.assert_allclose(probs, bundle.predict([s[0] for s in inputs.sources]), atol=1e-6)
    assert table["prediction"].tolist() == decide(probs, CLASSES, multi_label=False)
    assert table["prediction"].tolist() == [CLASSES[i] for i in bundle.decide(probs)]
    assert table.columns.tolist() == ["image", "SOPInstanceUID", "prediction", "prob_normal", "prob_finding", "error"]


def test_an_ensemble_of_one_bundle_twice_predicts_as_the_bundle(bundle, tmp_path):
    folder = tmp_path / "in"
    for seed in range(2):
        write_phantom_dicom(folder / f"{seed}.dcm", phantom_radiograph((40, 40), seed=seed))
    inputs = prediction_inputs(folder)
    single = predict_table(bundle, inputs, progress=False)
    pair = predict_table(Ensemble([bundle, bundle]), inputs, progress=False)
    pd.testing.assert_frame_equal(single, pair, atol=1e-6)
    flipped = Ensemble([bundle], tta=True)
    batch = np.stack([bundle.load_sample(s) for s in inputs.sources])
    expected = (bundle.predict_batch(batch) + bundle.predict_batch(batch[..., ::-1].copy())) / 2
    np.testing.assert_allclose(flipped.predict_arrays(0, batch), expected, atol=1e-6)
    assert flipped.decide(expected) == decide(expected, CLASSES, multi_label=False)
    with pytest.raises(ValueError, match="at least one bundle"):
        Ensemble([])


def test_a_multi_label_ensemble_decides_with_the_mean_thresholds():
    class Member:
        classes, multi_label, views = ["A", "B"], True, ("image",)

        def __init__(self, thresholds):
            self.thresholds = thresholds

    ensemble = Ensemble([Member([0.2, 0.6]), Member([0.4, 0.8])])
    np.testing.assert_allclose(ensemble.thresholds, [0.3, 0.7])
    assert ensemble.decide(np.array([[0.35, 0.75], [0.25, 0.65], [0.9, 0.1]])) == ["A|B", "", "A"]
    assert Ensemble([Member(None)]).decide(np.array([[0.5, 0.51]])) == ["B"]  # 0.5 where none was stored


def test_kaggle_submission_reads_uids_from_headers(bundle, tmp_path):
    folder = tmp_path / "in"
    write_phantom_dicom(folder / "scan.dcm", phantom_radiograph((40, 40), seed=4))
    inputs = prediction_inputs(folder)
    table = predict_table(bundle, inputs, progress=False)
    from radiology.dicom import read_dataset

    uid = str(read_dataset(folder / "scan.dcm", stop_before_pixels=True).SOPInstanceUID)
    submission = kaggle_submission(table, inputs)
    assert submission.columns.tolist() == ["SOPInstanceUID", "Target"]
    assert submission["SOPInstanceUID"].tolist() == [uid]
    assert submission["Target"].tolist() == table["prediction"].tolist()
    assert table["SOPInstanceUID"].tolist() == [uid]  # read while decoding: no inputs needed
    assert kaggle_submission(table)["SOPInstanceUID"].tolist() == [uid]
    earlier = table.drop(columns=["SOPInstanceUID"])  # a table written before the column existed
    assert kaggle_submission(earlier, inputs)["SOPInstanceUID"].tolist() == [uid]
    assert kaggle_submission(earlier)["SOPInstanceUID"].tolist() == ["scan"]  # <UID>.dcm without the inputs
    with pytest.raises(ValueError, match="2 inputs for a table of 1 rows"):
        kaggle_submission(table, PredictionInputs(["a", "b"], [None, None], ["", ""]))
