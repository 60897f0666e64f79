"""Checkpoints of a training run: written as data, read back checked, resumed with their optimizer state."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")

from fastai.data.core import DataLoaders  # noqa: E402
from fastai.learner import Learner  # noqa: E402
from torch import nn  # noqa: E402

from radiology.train.checkpoints import (  # noqa: E402
    CHECKPOINT,
    CHECKPOINT_DIR,
    checkpoint_settings,
    load_weights,
    read_checkpoint,
    resume_epoch,
    write_checkpoint,
)


class _Data(list):
    """A dataset that knows its classes and size, as radiology's ImageDataset does."""

    classes, multi_label, channels, size = ("a", "b"), False, 1, (4, 4)


def _learner(tmp_path, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(16, 3)
    samples = _Data(zip(x, (x.sum(1) > 0).long()))
    dls = DataLoaders.from_dsets(samples, samples, bs=4, device="cpu")
    learn = Learner(dls, nn.Linear(3, 2), loss_func=nn.CrossEntropyLoss(), path=tmp_path, model_dir=CHECKPOINT_DIR)
    learn.logger = lambda *args: None
    return learn


def _fitted(tmp_path):
    learn = _learner(tmp_path)
    with learn.no_bar():
        learn.fit(1, 1e-2)  # Adam moments in the optimizer state
    return learn


def test_the_settings_stamp_is_plain_json_of_the_model_and_data(tmp_path):
    settings = checkpoint_settings(_learner(tmp_path))
    assert settings == {"model": "Linear", "classes": ["a", "b"], "multi_label": False, "channels": 1, "size": [4, 4]}
    assert json.loads(json.dumps(settings)) == settings


def test_a_written_checkpoint_reads_back_as_data_and_loads_into_a_fresh_model(tmp_path):
    learn = _fitted(tmp_path)
    settings = checkpoint_settings(learn)
    path = tmp_path / "best.pth"
    record = {"epoch": 1, "best": 0.5, "settings": settings}
    assert write_checkpoint(learn, path, record, with_opt=False) == path
    state = read_checkpoint(path, settings)
    assert state["radiology"] == record and "opt" not in state
    fresh = _learner(tmp_path / "other", seed=1)
    load_weights(fresh, path, state)
    for key, value in learn.model.state_dict().items():
        torch.testing.assert_close(fresh.model.state_dict()[key], value)


def test_reading_refuses_other_settings_damage_and_absence_in_one_line_naming_the_file(tmp_path):
    learn = _fitted(tmp_path)
    settings = checkpoint_settings(learn)
    path = tmp_path / "last.pth"
    write_checkpoint(learn, path, {"epoch": 1, "best": None, "settings": settings}, with_opt=True)
    other = {**settings, "size": [8, 8]}
    with pytest.raises(ValueError, match=r"size \[4, 4\] in the checkpoint, \[8, 8\] now") as error:
        read_checkpoint(path, other)
    assert str(path) in str(error.value) and "overwrite=True" in str(error.value)
    assert "\n" not in str(error.value)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="damaged or not a checkpoint"):
        read_checkpoint(path, settings)
    with pytest.raises(ValueError, match="checkpoint missing"):
        read_checkpoint(tmp_path / "gone.pth", settings)


def test_weights_of_another_shape_are_refused(tmp_path):
    learn = _fitted(tmp_path)
    path = tmp_path / "best.pth"
    write_checkpoint(learn, path, {"epoch": 1, "best": 0.1, "settings": {}}, with_opt=False)
    wider = Learner(learn.dls, nn.Linear(3, 5), loss_func=nn.CrossEntropyLoss())
    with pytest.raises(ValueError, match=r"weights do not fit the model \(2 tensor\(s\)"):
        load_weights(wider, path, read_checkpoint(path, {}))


def test_resume_loads_weights_and_optimizer_state_and_returns_the_epochs_done(tmp_path):
    learn = _fitted(tmp_path)
    folder = tmp_path / CHECKPOINT_DIR
    assert resume_epoch(_learner(tmp_path)) == 0  # nothing saved yet: from scratch
    write_checkpoint(learn, folder / f"{CHECKPOINT}.pth", {"epoch": 3, "best": None,
                                                           "settings": checkpoint_settings(learn)}, with_opt=True)
    resumed = _learner(tmp_path, seed=1)
    assert resume_epoch(resumed) == 3
    for key, value in learn.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)
    saved, loaded = learn.opt.state_dict()["state"], resumed.opt.state_dict()["state"]
    moments = [index for index, state in enumerate(saved) if "grad_avg" in state]
    assert moments
    for index in moments:
        torch.testing.assert_close(loaded[index]["grad_avg"], saved[index]["grad_avg"])
