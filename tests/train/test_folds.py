"""``folds=K``: K models on patient-grouped folds, one ensemble bundle, out-of-fold metrics that are what they say."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from radiology.data import from_csv, kfold_splits  # noqa: E402
from radiology.evaluate import classification_metrics  # noqa: E402
from radiology.manifest import ENSEMBLE, MANIFEST, BundleError, bundle_members, write_manifest  # noqa: E402
from radiology.models import load_bundle, save_ensemble, verify_bundle  # noqa: E402
from radiology.predict import Ensemble  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, train  # noqa: E402

FOLDS = 3


def _config(csv, out, **overrides):
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", out=out, size=32,
                    arch="test_resnet", pretrained=None, epochs=1, head_epochs=1, batch_size=8, augment=False,
                    cache="none", seed=0, folds=FOLDS)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(labels.csv, a finished 3-fold run folder, its TrainResult)."""
    root = tmp_path_factory.mktemp("folds")
    csv = write_findings_dataset(root / "data", 30, size=(48, 40), seed=5)
    out = root / "run"
    return csv, out, train(_config(csv, out), progress=False)


@pytest.fixture
def run(trained, tmp_path):
    """A fresh copy of the finished run: (labels.csv, run folder)."""
    csv, source, _ = trained
    shutil.copytree(source, tmp_path / "run")
    return csv, tmp_path / "run"


def _rewrite_ensemble(folder, members):
    """Replace ensemble.json and re-sign the ensemble's manifest, as a forger who can write the folder would."""
    (folder / ENSEMBLE).write_text(json.dumps({"format": "radiology.ensemble", "version": 1, "members": members}))
    write_manifest(folder, [ENSEMBLE, "labels.json", "train.json"])


