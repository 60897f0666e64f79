"""Experiment tracking: TensorBoard events and an MLflow run of both phases, offline; a missing package stops first.

The tracker files are those of the tiny run of :func:`tests.train.test_training_log.tiny_cli_run` (made once per
session); the other tests need no training.
"""

import json
import sys

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from fastai.data.core import DataLoaders  # noqa: E402
from fastai.data.load import DataLoader  # noqa: E402
from fastai.learner import Learner  # noqa: E402

from radiology.cli import USAGE_ERROR, main  # noqa: E402
from radiology.train import TrainConfig, train  # noqa: E402
from radiology.train.tracking import MLflowCallback, TrackerUnavailable, Tracking  # noqa: E402
from tests.train.test_training_log import EPOCHS, tiny_cli_run  # noqa: E402


@pytest.fixture(scope="module")
def run():
    return tiny_cli_run()


def _mlflow_client(uri, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for it to read its file store
    return MlflowClient(uri)


def test_tensorboard_events_hold_the_losses_of_both_phases(run):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, out, _, trackers = run
    assert "tensorboard" in trackers
    (folder,) = (out / "runs").iterdir()  # one run, one event folder per phase (the default refits)
    assert sorted(path.name for path in folder.iterdir()) == ["fine_tune", "head", "refit", "refit_head"]
    for phase in ("refit_head", "refit"):  # trained on the validation images too: nothing validated
        events = EventAccumulator(str(folder / phase))
        events.Reload()
        assert "train_loss" in events.Tags()["scalars"] and "valid_loss" not in events.Tags()["scalars"]
    for phase, epochs in EPOCHS.items():
        events = EventAccumulator(str(folder / phase))
        events.Reload()
        scalars = events.Tags()["scalars"]
        assert {"train_loss", "valid_loss", "accuracy"} <= set(scalars), scalars
        assert len(events.Scalars("valid_loss")) == epochs
        assert len(events.Scalars("train_loss")) >= epochs  # one per batch


def test_mlflow_run_has_the_settings_and_every_epoch_of_both_phases(run, monkeypatch):
    pytest.importorskip("mlflow")
    root, out, _, trackers = run
    assert "mlflow" in trackers
    client = _mlflow_client((out / "mlruns").as_uri(), monkeypatch)
    experiment = client.get_experiment_by_name("radiology")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    params = found.data.params
    assert params["arch"] == "test_resnet" and params["csv"] == "labels.csv" and params["head_epochs"] == "2"
    assert json.loads(params["data/classes"]) == ["normal", "nodule"]
    # No folder of the user's (named like a patient here), no absolute path, no patient id.
    patients = (root / "Doe_John" / "labels.csv").read_text().split()
    text = json.dumps(params)
    assert "Doe_John" not in text and str(root) not in text and "/" not in "".join(params.values())
    assert not any(row.split(",")[-1] in text for row in patients[1:])
    for phase, epochs in EPOCHS.items():
        for name in ("train_loss", "valid_loss", "accuracy"):
            history = client.get_metric_history(found.info.run_id, f"{phase}/{name}")
            assert sorted(m.step for m in history) == list(range(epochs)), (phase, name)
    assert 0 <= found.data.metrics["final/accuracy"] <= 1 and "final/macro_auc" in found.data.metrics


@pytest.mark.parametrize("tracker, package", [("tensorboard", "pip install tensorboard"),
                                              ("mlflow", "pip install mlflow-skinny"), ("wandb", "pip install wandb")])
def test_a_missing_tracker_package_stops_the_run_before_any_work(tmp_path, monkeypatch, tracker, package):
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed: importing it raises ImportError
    out = tmp_path / "bundle"
    config = TrainConfig(csv=tmp_path / "labels.csv", out=out, log=tracker)  # the CSV is never read
    with pytest.raises(TrackerUnavailable, match=package) as error:
        train(config, progress=False)
    assert isinstance(error.value, ImportError) and "\n" not in str(error.value)
    assert not out.exists()


def test_the_command_names_the_package_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    args = ["train", "--csv", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "b"), "-q"]
    assert main([*args, "--log", "tensorboard,mlflow"]) == USAGE_ERROR
    err = capsys.readouterr().err
    assert "pip install mlflow-skinny" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--log", "neptune"]) == USAGE_ERROR
    assert "unknown tracker(s) 'neptune'" in capsys.readouterr().err


