"""The `train / predict / evaluate` command-line contract, on phantom DICOMs in the Kaggle UNIFESP layout."""

import json
import subprocess
import sys

import pandas as pd
import pydicom
import pytest

pytest.importorskip("fastai")
pytest.importorskip("timm")

from radiology.cli import USAGE_ERROR, main  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402


def _unifesp_layout(folder, count, seed):
    """Phantoms renamed to ``<study>/<series>/<uid>.dcm`` with ``SOPInstanceUID,Target`` labels."""
    labels = pd.read_csv(write_findings_dataset(folder / "src", count, size=(72, 64), seed=seed))
    rows = []
    for file, label in zip(labels["file"], labels["label"]):
        path = folder / "src" / file
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        target = folder / "images" / "study" / "series" / f"{uid}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
        rows.append({"SOPInstanceUID": uid, "Target": 3 if label == "normal" else 11})
    table = pd.DataFrame(rows)
    table.to_csv(folder / "labels.csv", index=False)
    return folder / "labels.csv", folder / "images"


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("unifesp")
    return _unifesp_layout(root / "train", 40, seed=1), _unifesp_layout(root / "test", 8, seed=2)


@pytest.fixture(scope="module")
def bundle(layout, tmp_path_factory):
    (csv, images), _ = layout
    out = tmp_path_factory.mktemp("cli") / "bundle"
    code = main(["train", "--csv", str(csv), "--root", str(images), "--image-col", "SOPInstanceUID",
                 "--label-col", "Target", "--out", str(out), "--size", "64", "--epochs", "1", "--head-epochs", "2",
                 "--cache", str(out.parent / "cache"), "-q"])
    assert code == 0
    return out


def test_train_from_uids_writes_a_bundle(bundle, capsys):
    labels = json.loads((bundle / "labels.json").read_text())
    assert labels["classes"] == ["3", "11"]  # integer codes in numeric order
    info = json.loads((bundle / "train.json").read_text())
    assert info["data"]["grouped_by"] == "DICOM PatientID"


def test_predict_kaggle_submission_reads_uids(bundle, layout, tmp_path, capsys):
    _, (test_csv, test_images) = layout
    out = tmp_path / "submission.csv"
    assert main(["predict", str(bundle), str(test_images), "--out", str(out), "--format", "kaggle", "-q"]) == 0
    assert "8 predictions, 0 failed" in capsys.readouterr().out
    submission = pd.read_csv(out, dtype=str)
    assert list(submission.columns) == ["SOPInstanceUID", "Target"]
    assert sorted(submission["SOPInstanceUID"]) == sorted(pd.read_csv(test_csv, dtype=str)["SOPInstanceUID"])
    assert set(submission["Target"]) <= {"3", "11"}


def test_predict_csv_then_evaluate(bundle, layout, tmp_path, capsys):
    _, (test_csv, test_images) = layout
    predictions = tmp_path / "predictions.csv"
    code = main(["predict", str(bundle), str(test_csv), "--root", str(test_images), "--image-col", "SOPInstanceUID",
                 "--out", str(predictions), "--backend", "onnx", "--tta", "-q"])
    assert code == 0
    table = pd.read_csv(predictions, dtype={"image": str, "SOPInstanceUID": str, "prediction": str},
                        keep_default_na=False)
    assert list(table.columns) == ["image", "SOPInstanceUID", "prediction", "prob_3", "prob_11", "error"]
    assert table["image"].tolist() == pd.read_csv(test_csv, dtype=str)["SOPInstanceUID"].tolist()
    assert table["SOPInstanceUID"].tolist() == table["image"].tolist()  # read from each file's header
    capsys.readouterr()
    code = main(["evaluate", "--predictions", str(predictions), "--labels", str(test_csv), "--image-col",
                 "SOPInstanceUID", "--label-col", "Target", "--out", str(tmp_path / "eval")])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("8 scored (0 without prediction): accuracy ")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    expected = (table["prediction"] == pd.read_csv(test_csv, dtype=str)["Target"]).mean()
    assert metrics["accuracy"] == pytest.approx(expected)


