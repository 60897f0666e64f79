"""Training on fastai: the Learner factory, head-first fine-tuning, and the whole ``train`` recipe.

fastai runs every loop here (``Learner.fit_one_cycle``, its callbacks for early stopping,
best-model saving, CSV logging and progress); this module only chooses what goes in.

The default recipe is *head first, then fine-tune* (linear probing then fine-tuning):

1. The backbone's pooled features are computed once (eval mode, no augmentation) and the
   head alone is fitted on them by a fastai Learner for ``head_epochs`` — cheap, and on a
   few hundred images it already matches a linear probe.
2. The whole network is then fine-tuned for ``epochs`` with one-cycle, discriminative
   learning rates (backbone ``lr / lr_mult``) and GPU batch augmentation. Starting from a
   fitted head keeps the first fine-tuning steps from wrecking the pretrained features,
   which is why plain ``fine_tune`` loses to a frozen probe on small radiograph sets.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle and lr_find
import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.distributed import num_distrib, rank_distrib  # also adds Learner.distrib_ctx
from fastai.learner import Learner
from torch import nn

from radiology.pipeline import Decode, PadSquare, Percentile, Pipeline, Resize
from radiology.train.config import TrainConfig

__all__ = ["TrainResult", "default_pipeline", "make_learner", "fit_head", "fine_tune", "train", "load_items"]

logger = logging.getLogger(__name__)

CHECKPOINT = "last"
CHECKPOINT_DIR = "checkpoints"
BEST = "best"


def default_pipeline(size: int, channels: int = 1) -> Pipeline:
    """Percentile normalization → longest side to ``size`` → pad to a square.

    Parameters
    ----------
    size : int
    channels : {1, 3}
        3 keeps the colour of colour photographs (fundus); 1 makes every image gray.

    Examples
    --------
    >>> [step.name for step in default_pipeline(224).steps]
    ['percentile', 'resize', 'pad_square']
    >>> default_pipeline(224, channels=3).decode.color
    'keep'
    """
    if int(size) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    return Pipeline([Percentile(), Resize(longest=int(size)), PadSquare()],
                    decode=Decode(color="keep" if channels == 3 else "gray"))


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    bundle : pathlib.Path
        The bundle directory (load it with :func:`radiology.models.load_bundle`).
    metrics : dict
        Validation metrics of the final model (also in ``train.json``).
    learner : fastai.learner.Learner
        The fastai Learner, for further work in Python.
    """

    bundle: Path
    metrics: dict[str, Any]
    learner: Any


def _splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model.backbone.parameters()), list(model.head.parameters())]


def make_learner(dls, model: nn.Module, loss_func: nn.Module, *, metrics=(), path: str | os.PathLike = ".",
                 cbs=(), wd: float = 1e-2):
    """A fastai ``Learner`` whose parameter groups are ``[backbone, head]``.

    Parameters
    ----------
    dls : fastai.data.core.DataLoaders
    model : nn.Module
        With ``.backbone`` and ``.head`` (:class:`radiology.models.RadiographClassifier`).
    loss_func : nn.Module
        From :func:`radiology.train.losses.make_loss`.
    metrics : sequence
        fastai metrics (:func:`radiology.train.metrics.fastai_metrics`).
    path : path
        Where fastai writes checkpoints (``path/checkpoints``) and logs.
    cbs : sequence of fastai callbacks
    wd : float
        Weight decay (AdamW).

    Returns
    -------
    fastai.learner.Learner
        ``learn.freeze()`` trains the head only (batch-norm layers stay trainable).
    """
    for name in ("backbone", "head"):
        if not hasattr(model, name):
            raise TypeError(f"model needs a .{name} submodule (see radiology.models.create_model)")
    return Learner(dls, model, loss_func=loss_func, metrics=list(metrics), path=Path(path), model_dir=CHECKPOINT_DIR,
                   splitter=_splitter, cbs=list(cbs), wd=wd)


