"""LabeledImages from folders, CSVs (paths or DICOM UIDs), multi-label and multi-view tables."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from radiology.data import (
    LabeledImages,
    dicom_patient_ids,
    from_csv,
    from_folder,
    from_paths,
    from_unlabeled,
    index_dicom_uids,
)
from radiology.io import write_image
from tests.conftest import shared_path


def test_from_csv_resolves_sop_instance_uids_in_the_kaggle_layout(kaggle_tree):
    root, rows = kaggle_tree
    items = from_csv(root / "train.csv", root, "SOPInstanceUID", "Target", progress=False)
    assert len(items) == 6
    assert items.classes == ["3", "11"]  # integer codes sort as numbers
    assert items.ids == [uid for uid, _ in rows]
    assert [p[0].name for p in items.paths] == [f"{uid}.dcm" for uid, _ in rows]
    assert items.targets.tolist() == [items.classes.index(t) for _, t in rows]
    assert items.views == ("image",) and not items.multi_label
    assert items.class_counts().tolist() == [4, 2]


def test_index_and_patient_ids_read_headers(kaggle_tree):
    root, rows = kaggle_tree
    index = index_dicom_uids(root, progress=False)
    assert sorted(index) == sorted(uid for uid, _ in rows)  # notes.txt and train.csv skipped
    ids = dicom_patient_ids([index[uid] for uid, _ in rows])
    assert ids.tolist() == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert dicom_patient_ids([root / "train.csv"]).tolist() == ["<unknown:0>"]


def test_from_csv_relative_paths_with_or_without_dcm_suffix(labeled_phantoms):
    table = labeled_phantoms / "labels.csv"
    text = table.read_text().replace("a/0.dcm", "a/0")  # value without its .dcm suffix
    (labeled_phantoms / "short.csv").write_text(text)
    items = from_csv(labeled_phantoms / "short.csv", None, "file", "label", group_col="patient")
    assert items.paths[0][0] == labeled_phantoms / "a" / "0.dcm"
    assert items.ids[0] == "a/0"
    assert items.classes == ["a", "b", "c"]
    assert items.class_counts().tolist() == [6, 4, 2]
    assert items.groups.tolist()[:4] == ["p0", "p0", "p1", "p1"]


def test_missing_columns_files_and_labels_are_named(kaggle_tree, tmp_path):
    root, _ = kaggle_tree
    with pytest.raises(ValueError, match=r"missing column\(s\) \['Label'\]"):
        from_csv(root / "train.csv", root, "SOPInstanceUID", "Label")
    bad = tmp_path / "bad.csv"
    bad.write_text("SOPInstanceUID,Target\n1.2.826.0.1.9999.1,3\n9.9.9,3\n")
    with pytest.raises(ValueError, match=r"1 image\(s\) found neither .*9\.9\.9"):
        from_csv(bad, root, "SOPInstanceUID", "Target", progress=False)
    with pytest.raises(ValueError, match=r"\['11'\] .* not among classes"):
        from_csv(root / "train.csv", root, "SOPInstanceUID", "Target", classes=["3"], progress=False)
    with pytest.raises(ValueError, match="multi_label=True"):
        from_csv(root / "train.csv", root, "SOPInstanceUID", ["Target", "SOPInstanceUID"])


def test_multi_label_pipe_column_and_binary_columns_agree(tmp_path):
    for name in "xyz":
        write_image(tmp_path / f"{name}.png", np.zeros((8, 8), np.float32))
    (tmp_path / "pipe.csv").write_text("image,labels\nx.png,effusion|nodule\ny.png,\nz.png, nodule \n")
    (tmp_path / "cols.csv").write_text("image,effusion,nodule\nx.png,1,1\ny.png,0,0\nz.png,0,1\n")
    piped = from_csv(tmp_path / "pipe.csv", tmp_path, "image", "labels", multi_label=True)
    columns = from_csv(tmp_path / "cols.csv", tmp_path, "image", ["effusion", "nodule"], multi_label=True)
    expected = np.array([[1, 1], [0, 0], [0, 1]], np.float32)
    for items in (piped, columns):
        assert items.multi_label and items.classes == ["effusion", "nodule"]
        assert items.targets.dtype == np.float32
        np.testing.assert_array_equal(items.targets, expected)
        assert items.class_counts().tolist() == [1, 2]
    (tmp_path / "bad.csv").write_text("image,effusion\nx.png,yes\n")
    with pytest.raises(ValueError, match="0/1"):
        from_csv(tmp_path / "bad.csv", tmp_path, "image", ["effusion", "effusion"], multi_label=True)


def test_from_folder_and_from_paths(tmp_path):
    for name in ("normal/1.png", "normal/sub/2.png", "pneumonia/3.png", "pneumonia/.hidden.png"):
        write_image(tmp_path / name, np.zeros((8, 8), np.float32))
    (tmp_path / "pneumonia" / "readme.txt").write_text("x")
    items = from_folder(tmp_path)
    assert items.ids == ["normal/1.png", "normal/sub/2.png", "pneumonia/3.png"]
    assert items.targets.tolist() == [0, 0, 1]
    assert from_folder(tmp_path, classes=["pneumonia", "normal"]).targets.tolist() == [1, 1, 0]
    with pytest.raises(ValueError, match="covid"):
        from_folder(tmp_path, classes=["covid"])
    views = from_paths([(tmp_path / "a", tmp_path / "b")])
    assert views.views == ("view0", "view1") and views.targets.tolist() == [-1]


def test_summary_is_json_ready_and_free_of_ids_and_patients(kaggle_tree):
    root, rows = kaggle_tree
    items = from_csv(root / "train.csv", root, "SOPInstanceUID", "Target", progress=False)
    items.groups = dicom_patient_ids(items.paths)
    items = items.subset([0, 1, 2, 3, 4, 5])
    text = json.dumps(items.summary())
    assert json.loads(text)["class_counts"] == {"3": 4, "11": 2}
    assert json.loads(text)["patients"] == 3
    assert not any(uid in text for uid, _ in rows) and "P0" not in text and "unifesp" not in text


def test_subset_keeps_everything_aligned():
    items = LabeledImages([("a",), ("b",), ("c",)], ["a", "b", "c"], [0, -1, 1], ["x", "y"],
                          groups=["p", "q", "p"])
    part = items.subset([2, 0])
    assert part.ids == ["c", "a"] and part.targets.tolist() == [1, 0] and part.groups.tolist() == ["p", "p"]
    assert items.summary()["unlabeled"] == 1
    with pytest.raises(ValueError, match="targets"):
        LabeledImages([("a",)], ["a"], [5], ["x"])


def test_bodypart_uids_resolve_to_the_labelled_files_and_patients():
    root = shared_path("bodypart")
    items = from_csv(root / "train.csv", root, "SOPInstanceUID", "Target", progress=False)
    with open(root / "labels.csv", newline="") as file:
        truth = {row["SOPInstanceUID"]: row for row in csv.DictReader(file)}
    assert len(items) == 249
    assert items.classes == [str(i) for i in range(22)]  # every UNIFESP code 0..21 occurs
    for uid, path, target in zip(items.ids, items.paths, items.targets):
        assert path[0] == root / truth[uid]["file"]
        assert items.classes[target] == truth[uid]["Target"]
    patients = dicom_patient_ids(items.paths)
    assert patients.tolist() == [truth[uid]["patient"] for uid in items.ids]


def test_odir_two_views_eight_labels():
    root = shared_path("fundus", "odir")
    labels = list("NDGCAHMO")
    items = from_csv(root / "labels.csv", root, ["left", "right"], labels, multi_label=True, group_col="patient")
    assert len(items) == 950 and items.views == ("left", "right") and items.classes == labels
    assert items.targets.shape == (950, 8)
    assert items.paths[0] == (root / "images" / "1_left.jpg", root / "images" / "1_right.jpg")
    assert items.ids[0] == "images/1_left.jpg|images/1_right.jpg"
    # The data README's prevalences: N 34.3 %, G 5.3 %.
    assert items.class_counts()[0] / 950 == pytest.approx(0.343, abs=0.001)
    assert items.class_counts()[2] / 950 == pytest.approx(0.053, abs=0.001)


@pytest.mark.parametrize("value", ["../outside.dcm", "a/../../outside.dcm", "/etc/passwd", "C:\\outside.dcm"])
def test_image_values_outside_root_are_refused_before_any_file_is_read(labeled_phantoms, value):
    import pandas as pd

    from radiology.data import escapes_root

    table = pd.read_csv(labeled_phantoms / "labels.csv", dtype=str)
    table.loc[4, "file"] = value
    table.to_csv(labeled_phantoms / "escape.csv", index=False)
    assert escapes_root(value) and not escapes_root(table.loc[0, "file"])
    with pytest.raises(ValueError, match=r"escape\.csv: 1 image value\(s\) point outside root: line 6 "):
        from_csv(labeled_phantoms / "escape.csv", None, "file", "label", progress=False)
    with pytest.raises(ValueError, match=r"outside root: row 4 "):  # a DataFrame has rows, not lines
        from_csv(table, labeled_phantoms, "file", "label", progress=False)


def test_allow_outside_root_reads_a_file_beside_root(labeled_phantoms):
    (labeled_phantoms.parent / "beside.dcm").write_bytes((labeled_phantoms / "a" / "0.dcm").read_bytes())
    (labeled_phantoms / "beside.csv").write_text("file,label\n../beside.dcm,a\nb/6.dcm,b\n")
    items = from_csv(labeled_phantoms / "beside.csv", None, "file", "label", progress=False, allow_outside_root=True)
    assert items.paths[0][0].samefile(labeled_phantoms.parent / "beside.dcm") and items.ids[0] == "../beside.dcm"


def test_training_and_prediction_see_the_same_files(tmp_path):
    """A DICOM named by its UID (suffix '.321') is an input to training as it is to predict."""
    from radiology.files import find_inputs
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    image = phantom_radiograph((32, 32))
    for name in ("a/1.2.840.113619.2.55.321", "a/x.dcm", "b/IM0001", "b/notes.txt", "b/labels.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        if name.endswith((".txt", ".csv")):
            (tmp_path / name).write_text("not an image")
        else:
            write_phantom_dicom(tmp_path / name, image, sop_instance_uid="1.2." + str(len(name)))
    items = from_folder(tmp_path)
    assert items.ids == ["a/1.2.840.113619.2.55.321", "a/x.dcm", "b/IM0001"]
    assert [p for (p,) in items.paths] == find_inputs(tmp_path)
    assert from_unlabeled(tmp_path).ids == items.ids
    assert set(index_dicom_uids(tmp_path, progress=False).values()) == set(find_inputs(tmp_path))
