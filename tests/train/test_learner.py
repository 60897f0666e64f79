"""End to end: train on phantom DICOMs, bundle, predict (folder / CSV / ensemble / TTA), evaluate, resume."""

import json

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from safetensors.torch import load_file  # noqa: E402

from radiology.evaluate import evaluate_predictions  # noqa: E402
from radiology.models import load_bundle  # noqa: E402
from radiology.pipeline import default_pipeline  # noqa: E402
from radiology.predict import Ensemble, predict_table, prediction_inputs  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, load_items, train  # noqa: E402

SIZE = 64


def _config(csv, out, **overrides):
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", out=out, size=SIZE,
                    epochs=1, head_epochs=2, batch_size=16, cache=out.parent / f"{out.name}-cache", seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = tmp_path_factory.mktemp("phantoms")
    train_csv = write_findings_dataset(root / "train", 48, size=(80, 72), seed=1)
    test_csv = write_findings_dataset(root / "test", 12, size=(80, 72), seed=2)
    return train_csv, test_csv


@pytest.fixture(scope="module")
def trained(phantoms, tmp_path_factory):
    train_csv, _ = phantoms
    out = tmp_path_factory.mktemp("run") / "bundle"
    return train(_config(train_csv, out), progress=False)


def test_train_writes_a_complete_bundle(trained, phantoms):
    folder, csv = trained.bundle, phantoms[0]
    for name in ("model.pt2", "model.onnx", "weights.safetensors", "bundle.json", "pipeline.json", "labels.json",
                 "train.json", "history.csv", "report.txt", "confusion_matrix.png", "roc.png"):
        assert (folder / name).is_file(), name
    info = json.loads((folder / "train.json").read_text())
    assert info["data"]["train"]["samples"] + info["data"]["valid"]["samples"] == 48
    assert info["data"]["groups_on_both_sides"] == 0
    assert info["seed"] == 0 and "fastai" in info["versions"]
    assert 0.0 <= info["validation_metrics"]["accuracy"] <= 1.0
    # Patient ids never reach the outputs.
    text = "".join((folder / name).read_text() for name in ("train.json", "labels.json", "report.txt"))
    assert not any(patient in text for patient in pd.read_csv(csv)["patient"])
    history = pd.read_csv(folder / "history.csv")
    # The default refits: the validated run's rows, then the refit's on all 48 images (the epoch kept: 1 of 1).
    assert history["phase"].tolist() == ["head", "head", "fine_tune", "refit_head", "refit_head", "refit"]
    assert "valid_loss" in history.columns and info["refit"]["images"] == 48
    labels = json.loads((folder / "labels.json").read_text())
    assert labels["classes"] == ["normal", "nodule"] and labels["size"] == [SIZE, SIZE]


