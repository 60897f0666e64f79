"""Hostile training data: every problem gets one line before any work, and the run touches only its own files.

Each test builds its data from synthetic phantoms. One tiny training run (module fixture) covers
what needs a finished bundle: the default cache, the data report, privacy of train.json and
``overwrite`` replacing only the run's own files; the other tests stop before training starts.
"""

import json
import logging

import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, load_items, train  # noqa: E402
from radiology.train.config import MAX_SIZE  # noqa: E402

TINY = dict(image_cols="file", label_cols="label", group_col="patient", arch="resnet18", pretrained=None, size=32,
            epochs=1, head_epochs=0, batch_size=4, refit=False)  # hostile inputs are the subject, not the refit


def _dataset(folder):
    """12 labeled phantoms, one per patient: the CSV and its table (``file, label, patient``; each class 3+ times)."""
    csv = write_findings_dataset(folder, 12, size=(40, 36), seed=1)
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert table["label"].value_counts().min() >= 3
    return csv, table


def _rewrite(csv, table, name):
    path = csv.with_name(name)
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One run on a CSV in a patient-named folder, with an unlabeled row, a zero-byte image and a class of one
    image that the split draws for validation; skip_unreadable, the default cache ($RADIOLOGY_CACHE), into an out
    folder that holds a user's file and an earlier report."""
    import numpy as np

    import radiology.data

    root = tmp_path_factory.mktemp("hostile")
    csv, table = _dataset(root / "Doe_John")
    table.loc[1, "label"] = ""
    broken = table.loc[2, "file"]
    (csv.parent / broken).write_bytes(b"")
    table.loc[4, "label"] = "effusion"  # class 0 of effusion, nodule, normal
    csv = _rewrite(csv, table, "labels_edited.csv")
    out = root / "bundle"
    out.mkdir()
    (out / "notes.txt").write_text("the user's own notes")
    (out / "report.txt").write_text("an earlier run's report")
    cache = root / "cache"
    split = radiology.data.train_valid_split

    def effusion_in_validation(targets, groups, **kwargs):
        train_idx, valid_idx = split(targets, groups, **kwargs)
        rare = np.flatnonzero(np.asarray(targets) == 0)
        return np.setdiff1d(train_idx, rare), np.union1d(valid_idx, rare)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RADIOLOGY_CACHE", str(cache))
        patch.setattr(radiology.data, "train_valid_split", effusion_in_validation)
        result = train(TrainConfig(csv=csv, out=out, skip_unreadable=True, overwrite=True, **TINY), progress=False)
    return result, root, broken, cache


def test_the_default_cache_is_filled(run):
    result, _, _, cache = run
    assert TrainConfig(csv="x.csv").cache is None  # the documented default: $RADIOLOGY_CACHE
    assert len(list(cache.rglob("*.npy"))) == 10  # 12 rows, one unlabeled, one unreadable
    assert json.loads((result.bundle / "train.json").read_text())["settings"]["cache"] is True


def test_unreadable_images_are_listed_in_the_data_report(run):
    result, root, broken, _ = run
    report = pd.read_csv(result.bundle / "data_report.csv", dtype=str)
    assert report["file"].tolist() == [broken]
    assert report["reason"].iloc[0].startswith(broken) and str(root) not in report["reason"].iloc[0]
    info = json.loads((result.bundle / "train.json").read_text())
    assert info["data"]["unreadable_left_out"] == 1 and info["data"]["all"]["samples"] == 10
    assert info["data"]["all"]["unlabeled"] == 0


def test_outputs_name_no_folder_of_the_user(run):
    result, root, _, _ = run
    for name in ("train.json", "data_report.csv", "report.txt", "labels.json"):
        text = (result.bundle / name).read_text()
        assert "Doe_John" not in text and str(root) not in text, name
    settings = json.loads((result.bundle / "train.json").read_text())["settings"]
    assert settings["csv"] == "labels_edited.csv" and settings["out"] is True and settings["root"] is False


def test_overwrite_replaces_only_the_runs_own_files(run):
    result, _, _, _ = run
    assert (result.bundle / "notes.txt").read_text() == "the user's own notes"
    assert (result.bundle / "report.txt").read_text() != "an earlier run's report"


