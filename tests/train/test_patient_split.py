"""The validation split keeps each patient's images together without being asked, and says when it cannot."""

import json
import logging

import pandas as pd
import pytest

from radiology.data import patient_column

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from radiology.train import TrainConfig, patient_column_of, train  # noqa: E402

TINY = dict(image_cols="file", label_cols="label", arch="resnet18", pretrained=None, size=32, epochs=1,
            head_epochs=0, batch_size=4, refit=False)  # the split is the subject; the refit is tested in test_refit


@pytest.mark.parametrize("columns, found", [
    (["Image Index", "Finding Labels", "Patient ID"], "Patient ID"),  # NIH
    (["patientid", "offset", "filename"], "patientid"),  # ieee8023
    (["file", "SOPInstanceUID", "label", "patient"], "patient"),  # FracAtlas fixture
    (["subject_id", "PatientID", "path"], "PatientID"),  # a patient beats a subject
    (["ID", "Patient Age", "Left-Fundus"], None),  # ODIR: "ID" is too vague to guess
    (["file", "subject", "label"], None),  # a subject may be a body part or a course: not guessed
    (["file", "label"], None),
])
def test_patient_columns_of_the_public_tables_are_found(columns, found):
    assert patient_column(columns) == found


def test_the_image_and_label_columns_are_never_the_patient_column():
    assert patient_column(["patient", "patient_id"], exclude=["patient"]) == "patient_id"
    assert patient_column(["patient"], exclude=["patient"]) is None


def _dataset(folder, patients_named):
    """16 phantoms of 8 patients (two images each) as PNGs, which carry no PatientID; the patient column named
    ``patients_named``."""
    import cv2

    from radiology.synthetic import phantom_radiograph

    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(16):
        name = f"images/{i:02d}.png"
        cv2.imwrite(str(folder / name), (phantom_radiograph((40, 36), seed=i) * 255).astype("uint8"))
        rows.append({"file": name, "label": ("normal", "nodule")[i % 2], patients_named: f"p{i // 2}"})
    csv = folder / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def test_empty_patient_cells_are_patients_of_their_own(tmp_path, caplog):
    from radiology.data import from_csv

    csv = _dataset(tmp_path / "data", "patient")
    table = pd.read_csv(csv, dtype=str)
    table.loc[[0, 1, 5], "patient"] = ""
    table.to_csv(csv, index=False)
    with caplog.at_level(logging.WARNING, logger="radiology.data"):
        items = from_csv(csv, csv.parent, "file", "label", group_col="patient", progress=False)
    assert len(set(items.groups)) == 7 + 3  # p1..p7 (p0 lost both rows, p2 keeps row 4) and three singletons
    assert len(set(items.groups[[0, 1, 5]])) == 3 and "3 row(s) with an empty 'patient'" in caplog.text


def test_a_named_group_col_wins_and_class_folders_have_none(tmp_path):
    csv = _dataset(tmp_path / "data", "patient_id")
    assert patient_column_of(TrainConfig(csv=csv, **TINY)) == "patient_id"
    assert patient_column_of(TrainConfig(csv=csv, group_col="label2", **TINY)) == "label2"
    assert patient_column_of(TrainConfig(folder=tmp_path, out=tmp_path / "o")) is None


def test_a_table_naming_patients_is_split_by_them_without_a_flag(tmp_path, caplog):
    csv = _dataset(tmp_path / "data", "Patient ID")
    with caplog.at_level(logging.INFO, logger="radiology.train"):
        result = train(TrainConfig(csv=csv, out=tmp_path / "run", **TINY), progress=False)
    info = json.loads((result.bundle / "train.json").read_text())
    assert info["data"]["grouped_by"] == "Patient ID"
    assert info["data"]["groups_on_both_sides"] == 0
    assert "column 'Patient ID'" in caplog.text
    assert "split is by image" not in caplog.text


def test_a_table_without_patients_says_the_split_is_by_image(tmp_path, caplog):
    csv = _dataset(tmp_path / "data", "case")  # nothing that names a patient
    with caplog.at_level(logging.WARNING, logger="radiology.train"):
        result = train(TrainConfig(csv=csv, out=tmp_path / "run", **TINY), progress=False)
    assert json.loads((result.bundle / "train.json").read_text())["data"]["grouped_by"] is None
    warned = [r.getMessage() for r in caplog.records if "split is by image" in r.getMessage()]
    assert len(warned) == 1 and "--group-col" in warned[0]


def test_a_class_without_validation_images_is_named_before_training(tmp_path, caplog):
    csv = _dataset(tmp_path / "data", "patient")
    table = pd.read_csv(csv, dtype=str)
    table.loc[table["patient"] == "p3", "label"] = "fracture"  # one patient: one side of the split only
    table.to_csv(csv, index=False)
    with caplog.at_level(logging.WARNING, logger="radiology.train"):
        train(TrainConfig(csv=csv, out=tmp_path / "run", **TINY), progress=False)
    warned = [r.getMessage() for r in caplog.records if "validation split, so" in r.getMessage()]
    assert warned == ["class(es) fracture: no image in the validation split, so their recall and AUC are not "
                      "measured"]