@pytest.mark.parametrize("change, message", [
    ({"--label-col": "Diagnosis"}, "missing column(s) ['Diagnosis']"),
    ({"--arch": "no_such_net"}, "unknown backbone 'no_such_net'"),
    ({"--pretrained": "missing/weights.pt"}, "no such file"),
    ({"--epochs": "-1"}, "epochs must be >= 0"),
    ({"--lr": "-1"}, "lr must be positive"),
])
def test_train_usage_errors_exit_2_with_one_line(layout, tmp_path, capsys, change, message):
    (csv, images), _ = layout
    args = {"--csv": str(csv), "--root": str(images), "--image-col": "SOPInstanceUID", "--label-col": "Target",
            "--out": str(tmp_path / "b")}
    args.update(change)
    assert main(["train", *[x for pair in args.items() for x in pair], "-q"]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "b").exists()  # a run that fails leaves no empty bundle folder behind


def test_train_never_replaces_a_model_unasked(bundle, layout, tmp_path, capsys):
    (csv, images), _ = layout
    weights = (bundle / "weights.safetensors").read_bytes()
    args = ["train", "--csv", str(csv), "--root", str(images), "--image-col", "SOPInstanceUID", "--label-col",
            "Target", "--size", "64", "-q"]
    assert main([*args, "--out", str(bundle)]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "already holds a trained model (model.json)" in err and "--overwrite" in err
    assert (bundle / "weights.safetensors").read_bytes() == weights
    # An interrupted run's checkpoint is a model too.
    interrupted = tmp_path / "interrupted"
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "checkpoints" / "last.pth").write_bytes(b"epoch 3 of 40")
    assert main([*args, "--out", str(interrupted)]) == USAGE_ERROR
    assert "checkpoints/last.pth" in capsys.readouterr().err
    # --overwrite lets the run past the check: here it then stops at the next one, the label column.
    assert main([*args[:-5], "--label-col", "Diagnosis", "--out", str(bundle), "--overwrite", "-q"]) == USAGE_ERROR
    assert "missing column(s) ['Diagnosis']" in capsys.readouterr().err
    a_file = tmp_path / "bundle.zip"
    a_file.write_bytes(b"")
    assert main([*args, "--out", str(a_file)]) == USAGE_ERROR
    assert "bundle.zip: is a file, not a folder" in capsys.readouterr().err


def test_train_rejects_empty_and_one_class_datasets(layout, tmp_path, capsys):
    (csv, images), _ = layout
    table = pd.read_csv(csv, dtype=str)
    empty = tmp_path / "empty.csv"
    table.iloc[:0].to_csv(empty, index=False)
    one = tmp_path / "one.csv"
    table[table["Target"] == "3"].to_csv(one, index=False)
    for path, message in ((empty, "no rows"), (one, "need at least two classes")):
        code = main(["train", "--csv", str(path), "--root", str(images), "--image-col", "SOPInstanceUID",
                     "--label-col", "Target", "--out", str(tmp_path / "b"), "-q"])
        assert code == USAGE_ERROR
        assert message in capsys.readouterr().err


def test_predict_and_evaluate_usage_errors(bundle, layout, tmp_path, capsys):
    _, (test_csv, _) = layout
    assert main(["predict", str(tmp_path / "nope"), str(test_csv), "--out", str(tmp_path / "p.csv")]) == USAGE_ERROR
    assert "no such bundle" in capsys.readouterr().err
    code = main(["predict", str(bundle), str(test_csv), "--image-col", "file", "--out", str(tmp_path / "p.csv")])
    assert code == USAGE_ERROR and "no column 'file'" in capsys.readouterr().err
    unkeyed = tmp_path / "unkeyed.csv"  # probabilities, but nothing naming the images
    unkeyed.write_text("name,prediction,prob_3,prob_11\nx.dcm,3,0.9,0.1\n")
    code = main(["evaluate", "--predictions", str(unkeyed), "--labels", str(test_csv), "--image-col",
                 "SOPInstanceUID", "--label-col", "Target", "--out", str(tmp_path / "e")])
    assert code == USAGE_ERROR and "no 'image' or 'SOPInstanceUID' column" in capsys.readouterr().err


def test_model_commands_print_only_their_own_error(tmp_path):
    # In a fresh interpreter, as a user runs it: importing fastai must not add torch's warnings.
    result = subprocess.run([sys.executable, "-m", "radiology", "train", "--csv", str(tmp_path / "none.csv"),
                             "--out", str(tmp_path / "b")], capture_output=True, text=True, check=False)
    assert result.returncode == USAGE_ERROR
    assert result.stderr.strip().splitlines() == [f"radiology train: error: {tmp_path / 'none.csv'}: no such CSV file"]
