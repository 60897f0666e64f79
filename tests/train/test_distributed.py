"""Two processes training on CPUs through gloo: ``torchrun --nproc_per_node 2 -m radiology.cli train``.

One tiny run (timm's ``test_resnet``, 32 px, 1 head epoch + 1 fine-tune epoch, 8 validation images so that
both ranks score 4) exercises what a multi-GPU run does, on CPUs: the rank handling, rank 0 alone writing
into ``out``, the fine-tuning's validation predictions gathered from both ranks. Its metrics are checked
against a one-process evaluation of the bundle it saved on the same validation split: the fine-tuning's
(last and only, so best) epoch was scored by both ranks together on the weights that the bundle holds, the
final metrics of ``train.json`` by rank 0 alone.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")
pytest.importorskip("timm")
pytest.importorskip("accelerate")

if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

from radiology.data import keep_classes_in_training, train_valid_split  # noqa: E402
from radiology.evaluate import classification_metrics  # noqa: E402
from radiology.models import load_bundle  # noqa: E402
from radiology.synthetic import write_findings_dataset  # noqa: E402
from radiology.train import TrainConfig  # noqa: E402
from radiology.train.recipe import _run_files, load_items  # noqa: E402

SETTINGS = {"valid_fraction": 0.25, "seed": 0, "class_weights": False}  # plain cross-entropy: valid_loss is checkable


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("distributed")
    csv = write_findings_dataset(root / "data", 32, size=(40, 36), seed=3)
    (root / "settings.json").write_text(json.dumps(SETTINGS))
    out = root / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(_free_port()), "-m", "radiology.cli", "train", "--config",
               str(root / "settings.json"), "--csv", str(csv), "--image-col", "file", "--label-col", "label",
               "--group-col", "patient", "--arch", "test_resnet", "--pretrained", "none", "--size", "32",
               "--head-epochs", "1", "--epochs", "1", "--lr", "3e-3", "--batch-size", "4", "--cache", "none",
               "--out", str(out)]
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU path, with gloo, even on a machine with GPUs
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return csv, out, done.stdout + done.stderr


def _validation_split(csv: Path):
    """The items of the validation split the run drew (the recipe's split, redone with its settings)."""
    items = load_items(TrainConfig(csv=csv, image_cols=("file",), label_cols=("label",), group_col="patient",
                                   out="unused", **SETTINGS), progress=False)
    groups = np.asarray(items.groups)
    train_idx, valid_idx = train_valid_split(items.targets, groups, valid_fraction=SETTINGS["valid_fraction"],
                                             seed=SETTINGS["seed"])
    _, valid_idx, _ = keep_classes_in_training(items.targets, groups, train_idx, valid_idx)
    return items.subset(valid_idx)


def test_two_processes_write_one_bundle_and_nothing_else(run):
    _, out, printed = run
    files = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert set(files) <= set(_run_files()), files  # no stray file (temporary, per-rank) from either process
    assert "model.json" in files and "weights.safetensors" in files
    assert [path for path in out.rglob("model.json")] == [out / "model.json"]  # exactly one bundle
    info = json.loads((out / "train.json").read_text())
    assert info["world_size"] == 2
    assert info["device"] == "cpu"
    history = pd.read_csv(out / "history.csv")
    assert list(history["phase"]) == ["head", "fine_tune"]  # written once, by rank 0
    assert printed.count("exporting the bundle") == 1
    # The fine-tuning ran in DistributedDataParallel with its batches sharded: 24 images of 4, 3 per process.
    assert "on 2 processes (gloo): 6 training batches split into 3 per process" in printed, printed


def test_metrics_of_both_ranks_equal_a_one_process_evaluation_of_the_bundle(run):
    csv, out, _ = run
    valid = _validation_split(csv)
    assert len(valid) == 8  # 4 per rank: no padding in the gathered validation
    bundle = load_bundle(out)
    probs = bundle.predict(list(valid.paths))
    targets = np.asarray(valid.targets)
    assert probs.shape == (8, len(valid.classes))
    assert np.ptp(probs[:, 0]) > 1e-4  # the images are told apart: the comparison is not of constants
    alone = classification_metrics(targets, probs, valid.classes, multi_label=False)
    info = json.loads((out / "train.json").read_text())
    recorded = info["validation_metrics"]
    assert recorded["n"] == alone["n"] == 8
    for name in ("accuracy", "balanced_accuracy", "macro_auc"):  # rank 0's final scoring
        assert recorded[name] == pytest.approx(alone[name], abs=1e-6), name
    # The fine-tuning's epoch, scored by both ranks on 4 images each and gathered: the weights of the bundle.
    gathered = pd.read_csv(out / "history.csv").iloc[-1]
    for name in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert gathered[name] == pytest.approx(alone[name], abs=1e-6), name
    cross_entropy = -np.log(probs[np.arange(len(targets)), targets]).mean()
    assert gathered["valid_loss"] == pytest.approx(cross_entropy, abs=1e-4)
