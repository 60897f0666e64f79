"""radiology.train.metrics: fastai metric objects that agree with radiology.evaluate, and the old import path."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastai")

import radiology.evaluate  # noqa: E402
from radiology.train import metrics as train_metrics  # noqa: E402
from radiology.train.metrics import (  # noqa: E402
    accuracy,
    balanced_accuracy,
    fastai_metrics,
    macro_auc,
    odir_score,
)


def test_moved_metrics_are_re_exported_unchanged():
    # Silent re-exports: radiology.train.metrics stays the home of fastai_metrics.
    moved = [name for name in train_metrics.__all__ if name != "fastai_metrics"]
    assert len(moved) == 10
    for name in moved:
        assert getattr(train_metrics, name) is getattr(radiology.evaluate, name), name
    assert train_metrics.accuracy([0, 1, 0, 1], [0, 1, 1, 1]) == 0.75


def _tiny_learner(multi_label: bool, n_outputs: int = 3):
    import torch
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from torch.utils.data import TensorDataset

    from radiology.train.losses import make_loss

    torch.manual_seed(0)
    x = torch.randn(48, 4)
    if multi_label:
        y = (torch.rand(48, n_outputs) < 0.4).float()
    else:
        y = torch.arange(48) % n_outputs
    train, valid = TensorDataset(x[:32], y[:32]), TensorDataset(x[32:], y[32:])
    dls = DataLoaders.from_dsets(train, valid, bs=8, device="cpu")
    loss = make_loss("bce" if multi_label else "ce", n_classes=n_outputs, multi_label=multi_label)
    return Learner(dls, torch.nn.Linear(4, n_outputs), loss_func=loss,
                   metrics=fastai_metrics(n_outputs, multi_label=multi_label))


@pytest.mark.parametrize("multi_label", [False, True])
def test_fastai_metrics_agree_with_numpy_metrics(multi_label):
    learn = _tiny_learner(multi_label)
    with learn.no_logging():
        values = [float(v) for v in learn.validate()[1:]]
        probs, targets = learn.get_preds()
    probs, targets = probs.numpy(), targets.numpy()
    if multi_label:
        expected = [np.mean((probs > 0.5) == targets), macro_auc(targets, probs), odir_score(targets, probs)["score"]]
    else:
        assert np.allclose(probs.sum(axis=1), 1.0)  # the loss's activation gives probabilities
        expected = [accuracy(targets, probs), balanced_accuracy(targets, probs), macro_auc(targets, probs)]
    assert values == pytest.approx(expected, abs=1e-6)