def test_the_folds_partition_the_patients_and_each_image_is_scored_by_the_model_not_trained_on_it(trained):
    csv, out, result = trained
    items = from_csv(csv, csv.parent, ["file"], ["label"], group_col="patient")
    splits = kfold_splits(items.targets, items.groups, n_splits=FOLDS, seed=0)
    valid = np.concatenate([v for _, v in splits])
    assert sorted(valid) == list(range(len(items)))  # every image in exactly one validation fold
    for train_idx, valid_idx in splits:
        assert not set(np.asarray(items.groups)[train_idx]) & set(np.asarray(items.groups)[valid_idx])
    # The out-of-fold metrics are those of each fold's saved model on its own validation images.
    members = bundle_members(out)
    assert [m.name for m in members] == [f"fold-{k}" for k in range(1, FOLDS + 1)]
    probs = np.zeros((len(items), 2))
    for member, (_, valid_idx) in zip(members, splits):
        probs[valid_idx] = load_bundle(member).predict([items.paths[i][0] for i in valid_idx])
    expected = classification_metrics(np.asarray(items.targets), probs, items.classes, multi_label=False)
    record = json.loads((out / "train.json").read_text())
    assert record["validation_metrics"]["macro_auc"] == pytest.approx(expected["macro_auc"], abs=1e-4)
    assert record["validation_metrics"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert result.metrics["n"] == record["data"]["scored_out_of_fold"] == len(items)
    assert [f["validation_images"] for f in record["folds"]] == [len(v) for _, v in splits]
    assert record["settings"]["folds"] == FOLDS
    assert str(out) not in (out / "train.json").read_text()  # no folder of the user's
    for name in ("report.txt", "roc.png", "confusion_matrix.png", "data_report.csv"):
        assert (out / name).is_file()


def test_fold_one_is_the_split_of_the_one_model_run(trained):
    csv, _, _ = trained
    items = from_csv(csv, csv.parent, ["file"], ["label"], group_col="patient")
    from radiology.data import train_valid_split

    _, one = train_valid_split(items.targets, items.groups, valid_fraction=1 / FOLDS, seed=0)
    _, first = kfold_splits(items.targets, items.groups, n_splits=FOLDS, seed=0)[0]
    assert sorted(one) == sorted(first)


def test_predict_on_the_ensemble_bundle_is_the_mean_of_its_members(trained, tmp_path):
    csv, out, _ = trained
    images = csv.parent / "images"

    def predict(*bundles, name):
        table = tmp_path / name
        subprocess.run([sys.executable, "-m", "radiology.cli", "predict", *map(str, bundles), str(images),
                        "--out", str(table), "-q"], check=True, capture_output=True)
        return pd.read_csv(table)

    together = predict(out, name="ensemble.csv")
    apart = [predict(member, name=f"{member.name}.csv") for member in bundle_members(out)]
    columns = [c for c in together.columns if c.startswith("prob_")]
    mean = np.mean([a[columns].to_numpy() for a in apart], axis=0)
    np.testing.assert_allclose(together[columns].to_numpy(), mean, atol=1e-6)
    assert not np.allclose(apart[0][columns].to_numpy(), apart[1][columns].to_numpy())  # the members differ
    # Every model counts once: the ensemble and one of its members make four.
    assert len(Ensemble.load([out, out / "fold-1"]).bundles) == FOLDS + 1


def test_evaluate_reads_the_ensemble_labels(trained, tmp_path):
    csv, out, _ = trained
    table = tmp_path / "p.csv"
    model = Ensemble.load(out, backend="onnx")
    from radiology.predict import predict_table, prediction_inputs

    inputs = prediction_inputs(csv, root=csv.parent, image_cols="file", progress=False)
    predict_table(model, inputs, progress=False).to_csv(table, index=False)
    from radiology.evaluate import evaluate_predictions

    metrics = evaluate_predictions(table, csv, image_cols="file", label_cols="label", bundle=out, n_boot=0)
    assert metrics["n"] == 30


def test_a_model_loader_refuses_an_ensemble_naming_the_way_to_load_it(trained):
    _, out, _ = trained
    with pytest.raises(BundleError, match="give one of its members .e.g. .*fold-1.*Ensemble.load"):
        load_bundle(out)


def test_verify_checks_every_member_file(run):
    _, out = run
    verify_bundle(out)
    with open(out / "fold-3" / "model.onnx", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00")
    with pytest.raises(BundleError, match="fold-3.model.onnx"):
        verify_bundle(out)


@pytest.mark.parametrize("members, message", [
    ([{"folder": "../run", "manifest": "0" * 64}], "must name a folder of the ensemble"),
    ([{"folder": "fold-1"}], "must name a folder of the ensemble"),
    (["fold-1"], "must name a folder of the ensemble"),
    ([], "1 to 100 members"),
    (None, "version 2 is not one this radiology reads"),
])
def test_a_forged_member_list_is_refused(run, members, message):
    _, out = run
    if members is None:  # a later format
        record = json.loads((out / ENSEMBLE).read_text())
        (out / ENSEMBLE).write_text(json.dumps({**record, "version": 2}))
        write_manifest(out, [ENSEMBLE, "labels.json", "train.json"])
    else:
        _rewrite_ensemble(out, members)
    with pytest.raises(BundleError, match=message):
        Ensemble.load(out)


def test_a_member_replaced_after_saving_is_refused(run, tmp_path):
    csv, out = run
    listed = json.loads((out / ENSEMBLE).read_text())["members"]
    # Another run's valid bundle put in fold-2's place: its manifest is not the one the ensemble vouched for.
    shutil.rmtree(out / "fold-2")
    shutil.copytree(out / "fold-1", out / "fold-2")
    with pytest.raises(BundleError, match="fold-2.bundle.json: does not match"):
        bundle_members(out)
    _rewrite_ensemble(out, [listed[0], listed[0]])
    with pytest.raises(BundleError, match="listed twice"):
        bundle_members(out)


def test_a_linked_or_nested_member_is_refused(run, tmp_path):
    _, out = run
    listed = json.loads((out / ENSEMBLE).read_text())["members"]
    shutil.move(out / "fold-1", tmp_path / "elsewhere")
    os.symlink(tmp_path / "elsewhere", out / "fold-1")
    with pytest.raises(BundleError, match="missing or a link"):
        bundle_members(out)
    os.unlink(out / "fold-1")
    shutil.copytree(out, out / "fold-1")  # an ensemble as a member, manifest digest made to match
    from radiology.io import file_digest

    listed[0]["manifest"] = file_digest(out / "fold-1" / MANIFEST)
    _rewrite_ensemble(out, listed)
    with pytest.raises(BundleError, match="ensemble inside an ensemble"):
        bundle_members(out)


def test_members_with_other_classes_are_refused(run):
    _, out = run
    labels = json.loads((out / "fold-2" / "labels.json").read_text())
    labels["classes"] = labels["classes"][::-1]
    (out / "fold-2" / "labels.json").write_text(json.dumps(labels))
    files = json.loads((out / "fold-2" / MANIFEST).read_text())["files"]
    write_manifest(out / "fold-2", files)
    with pytest.raises(BundleError, match="fold-2.labels.json: classes"):
        save_ensemble(out, ["fold-1", "fold-2", "fold-3"])


@pytest.mark.parametrize("members", [[], ["../x"], ["fold-1", "fold-1"]])
def test_save_ensemble_takes_distinct_plain_member_names(run, members):
    _, out = run
    with pytest.raises(ValueError):
        save_ensemble(out, members)


def test_an_interrupted_folds_run_resumes_with_the_finished_folds_kept(run):
    csv, out = run
    kept = (out / "fold-1" / "weights.safetensors").stat().st_mtime_ns
    expected = json.loads((out / "train.json").read_text())["validation_metrics"]
    shutil.rmtree(out / "fold-3")  # interrupted before fold 3 began
    for name in (ENSEMBLE, MANIFEST, "train.json"):
        (out / name).unlink()
    with pytest.raises(ValueError, match="fold-1 was trained with other settings .epochs"):
        train(_config(csv, out, resume=True, epochs=2), progress=False)
    # Saved with refit None (the default); a folds run refits with neither, so False is no other setting.
    result = train(_config(csv, out, resume=True, refit=False), progress=False)
    assert (out / "fold-1" / "weights.safetensors").stat().st_mtime_ns == kept
    assert [m.name for m in bundle_members(out)] == ["fold-1", "fold-2", "fold-3"]
    assert result.metrics["n"] == 30
    # Training is reproducible fold by fold, so the resumed run scores as the uninterrupted one.
    assert result.metrics["macro_auc"] == pytest.approx(expected["macro_auc"], abs=1e-3)


def test_either_kind_of_run_refuses_the_others_model_before_any_work(run, tmp_path):
    csv, out = run
    with pytest.raises(FileExistsError, match="ensemble.json"):
        train(_config(csv, out, folds=1), progress=False)
    one = tmp_path / "one"
    (one / "checkpoints").mkdir(parents=True)
    (one / "model.json").write_text("{}")
    with pytest.raises(FileExistsError, match="model.json"):
        train(_config(csv, one), progress=False)
    assert sorted(p.name for p in one.iterdir()) == ["checkpoints", "model.json"]  # nothing written


def test_too_few_patients_for_the_folds_are_named(tmp_path):
    csv = write_findings_dataset(tmp_path / "data", 4, size=(48, 40), seed=1)
    with pytest.raises(ValueError, match="too few for a validation split with folds 5"):
        train(_config(csv, tmp_path / "run", folds=5), progress=False)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("folds", [0, 21, True, "3", 2.5])
def test_folds_must_be_an_integer_from_one_to_twenty(tmp_path, folds):
    with pytest.raises(ValueError, match="folds must be an integer"):
        _config(tmp_path / "x.csv", tmp_path / "run", folds=folds)


def test_the_command_line_trains_folds_and_refuses_zero(tmp_path):
    csv = write_findings_dataset(tmp_path / "data", 12, size=(48, 40), seed=2)
    command = [sys.executable, "-m", "radiology.cli", "train", "--csv", str(csv), "--image-col", "file",
               "--label-col", "label", "--arch", "test_resnet", "--pretrained", "none", "--size", "32",
               "--epochs", "1", "--head-epochs", "0", "--batch-size", "4", "--cache", "none", "-q",
               "--out", str(tmp_path / "run")]
    refused = subprocess.run([*command, "--folds", "0"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--folds" in refused.stderr
    done = subprocess.run([*command, "--folds", "2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("out-of-fold validation: ")
    assert [m.name for m in bundle_members(tmp_path / "run")] == ["fold-1", "fold-2"]


def test_resume_refuses_a_finished_fold_without_settings(run):
    csv, out = run
    (out / "fold-1" / "train.json").write_text("[]")
    files = json.loads((out / "fold-1" / MANIFEST).read_text())["files"]
    write_manifest(out / "fold-1", files)
    with pytest.raises(ValueError, match="fold-1/train.json: holds no settings"):
        train(_config(csv, out, resume=True), progress=False)


def test_resume_refuses_a_finished_fold_trained_on_other_classes(run):
    csv, out = run
    for name in (ENSEMBLE, MANIFEST, "train.json"):
        (out / name).unlink()
    labels = json.loads((out / "fold-1" / "labels.json").read_text())
    labels["classes"] = [f"other {name}" for name in labels["classes"]]
    (out / "fold-1" / "labels.json").write_text(json.dumps(labels))
    write_manifest(out / "fold-1", json.loads((out / "fold-1" / MANIFEST).read_text())["files"])
    with pytest.raises(ValueError, match="fold-1 was trained on other classes"):
        train(_config(csv, out, resume=True), progress=False)
    assert not (out / ENSEMBLE).exists()