def test_bundle_predicts_with_the_training_preprocessing(trained, phantoms):
    _, test_csv = phantoms
    bundle = load_bundle(trained.bundle, backend="export")
    assert bundle.pipeline.to_dict() == default_pipeline(SIZE).to_dict()
    inputs = prediction_inputs(test_csv, image_cols="file")
    table = predict_table(bundle, inputs, progress=False)
    assert list(table.columns) == ["image", "SOPInstanceUID", "prediction", "prob_normal", "prob_nodule", "error"]
    assert table["image"].tolist() == pd.read_csv(test_csv)["file"].tolist()
    probs = table[["prob_normal", "prob_nodule"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # The table equals what the bundle's own file-level API gives.
    direct = bundle.predict([p[0] for p in inputs.sources])
    np.testing.assert_allclose(probs, direct, atol=1e-5)


def test_prediction_goes_on_past_a_broken_input(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = write_findings_dataset(tmp_path / "more", 3, size=(80, 72), seed=5).parent / "images"
    for path in good.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.dcm").write_bytes(b"DICM but not really")
    table = predict_table(load_bundle(trained.bundle), prediction_inputs(folder), progress=False)
    assert len(table) == 4
    broken = table[table["image"] == "broken.dcm"].iloc[0]
    assert broken["error"] and broken["prediction"] == "" and np.isnan(broken["prob_normal"])
    assert (table[table["image"] != "broken.dcm"]["error"] == "").all()


def test_csv_rows_keep_their_order_and_missing_images_get_an_error(trained, phantoms, tmp_path):
    _, test_csv = phantoms
    table = pd.read_csv(test_csv)
    rows = pd.concat([table.iloc[[3, 0]], pd.DataFrame({"file": ["images/absent.dcm"]})], ignore_index=True)
    csv = tmp_path / "rows.csv"
    rows.to_csv(csv, index=False)
    predicted = predict_table(load_bundle(trained.bundle), prediction_inputs(csv, root=test_csv.parent,
                                                                             image_cols="file"), progress=False)
    assert predicted["image"].tolist() == rows["file"].tolist()
    assert predicted["error"].iloc[:2].eq("").all() and "absent" in predicted["error"].iloc[2]


def test_ensemble_and_flip_tta_average_probabilities(trained, phantoms):
    _, test_csv = phantoms
    bundle = load_bundle(trained.bundle)
    inputs = prediction_inputs(test_csv, image_cols="file")
    single = predict_table(bundle, inputs, progress=False)
    twice = predict_table(Ensemble([bundle, load_bundle(trained.bundle, backend="onnx")]), inputs, progress=False)
    np.testing.assert_allclose(twice["prob_normal"], single["prob_normal"], atol=1e-4)
    tta = predict_table(Ensemble([bundle], tta=True), inputs, progress=False)
    batch = np.stack([bundle.load_sample(s) for s in inputs.sources])
    expected = (bundle.predict_batch(batch) + bundle.predict_batch(batch[..., ::-1].copy())) / 2
    np.testing.assert_allclose(tta[["prob_normal", "prob_nodule"]].to_numpy(), expected, atol=1e-5)


def test_evaluate_scores_predictions_against_labels(trained, phantoms, tmp_path):
    _, test_csv = phantoms
    table = predict_table(load_bundle(trained.bundle), prediction_inputs(test_csv, image_cols="file"),
                          progress=False)
    metrics = evaluate_predictions(table, test_csv, image_cols="file", label_cols="label", out=tmp_path / "eval")
    truth = pd.read_csv(test_csv)["label"].tolist()
    assert metrics["n"] == len(truth) and metrics["missing"] == 0
    assert metrics["accuracy"] == pytest.approx(np.mean(table["prediction"].to_numpy() == np.array(truth)))
    for name in ("metrics.json", "report.txt", "confusion_matrix.png", "roc.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0


def test_training_is_reproducible_on_cpu(phantoms, tmp_path, trained):
    train_csv, _ = phantoms
    again = train(_config(train_csv, tmp_path / "bundle"), progress=False)
    first = load_file(trained.bundle / "weights.safetensors")
    second = load_file(again.bundle / "weights.safetensors")
    for key in first:
        torch.testing.assert_close(first[key], second[key], msg=key)


def test_the_bundle_holds_the_epoch_with_the_lowest_validation_loss(phantoms, tmp_path):
    # kept_epoch is 1-based; the earliest wins a tie.
    result = train(_config(phantoms[0], tmp_path / "bundle", epochs=3, head_epochs=1, refit=False), progress=False)
    tune = pd.read_csv(result.bundle / "history.csv").query("phase == 'fine_tune'")["valid_loss"].to_numpy()
    assert json.loads((result.bundle / "train.json").read_text())["kept_epoch"] == int(np.argmin(tune)) + 1


@pytest.mark.parametrize("freeze", [True, False])
def test_fine_tuning_keeps_the_pretrained_batch_norm_statistics_when_asked(phantoms, tmp_path, freeze):
    from radiology.models import create_model

    train_csv, _ = phantoms
    # No head phase: the one fine-tuning epoch is the model kept.
    result = train(_config(train_csv, tmp_path / "bundle", freeze_bn_stats=freeze, head_epochs=0), progress=False)
    assert json.loads((result.bundle / "train.json").read_text())["settings"]["freeze_bn_stats"] is freeze
    pretrained = create_model("tf_efficientnet_lite0", 2, in_chans=1, pretrained="imagenet").state_dict()
    weights = load_file(result.bundle / "weights.safetensors")
    stats = [key for key in weights if key.endswith("running_var")]
    assert len(stats) > 10
    moved = [key for key in stats if not torch.allclose(weights[key], pretrained[key])]
    assert (moved == []) is freeze  # frozen: every layer as pretrained; else fine-tuning moved them


def test_resume_continues_an_interrupted_run(phantoms, tmp_path, monkeypatch):
    from radiology.train.callbacks import SaveLast

    train_csv, _ = phantoms
    config = _config(train_csv, tmp_path / "bundle", epochs=2, head_epochs=1)
    original = SaveLast.after_epoch

    def interrupt_after_saving(self):
        original(self)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C after the first epoch

    monkeypatch.setattr(SaveLast, "after_epoch", interrupt_after_saving)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    monkeypatch.setattr(SaveLast, "after_epoch", original)
    marker = tmp_path / "bundle" / "checkpoints" / "last_epoch.json"
    assert json.loads(marker.read_text())["epoch"] == 1
    result = train(TrainConfig(**{**config.to_dict(), "resume": True}), progress=False)
    history = pd.read_csv(result.bundle / "history.csv")
    validated = history[~history["phase"].str.startswith("refit")]
    assert validated["phase"].tolist() == ["head", "fine_tune", "fine_tune"]
    assert validated["epoch"].tolist() == [0, 0, 1]  # fine-tune epoch 0: first run; 1: resumed
    # The epoch kept is the best of both runs' epochs: the first run's is remembered in last.pth.
    tune = history[history["phase"] == "fine_tune"]["valid_loss"].to_numpy()
    kept = json.loads((result.bundle / "train.json").read_text())["kept_epoch"]
    assert kept == int(np.argmin(tune)) + 1
    # Then the default refit, afresh, for the epochs kept.
    assert history["phase"].tolist()[3:] == ["refit_head"] + ["refit"] * kept
    assert json.loads(marker.read_text())["epoch"] == 2


def test_multi_view_multi_label_training(tmp_path):
    # Two "eyes" per patient, labels as 0/1 columns (the ODIR layout).
    source = write_findings_dataset(tmp_path / "src", 32, findings=("nodule", "effusion"), size=(64, 64), seed=3)
    table = pd.read_csv(source)
    pairs = pd.DataFrame({
        "patient": [f"p{i}" for i in range(16)],
        "left": table["Image Index"].iloc[0::2].to_numpy(),
        "right": table["Image Index"].iloc[1::2].to_numpy(),
    })
    for name in ("nodule", "effusion"):
        has = table["Finding Labels"].str.contains(name, regex=False).to_numpy()
        pairs[name] = (has[0::2] | has[1::2]).astype(int)
    csv = tmp_path / "pairs.csv"
    pairs.to_csv(csv, index=False)
    config = _config(csv, tmp_path / "bundle", root=source.parent / "images", image_cols=("left", "right"),
                     label_cols=("nodule", "effusion"), multi_label=True, epochs=1, head_epochs=1)
    result = train(config, progress=False)
    bundle = load_bundle(result.bundle, backend="onnx")
    assert bundle.views == ("left", "right") and bundle.multi_label and len(bundle.thresholds) == 2
    inputs = prediction_inputs(csv, root=source.parent / "images", image_cols="left,right")
    predicted = predict_table(bundle, inputs, progress=False)
    assert predicted["image"].iloc[0] == f"{pairs['left'].iloc[0]}|{pairs['right'].iloc[0]}"
    probs = predicted[["prob_nodule", "prob_effusion"]].to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and not np.allclose(probs.sum(axis=1), 1.0)
    for row, chosen in zip(probs, predicted["prediction"]):
        expected = [c for c, p, t in zip(("nodule", "effusion"), row, bundle.thresholds) if p > t]
        assert chosen == "|".join(expected)
    metrics = evaluate_predictions(predicted, csv, image_cols="left,right", label_cols="nodule,effusion")
    assert "odir" in metrics and set(metrics["auc"]) == {"nodule", "effusion"}


def test_load_items_rejects_datasets_that_cannot_train(tmp_path):
    csv = tmp_path / "one.csv"
    write_findings_dataset(tmp_path / "d", 4, size=(32, 32), seed=0, prevalence=0.0)
    table = pd.read_csv(tmp_path / "d" / "labels.csv")
    table.to_csv(csv, index=False)
    with pytest.raises(ValueError, match="two classes"):
        load_items(TrainConfig(csv=csv, root=tmp_path / "d", image_cols="file", label_cols="label", out=tmp_path))
