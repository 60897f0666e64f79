"""The few-labels command-line contract: `pretrain`, `train --unlabeled --semi`, `explain`, on phantom DICOMs."""

import json

import pandas as pd
import pytest
import torch

pytest.importorskip("fastai")
pytest.importorskip("lightly")
pytest.importorskip("pytorch_grad_cam")

from radiology.cli import USAGE_ERROR, main  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fewlabels")
    labeled = write_findings_dataset(root / "labeled", 24, size=(72, 64), seed=3)
    write_findings_dataset(root / "unlabeled", 24, size=(72, 64), seed=4)
    return labeled, root / "unlabeled" / "images", root


@pytest.fixture(scope="module")
def backbone(folders):
    _, unlabeled, root = folders
    out = root / "simclr.pt"
    code = main(["pretrain", "--root", str(unlabeled), "--out", str(out), "--arch", "resnet18", "--pretrained",
                 "none", "--epochs", "1", "--size", "48", "--batch-size", "8", "--cache", "none", "-q"])
    assert code == 0
    return out


def test_pretrain_writes_a_loadable_backbone(backbone, capsys):
    saved = torch.load(backbone, weights_only=True)
    assert saved["radiology"]["method"] == "simclr" and saved["radiology"]["images"] == 24
    assert "conv1.weight" in saved["state_dict"]
    history = json.loads(backbone.with_name(backbone.name + ".json").read_text())["history"]
    assert len(history) == 1 and history[0]["train_loss"] > 0


@pytest.mark.parametrize("method, params, column, value", [
    ("fixmatch", {"threshold": 0}, "mask_rate", 1.0),  # every pseudo-label passes
    ("mixmatch", {"lambda_u": 10, "rampup_epochs": 0}, "lambda_u", 10.0),  # the full weight from the start
])
def test_train_semi_supervised_from_a_pretrained_backbone_then_explain(folders, backbone, tmp_path, capsys, method,
                                                                       params, column, value):
    labels, unlabeled, _ = folders
    out = tmp_path / "bundle"
    settings = [arg for key, v in params.items() for arg in ("--semi-param", f"{key}={v}")]
    code = main(["train", "--csv", str(labels), "--image-col", "file", "--group-col", "patient", "--arch", "resnet18",
                 "--pretrained", str(backbone), "--size", "48", "--epochs", "1", "--head-epochs", "1",
                 "--batch-size", "4", "--unlabeled", str(unlabeled), "--semi", method, *settings, "--cache", "none",
                 "--out", str(out), "-q"])
    assert code == 0
    info = json.loads((out / "train.json").read_text())
    plan = info["semi_supervised"].pop("memory_plan", None)  # FixMatch records what it chose for the memory at hand
    assert (plan or "").startswith("FixMatch: unlabeled batch") == (method == "fixmatch")
    assert info["semi_supervised"] == {"method": method, "params": params, "unlabeled": 24, "unreadable": 0,
                                       "validation_files_left_out": 0}
    assert info["settings"]["pretrained"] == backbone.name and info["settings"]["semi_params"] == params
    assert info["refit"] is None  # the default refits one supervised model, never a semi-supervised one
    history = pd.read_csv(out / "history.csv")
    # The callback ran in the fine-tuning stage, with the given setting.
    assert "unsup_loss" in history.columns and history[column].dropna().tolist() == [value]

    capsys.readouterr()
    explained = tmp_path / "cams"
    images = labels.parent / "images"
    assert main(["explain", str(out), str(images), "--out", str(explained), "-q"]) == 0
    table = pd.read_csv(explained / "explanations.csv", keep_default_na=False)
    assert len(table) == 24 and set(table["method"]) == {"gradcam"}
    assert all((explained / name).is_file() for name in table["overlay"])
    assert "24 overlays, 0 failed" in capsys.readouterr().out
    # Nothing explained is a failure (exit 1); an output that is a file is a usage error.
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "broken.dcm").write_bytes(b"not a dicom")
    assert main(["explain", str(out), str(tmp_path / "junk"), "--out", str(tmp_path / "junk_cams"), "-q"]) == 1
    assert "0 overlays, 1 failed" in capsys.readouterr().out
    for bad_out, device in [(labels, "cpu"), (tmp_path / "cams2", "banana")]:
        assert main(["explain", str(out), str(images), "--out", str(bad_out), "--device", device]) == USAGE_ERROR
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "cams2").exists()


