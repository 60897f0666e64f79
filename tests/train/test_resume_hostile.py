"""Hostile and mismatched checkpoints: ``resume`` loads data only, checks the settings, and answers in one line.

One interrupted run (phantom DICOMs, timm's tiny ``test_resnet``, 32 px) is made once; every test
tampers with a copy of its ``checkpoints`` folder and resumes.
"""

import io
import json
import shutil

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig, recipe, train  # noqa: E402
from radiology.train.callbacks import SaveLast  # noqa: E402


def _config(csv, out, **overrides):
    settings = dict(csv=csv, image_cols="file", label_cols="label", group_col="patient", out=out, size=32,
                    arch="test_resnet", pretrained=None, epochs=2, head_epochs=1, batch_size=8, augment=False,
                    cache="none", seed=0, refit=False)  # the validated run's checkpoints (a refit starts afresh)
    settings.update(overrides)
    return TrainConfig(**settings)


def _interrupt_after_first_epoch(monkeypatch):
    original = SaveLast.after_epoch

    def interrupt_after_saving(self):
        original(self)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C once the first epoch was saved

    monkeypatch.setattr(SaveLast, "after_epoch", interrupt_after_saving)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """(labels.csv, a run folder interrupted after epoch 1 of 2)."""
    root = tmp_path_factory.mktemp("resume")
    csv = write_findings_dataset(root / "data", 24, size=(48, 40), seed=5)
    out = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        _interrupt_after_first_epoch(patch)
        with pytest.raises(KeyboardInterrupt):
            train(_config(csv, out), progress=False)
    return csv, out


@pytest.fixture
def run(interrupted, tmp_path):
    """A fresh copy of the interrupted run: (labels.csv, run folder, its checkpoints folder)."""
    csv, source = interrupted
    out = tmp_path / "run"
    shutil.copytree(source, out)
    return csv, out, out / "checkpoints"


def _resume(csv, out, **overrides):
    return train(_config(csv, out, resume=True, **overrides), progress=False)


def _assert_one_line_naming(error, name):
    message = str(error.value)
    assert "\n" not in message and name in message, message
    assert "Traceback" not in message


def test_the_checkpoint_is_stamped_with_the_settings_of_its_run(run):
    _, _, checkpoints = run
    record = json.loads((checkpoints / "last_epoch.json").read_text())
    assert record["epoch"] == 1
    settings = record["settings"]
    assert settings["arch"] == "test_resnet" and settings["in_chans"] == 1 and settings["size"] == [32, 32]
    assert settings["classes"] == ["normal", "nodule"] and settings["multi_label"] is False
    # The same record travels inside last.pth, loadable as plain data (no unpickling of code).
    state = torch.load(checkpoints / "last.pth", weights_only=True)
    assert state["radiology"] == record and set(state) == {"model", "opt", "radiology"}


@pytest.mark.parametrize(("change", "setting"), [
    ({"arch": "resnet10t"}, "arch"),
    ({"size": 40}, "size"),
    ({"channels": 3}, "channels"),
    ("relabel", "classes"),
])
def test_resume_with_other_settings_is_refused_before_training(run, tmp_path, change, setting):
    csv, out, checkpoints = run
    if change == "relabel":  # the same images under other class names
        table = pd.read_csv(csv)
        table["label"] = table["label"].replace({"normal": "healthy"})
        csv = csv.with_name("relabelled.csv")
        table.to_csv(csv, index=False)
        change = {}
    before = {path.name: path.read_bytes() for path in checkpoints.iterdir()}
    with pytest.raises(ValueError, match="made with other settings") as error:
        _resume(csv, out, **change)
    _assert_one_line_naming(error, "last.pth")
    assert setting in str(error.value)
    # Refused before any epoch ran: the checkpoints and the log are as the interrupted run left them.
    assert {path.name: path.read_bytes() for path in checkpoints.iterdir()} == before
    assert pd.read_csv(out / "history.csv")["phase"].tolist() == ["head", "fine_tune"]


