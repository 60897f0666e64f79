"""The training log: both phases named and in history.csv, one clean line per epoch when the output is no terminal.

One tiny ``radiology train`` run (timm's ``test_resnet``, 32 px, 2 head epochs + 1 fine-tune epoch, with the
trackers that are installed) is made once per session by :func:`tiny_cli_run`; ``test_tracking`` reads its
tracker files. The other tests drive :class:`~radiology.train.callbacks.History` on a two-parameter model.
"""

import atexit
import contextlib
import functools
import importlib.util
import io
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")

from fastai.data.core import DataLoaders  # noqa: E402
from fastai.data.load import DataLoader  # noqa: E402
from fastai.learner import Learner  # noqa: E402

from radiology.cli import main  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train.callbacks import History  # noqa: E402

#: What fastprogress and tqdm draw: carriage returns, block characters, ``|####|``, ``100%|``.
BAR_MARKS = ("\r", "█", "▏", "━", "|#", "%|", "\x1b[")
EPOCHS = {"head": 2, "fine_tune": 1}


@functools.lru_cache(maxsize=1)
def tiny_cli_run() -> tuple[Path, Path, str, tuple[str, ...]]:
    """``(data root, out, everything printed, trackers logged to)`` of one tiny CLI run, its output no terminal.

    The data lies in a folder named like a patient (``Doe_John``); the run logs to every tracker among
    TensorBoard and MLflow that is installed, MLflow to its default local store (``$MLFLOW_TRACKING_URI``
    unset for the run).
    """
    root = Path(tempfile.mkdtemp(prefix="radiology-log-"))
    atexit.register(shutil.rmtree, root, True)
    csv = write_findings_dataset(root / "Doe_John", 12, size=(40, 36), seed=1)
    out = root / "bundle"
    trackers = tuple(name for name in ("tensorboard", "mlflow") if importlib.util.find_spec(name) is not None)
    args = ["train", "--csv", str(csv), "--image-col", "file", "--label-col", "label", "--group-col", "patient",
            "--arch", "test_resnet", "--pretrained", "none", "--size", "32", "--head-epochs", str(EPOCHS["head"]),
            "--epochs", str(EPOCHS["fine_tune"]), "--batch-size", "4", "--cache", "none", "--out", str(out)]
    for name in trackers:
        args += ["--log", name]
    printed = io.StringIO()  # not a terminal, like a file or a pipe
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
            patch.delenv(name, raising=False)
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = main(args)
    assert code == 0, printed.getvalue()
    return root, out, printed.getvalue(), trackers


@pytest.fixture(scope="module")
def run():
    return tiny_cli_run()


def test_output_that_is_no_terminal_gets_plain_lines_without_progress_bars(run):
    _, _, printed, _ = run
    assert not [mark for mark in BAR_MARKS if mark in printed], printed
    lines = printed.splitlines()
    for phase, epochs in EPOCHS.items():
        shown = [line for line in lines if line.startswith(f"{phase} epoch ")]
        assert len(shown) == epochs, printed  # one line per epoch
        assert all("train_loss" in line and "valid_loss" in line for line in shown)


def test_both_phases_are_named_before_their_epochs(run):
    _, _, printed, _ = run
    lines = printed.splitlines()

    def first(prefix):
        return next(i for i, line in enumerate(lines) if line.startswith(prefix))

    assert lines[first("phase 1/2: ")].startswith(f"phase 1/2: head on frozen features ({EPOCHS['head']} epochs")
    assert lines[first("phase 2/2: ")].startswith(f"phase 2/2: fine-tuning of the whole network ({EPOCHS['fine_tune']}")
    assert first("phase 1/2: ") < first("head epoch 1/") < first("phase 2/2: ") < first("fine_tune epoch 1/")


def test_the_start_and_the_end_say_what_happens(run):
    _, out, printed, _ = run
    for said in ("loading torch, fastai and timm", "reading the labels of labels.csv",
                 "12 labeled image(s)", "split by patient", "model: test_resnet",
                 f"exporting the bundle to {out}", "validation: accuracy",
                 "refit: the bundle's model trained on all 12 training images", f"bundle: {out}"):
        assert said in printed, said