def test_log_takes_a_comma_list_or_a_sequence():
    assert TrainConfig(csv="x.csv", log="TensorBoard, mlflow").log == ("tensorboard", "mlflow")
    assert TrainConfig(csv="x.csv", log=["wandb", "wandb"]).log == ("wandb",)
    assert TrainConfig(csv="x.csv").log == ()
    record = TrainConfig(csv="x.csv", log="mlflow", log_dir="/home/jdoe/runs").to_record()
    assert record["log"] == ["mlflow"] and record["log_dir"] is True  # no folder of the user's named


def test_mlflow_tracking_uri_of_the_user_is_respected(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    store = tmp_path / "elsewhere"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    with Tracking(["mlflow"], tmp_path / "out", params={"arch": "resnet18"}) as tracking:
        tracking.log_final({"accuracy": 0.75, "auc": {"a": 0.5}, "classes": ["a", "b"]})
    assert not (tmp_path / "out" / "mlruns").exists()
    client = _mlflow_client(store.as_uri(), monkeypatch)
    (found,) = client.search_runs([client.get_experiment_by_name("radiology").experiment_id])
    assert found.info.status == "FINISHED" and found.data.params == {"arch": "resnet18"}
    assert found.data.metrics == {"final/accuracy": 0.75, "final/auc/a": 0.5}


def test_an_exception_ends_the_mlflow_run_as_failed(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    x = torch.randn(16, 2)
    data = list(zip(x, (x.sum(1) > 0).long()))
    learn = Learner(DataLoaders(DataLoader(data, bs=8), DataLoader(data, bs=8)), torch.nn.Linear(2, 2),
                    loss_func=torch.nn.CrossEntropyLoss(), path=tmp_path)
    learn.phase = "head"
    uri = (tmp_path / "mlruns").as_uri()
    with pytest.raises(RuntimeError, match="out of memory"):
        with MLflowCallback(uri, run_name="crash", end_after_fit=False) as callback, learn.no_bar(), \
                learn.no_logging():
            learn.fit(1, 1e-2, cbs=callback)

            def crash():
                raise RuntimeError("CUDA out of memory")

            crash()
    client = _mlflow_client(uri, monkeypatch)
    found = client.get_run(callback.run_id)
    assert found.info.status == "FAILED" and found.info.run_name == "crash"
    assert [m.step for m in client.get_metric_history(callback.run_id, "head/valid_loss")] == [0]



def test_class_names_mlflow_refuses_are_logged_under_names_it_accepts(tmp_path, monkeypatch):
    """A class named ``Pleural (R)`` reaches MLflow as ``Pleural _R_``, params alike; nothing is lost."""
    pytest.importorskip("mlflow")
    from radiology.train.tracking import MLflowCallback

    uri = (tmp_path / "mlruns").as_uri()
    callback = MLflowCallback(uri, run_name="names", params={"semi_params": {"weird key!": 1}})
    callback.start()
    callback.log_metrics({"final/auc/Pleural (R)": 0.75, "final/auc/normal": 0.5})
    callback.end()
    client = _mlflow_client(uri, monkeypatch)
    (found,) = client.search_runs([client.get_experiment_by_name("radiology").experiment_id])
    assert found.data.metrics == {"final/auc/Pleural _R_": 0.75, "final/auc/normal": 0.5}
    assert found.data.params["semi_params/weird key_"] == "1"


def test_a_tracker_failing_at_the_end_costs_neither_the_run_nor_the_other_trackers(tmp_path, monkeypatch, caplog):
    pytest.importorskip("mlflow")
    pytest.importorskip("tensorboard")
    from types import SimpleNamespace

    from radiology.train.tracking import Tracking

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking = Tracking(("tensorboard", "mlflow"), tmp_path, run_name="failing")
    tracking.start()

    def refuse(*args, **kwargs):
        raise ConnectionError("the tracking server went away")

    ended = []
    monkeypatch.setattr(tracking.mlflow, "log_metrics", refuse)
    monkeypatch.setattr(tracking.mlflow, "end", lambda status: ended.append(status))
    tracking._boards.append(SimpleNamespace(writer=SimpleNamespace(close=refuse)))  # a TensorBoard writer failing
    with caplog.at_level("WARNING", logger="radiology.train.tracking"):
        tracking.log_final({"accuracy": 0.5})  # warns, does not raise
        tracking.end("FINISHED")
    assert "did not take the final metrics" in caplog.text and "did not close cleanly" in caplog.text
    assert ended == ["FINISHED"]  # MLflow's run still ended after the writer failed
