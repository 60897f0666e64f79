"""Fixtures: 64 real chest radiographs (pneumonia set) at 32 px, tiny models, fastai loaders, a host-read guard."""

from __future__ import annotations

import contextlib
import sys

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fastai")

from torch import nn  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from tests.conftest import shared_path  # noqa: E402

SIZE = 32


class TinyCNN(nn.Module):
    """Two conv layers (with batch-norm) as ``.backbone`` and a linear ``.head``, as make_learner wants."""

    def __init__(self, n_outputs: int = 2, in_chans: int = 1):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(in_chans, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(16, n_outputs)

    def forward(self, x):
        return self.head(self.backbone(x))


def timm_model(n_outputs: int = 2, in_chans: int = 1):
    """timm's ``test_resnet`` (0.4 M parameters) as a :class:`radiology.models.RadiographClassifier`."""
    from radiology.models import create_model

    return create_model("test_resnet", n_outputs, in_chans=in_chans, pretrained=None, drop_rate=0.0)


@pytest.fixture(scope="session")
def chest_images():
    """64 chest radiographs, one per patient, as (64, 1, 32, 32) in [0, 1]: 32 normal (label 0), then 32 pneumonia."""
    from PIL import Image

    root = shared_path("pneumonia")
    table = pd.read_csv(root / "labels.csv").drop_duplicates("patient").sort_values("file")
    table = table.groupby("label").head(32).sort_values(["label", "file"]).reset_index(drop=True)
    images = [np.asarray(Image.open(root / name).convert("L").resize((SIZE, SIZE), Image.BILINEAR), np.float32)
              for name in table["file"]]
    x = torch.from_numpy(np.stack(images) / 255.0).float()[:, None]
    y = torch.tensor((table["label"] == "PNEUMONIA").to_numpy().astype(np.int64))
    return x, y


def make_dls(x, y, batch_size=8, device="cpu"):
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader

    items = list(zip(x, y))
    return DataLoaders(DataLoader(items, bs=batch_size, shuffle=True, drop_last=True, device=device),
                       DataLoader(items, bs=32, device=device), device=device)


class HostReadError(AssertionError):
    """A tensor value was read back to the host (or host data made into a tensor) inside :class:`NoHostReads`."""


class NoHostReads(TorchDispatchMode):
    """Fail on every operation that would make the host wait for a CUDA stream, on any device.

    On a GPU, ``torch.cuda.set_sync_debug_mode`` sees synchronizations; on the CPU there are
    none to see, so this mode flags their causes instead: reading a value (``.item()``,
    ``bool``/``float``/``int`` of a tensor, ``.tolist()``, ``.numpy()``), boolean-mask
    indexing (its output size needs the mask's count), ``nonzero``/``masked_select``, and
    tensors made from host data (``torch.tensor``, which a GPU path must copy over).
    """

    _FORBIDDEN = ("aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.lift_fresh",
                  "aten.unique", "aten._unique")

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        if name.startswith(self._FORBIDDEN) and not _in_kornia_device_check():
            raise HostReadError(f"host read: {name}")
        if name.startswith(("aten.index.", "aten.index_put")):
            indices = args[1] if len(args) > 1 else []
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices):
                raise HostReadError(f"boolean-mask indexing: {name}")
        return func(*args, **(kwargs or {}))

    def __enter__(self):
        self._patched = contextlib.ExitStack()
        for attribute in ("tolist", "numpy"):
            self._patched.enter_context(_raising(torch.Tensor, attribute))
        return super().__enter__()

    def __exit__(self, *exc):
        self._patched.close()
        return super().__exit__(*exc)


def _in_kornia_device_check() -> bool:
    """Whether the caller is kornia's ``_check_async`` (kornia 0.9.2+, e.g. in ``equalize``).

    It reads its condition on the host only for CPU tensors, which no stream waits for; on a
    GPU it asserts on the device (``torch._assert_async``) without a synchronization.
    """
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "_check_async" and frame.f_globals.get("__name__") == "kornia.core.check":
            return True
        frame = frame.f_back
    return False


@contextlib.contextmanager
def _raising(owner, attribute):
    original = getattr(owner, attribute)

    def forbidden(*args, **kwargs):
        raise HostReadError(f"host read: Tensor.{attribute}")

    setattr(owner, attribute, forbidden)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


def guarded(callback):
    """Run the per-batch events of a callback instance inside :class:`NoHostReads`."""
    for event in ("before_batch", "after_pred", "after_loss"):
        method = getattr(callback, event)

        def run(method=method):
            with NoHostReads():
                method()

        setattr(callback, event, run)
    return callback

