"""The publisher-layout readers of three examples (bodypart_unifesp, odir_fundus, fracture_fracatlas).

Each reader is run on a miniature folder (written here, or by ``examples/_miniature.py``, the
examples' writers of synthetic miniatures), with known labels and groups; broken
layouts must stop with a clear message; the fracture example scores its maps with the library's
pointing game (checked in tests/explain/test_pointing.py). No training here: the quick runs are CI steps.
"""

import importlib.util
import json
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

import cv2  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ("bodypart_unifesp", "odir_fundus", "fracture_fracatlas")


def load(name: str):
    """Import an example (or a shared module, ``_miniature``) as a module (its ``main`` is not run),
    ``_common`` found beside it."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(f"example_publishers_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def miniature():
    return load("_miniature")


@pytest.fixture(scope="module")
def bodypart():
    return load("bodypart_unifesp")


@pytest.fixture(scope="module")
def odir():
    return load("odir_fundus")


@pytest.fixture(scope="module")
def fracture():
    return load("fracture_fracatlas")


def files_of(folder: Path) -> dict:
    """Every file below ``folder`` with its size and modification time (to prove it was only read)."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


# --- command lines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_help_names_the_layout_options(name, capsys):
    module = load(name)
    assert "Usage" in module.__doc__ and "--data" in module.__doc__
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--data" in text and "--quick" in text and "--out" in text


@pytest.mark.parametrize("name", NAMES)
def test_no_data_and_no_quick_says_what_to_give(name, tmp_path):
    with pytest.raises(SystemExit, match="--data"):
        load(name).main(["--out", str(tmp_path / "out")])


@pytest.mark.parametrize("name", NAMES)
def test_a_folder_in_another_layout_is_refused_clearly(name, tmp_path):
    data = tmp_path / "data"
    (data / "something").mkdir(parents=True)
    (data / "notes.txt").write_text("not a data set")
    with pytest.raises(SystemExit) as stop:
        load(name).main(["--data", str(data), "--out", str(tmp_path / "out")])
    message = str(stop.value)
    assert str(data) in message and "expected" in message


# --- UNIFESP (Kaggle) ------------------------------------------------------------------------------------------


def test_unifesp_miniature_has_the_kaggle_layout_and_known_groups(bodypart, miniature, tmp_path):
    root = miniature.write_unifesp(tmp_path / "mini", seed=1, patients=12, test_images=5)
    bodypart.check_layout(root)
    train = pd.read_csv(root / "train.csv", dtype=str)
    assert list(train.columns) == ["SOPInstanceUID", "Target"]
    assert set(train["Target"]) == {"3", "11", "18"}
    for uid in train["SOPInstanceUID"]:  # train/<Study>/<Series>/<SOP>.dcm
        assert len(list((root / "train").glob(f"*/*/{uid}.dcm"))) == 1
    sample = pd.read_csv(root / "sample_submission.csv", dtype=str)
    truth = pd.read_csv(root / "test_labels.csv", dtype=str)
    assert (sample["Target"] == "0").all() and list(sample["SOPInstanceUID"]) == list(truth["SOPInstanceUID"])
    assert len(list((root / "test").rglob("*.dcm"))) == len(sample) == 15

    args = Namespace(quick=False, quiet=True, patients=None, seed=0)
    labels, items, groups = bodypart.labelled(root, args)
    assert len(labels) == len(train)
    # Groups come from the DICOM PatientID: one body part per synthetic patient, 12 patients per class.
    per_group = pd.DataFrame({"group": groups, "target": labels["Target"]}).groupby("group")["target"]
    assert (per_group.nunique() == 1).all() and len(per_group) == 36
    assert all(g.startswith("g") for g in groups)  # opaque, never the PatientID