@torch.no_grad()
def _features(model: nn.Module, dl) -> tuple[torch.Tensor, torch.Tensor]:
    # Inference only (no optimisation): the backbone in eval mode, as a linear probe sees it.
    was_training = model.training
    model.eval()
    feats, targets = [], []
    for xb, yb in dl:
        feats.append(model.forward_features(xb).float().cpu())
        targets.append(yb.cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(targets)


def fit_head(learn, epochs: int, lr: float = 3e-3, *, wd: float = 1e-2, batch_size: int = 64) -> None:
    """Fit ``learn.model.head`` alone on frozen, pre-computed backbone features.

    The features of the training and validation images are computed once (backbone in eval
    mode, no augmentation); a second fastai Learner then fits the head on them with
    one-cycle for ``epochs`` epochs, which costs almost nothing next to one epoch through
    the backbone. The fitted head is left in ``learn.model``.

    Parameters
    ----------
    learn : fastai.learner.Learner
        From :func:`make_learner`.
    epochs : int
    lr : float
        Peak one-cycle learning rate.
    wd : float
        Weight decay of the head (a linear probe needs it on a few hundred images).
    batch_size : int
    """
    if epochs < 1:
        return
    model = learn.model
    train_plain = learn.dls.valid.new(dataset=learn.dls.train.dataset, shuffle=False, drop_last=False)
    train_x, train_y = _features(model, train_plain)
    valid_x, valid_y = _features(model, learn.dls.valid)
    device = next(model.parameters()).device
    dls = DataLoaders(
        DataLoader(list(zip(train_x, train_y)), bs=batch_size, shuffle=True, drop_last=False, device=device),
        DataLoader(list(zip(valid_x, valid_y)), bs=256, device=device),
        device=device,
    )
    head_learner = Learner(dls, model.head, loss_func=learn.loss_func, metrics=learn.metrics, wd=wd)
    if any(type(cb).__name__ == "ProgressCallback" for cb in learn.cbs):
        head_learner.fit_one_cycle(epochs, lr)
    else:  # quiet: no bar, and no raw epoch rows (fastai prints them when the bar is gone)
        head_learner.logger = _silent
        with head_learner.no_bar():
            head_learner.fit_one_cycle(epochs, lr)


def _run_settings(learn, progress: bool, device: torch.device) -> None:
    """No progress bar or log lines unless ``progress``; mixed precision on a GPU."""
    if not progress:
        learn.remove_cb(learn.progress)  # type: ignore[attr-defined]
        learn.logger = _silent
    if device.type == "cuda":
        learn.to_fp16()


def _silent(*args, **kwargs) -> None:
    return None


def fine_tune(learn, epochs: int, lr: float = 1e-3, *, lr_mult: float = 10.0, patience: int = 0,
              monitor: str = "valid_loss", start_epoch: int = 0, cbs=()) -> None:
    """Fine-tune the whole network with one-cycle and discriminative learning rates.

    The backbone's group peaks at ``lr / lr_mult``, the head's at ``lr``. The best epoch
    (by ``monitor``) is saved as ``checkpoints/best.pth`` and loaded at the end; every epoch
    is also saved with its optimizer state as ``checkpoints/last.pth`` so an interrupted
    run can continue (``start_epoch``). ``patience`` > 0 adds early stopping. The epoch log
    goes to ``history.csv`` in ``learn.path``.

    Parameters
    ----------
    learn : fastai.learner.Learner
    epochs : int
    lr : float
    lr_mult : float
    patience : int
    monitor : str
        ``valid_loss`` or a metric name.
    start_epoch : int
        Epochs already done (resume).
    cbs : sequence of fastai callbacks
        Added for this stage only (e.g. :class:`radiology.semisup.FixMatch`).
    """
    if epochs < 1:
        return
    learn.unfreeze()
    if rank_distrib():  # another process of a multi-GPU run: rank 0 saves and logs
        learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), start_epoch=start_epoch, cbs=list(cbs))
        return
    marker = Path(learn.path) / learn.model_dir / "last_epoch.json"
    best = json.loads(marker.read_text()).get("best") if start_epoch and marker.exists() else None
    cbs = [
        *cbs,
        _BestModel(start_epoch, best, monitor=monitor, fname=BEST),
        _SaveLast(start_epoch),
        _History("history.csv", start_epoch),
    ]
    if patience and num_distrib() <= 1:  # one rank stopping early would leave the others waiting
        cbs.append(_EarlyStopping(start_epoch, monitor=monitor, patience=patience))
    learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), cbs=cbs, start_epoch=start_epoch)


# fastai's ``start_epoch`` skips epochs by cancelling them, but ``after_epoch`` still runs for
# them with nothing recorded: the callbacks below ignore the epochs a resumed run skips.


