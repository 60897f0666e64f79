"""A tiny fastai Learner on random 8 x 8 images, for tests of the fine-tuning callbacks."""

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader

from radiology.train import make_learner


class TinyNet(torch.nn.Module):
    """``backbone`` + ``head``, as :func:`radiology.train.fine_tune` splits a model."""

    def __init__(self, n_outputs: int = 2):
        super().__init__()
        self.backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
        self.head = torch.nn.Linear(4, n_outputs)

    def forward(self, xb):
        return self.head(self.backbone(xb))


def tiny_learner(path, loss=None, targets=None, *, n=32, metrics=(), valid=list):
    """Learner on ``n`` random images (``len(targets)`` when given; else random 0/1 classes), batches of 8
    in order, the first 8 pairs as validation (wrapped in ``valid``); quiet, seeded."""
    rng = np.random.default_rng(0)
    n = len(targets) if targets is not None else n
    x = torch.as_tensor(rng.normal(size=(n, 1, 8, 8)), dtype=torch.float32)
    if targets is None:
        targets = torch.as_tensor(rng.integers(0, 2, size=n))
    pairs = list(zip(x, targets))
    dls = DataLoaders(DataLoader(pairs, bs=8, shuffle=False), DataLoader(valid(pairs[:8]), bs=8))
    torch.manual_seed(0)
    model = TinyNet(targets.shape[1] if targets.ndim == 2 else 2)
    learn = make_learner(dls, model, loss if loss is not None else torch.nn.CrossEntropyLoss(),
                         metrics=list(metrics), path=path)
    learn.remove_cb(learn.progress)
    learn.logger = lambda *args: None
    return learn
