"""SOP Instance UIDs in prediction tables: read while decoding, beside ``image``, matched by evaluate."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.data import get_testdata_file

pytest.importorskip("onnxruntime")

from radiology.cli import main  # noqa: E402
from radiology.io import write_image  # noqa: E402
from radiology.predict import (  # noqa: E402
    PredictionInputs,
    header_uid,
    kaggle_submission,
    merge_tables,
    predict_table,
    prediction_inputs,
)
from radiology.predict import table as table_module  # noqa: E402
from radiology.synthetic import phantom_radiograph, write_phantom_dicom  # noqa: E402

UIDS = {"a.dcm": "1.2.826.0.1.3680043.8.498.101", "b.dcm": "1.2.826.0.1.3680043.8.498.102"}
TRUNCATED_UID = "1.2.826.0.1.3680043.8.498.103"


def _truncated(path, uid):
    """A DICOM whose header reads but whose pixel data is cut short: decoding fails, the UID does not."""
    write_phantom_dicom(path, phantom_radiograph((64, 64), seed=9), sop_instance_uid=uid)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 3000])
    return path


@pytest.fixture
def folder(tmp_path):
    """Two DICOMs of known UIDs, a PNG, a truncated DICOM, an empty file and a DICOM whose UID is a name."""
    folder = tmp_path / "in"
    for seed, (name, uid) in enumerate(UIDS.items()):
        write_phantom_dicom(folder / name, phantom_radiograph((48, 40), seed=seed), sop_instance_uid=uid)
    write_image(folder / "c.png", phantom_radiograph((40, 40), seed=3))
    _truncated(folder / "d.dcm", TRUNCATED_UID)
    (folder / "e.dcm").write_bytes(b"")
    hostile = write_phantom_dicom(folder / "f.dcm", phantom_radiograph((40, 40), seed=5))
    ds = pydicom.dcmread(hostile)
    ds.SOPInstanceUID = "Doe^John"  # not a UID: a patient's name where the UID belongs
    with pydicom.config.disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(hostile)
    return folder


def test_each_dicom_gets_its_uid_beside_image_and_other_inputs_an_empty_cell(bundle, folder, tmp_path):
    table = predict_table(bundle, prediction_inputs(folder), progress=False, batch_size=2)
    assert table.columns.tolist()[:3] == ["image", "SOPInstanceUID", "prediction"]
    uids = dict(zip(table["image"], table["SOPInstanceUID"]))
    errors = dict(zip(table["image"], table["error"]))
    assert uids == {"a.dcm": UIDS["a.dcm"], "b.dcm": UIDS["b.dcm"], "c.png": "", "d.dcm": TRUNCATED_UID,
                    "e.dcm": "", "f.dcm": ""}
    # The unreadable files keep their rows, with their errors; the truncated one keeps its UID too.
    assert errors["d.dcm"] and errors["e.dcm"] and not errors["a.dcm"] and not errors["c.png"]
    assert not any("Doe" in str(cell) for cell in table.to_numpy().ravel())  # the name never reaches the table
    # A missing input of a CSV: its row, without a UID.
    csv = tmp_path / "inputs.csv"
    pd.DataFrame({"image": ["a.dcm", "missing.dcm"]}).to_csv(csv, index=False)
    from_csv = predict_table(bundle, prediction_inputs(csv, root=folder, progress=False), progress=False)
    assert from_csv["SOPInstanceUID"].tolist() == [UIDS["a.dcm"], ""]


def test_the_uid_comes_from_the_decoded_dataset_and_the_header_is_read_only_after_a_failure(
        bundle, folder, monkeypatch):
    read = []
    real = table_module.header_uid
    monkeypatch.setattr(table_module, "header_uid", lambda path: read.append(path.name) or real(path))
    table = predict_table(bundle, prediction_inputs(folder), progress=False)
    assert sorted(read) == ["d.dcm", "e.dcm"]  # only the files whose decoding failed
    assert table.loc[table["image"] == "d.dcm", "SOPInstanceUID"].tolist() == [TRUNCATED_UID]
    # The samples are the bundle's own: decoding once changes no probability.
    good = table["error"] == ""
    inputs = prediction_inputs(folder)
    sources = [s[0] for s, ok in zip(inputs.sources, good) if ok]
    np.testing.assert_allclose(table.loc[good, ["prob_normal", "prob_finding"]].to_numpy(),
                               bundle.predict(sources), atol=1e-6)


def test_header_uid_reads_known_uids_and_never_raises(tmp_path):
    ct = get_testdata_file("CT_small.dcm")
    assert header_uid(ct) == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    bare = pydicom.dcmread(ct)  # the same without preamble and file meta: read by force
    del bare.file_meta
    bare.preamble = None
    pydicom.dcmwrite(tmp_path / "bare", bare, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert header_uid(tmp_path / "bare") == "1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322"
    (tmp_path / "junk.dcm").write_bytes(os.urandom(2048))
    (tmp_path / "empty").write_bytes(b"")
    write_image(tmp_path / "x.png", phantom_radiograph((32, 32)))
    for name in ("junk.dcm", "empty", "x.png", "missing.dcm"):
        assert header_uid(tmp_path / name) == "", name


def test_shards_and_their_merge_carry_the_local_uids(bundle, folder):
    inputs = prediction_inputs(folder)
    local = predict_table(bundle, inputs, progress=False)
    shards = [predict_table(bundle, inputs, progress=False, shard=(i, 3)) for i in range(3)]
    assert all(s.columns.tolist()[:3] == ["image", "SOPInstanceUID", "prediction"] for s in shards)
    merged = merge_tables(shards)
    assert merged["SOPInstanceUID"].tolist() == local["SOPInstanceUID"].tolist()
    assert merged.columns.tolist() == local.columns.tolist()


def test_image_files_alone_still_get_the_column_empty(bundle, tmp_path):
    write_image(tmp_path / "x.png", phantom_radiograph((40, 40), seed=1))
    table = predict_table(bundle, prediction_inputs(tmp_path), progress=False)
    assert table.columns.tolist()[:2] == ["image", "SOPInstanceUID"] and table["SOPInstanceUID"].tolist() == [""]


def test_kaggle_submission_takes_the_tables_uids(bundle, folder):
    inputs = prediction_inputs(folder)
    table = predict_table(bundle, inputs, progress=False)
    submission = kaggle_submission(table)
    by_image = dict(zip(table["image"], submission["SOPInstanceUID"]))
    assert by_image["a.dcm"] == UIDS["a.dcm"] and by_image["d.dcm"] == TRUNCATED_UID
    assert by_image["c.png"] == "c.png" and by_image["e.dcm"] == "e"  # no UID: the name, as before
    assert submission.loc[table["error"] != "", "Target"].eq("").all()  # failed rows: an empty target
    with pytest.raises(ValueError, match="no 'prediction' column"):
        kaggle_submission(table.drop(columns=["prediction"]))
    with pytest.raises(ValueError, match="2 inputs for a table of 6 rows"):
        kaggle_submission(table, PredictionInputs(["a", "b"], [None, None], ["", ""]))


def _uid_folder(tmp_path):
    folder = tmp_path / "test"
    for seed, uid in enumerate(["1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"]):
        write_phantom_dicom(folder / f"study{seed}" / "series" / f"img{seed}", phantom_radiograph((48, 40), seed=seed),
                            sop_instance_uid=uid)
    return folder


def test_cli_predict_then_evaluate_on_uids_and_the_kaggle_file(bundle_folder, tmp_path, capsys):
    images = _uid_folder(tmp_path)
    table_out, kaggle_out = tmp_path / "predictions.csv", tmp_path / "submission.csv"
    common = ["--backend", "onnx", "-q"]
    assert main(["predict", str(bundle_folder), str(images), "--out", str(table_out), *common]) == 0
    assert main(["predict", str(bundle_folder), str(images), "--out", str(kaggle_out), "--format", "kaggle",
                 *common]) == 0
    table = pd.read_csv(table_out, dtype=str, keep_default_na=False)
    submission = pd.read_csv(kaggle_out, dtype=str, keep_default_na=False)
    assert table["SOPInstanceUID"].tolist() == submission["SOPInstanceUID"].tolist() == [
        "1.2.3.1", "1.2.3.2", "1.2.3.3", "1.2.3.4"]
    assert submission["Target"].tolist() == table["prediction"].tolist()
    # Labels keyed by UID only (as UNIFESP's train.csv), the truth being the first two predictions flipped.
    flip = {"normal": "finding", "finding": "normal"}
    truth = [flip[p] if i < 2 else p for i, p in enumerate(table["prediction"])]
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"SOPInstanceUID": table["SOPInstanceUID"], "label": truth, "Target": truth}).to_csv(labels,
                                                                                                      index=False)
    capsys.readouterr()
    assert main(["evaluate", "--predictions", str(table_out), "--labels", str(labels), "--out",
                 str(tmp_path / "e1"), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    assert "matched on SOPInstanceUID" in printed
    first = json.loads((tmp_path / "e1" / "metrics.json").read_text())
    assert (first["n"], first["accuracy"], first["matched_on"]) == (4, 0.5, "SOPInstanceUID")
    assert main(["evaluate", "--predictions", str(kaggle_out), "--labels", str(labels), "--out",
                 str(tmp_path / "e2"), "--bootstrap", "0"]) == 0
    printed = capsys.readouterr().out
    assert "no probabilities" in printed and "AUC" in printed
    second = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert (second["n"], second["accuracy"], second["probabilities"]) == (4, 0.5, False)
    assert second["macro_f1"] == first["macro_f1"] and "macro_auc" not in second


def test_kaggle_submission_reads_the_header_of_a_row_without_a_uid_cell(tmp_path):
    from radiology.predict import kaggle_submission, prediction_inputs
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    write_phantom_dicom(tmp_path / "x.dcm", phantom_radiograph((32, 32)), sop_instance_uid="1.2.3.4")
    table = pd.DataFrame({"image": ["x.dcm"], "SOPInstanceUID": [""], "prediction": ["3"]})
    assert kaggle_submission(table, prediction_inputs(tmp_path / "x.dcm")).values.tolist() == [["1.2.3.4", "3"]]
    assert kaggle_submission(table).values.tolist() == [["x", "3"]]  # without inputs: the file name
