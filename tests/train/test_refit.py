"""``refit``: once the epoch is chosen on validation, a new model trains on every training image for those epochs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from fastai.metrics import accuracy  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from radiology.models import load_bundle  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, fine_tune, train  # noqa: E402
from radiology.train.callbacks import TrainOnly  # noqa: E402
from tests.train.tiny import tiny_learner  # noqa: E402

EPOCHS, HEAD_EPOCHS = 3, 2


def _config(csv, out, **overrides):
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", out=out, size=32,
                    arch="test_resnet", pretrained=None, epochs=EPOCHS, head_epochs=HEAD_EPOCHS, batch_size=8,
                    augment=False, cache="none", seed=0, refit=True)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def refitted(tmp_path_factory):
    """(labels.csv, the refit run's TrainResult)."""
    root = tmp_path_factory.mktemp("refit")
    csv = write_findings_dataset(root / "data", 30, size=(48, 40), seed=5)
    return csv, train(_config(csv, root / "run"), progress=False)


def test_the_refit_trains_on_every_training_image_for_the_epochs_validation_chose(refitted):
    csv, result = refitted
    record = json.loads((result.bundle / "train.json").read_text())
    n_train, n_valid = record["data"]["train"]["samples"], record["data"]["valid"]["samples"]
    assert n_valid > 0 and n_train + n_valid == len(pd.read_csv(csv))
    kept = record["kept_epoch"]
    assert 1 <= kept <= EPOCHS
    assert record["refit"] == {"images": n_train + n_valid, "head_epochs": HEAD_EPOCHS, "epochs": kept,
                               "thresholds": None}
    assert len(result.learner.dls.train.dataset) == n_train + n_valid  # the validation images trained on too
    assert record["settings"]["refit"] is True
    # The validated run's rows stay, then the refit's: training loss only (nothing measured on images it trains on).
    history = pd.read_csv(result.bundle / "history.csv")
    assert history["phase"].tolist() == (["head"] * HEAD_EPOCHS + ["fine_tune"] * EPOCHS
                                         + ["refit_head"] * HEAD_EPOCHS + ["refit"] * kept)
    refit_rows = history[history["phase"].str.startswith("refit")]
    assert refit_rows["train_loss"].notna().all()
    assert refit_rows[["valid_loss", "accuracy", "macro_auc"]].isna().all().all()
    assert history[~history["phase"].str.startswith("refit")]["valid_loss"].notna().all()
    # The metrics are the validated model's (the refit has no held-out images).
    assert result.metrics == record["validation_metrics"] and result.metrics["n"] == n_valid


def test_the_bundle_holds_the_refit_model_not_the_validated_one(refitted):
    _, result = refitted
    best = torch.load(result.bundle / "checkpoints" / "best.pth", weights_only=True)
    validated = best.get("model", best)
    saved = load_file(result.bundle / "weights.safetensors")
    shared = [name for name in saved if name in validated]
    assert shared and any(not torch.equal(saved[name], validated[name]) for name in shared)
    bundle = load_bundle(result.bundle)
    model_state = result.learner.model.state_dict()
    assert all(torch.equal(saved[name], model_state[name].cpu()) for name in saved)
    assert bundle.classes == ["normal", "nodule"]


def test_a_refit_of_the_same_seed_is_the_same_model(refitted, tmp_path):
    csv, result = refitted
    again = train(_config(csv, tmp_path / "again"), progress=False)
    first, second = load_file(result.bundle / "weights.safetensors"), load_file(again.bundle / "weights.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _tiny_learner(tmp_path):
    seen = {"valid": 0}

    class Counted(list):
        def __getitem__(self, i):
            seen["valid"] += 1
            return super().__getitem__(i)

    return tiny_learner(tmp_path, metrics=[accuracy], valid=Counted), seen


def test_stop_after_follows_the_full_schedule_and_never_validates(tmp_path):
    full, _ = _tiny_learner(tmp_path / "full")
    fine_tune(full, 4, 1e-2)
    part, seen = _tiny_learner(tmp_path / "part")
    fine_tune(part, 4, 1e-2, stop_after=2, phase="refit")
    steps = len(part.recorder.lrs)
    assert steps == len(full.recorder.lrs) // 2 > 0
    assert np.allclose(part.recorder.lrs, full.recorder.lrs[:steps])  # the same one-cycle, cut after epoch 2
    assert part.kept_epoch == 2 and seen["valid"] == 0
    assert part.recorder.valid_metrics and [m.name for m in part.metrics] == ["accuracy"]  # restored after the fit
    history = pd.read_csv(tmp_path / "part" / "history.csv")
    assert history["phase"].tolist() == ["refit", "refit"] and "valid_loss" not in history.columns


def test_stop_after_is_checked(tmp_path):
    learn, _ = _tiny_learner(tmp_path)
    with pytest.raises(ValueError, match="stop_after must be from 0 to epochs"):
        fine_tune(learn, 2, stop_after=3)
    with pytest.raises(ValueError, match="cannot resume"):
        fine_tune(learn, 2, stop_after=1, start_epoch=1)
    for wrong in (-1, 1.5, True):
        with pytest.raises(ValueError, match="stop_after must be an integer"):
            TrainOnly(wrong)


@pytest.mark.parametrize("other, message", [({"folds": 3}, "cannot be combined with folds"),
                                            ({"semi": "fixmatch", "unlabeled": "u"}, "cannot be combined with semi")])
def test_refit_refuses_what_it_cannot_do(tmp_path, other, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path / "labels.csv", tmp_path / "out", **other)


def test_the_command_line_refits_and_refuses_it_with_folds(tmp_path):
    csv = write_findings_dataset(tmp_path / "data", 16, size=(48, 40), seed=2)
    command = [sys.executable, "-m", "radiology.cli", "train", "--csv", str(csv), "--image-col", "file",
               "--label-col", "label", "--arch", "test_resnet", "--pretrained", "none", "--size", "32",
               "--epochs", "1", "--head-epochs", "1", "--batch-size", "4", "--cache", "none", "-q", "--refit",
               "--out", str(tmp_path / "run")]
    refused = subprocess.run([*command, "--folds", "2"], capture_output=True, text=True)
    assert refused.returncode != 0 and "cannot be combined with folds" in refused.stderr
    assert not (tmp_path / "run").exists()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "train.json").read_text())
    assert record["settings"]["refit"] is True and record["refit"]["images"] == 16
    from radiology.cli import build_parser

    parse = build_parser().parse_args
    assert [parse(["train", "--out", "b", *flag]).refit for flag in ([], ["--refit"], ["--no-refit"])] == [
        None, True, False]  # None: the library's default (or the --config file's value) stands