def test_history_holds_the_epochs_of_both_phases(run):
    _, out, _, _ = run
    history = pd.read_csv(out / "history.csv")
    assert list(history.columns[:4]) == ["phase", "epoch", "train_loss", "valid_loss"]
    assert history.columns[-1] == "time"
    # The validated run's epochs, then the default refit's (training loss only; one fine-tuning epoch to keep).
    assert history["phase"].tolist() == (["head"] * EPOCHS["head"] + ["fine_tune"] * EPOCHS["fine_tune"]
                                         + ["refit_head"] * EPOCHS["head"] + ["refit"] * EPOCHS["fine_tune"])
    assert history["epoch"].tolist() == [*range(EPOCHS["head"]), *range(EPOCHS["fine_tune"])] * 2
    assert history["train_loss"].notna().all()
    refit = history["phase"].str.startswith("refit")
    assert history.loc[~refit, "valid_loss"].notna().all() and history.loc[refit, "valid_loss"].isna().all()


# -- History on its own: a two-parameter model, no images --------------------------------------------------------

def _learner(path, phase):
    x = torch.randn(16, 2)
    data = list(zip(x, (x.sum(1) > 0).long()))
    dls = DataLoaders(DataLoader(data, bs=8, shuffle=True), DataLoader(data, bs=8))
    learn = Learner(dls, torch.nn.Linear(2, 2), loss_func=torch.nn.CrossEntropyLoss(), path=path)
    learn.phase = phase
    return learn


@contextlib.contextmanager
def _no_bars(learn):
    with learn.no_bar(), learn.no_logging():
        yield


def test_history_keeps_the_head_rows_and_a_resumed_runs_own_earlier_epochs(tmp_path):
    head = _learner(tmp_path, "head")
    with _no_bars(head):
        head.fit(2, 1e-2, cbs=History("history.csv", phase="head"))
    fine = _learner(tmp_path, "fine_tune")
    with _no_bars(fine):
        fine.fit(2, 1e-2, cbs=History("history.csv", phase="fine_tune", keep=("head",)))
    history = pd.read_csv(tmp_path / "history.csv")
    assert history["phase"].tolist() == ["head", "head", "fine_tune", "fine_tune"]
    # A resume after fine-tune epoch 1: the head rows and epoch 0 stay, epoch 1 is logged again, once.
    with _no_bars(fine):
        fine.fit(2, 1e-2, start_epoch=1, cbs=History("history.csv", start_epoch=1, phase="fine_tune"))
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(zip(history["phase"], history["epoch"])) == [("head", 0), ("head", 1), ("fine_tune", 0),
                                                              ("fine_tune", 1)]
    # A fresh fine-tune without a head phase starts a new log.
    with _no_bars(fine):
        fine.fit(1, 1e-2, cbs=History("history.csv", phase="fine_tune"))
    assert pd.read_csv(tmp_path / "history.csv")["phase"].tolist() == ["fine_tune"]


def test_a_log_of_an_earlier_version_is_continued_as_fine_tune_rows(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,train_loss,valid_loss,time\n0,0.7,0.69,00:01\n1,0.6,0.68,00:01\n")
    fine = _learner(tmp_path, "fine_tune")
    with _no_bars(fine):
        fine.fit(2, 1e-2, start_epoch=1, cbs=History("history.csv", start_epoch=1, phase="fine_tune"))
    history = pd.read_csv(tmp_path / "history.csv")
    assert history.columns[0] == "phase" and history["phase"].tolist() == ["fine_tune", "fine_tune"]
    assert history["epoch"].tolist() == [0, 1] and history["train_loss"].iloc[0] == 0.7


def test_the_log_leaves_no_file_open(tmp_path):
    head = _learner(tmp_path, "head")
    callback = History("history.csv", phase="head")
    with _no_bars(head):
        head.fit(1, 1e-2, cbs=callback)
    assert callback.file.closed
    assert os.path.getsize(tmp_path / "history.csv") > 0


def test_the_trackers_are_named_with_the_folder_as_given(run):
    """The log shows where each tracker writes as the user named the folder, not a resolved ``file://`` URI."""
    _, out, printed, trackers = run
    if not trackers:
        pytest.skip("neither tensorboard nor mlflow is installed")
    for name in trackers:
        assert f"logging to {name}: {out}" in printed, printed
    assert "file://" not in printed