def test_empty_labels_are_left_out_with_a_warning_counting_them(tmp_path, caplog):
    csv, table = _dataset(tmp_path / "data")
    table.loc[[0, 5], "label"] = ""
    config = TrainConfig(csv=_rewrite(csv, table, "partly.csv"), out=tmp_path / "b", **TINY)
    with caplog.at_level(logging.WARNING, logger="radiology.train.recipe"):
        items = load_items(config, progress=False)
    assert len(items) == 10 and (items.targets >= 0).all()
    assert "2 row(s) with an empty label" in caplog.text


def test_an_unreadable_image_stops_the_run_before_any_work(tmp_path):
    csv, table = _dataset(tmp_path / "data")
    for row in (3, 7):
        (csv.parent / table.loc[row, "file"]).write_bytes(b"")
    out = tmp_path / "b"
    with pytest.raises(ValueError, match=r"^2 of 12 training image\(s\) cannot be read") as error:
        train(TrainConfig(csv=csv, out=out, cache="none", **TINY), progress=False)
    message = str(error.value)
    assert table.loc[3, "file"] in message and "skip_unreadable=True" in message and "\n" not in message
    assert str(tmp_path) not in message
    assert not out.exists()


def test_a_class_drawn_for_validation_only_is_moved_to_training(run):
    result, _, _, _ = run
    data = json.loads((result.bundle / "train.json").read_text())["data"]
    assert data["train"]["class_counts"]["effusion"] == 1 and data["valid"]["class_counts"]["effusion"] == 0
    assert data["valid"]["samples"] > 0


def test_one_image_per_class_is_refused_naming_the_counts(tmp_path):
    csv, table = _dataset(tmp_path / "data")
    pair = table.groupby("label").head(1)  # one nodule, one normal
    out = tmp_path / "b"
    with pytest.raises(ValueError, match=r"2 labeled image\(s\) of 2 patient\(s\) are too few for a validation "
                                         r"split .*: normal \(1\), nodule \(1\)$"):
        train(TrainConfig(csv=_rewrite(csv, pair, "pair.csv"), out=out, cache="none", **TINY), progress=False)
    assert not out.exists()


@pytest.mark.parametrize("value", ["false", "no", 0, None])
def test_a_switch_that_is_not_true_or_false_is_refused(tmp_path, value):
    # "false" from a JSON config would otherwise be a true value and silently turn the switch on.
    for name in ("freeze_bn_stats", "augment", "overwrite"):
        with pytest.raises(ValueError, match=f"{name} must be true or false, got {value!r}"):
            TrainConfig.from_dict({"csv": str(tmp_path / "labels.csv"), name: value})


def test_a_size_above_the_maximum_is_refused(tmp_path):
    with pytest.raises(ValueError, match=f"size 100000 is above the maximum of {MAX_SIZE}"):
        TrainConfig(csv=tmp_path / "labels.csv", size=100000)


@pytest.mark.parametrize("value", ["../outside.dcm", "images/../../outside.dcm", "/etc/passwd"])
def test_image_values_outside_root_are_refused_unless_allowed(tmp_path, value):
    csv, table = _dataset(tmp_path / "data")
    (tmp_path / "outside.dcm").write_bytes((csv.parent / table.loc[0, "file"]).read_bytes())
    table.loc[3, "file"] = value
    config = TrainConfig(csv=_rewrite(csv, table, "escape.csv"), out=tmp_path / "b", **TINY)
    with pytest.raises(ValueError, match=rf"1 image value\(s\) point outside root: line 5 \({value}\)"):
        load_items(config, progress=False)
    if not value.startswith("/"):
        items = load_items(config.replace(allow_outside_root=True), progress=False)
        assert (tmp_path / "outside.dcm").samefile(items.paths[3][0])


@pytest.mark.parametrize("name", ["labels.json", "report.txt", "history.csv", "data_report.csv"])
def test_out_holding_a_users_file_is_refused_and_kept(tmp_path, name):
    csv, _ = _dataset(tmp_path / "data")
    out = tmp_path / "mine"
    out.mkdir()
    (out / name).write_text("the user's file")
    for resume in (False, True):  # resume continues an interrupted run: a folder without its checkpoint is none
        with pytest.raises(FileExistsError, match=f"already holds {name}, which this run would replace: "
                                                  "pass overwrite=True"):
            train(TrainConfig(csv=csv, out=out, resume=resume, **TINY), progress=False)
    assert (out / name).read_text() == "the user's file" and sorted(p.name for p in out.iterdir()) == [name]
