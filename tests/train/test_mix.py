"""``mix``: fastai's MixUp / CutMix while fine-tuning, with radiology's losses."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

import torch.nn.functional as F  # noqa: E402
from fastai.callback.core import Callback  # noqa: E402
from fastai.callback.mixup import CutMix, MixUp  # noqa: E402

from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, train  # noqa: E402
from radiology.train.losses import WeightedBCEWithLogits, WeightedCrossEntropy  # noqa: E402
from tests.train.tiny import tiny_learner  # noqa: E402


class _Spy(Callback):
    """Records, for each training batch, the inputs the model gets, the targets of both images and the loss."""

    order = MixUp.order + 1  # after the mix

    def __init__(self):
        self.seen = []

    def after_loss(self):
        if self.training:
            mixer = next(cb for cb in self.learn.cbs if isinstance(cb, (MixUp, CutMix)))
            self.seen.append({"x": self.x.detach().clone(), "y": self.y.detach().clone(),
                              "y1": mixer.yb1[0].detach().clone(), "lam": mixer.lam.detach().clone(),
                              "pred": self.pred.detach().clone(), "loss": self.loss.detach().clone()})


def _learner(tmp_path, loss, targets):
    return tiny_learner(tmp_path, loss, targets)


def test_mixup_mixes_the_losses_of_class_indices(tmp_path):
    loss = WeightedCrossEntropy(weight=[1.0, 3.0])
    learn = _learner(tmp_path, loss, torch.as_tensor(np.arange(16) % 2))
    spy = _Spy()
    learn.fit(1, 1e-2, cbs=[MixUp(), spy])
    assert learn.loss_func is loss  # put back after the fit
    assert spy.seen
    for batch in spy.seen:
        lam = batch["lam"]
        assert ((lam >= 0.5) & (lam <= 1)).all() and (lam < 1).any()
        assert batch["y"].dtype == torch.int64  # the targets were not blended
        expected = torch.lerp(F.cross_entropy(batch["pred"], batch["y1"], weight=loss.weight, reduction="none"),
                              F.cross_entropy(batch["pred"], batch["y"], weight=loss.weight, reduction="none"), lam)
        assert torch.allclose(batch["loss"], expected.mean())


def test_mixup_blends_multi_label_targets(tmp_path):
    targets = torch.as_tensor(np.random.default_rng(1).integers(0, 2, size=(16, 3)), dtype=torch.float32)
    loss = WeightedBCEWithLogits(pos_weight=[2.0, 1.0, 1.0])
    learn = _learner(tmp_path, loss, targets)
    spy = _Spy()
    learn.fit(1, 1e-2, cbs=[MixUp(), spy])
    for batch in spy.seen:
        assert ((batch["y"] > 0) & (batch["y"] < 1)).any()  # soft targets: the two images' labels mixed
        assert torch.allclose(batch["loss"], loss(batch["pred"], batch["y"]))


def test_cutmix_weights_the_losses_by_the_pasted_area(tmp_path):
    loss = WeightedCrossEntropy()
    learn = _learner(tmp_path, loss, torch.as_tensor(np.arange(16) % 2))
    spy = _Spy()
    learn.fit(1, 1e-2, cbs=[CutMix(), spy])
    for batch in spy.seen:
        lam = batch["lam"]
        expected = torch.lerp(F.cross_entropy(batch["pred"], batch["y1"], reduction="none"),
                              F.cross_entropy(batch["pred"], batch["y"], reduction="none"), lam)
        assert torch.allclose(batch["loss"], expected.mean())


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_findings_dataset(tmp_path_factory.mktemp("mix") / "data", 24, size=(48, 40), seed=3)


def _config(csv, out, **overrides):
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", out=out, size=32,
                    arch="test_resnet", pretrained=None, epochs=2, head_epochs=1, batch_size=8,
                    augment=False, cache="none", seed=0)
    settings.update(overrides)
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def plain(dataset, tmp_path_factory):
    """The run without mixing that the mixed runs are compared with."""
    return train(_config(dataset, tmp_path_factory.mktemp("plain") / "run"), progress=False)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_train_mixes_images_in_fine_tuning_and_the_refit(dataset, plain, tmp_path, mix):
    mixed = train(_config(dataset, tmp_path / mix, mix=mix), progress=False)
    record = json.loads((mixed.bundle / "train.json").read_text())
    assert record["settings"]["mix"] == mix and record["refit"]
    assert isinstance(mixed.learner.loss_func, WeightedCrossEntropy)  # the mixer gave the loss back
    history = pd.read_csv(mixed.bundle / "history.csv")
    assert np.isfinite(history["train_loss"]).all()
    assert history["phase"].tolist()[:1] == ["head"]
    # The head epochs run on frozen features, unmixed: the same as without mixing; the fine-tuning differs.
    before = pd.read_csv(plain.bundle / "history.csv")
    head = history["phase"] == "head"
    assert np.allclose(history.loc[head, "train_loss"], before.loc[head, "train_loss"])
    tuned = history["phase"] == "fine_tune"
    assert not np.allclose(history.loc[tuned, "train_loss"], before.loc[tuned, "train_loss"])


@pytest.mark.parametrize("overrides, message", [
    ({"mix": "cutout"}, "mix must be one of"),
    ({"mix": "mixup", "semi": "fixmatch", "unlabeled": "u"}, "cannot be combined with semi"),
    ({"mix": "cutmix", "image_cols": ("left", "right")}, "one image column"),
])
def test_mix_refuses_what_it_cannot_do(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path / "labels.csv", tmp_path / "out", **overrides)


def test_the_command_line_takes_mix(dataset, tmp_path):
    command = [sys.executable, "-m", "radiology.cli", "train", "--csv", str(dataset), "--image-col", "file",
               "--label-col", "label", "--arch", "test_resnet", "--pretrained", "none", "--size", "32",
               "--epochs", "1", "--head-epochs", "1", "--batch-size", "8", "--cache", "none", "-q", "--no-refit",
               "--out", str(tmp_path / "run")]
    wrong = subprocess.run([*command, "--mix", "cutout"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "invalid choice: 'cutout'" in wrong.stderr
    done = subprocess.run([*command, "--mix", "cutmix"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "run" / "train.json").read_text())["settings"]["mix"] == "cutmix"