class _BestModel(SaveModelCallback):
    """Save the best epoch; on resume, start from the best value of the interrupted run."""

    def __init__(self, start_epoch: int, best: float | None, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch, self.resumed_best = start_epoch, best

    def before_fit(self):
        super().before_fit()
        if self.resumed_best is not None:
            self.best = self.resumed_best

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()


class _EarlyStopping(EarlyStoppingCallback):
    def __init__(self, start_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()


class _SaveLast(Callback):
    """Save model + optimizer after every epoch with the epoch count, so a run can resume."""

    order = 70

    def __init__(self, start_epoch: int = 0):
        self.start_epoch = start_epoch

    def after_epoch(self):
        if self.epoch < self.start_epoch:
            return
        self.learn.save(CHECKPOINT, with_opt=True)
        tracker = next((cb for cb in self.learn.cbs if isinstance(cb, _BestModel)), None)
        best = None if tracker is None else float(tracker.best)
        (self.learn.path / self.learn.model_dir / "last_epoch.json").write_text(
            json.dumps({"epoch": self.epoch + 1, "best": best}))


class _History(CSVLogger):
    """fastai's CSV log; a resumed run appends its epochs without a second header."""

    def __init__(self, fname: str, start_epoch: int):
        super().__init__(fname, append=start_epoch > 0)
        self.start_epoch = start_epoch

    def before_fit(self):
        if hasattr(self, "gather_preds"):
            return
        path = self.path / self.fname
        continuing = self.append and path.is_file() and path.stat().st_size > 0
        self.file = path.open("a" if continuing else "w")
        if not continuing:
            self.file.write(",".join(self.recorder.metric_names) + "\n")
        self.old_logger, self.learn.logger = self.logger, self._write_line

    def _write_line(self, log):
        if self.epoch >= self.start_epoch:
            super()._write_line(log)
        else:
            self.old_logger(log)


def load_items(config: TrainConfig, *, progress: bool = True):
    """The labeled dataset a config names (CSV or class folders), with its patient column if any.

    Raises ``ValueError`` for a dataset that cannot be trained on (empty, one class only).
    """
    from radiology.data import from_csv, from_folder

    if config.folder is not None:
        items = from_folder(config.folder)
    else:
        root = config.root if config.root is not None else Path(config.csv).parent
        items = from_csv(config.csv, root, config.image_cols, config.label_cols,
                         multi_label=config.multi_label, group_col=config.group_col, progress=progress)
    _check_items(items)
    return items


def _check_items(items) -> None:
    if len(items) == 0:
        raise ValueError("empty dataset: no labeled images found")
    if items.multi_label:
        positives = np.asarray(items.targets).sum(axis=0)
        if len(items.classes) < 1 or not positives.any():
            raise ValueError("multi-label dataset has no positive label")
        return
    present = np.unique(np.asarray(items.targets)[np.asarray(items.targets) >= 0])
    if len(present) < 2:
        only = items.classes[int(present[0])] if len(present) else "none"
        raise ValueError(f"need at least two classes to train, found one ({only})")


def _check_model_settings(arch: str, source) -> None:
    """Fail before any image is read when the backbone ``arch`` or its weights ``source`` cannot be had."""
    import timm

    from radiology.models.pretrained import _is_checkpoint_path

    if not timm.is_model(arch):
        raise ValueError(f"unknown backbone {arch!r} (see timm.list_models())")
    if source is None or str(source).lower() in ("none", "imagenet"):
        return
    if _is_checkpoint_path(str(source)) and not Path(str(source)).is_file():
        raise FileNotFoundError(f"pretrained weights {source}: no such file")


def _groups(items, valid_fraction: float):
    """Patient groups: the CSV's group column, else the DICOM PatientID (None for image files)."""
    if items.groups is not None:
        return np.asarray(items.groups)
    from radiology.data import dicom_patient_ids
    from radiology.io import IMAGE_SUFFIXES

    if all(paths[0].suffix.lower() in IMAGE_SUFFIXES for paths in items.paths):
        return None
    groups = dicom_patient_ids([paths[0] for paths in items.paths])
    folds = max(2, round(1 / valid_fraction))
    if len(np.unique(groups)) < folds:
        # Anonymized archives often give every file one PatientID: a grouped split is impossible.
        logger.warning("the DICOM PatientIDs name only %d patient(s): the validation split ignores patients",
                       len(np.unique(groups)))
        return None
    return groups


def _versions() -> dict[str, str]:
    import fastai
    import timm

    import radiology

    return {"radiology": radiology.__version__, "torch": torch.__version__, "fastai": fastai.__version__,
            "timm": timm.__version__, "numpy": np.__version__, "python": platform.python_version()}


def train(config: TrainConfig, *, progress: bool = True):
    """Train, evaluate on the held-out validation split, and write a bundle.

    Steps: read the labeled dataset → patient-grouped stratified split (``valid_fraction``)
    → cached preprocessing with the bundle's pipeline → model (timm backbone, offline
    ImageNet weights) → head on frozen features → fine-tune (:func:`fine_tune`) →
    validation metrics and plots → bundle (:func:`radiology.models.save_bundle`) with
    ``train.json`` holding the data summary, split sizes, metrics, versions and settings.

    Parameters
    ----------
    config : TrainConfig
    progress : bool
        fastai progress bars.

    Returns
    -------
    TrainResult
    """
    from fastai.torch_core import set_seed

    from radiology.augment import radiograph_augmentation
    from radiology.data import (
        ImageCache,
        ImageDataset,
        build_dataloaders,
        class_weights,
        group_overlap,
        train_valid_split,
    )
    from radiology.models import create_model, save_bundle
    from radiology.train.losses import make_loss, positive_weights
    from radiology.train.metrics import best_thresholds, classification_metrics, classification_report, fastai_metrics
    from radiology.train.plots import plot_confusion_matrix, plot_roc

    started = time.time()
    _check_model_settings(config.arch, config.pretrained)
    out = Path(config.out)
    _check_out_folder(out, resume=config.resume, overwrite=config.overwrite)
    set_seed(config.seed, reproducible=True)
    items = load_items(config, progress=progress)
    pipeline = Pipeline.load(config.pipeline) if config.pipeline else default_pipeline(config.size, config.channels)
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    groups = _groups(items, config.valid_fraction)
    train_idx, valid_idx = train_valid_split(items.targets, groups, valid_fraction=config.valid_fraction,
                                             seed=config.seed)
    leaked = len(group_overlap(groups, train_idx, valid_idx, warn=False)) if groups is not None else 0
    train_items, valid_items = items.subset(train_idx), items.subset(valid_idx)
    cache = None if str(config.cache).lower() == "none" else ImageCache(config.cache)
    # Under `accelerate launch` each process drives the GPU of its LOCAL_RANK.
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    train_ds = ImageDataset(train_items, pipeline, cache=cache, channels=config.channels)
    valid_ds = ImageDataset(valid_items, pipeline, cache=cache, channels=config.channels)
    augment = radiograph_augmentation(degrees=5.0, translate=0.03, scale=(0.95, 1.05)) if config.augment else None
    dls = build_dataloaders(train_ds, valid_ds, batch_size=config.batch_size, num_workers=config.workers,
                            sampler=config.sampler, augment=augment, device=device, seed=config.seed)

    semi, semi_info = (None, None)
    if config.semi is not None:
        semi, semi_info = _semisup_callback(config, valid_items, pipeline, cache, progress)

    n_outputs = len(items.classes)
    model = create_model(config.arch, n_outputs, in_chans=config.channels, pretrained=config.pretrained,
                         views=len(items.views), fusion=config.fusion).to(device)
    weights = None
    if config.class_weights and not items.multi_label:
        weights = torch.as_tensor(class_weights(train_items.targets, n_outputs), dtype=torch.float32)
    pos_weight = None
    if items.multi_label:
        pos_weight = torch.as_tensor(positive_weights(np.asarray(train_items.targets)), dtype=torch.float32)
    loss = make_loss(config.loss_name, n_classes=n_outputs, multi_label=items.multi_label,
                     class_weights=weights, pos_weight=pos_weight, label_smoothing=config.label_smoothing)
    learn = make_learner(dls, model, loss.to(device), metrics=fastai_metrics(n_outputs, items.multi_label),
                         path=out)
    _run_settings(learn, progress, device)

    start_epoch = _resume_epoch(learn) if config.resume else 0
    if config.lr_find:
        _save_lr_find(learn, out / "lr_find.png")
    # A no-op in one process; under `accelerate launch` fastai wraps the model in DDP and
    # shards the batches. Only rank 0 writes checkpoints, logs and the bundle.
    with learn.distrib_ctx():
        if start_epoch == 0:
            fit_head(learn, config.head_epochs, config.head_lr)
        fine_tune(learn, config.epochs, config.peak_lr, lr_mult=config.lr_mult, patience=config.patience,
                  start_epoch=start_epoch, cbs=[semi] if semi is not None else [])
    if rank_distrib():
        return TrainResult(bundle=out, metrics={}, learner=learn)

    probs, targets = learn.get_preds(dl=dls.valid)
    probs, targets = probs.float().numpy(), targets.numpy()
    thresholds = best_thresholds(targets, probs) if items.multi_label else None
    metrics = classification_metrics(targets, probs, items.classes, multi_label=items.multi_label,
                                     thresholds=thresholds)
    report = classification_report(targets, probs, items.classes, multi_label=items.multi_label,
                                   thresholds=thresholds)
    (out / "report.txt").write_text(report)
    if not items.multi_label:
        plot_confusion_matrix(targets, probs.argmax(1), items.classes, out / "confusion_matrix.png")
    plot_roc(targets, probs, items.classes, out / "roc.png", multi_label=items.multi_label)

    labels = {"classes": list(items.classes), "multi_label": bool(items.multi_label),
              "thresholds": None if thresholds is None else [float(t) for t in thresholds],
              "views": list(items.views), "channels": config.channels, "size": config.size}
    info = {
        "data": {"all": items.summary(), "train": train_items.summary(), "valid": valid_items.summary(),
                 "grouped_by": config.group_col or ("DICOM PatientID" if groups is not None else None),
                 "groups_on_both_sides": int(leaked)},
        "validation_metrics": metrics,
        "settings": config.to_dict(),
        "semi_supervised": semi_info,
        "seed": config.seed,
        "versions": _versions(),
        "device": str(device),
        "seconds": round(time.time() - started, 1),
    }
    model.eval()
    bundle = save_bundle(out, model.cpu(), pipeline, labels, info, size=config.size)
    return TrainResult(bundle=Path(bundle), metrics=metrics, learner=learn)


def _semisup_callback(config: TrainConfig, valid_items, pipeline, cache, progress: bool):
    """The FixMatch/MixMatch callback over ``config.unlabeled`` (validation files left out) and its summary."""
    from radiology.data import ImageDataset, drop_unreadable, from_unlabeled
    from radiology.semisup import semisup_callback

    unlabeled = from_unlabeled(config.unlabeled)
    # Images of the validation split must not be trained on, not even without their labels.
    held_out = {paths[0].resolve() for paths in valid_items.paths}
    keep = [i for i, paths in enumerate(unlabeled.paths) if paths[0].resolve() not in held_out]
    excluded = len(unlabeled) - len(keep)
    dataset, skipped = drop_unreadable(ImageDataset(unlabeled.subset(keep), pipeline, cache=cache,
                                                    channels=config.channels), progress=progress)
    if len(dataset) == 0:
        raise ValueError(f"{config.unlabeled}: no readable unlabeled image (besides validation files)")
    if skipped:
        logger.warning("%d unlabeled file(s) could not be read and are left out (first: %s: %s)",
                       len(skipped), *skipped[0])
    callback = semisup_callback(config.semi, dataset, config.batch_size, num_workers=config.workers,
                                seed=config.seed, **config.semi_params)
    return callback, {"method": config.semi, "params": dict(config.semi_params), "unlabeled": len(dataset),
                      "unreadable": len(skipped), "validation_files_left_out": excluded}


def _check_out_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or that holds a model this run would replace unasked."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: --out is a file; it names the bundle folder to write")
    if resume or overwrite:
        return
    found = [name for name in ("model.json", f"{CHECKPOINT_DIR}/{CHECKPOINT}.pth") if (out / name).is_file()]
    if found:
        raise FileExistsError(f"{out} already holds a trained model ({found[0]}): pass --overwrite to replace it, "
                              "--resume to continue it, or another --out")


def _resume_epoch(learn) -> int:
    marker = learn.path / learn.model_dir / "last_epoch.json"
    if not marker.exists():
        logger.warning("resume: no checkpoint in %s, starting from scratch", marker.parent)
        return 0
    learn.load(CHECKPOINT, with_opt=True)
    return int(json.loads(marker.read_text())["epoch"])


def _save_lr_find(learn, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learn.lr_find(show_plot=False)
    learn.recorder.plot_lr_find()
    plt.savefig(path, dpi=100)
    plt.close("all")
