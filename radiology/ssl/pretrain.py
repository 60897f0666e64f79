"""``pretrain``: a folder of unlabeled DICOMs or images → a backbone checkpoint for fine-tuning."""

from __future__ import annotations

import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from radiology.io import atomic_write
from radiology.ssl.contrastive import (
    BYOLLoss,
    BYOLModel,
    ContrastiveModel,
    MomentumUpdate,
    NTXent,
    TwoViews,
    contrastive_augmentation,
)
from radiology.ssl.metadata import HEADER_FIELDS, HeaderLoss, MetadataModel, header_targets

__all__ = ["METHODS", "PretrainResult", "pretrain", "save_backbone"]

logger = logging.getLogger(__name__)

#: Pretraining methods of :func:`pretrain`.
METHODS = ("simclr", "byol", "metadata")

_DEFAULT_LR = 1e-3  # every method


@dataclass
class PretrainResult:
    """What :func:`pretrain` produced.

    Attributes
    ----------
    checkpoint : pathlib.Path
        The backbone checkpoint (``radiology train --pretrained PATH``).
    history : list of dict
        ``epoch, train_loss, valid_loss`` per epoch.
    images : int
        Images trained on.
    skipped : list of (str, str)
        Files that could not be read, with the reason (they were left out).
    info : dict
        What is stored beside the weights (method, arch, settings, header classes).
    """

    checkpoint: Path
    history: list[dict[str, float]]
    images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def save_backbone(model: nn.Module, path: str | os.PathLike, info: dict[str, Any] | None = None) -> Path:
    """Write ``model.backbone``'s weights (timm keys) with a description, atomically.

    The file is a ``torch.save`` dict ``{"state_dict": ..., "radiology": info}`` that
    :func:`radiology.models.load_pretrained` (``pretrained=PATH``) reads; plain timm can load
    ``state_dict`` too (``timm.create_model(arch, in_chans=..., num_classes=0)``).

    Parameters
    ----------
    model : nn.Module
        Anything with a ``.backbone`` (a classifier or a pretraining model).
    path : path
        Checkpoint file to write.
    info : dict, optional
        JSON-ready description (method, arch, ``in_chans``...).

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> from radiology.models import create_model
    >>> model = create_model("resnet18", 2, pretrained=None)
    >>> path = save_backbone(model, Path(tempfile.mkdtemp()) / "backbone.pt", {"arch": "resnet18"})
    >>> create_model("resnet18", 3, pretrained=path).head.out_features
    3
    """
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, nn.Module):
        raise TypeError("model needs a .backbone module")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give the checkpoint file name")
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"state_dict": state, "radiology": dict(info or {})}, buffer)
    return atomic_write(path, buffer.getvalue())