@pytest.mark.parametrize("name", ["last.pth", "best.pth"])
def test_a_truncated_checkpoint_gets_one_line_naming_it(run, name):
    csv, out, checkpoints = run
    data = (checkpoints / name).read_bytes()
    (checkpoints / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged") as error:
        _resume(csv, out)
    _assert_one_line_naming(error, name)


def test_a_checkpoint_of_another_program_is_refused(run):
    csv, out, checkpoints = run
    state = torch.load(checkpoints / "last.pth", weights_only=True)
    torch.save({"model": state["model"], "opt": state["opt"]}, checkpoints / "last.pth")  # no settings stamp
    with pytest.raises(ValueError, match="not stamped") as error:
        _resume(csv, out)
    _assert_one_line_naming(error, "last.pth")


class _Payload:
    """Unpickling this calls ``open(path, "w")``: the file appearing proves code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.mark.parametrize("name", ["last.pth", "best.pth"])
def test_a_checkpoint_carrying_code_is_refused_and_runs_nothing(run, tmp_path, name):
    csv, out, checkpoints = run
    ran = tmp_path / "payload-ran"
    buffer = io.BytesIO()
    torch.save({"model": _Payload(ran), "radiology": {"settings": {}}}, buffer)
    (checkpoints / name).write_bytes(buffer.getvalue())
    marker = checkpoints / "last_epoch.json"
    # A best value no resumed epoch can beat, so that the end of training reloads the planted best.pth
    # (fastai's own reload unpickles it without restriction).
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "best": -1e9}))
    with pytest.raises(ValueError, match="could run code") as error:
        _resume(csv, out)
    _assert_one_line_naming(error, name)
    assert not ran.exists()


def test_resume_continues_with_the_saved_optimizer_state(run, monkeypatch):
    from fastai.callback.core import Callback

    csv, out, checkpoints = run
    saved = torch.load(checkpoints / "last.pth", weights_only=True)["opt"]["state"]
    seen = {}

    class Probe(Callback):
        def before_fit(self):  # the optimizer state the first resumed step starts from
            seen["state"] = [{key: value.clone() if torch.is_tensor(value) else value for key, value in state.items()}
                             for state in self.learn.opt.state_dict()["state"]]  # steps update them in place

    original = recipe.fine_tune

    def fine_tune_with_probe(*args, cbs=(), **kwargs):
        return original(*args, cbs=[*cbs, Probe()], **kwargs)

    monkeypatch.setattr(recipe, "fine_tune", fine_tune_with_probe)
    _resume(csv, out)
    moments = [index for index, state in enumerate(saved) if "grad_avg" in state]
    assert moments, "the interrupted run saved no Adam moments"
    for index in moments:  # fastai's unfreeze used to clear them: the resumed run restarted Adam from zero
        torch.testing.assert_close(seen["state"][index]["grad_avg"].cpu(), saved[index]["grad_avg"])
        assert seen["state"][index]["step"] == saved[index]["step"]


def test_an_interrupted_save_keeps_the_last_complete_checkpoint(interrupted, tmp_path, monkeypatch):
    csv, _ = interrupted
    out = tmp_path / "run"
    real_save = torch.save
    saves_with_optimizer = []

    def save_half_then_interrupt(obj, target, *args, **kwargs):
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if isinstance(obj, dict) and "opt" in obj:
            saves_with_optimizer.append(target)
            if len(saves_with_optimizer) == 2:  # Ctrl-C halfway through writing epoch 2's last.pth
                data = data[: len(data) // 2]
                if hasattr(target, "write"):
                    target.write(data)
                else:
                    with open(target, "wb") as file:
                        file.write(data)
                raise KeyboardInterrupt
        if hasattr(target, "write"):
            target.write(data)
        else:
            with open(target, "wb") as file:
                file.write(data)

    monkeypatch.setattr(torch, "save", save_half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(_config(csv, out), progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert json.loads((out / "checkpoints" / "last_epoch.json").read_text())["epoch"] == 1
    assert not [path.name for path in (out / "checkpoints").iterdir() if path.name.endswith(".tmp")]
    result = _resume(csv, out)  # epoch 1's checkpoint is intact: the run continues from it
    history = pd.read_csv(result.bundle / "history.csv")
    assert history["phase"].tolist() == ["head", "fine_tune", "fine_tune"] and history["epoch"].tolist() == [0, 0, 1]