def test_semi_supervised_usage_errors_exit_2_with_one_line(folders, tmp_path, capsys):
    labels, unlabeled, _ = folders
    base = ["train", "--csv", str(labels), "--image-col", "file", "--out", str(tmp_path / "b"), "-q"]
    cases = [
        (["--semi", "fixmatch"], "needs both an unlabeled folder and a method"),
        (["--unlabeled", str(unlabeled)], "needs both an unlabeled folder and a method"),
        (["--unlabeled", str(unlabeled), "--semi", "mixmatch", "--multi-label"], "single-label"),
        (["--unlabeled", str(unlabeled), "--semi", "fixmatch", "--image-col", "file,file"], "single-view"),
        (["--unlabeled", str(tmp_path / "nowhere"), "--semi", "fixmatch", "--arch", "resnet18", "--pretrained",
          "none"], "nowhere"),
        (["--unlabeled", str(unlabeled), "--semi", "fixmatch", "--semi-param", "thresh=0.9"],
         "unknown fixmatch setting 'thresh'"),
        (["--unlabeled", str(unlabeled), "--semi", "mixmatch", "--semi-param", "alpha=-1"],
         "alpha must be positive"),
        (["--unlabeled", str(unlabeled), "--semi", "fixmatch", "--semi-param", "mu"], "KEY=VALUE"),
        (["--semi-param", "mu=2"], "need a semi-supervised method"),
    ]
    for extra, message in cases:
        assert main(base + extra) == USAGE_ERROR
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_pretrain_and_explain_usage_errors(folders, tmp_path, capsys):
    _, unlabeled, _ = folders
    assert main(["pretrain", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "b.pt")]) == USAGE_ERROR
    assert "no such folder" in capsys.readouterr().err
    assert main(["pretrain", "--root", str(unlabeled), "--out", str(tmp_path)]) == USAGE_ERROR
    assert "is a folder" in capsys.readouterr().err
    assert main(["explain", str(tmp_path / "nope"), str(unlabeled), "--out", str(tmp_path / "e")]) == USAGE_ERROR
    assert "not a bundle folder" in capsys.readouterr().err
    assert main(["pretrain", "--root", str(labels_file := next(unlabeled.iterdir())), "--out", str(tmp_path / "b.pt")]
                ) == USAGE_ERROR
    assert f"{labels_file}: not a folder" in capsys.readouterr().err
    assert main(["pretrain", "--root", str(unlabeled), "--out", str(tmp_path / "b.pt"), "--fields", "modality"]
                ) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "fields apply to" in err and "metadata" in err and "simclr" in err and "Traceback" not in err
    assert main(["pretrain", "--root", str(unlabeled), "--out", str(tmp_path / "b.pt"), "--lr", "-1"]) == USAGE_ERROR
    assert "lr must be positive" in capsys.readouterr().err
    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"an earlier backbone")
    assert main(["pretrain", "--root", str(unlabeled), "--out", str(existing)]) == USAGE_ERROR
    assert "--overwrite" in capsys.readouterr().err and existing.read_bytes() == b"an earlier backbone"


def test_validation_images_are_left_out_of_the_unlabeled_set(folders, tmp_path):
    from radiology.train import TrainConfig, train

    labels, _, _ = folders
    images = labels.parent / "images"  # the labeled images themselves as the unlabeled folder
    result = train(TrainConfig(csv=labels, image_cols="file", group_col="patient", arch="resnet18", pretrained=None,
                               size=32, epochs=1, head_epochs=0, batch_size=4, cache="none", out=tmp_path / "b",
                               unlabeled=images, semi="fixmatch"), progress=False)
    info = json.loads((result.bundle / "train.json").read_text())
    left_out = info["semi_supervised"]["validation_files_left_out"]
    assert left_out == info["data"]["valid"]["samples"] > 0
    assert info["semi_supervised"]["unlabeled"] == 24 - left_out