class _WithTargets(Dataset):
    """Images of a dataset with other targets (header field indices)."""

    def __init__(self, images, targets: np.ndarray):
        self.images, self.targets = images, torch.as_tensor(targets)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index][0], self.targets[index]


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_valid = min(max(2, round(n * fraction)), n // 2)
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def pretrain(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    method: str = "simclr",
    arch: str = "tf_efficientnet_lite0",
    pretrained: str | os.PathLike | None = "imagenet",
    channels: int = 1,
    size: int = 224,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float | None = None,
    temperature: float = 0.2,
    momentum: float = 0.99,
    fields: tuple[str, ...] | list[str] | None = None,
    pipeline=None,
    valid_fraction: float = 0.1,
    workers: int = 0,
    cache: str | os.PathLike | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> PretrainResult:
    """Self-supervised pretraining of a timm backbone on a folder of unlabeled images.

    Every image or DICOM below ``root`` (:func:`radiology.data.from_unlabeled`) goes through
    the same preprocessing as training (default: percentile → resize longest side → pad,
    cached); unreadable files are skipped and listed. A small random share is held out to
    report a validation loss. fastai runs the one-cycle loop (Adam), mixed precision on GPU.

    Parameters
    ----------
    root : path
        Folder of unlabeled DICOMs and/or images (any layout).
    out : path
        Checkpoint file to write (see :func:`save_backbone`); ``out`` + ``.json`` gets the
        description and per-epoch losses.
    method : {"simclr", "byol", "metadata"}
        ``simclr``: NT-Xent on two augmented views (:mod:`radiology.ssl.contrastive`);
        ``byol``: BYOL with a momentum target; ``metadata``: predict DICOM header fields
        (:mod:`radiology.ssl.metadata`; files without a usable header value are left out
        before their pixels are decoded and counted as ``without_header``).
    arch : str
        timm backbone.
    pretrained : str or path or None
        Starting weights, as in :func:`radiology.models.create_model` (default: offline
        ImageNet weights; ``None`` from scratch).
    channels : {1, 3}
        Input channels: gray (1) or RGB (3).
    size : int
        Input side.
    epochs, batch_size : int
        ``batch_size`` images per step (SimCLR/BYOL see twice as many views).
    lr : float, optional
        Peak one-cycle learning rate (default 1e-3).
    temperature : float
        NT-Xent temperature (SimCLR).
    momentum : float
        Starting EMA momentum of the BYOL target.
    fields : sequence of str, optional
        Header fields for ``metadata`` (default all of :data:`radiology.ssl.HEADER_FIELDS`
        that vary in the archive).
    pipeline : radiology.pipeline.Pipeline, optional
        Preprocessing (default :func:`radiology.pipeline.default_pipeline`).
    valid_fraction : float
        Share of the images held out to report a validation loss, in ``(0, 0.5)``.
    workers : int
        DataLoader worker processes.
    cache : path or "none", optional
        Preprocessed-image cache (default ``$RADIOLOGY_CACHE`` or ``~/.cache/radiology/images``).
    seed : int
        Seed of the split and of the random number generators, so a run can be repeated.
    overwrite : bool
        Replace an existing ``out``; without it, an existing checkpoint stops the run before
        any work (a finished pretraining is never lost unasked).
    progress : bool
        Show progress bars.

    Returns
    -------
    PretrainResult
    """
    from fastai.learner import Learner
    from fastai.torch_core import set_seed

    from radiology.data import ImageDataset, build_dataloaders, drop_unreadable, from_unlabeled, open_cache
    from radiology.models import create_model
    from radiology.pipeline import default_pipeline
    from radiology.train.learner import check_model_settings, run_settings

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if epochs < 1 or batch_size < 2:
        raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {epochs} and {batch_size}")
    if not 0 < valid_fraction < 0.5:
        raise ValueError(f"valid_fraction must be in (0, 0.5), got {valid_fraction}")
    if lr is not None and not 0 < float(lr) < float("inf"):
        raise ValueError(f"lr must be positive, got {lr}")
    if fields and method != "metadata":
        raise ValueError(f"fields apply to method='metadata' only, not method={method!r}")
    check_model_settings(arch, pretrained)
    root, out = Path(root), Path(out)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder")
    if not root.is_dir():
        raise ValueError(f"{root}: not a folder")
    if out.is_dir():
        raise ValueError(f"{out}: is a folder; out names the checkpoint file to write (e.g. backbone.pt)")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists: pass overwrite=True to replace it, or another out")
    started = time.time()
    set_seed(seed, reproducible=True)
    items = from_unlabeled(root)
    pipeline = pipeline if pipeline is not None else default_pipeline(size, channels)
    image_cache = open_cache(cache)  # None: the documented default folder; "none": no cache
    found, header_row, listed = None, {}, len(items)
    if method == "metadata":
        # Headers are cheap and pixels are not: only files with a usable header value get decoded.
        found = header_targets([p[0] for p in items.paths], tuple(fields or HEADER_FIELDS), progress=progress)
        header_row = {sample_id: row for row, sample_id in enumerate(items.ids)}
        items = items.subset(np.flatnonzero((found.targets >= 0).any(axis=1)))
    images, skipped = drop_unreadable(ImageDataset(items, pipeline, cache=image_cache, channels=channels),
                                      progress=progress)
    if skipped:
        logger.warning("%d of %d files could not be read and are left out (first: %s)",
                       len(skipped), len(items), skipped[0][1])
    if len(images) < 8:
        raise ValueError(f"{root}: {len(images)} readable image(s); pretraining needs at least 8")
    info: dict[str, Any] = {"method": method, "arch": arch, "in_chans": channels, "size": size,
                            "pretrained_from": None if pretrained is None else str(pretrained),
                            "epochs": epochs, "batch_size": batch_size, "seed": seed, "images": len(images),
                            "skipped": len(skipped)}

    dataset: Dataset = images
    if found is not None:
        targets = found.targets[[header_row[sample_id] for sample_id in images.items.ids]]
        dataset = _WithTargets(images, targets)
        info.update(fields=found.fields, classes=found.classes, dropped_fields=found.dropped,
                    without_header=listed - len(items))
    train_idx, valid_idx = _split(len(dataset), valid_fraction, seed)
    train_ds, valid_ds = torch.utils.data.Subset(dataset, train_idx), torch.utils.data.Subset(dataset, valid_idx)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = min(batch_size, len(train_ds))
    encoder = create_model(arch, 2, in_chans=channels, pretrained=pretrained)
    if method == "metadata":
        from radiology.augment import radiograph_augmentation

        model: nn.Module = MetadataModel(encoder, found.sizes)
        loss: nn.Module = HeaderLoss(found.sizes)
        augment, cbs = radiograph_augmentation(), []
    else:
        augment = None  # the two-view callback augments
        if method == "simclr":
            model, loss = ContrastiveModel(encoder), NTXent(temperature)
            cbs = [TwoViews(contrastive_augmentation(size))]
        else:
            model, loss = BYOLModel(encoder), BYOLLoss()
            cbs = [TwoViews(contrastive_augmentation(size)), MomentumUpdate(momentum)]
    dls = build_dataloaders(train_ds, valid_ds, batch_size=batch, num_workers=workers, augment=augment,
                            device=device, seed=seed)
    learn = Learner(dls, model.to(device), loss_func=loss, path=out.parent, cbs=cbs,
                    wd=1e-4 if method != "metadata" else 1e-2)
    run_settings(learn, progress, device)
    learn.fit_one_cycle(epochs, lr if lr is not None else _DEFAULT_LR)

    names = learn.recorder.metric_names[1:-1]  # epoch ... time
    history = [dict(zip(["epoch", *names], [i, *[float(v) for v in values]]))
               for i, values in enumerate(learn.recorder.values)]
    info.update(history=history, seconds=round(time.time() - started, 1), device=str(device))
    if method == "metadata":
        info["valid_accuracy"] = _header_accuracy(learn, found.sizes, found.fields)
    model.eval()
    checkpoint = save_backbone(model.cpu(), out, {k: v for k, v in info.items() if k != "history"})
    atomic_write(f"{out}.json", json.dumps(info, indent=2).encode())
    return PretrainResult(checkpoint=checkpoint, history=history, images=int(info["images"]), skipped=skipped,
                          info=info)


@torch.no_grad()
def _header_accuracy(learn, sizes: list[int], fields: list[str]) -> dict[str, float | None]:
    """Validation accuracy of each header field (on the files where it is known)."""
    logits, targets = learn.get_preds(dl=learn.dls.valid)
    out: dict[str, float | None] = {}
    for column, (name, part) in enumerate(zip(fields, logits.float().split(sizes, dim=1))):
        known = targets[:, column] >= 0
        out[name] = float((part.argmax(1)[known] == targets[known, column]).float().mean()) if known.any() else None
    return out