def test_by_default_one_model_refits_and_folds_keep_their_validated_models(tmp_path):
    csv = write_findings_dataset(tmp_path / "data", 16, size=(48, 40), seed=3)
    quick = dict(refit=None, epochs=1, head_epochs=1, batch_size=4)
    one = train(_config(csv, tmp_path / "one", **quick), progress=False)
    record = json.loads((one.bundle / "train.json").read_text())
    assert record["settings"]["refit"] is None and record["refit"]["images"] == 16
    assert pd.read_csv(one.bundle / "history.csv")["phase"].str.startswith("refit").any()
    folds = train(_config(csv, tmp_path / "folds", folds=2, **quick), progress=False)  # not refused: not refitted
    for member in ("fold-1", "fold-2"):
        fold = json.loads((folds.bundle / member / "train.json").read_text())
        assert fold["refit"] is None
        assert not pd.read_csv(folds.bundle / member / "history.csv")["phase"].str.startswith("refit").any()


def test_refit_false_saves_the_validated_model(tmp_path):
    csv = write_findings_dataset(tmp_path / "data", 16, size=(48, 40), seed=3)
    result = train(_config(csv, tmp_path / "run", refit=False, epochs=1, head_epochs=1, batch_size=4), progress=False)
    record = json.loads((result.bundle / "train.json").read_text())
    assert record["refit"] is None and record["settings"]["refit"] is False
    assert set(pd.read_csv(result.bundle / "history.csv")["phase"]) == {"head", "fine_tune"}
    best = torch.load(result.bundle / "checkpoints" / "best.pth", weights_only=True)
    validated, saved = best.get("model", best), load_file(result.bundle / "weights.safetensors")
    shared = [name for name in saved if name in validated]
    assert shared and all(torch.equal(saved[name], validated[name]) for name in shared)
    for wrong in ("yes", 1):
        with pytest.raises(ValueError, match="refit must be True, False or None"):
            _config(csv, tmp_path / "other", refit=wrong)