def test_unifesp_missing_csv_and_bad_columns(bodypart, tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(SystemExit, match="train.csv not found"):
        bodypart.check_layout(tmp_path)
    (tmp_path / "train.csv").write_text("image,label\na,3\n")
    with pytest.raises(SystemExit, match="SOPInstanceUID,Target"):
        bodypart.check_layout(tmp_path)


# --- ODIR-5K ---------------------------------------------------------------------------------------------------

ODIR_COLUMNS = ["ID", "Patient Age", "Patient Sex", "Left-Fundus", "Right-Fundus", "Left-Diagnostic Keywords",
                "Right-Diagnostic Keywords", "N", "D", "G", "C", "A", "H", "M", "O"]


def odir_rows():
    # patient 0 normal; 5 diabetic (left eye only) + other; 9 has no right photograph on disk
    return [
        ["0", "69", "Female", "0_left.jpg", "0_right.jpg", "normal fundus", "normal fundus", 1, 0, 0, 0, 0, 0, 0, 0],
        ["5", "54", "Male", "5_left.jpg", "5_right.jpg", "moderate non proliferative retinopathy",
         "drusen", 0, 1, 0, 0, 0, 0, 0, 1],
        ["9", "60", "Male", "9_left.jpg", "9_right.jpg", "cataract", "cataract", 0, 0, 0, 1, 0, 0, 0, 0],
    ]


def write_photos(folder: Path, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        cv2.imwrite(str(folder / name), np.zeros((8, 8, 3), np.uint8))


def test_odir_kaggle_full_df_one_row_per_photograph(odir, tmp_path, capsys):
    rows = odir_rows()
    table = pd.DataFrame([r for r in rows for _ in range(2)], columns=ODIR_COLUMNS)  # one row per photograph
    table["filename"] = [f"{r[0]}_{eye}.jpg" for r in rows for eye in ("left", "right")]
    table.to_csv(tmp_path / "full_df.csv", index=False)
    write_photos(tmp_path / "preprocessed_images", ["0_left.jpg", "0_right.jpg", "5_left.jpg", "5_right.jpg",
                                                    "9_left.jpg"])
    before = files_of(tmp_path)
    data = odir.read_odir(tmp_path)
    assert files_of(tmp_path) == before
    assert list(data["patient"]) == ["0", "5"]  # 9 misses its right eye: left out
    assert list(data["left"]) == ["preprocessed_images/0_left.jpg", "preprocessed_images/5_left.jpg"]
    assert data.loc[1, ["N", "D", "O"]].tolist() == ["0", "1", "1"] and data.loc[0, "N"] == "1"
    assert "1 patients without both photographs left out" in capsys.readouterr().out


def test_odir_original_release_as_csv_export_below_root(odir, tmp_path):
    release = tmp_path / "ODIR-5K"
    release.mkdir()
    pd.DataFrame(odir_rows(), columns=ODIR_COLUMNS).to_csv(release / "data.csv", index=False)
    write_photos(release / "Training Images", [f"{p}_{eye}.jpg" for p in (0, 5, 9) for eye in ("left", "right")])
    data = odir.read_odir(tmp_path)
    assert list(data["patient"]) == ["0", "5", "9"]
    assert data.loc[2, "right"] == "ODIR-5K/Training Images/9_right.jpg" and data.loc[2, "C"] == "1"


def test_odir_xlsx_without_openpyxl_says_so(odir, tmp_path, monkeypatch):
    (tmp_path / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx").write_bytes(b"PK not really")
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # as if not installed
    with pytest.raises(SystemExit, match="openpyxl.*CSV"):
        odir.read_odir(tmp_path)


def test_odir_bad_table_and_missing_images(odir, tmp_path):
    pd.DataFrame({"ID": ["1"], "Left-Fundus": ["1_left.jpg"]}).to_csv(tmp_path / "full_df.csv", index=False)
    with pytest.raises(SystemExit, match="missing the columns Right-Fundus"):
        odir.read_odir(tmp_path)
    pd.DataFrame(odir_rows(), columns=ODIR_COLUMNS).to_csv(tmp_path / "full_df.csv", index=False)
    with pytest.raises(SystemExit, match="no image folder"):
        odir.read_odir(tmp_path)


def test_odir_miniature_reads_back_with_every_label(odir, miniature, tmp_path):
    data = odir.read_odir(miniature.write_odir(tmp_path, seed=0, patients=64))
    assert len(data) == 64
    counts = data[list(odir.LABELS)].astype(int).sum()
    assert (counts > 0).all()
    # N only when no disease
    assert ((data["N"] == "1") == (data[list(odir.LABELS[1:])].astype(int).sum(axis=1) == 0)).all()


# --- FracAtlas -------------------------------------------------------------------------------------------------


def write_fracatlas(root: Path, annotations: str = "coco"):
    """IMG0000005 and IMG0000019 (block 0) and IMG0000020 (block 1); 5 and 20 fractured; dataset.csv says 20 is not."""
    images = {"Fractured": ["IMG0000005.jpg", "IMG0000020.jpg"], "Non_fractured": ["IMG0000019.jpg"]}
    for folder, names in images.items():
        (root / "images" / folder).mkdir(parents=True)
        for name in names:  # 40 x 20 (rows x cols) photographs
            cv2.imwrite(str(root / "images" / folder / name), np.full((40, 20), 128, np.uint8))
    pd.DataFrame({"image_id": ["IMG0000005.jpg", "IMG0000019.jpg", "IMG0000020.jpg"], "fractured": [1, 0, 0]}) \
        .to_csv(root / "dataset.csv", index=False)
    box = [2.0, 4.0, 6.0, 8.0]  # x, y, w, h
    if annotations == "coco":
        folder = root / "Annotations" / "COCO JSON"
        folder.mkdir(parents=True)
        (folder / "COCO_fracture_masks.json").write_text(json.dumps({
            "images": [{"id": 7, "file_name": "IMG0000005.jpg", "width": 20, "height": 40}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": box}]}))
    elif annotations == "voc":
        folder = root / "Annotations" / "PASCAL VOC"
        folder.mkdir(parents=True)
        (folder / "IMG0000005.xml").write_text(
            "<annotation><filename>IMG0000005.jpg</filename><object><bndbox><xmin>2</xmin><ymin>4</ymin>"
            "<xmax>8</xmax><ymax>12</ymax></bndbox></object></annotation>")
    elif annotations == "yolo":
        folder = root / "Annotations" / "YOLO"
        folder.mkdir(parents=True)
        (folder / "IMG0000005.txt").write_text("0 0.25 0.2 0.3 0.2\n")  # centre (5, 8), 6 x 8 px
    return root


@pytest.mark.parametrize("annotations", ["coco", "voc", "yolo"])
def test_fracatlas_labels_groups_and_boxes(fracture, tmp_path, capsys, annotations):
    data_root = write_fracatlas(tmp_path / "FracAtlas", annotations)
    before = files_of(data_root)
    table, found = fracture.read_layout(tmp_path)  # ROOT/FracAtlas is found too
    assert found == data_root
    by_name = table.set_index(table["source"].str.rsplit("/", n=1).str[-1])
    assert by_name.loc["IMG0000005.jpg", "label"] == "fracture" and by_name.loc["IMG0000019.jpg", "label"] == "normal"
    assert by_name.loc["IMG0000020.jpg", "label"] == "fracture"  # the folder wins over dataset.csv
    assert [by_name.loc[n, "group"] for n in ("IMG0000005.jpg", "IMG0000019.jpg", "IMG0000020.jpg")] == \
        ["block0", "block0", "block1"]
    assert "1 disagree with dataset.csv" in capsys.readouterr().out

    archived = fracture.wrap_as_dicom(found, table, tmp_path / "out" / "archive", max_side=20)  # halves the images
    assert files_of(data_root) == before  # the user's folder is only read
    boxes = archived.set_index("file")["boxes"]
    assert boxes["IMG0000019.dcm"] == [] and boxes["IMG0000005.dcm"] == [pytest.approx((1, 2, 3, 4))]
    from radiology.dicom import read_dicom
    assert read_dicom(tmp_path / "out" / "archive" / "IMG0000005.dcm").pixels.shape == (20, 10)


def test_fracture_dicom_folder_with_labels_csv(fracture, tmp_path):
    pd.DataFrame({"file": ["dicom/a.dcm", "dicom/b.dcm"], "label": ["fracture", "normal"],
                  "patient": ["p1", "p1"], "boxes": ["1 2 3 4;5 6 7 8", ""]}).to_csv(tmp_path / "labels.csv",
                                                                                    index=False)
    table, found = fracture.read_layout(tmp_path)
    assert found is None
    assert list(table["label"]) == ["fracture", "normal"] and list(table["group"]) == ["p1", "p1"]
    assert table.loc[0, "boxes"] == [(1, 2, 3, 4), (5, 6, 7, 8)] and table.loc[1, "boxes"] == []
    pd.DataFrame({"file": ["a.dcm"], "label": ["maybe"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(SystemExit, match="neither fracture nor normal"):
        fracture.read_layout(tmp_path)
    pd.DataFrame({"path": ["a.dcm"]}).to_csv(tmp_path / "labels.csv", index=False)
    with pytest.raises(SystemExit, match="missing the columns file, label"):
        fracture.read_layout(tmp_path)


def test_fracatlas_without_number_in_name_is_refused(fracture):
    with pytest.raises(SystemExit, match="no image number"):
        fracture.image_group("scan.jpg")
    assert fracture.image_group("IMG0000039.jpg") == "block1" and fracture.image_group("IMG0000040.jpg") == "block2"


def test_fracture_boxes_are_read_and_scored_by_the_library(fracture):
    # The example plays radiology.explain's pointing game (its known answers: tests/explain/test_pointing.py).
    from radiology import explain

    assert fracture.pointing_game is explain.pointing_game and fracture.GROW == explain.GROW == 0.05
    assert fracture.box_list("1 2 3 4;5 6 7 8") == [(1, 2, 3, 4), (5, 6, 7, 8)] and fracture.box_list("") == []
    with pytest.raises(ValueError, match="x y w h"):
        fracture.box_list("1 2 3")
    for gone in ("parse_boxes", "grown_box", "in_boxes", "cam_in_box"):  # no second scorer beside the library's
        assert gone not in vars(fracture) or vars(fracture)[gone] is getattr(explain, gone, None)


def test_fracture_miniature_boxes_hold_the_line(fracture, miniature, tmp_path):
    data = miniature.write_fracatlas(tmp_path, seed=0, count=160)
    table, found = fracture.read_layout(data)
    fractured = table[table["label"] == "fracture"]
    assert len(fractured) > 10 and (fractured["boxes"].str.len() == 1).all()
    assert (table.loc[table["label"] == "normal", "boxes"].str.len() == 0).all()
    assert table["group"].nunique() == 160 // fracture.BLOCK
    # the fracture line is dark inside its box: the box's darkest row is darker than the band elsewhere
    row = fractured.iloc[0]
    image = cv2.imread(str(found / row["source"]), cv2.IMREAD_GRAYSCALE).astype(float)
    x, y, w, h = (int(round(v)) for v in row["boxes"][0])
    assert image[y:y + h, x:x + w].min() < 0.5 * image[:, x:x + w].max()


def test_unifesp_folds_submit_the_mean_of_the_fold_models(bodypart, tmp_path, capsys):
    out = tmp_path / "out"
    assert bodypart.main(["--quick", "--quiet", "--no-holdout", "--folds", "2", "--out", str(out)]) == 0
    bundle = out / "submission" / "bundle"
    from radiology.manifest import bundle_members
    from radiology.predict import Ensemble, predict_table, prediction_inputs

    assert [m.name for m in bundle_members(bundle)] == ["fold-1", "fold-2"]
    submitted = pd.read_csv(out / "submission.csv", dtype=str)
    # The submission is the two models' mean: recomputed from the members, it gives the same targets.
    root = out / "miniature"
    inputs = prediction_inputs(root / "sample_submission.csv", root=root / "test", image_cols="SOPInstanceUID",
                               progress=False)
    mean = predict_table(Ensemble.load(bundle_members(bundle)), inputs, progress=False)
    assert list(submitted["Target"]) == list(mean["prediction"])
