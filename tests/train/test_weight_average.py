"""``weight_average``: a moving average of the fine-tuned weights is what is validated, saved and kept."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from fastai.callback.core import Callback  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, fine_tune, train  # noqa: E402
from radiology.train.callbacks import TrainOnly, WeightAverage  # noqa: E402
from tests.train.tiny import tiny_learner  # noqa: E402

DECAY = 0.6


class _Record(Callback):
    """The weights after every step, at every validation and at the start of every training epoch."""

    order = WeightAverage.order + 1

    def before_fit(self):
        self.steps, self.validated, self.started = [], [], []

    def _weights(self):
        return torch.cat([p.detach().flatten().clone() for p in self.learn.model.parameters()])

    def after_step(self):
        self.steps.append(self._weights())

    def before_validate(self):
        self.validated.append((len(self.steps), self._weights()))

    def before_train(self):
        self.started.append((len(self.steps), self._weights()))


def _expected_average(start, steps):
    average = start.clone()
    for t, weights in enumerate(steps, start=1):
        average += (1 - min(DECAY, (1 + t) / (10 + t))) * (weights - average)
    return average


def _learner(tmp_path):
    return tiny_learner(tmp_path)


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_validation_sees_the_average_and_training_goes_on_from_the_trained_weights(tmp_path):
    learn = _learner(tmp_path)
    start = _weights(learn.model).clone()
    record = _Record()
    fine_tune(learn, 3, 1e-2, cbs=[WeightAverage(DECAY), record])
    assert len(record.validated) == 3 and len(record.steps) == 12
    for done, weights in record.validated:
        assert torch.allclose(weights, _expected_average(start, record.steps[:done]), atol=1e-6)
        assert not torch.allclose(weights, record.steps[done - 1])  # not the trained weights
    for done, weights in record.started[1:]:
        assert torch.equal(weights, record.steps[done - 1])  # the trained weights are back
    # The kept model (the best epoch by validation loss, reloaded) is one of the averages validated.
    kept = _weights(learn.model)
    assert any(torch.allclose(kept, weights) for _, weights in record.validated)


def test_a_refit_without_validation_ends_with_the_average(tmp_path):
    learn = _learner(tmp_path)
    start = _weights(learn.model).clone()
    record = _Record()
    fine_tune(learn, 4, 1e-2, stop_after=2, phase="refit", cbs=[WeightAverage(DECAY), record])
    assert len(record.steps) == 8
    assert torch.allclose(_weights(learn.model), _expected_average(start, record.steps), atol=1e-6)
    assert learn.kept_epoch == 2 and not any(isinstance(cb, TrainOnly) for cb in learn.cbs)


def test_train_saves_the_averaged_model(tmp_path, caplog):
    csv = write_findings_dataset(tmp_path / "data", 24, size=(48, 40), seed=4)
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", size=32,
                    arch="test_resnet", pretrained=None, epochs=2, head_epochs=1, batch_size=8, augment=False,
                    cache="none", seed=0, refit=False)
    plain = train(TrainConfig(out=tmp_path / "plain", **settings), progress=False)
    with caplog.at_level("INFO", logger="radiology.train"):
        averaged = train(TrainConfig(out=tmp_path / "averaged", weight_average=0.9, **settings), progress=False)
    assert "weights averaged (decay 0.9)" in caplog.text  # the log says what fine-tuning does
    record = json.loads((averaged.bundle / "train.json").read_text())
    assert record["settings"]["weight_average"] == 0.9
    first = load_file(plain.bundle / "weights.safetensors")
    second = load_file(averaged.bundle / "weights.safetensors")
    assert any(not torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("value", [1.0, -0.1, True, "0.9"])
def test_weight_average_is_checked(tmp_path, value):
    with pytest.raises(ValueError, match="weight_average must be in"):
        TrainConfig(csv=tmp_path / "labels.csv", out=tmp_path / "out", weight_average=value)


def test_weight_average_decay_is_checked():
    with pytest.raises(ValueError, match="decay must be in"):
        WeightAverage(1.0)
