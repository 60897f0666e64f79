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
#: The images a run left out and why (``file, reason``), written into every bundle.
DATA_REPORT = "data_report.csv"


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
    run can continue (``start_epoch``). Both files are written atomically, hold tensors and
    numbers only (they load without unpickling code) and are stamped with the settings they
    belong to (:func:`_checkpoint_settings`); ``last_epoch.json`` repeats the stamp for
    people. ``patience`` > 0 adds early stopping. The epoch log goes to ``history.csv`` in
    ``learn.path``.

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
        Epochs already done (resume: :func:`_resume_epoch` has loaded ``checkpoints/last.pth``).
    cbs : sequence of fastai callbacks
        Added for this stage only (e.g. :class:`radiology.semisup.FixMatch`).

    Raises
    ------
    ValueError
        ``start_epoch`` > 0 and ``checkpoints/last.pth`` is damaged or belongs to other settings.
    """
    if epochs < 1:
        return
    # fastai's unfreeze clears the optimizer state: keep the one a resumed run has just loaded.
    resumed = learn.opt.state_dict() if start_epoch and learn.opt is not None else None
    learn.unfreeze()
    if resumed is not None:
        learn.opt.load_state_dict(resumed)
    if rank_distrib():  # another process of a multi-GPU run: rank 0 saves and logs
        learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), start_epoch=start_epoch, cbs=list(cbs))
        return
    last = Path(learn.path) / learn.model_dir / f"{CHECKPOINT}.pth"
    best = None
    if start_epoch and last.is_file():
        best = _read_checkpoint(last, _checkpoint_settings(learn))["radiology"].get("best")
    cbs = [
        *cbs,
        _BestModel(start_epoch, best, monitor=monitor, fname=BEST),
        _SaveLast(start_epoch),
        _History("history.csv", start_epoch),
    ]
    if patience and num_distrib() <= 1:  # one rank stopping early would leave the others waiting
        cbs.append(_EarlyStopping(start_epoch, monitor=monitor, patience=patience))
    learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), cbs=cbs, start_epoch=start_epoch)


def _checkpoint_settings(learn) -> dict[str, Any]:
    """What a checkpoint belongs to: the model's architecture and the labels, views and preprocessing it learns.

    Weights resumed under any other value would silently mix two runs, so every checkpoint is
    stamped with this and compared on resume. The JSON round trip makes the stamp compare equal
    to its stored copy (tuples become lists).
    """
    from fastai.torch_core import get_model

    model = get_model(learn.model)
    settings: dict[str, Any] = {"model": type(model).__name__}
    config = getattr(model, "config", None)
    if isinstance(config, dict):  # a RadiographClassifier
        settings.update({key: config.get(key) for key in ("arch", "n_outputs", "in_chans", "views", "fusion")})
    data = getattr(learn.dls.train, "dataset", None)
    for name in ("classes", "multi_label", "channels", "size"):
        if hasattr(data, name):
            settings[name] = getattr(data, name)
    if hasattr(getattr(data, "items", None), "views"):
        settings["view_names"] = list(data.items.views)
    if hasattr(getattr(data, "pipeline", None), "to_dict"):
        settings["pipeline"] = data.pipeline.to_dict()
    return json.loads(json.dumps(settings, default=str))


def _settings_differences(stamped: dict[str, Any], current: dict[str, Any]) -> str:
    """``key: stamped value -> current value`` for each setting that differs (long values by name only)."""

    def shown(value) -> str:
        text = json.dumps(value)
        return text if len(text) <= 60 else "(another value)"

    keys = [key for key in sorted(set(stamped) | set(current)) if stamped.get(key) != current.get(key)]
    return "; ".join(f"{key} {shown(stamped.get(key))} in the checkpoint, {shown(current.get(key))} now"
                     for key in keys)


def _plain(value):
    """fastai's optimizer state as plain containers and numbers (no ``L``, no numpy scalars).

    Only such data (and tensors) loads with ``torch.load(weights_only=True)``, which never runs code.
    """
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)) or type(value).__name__ == "L":
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_checkpoint(learn, path: Path, record: dict[str, Any], *, with_opt: bool) -> Path:
    """Save the model (and optimizer) of ``learn`` with its ``record`` to ``path`` atomically."""
    import io

    from fastai.torch_core import get_model

    from radiology.io import atomic_write

    state: dict[str, Any] = {"model": get_model(learn.model).state_dict(), "radiology": record}
    if with_opt and learn.opt is not None:
        state["opt"] = _plain(learn.opt.state_dict())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # An interrupted save must never leave half a checkpoint where the last complete one was.
    return atomic_write(path, buffer.getvalue())


def _read_checkpoint(path: Path, settings: dict[str, Any], device="cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`_write_checkpoint`, loaded as data and checked against ``settings``.

    Raises ``ValueError`` (one line naming ``path``) for a missing, damaged, unstamped or
    code-carrying file, or one stamped with other settings.
    """
    import pickle

    if not path.is_file():
        raise ValueError(f"{path}: checkpoint missing (the run it belongs to is incomplete); start again with "
                         "overwrite")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" not in str(error).lower():
            raise ValueError(f"{path}: damaged or not a checkpoint of radiology train") from None
        raise ValueError(f"{path}: holds objects that are not tensors or numbers; refused, since loading them "
                         "could run code") from None
    except Exception:  # torch reports a truncated or foreign file in many ways, none of them one line
        raise ValueError(f"{path}: damaged or not a checkpoint of radiology train") from None
    record = state.get("radiology") if isinstance(state, dict) else None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict) or "model" not in state:
        raise ValueError(f"{path}: not stamped with the settings it belongs to (another program or an older "
                         "version wrote it); start again with overwrite")
    if record["settings"] != settings:
        raise ValueError(f"{path}: made with other settings ({_settings_differences(record['settings'], settings)});"
                         " resume with the settings it was made with, or start again with overwrite")
    return state


def _load_weights(learn, path: Path, state: dict[str, Any]) -> None:
    """Put a checked checkpoint's weights into ``learn.model``; one line naming ``path`` when they do not fit."""
    from fastai.torch_core import get_model

    model = get_model(learn.model)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = state["model"] if isinstance(state["model"], dict) else {}
    wrong = sorted(key for key in set(expected) | set(found)
                   if tuple(getattr(found.get(key), "shape", ("missing",))) != expected.get(key, ("extra",)))
    if wrong:
        raise ValueError(f"{path}: weights do not fit the model ({len(wrong)} tensor(s) missing, extra or of another "
                         f"shape, first {wrong[0]!r})")
    model.load_state_dict(found)


def _load_optimizer(learn, path: Path, state: dict[str, Any]) -> None:
    """Put a checked checkpoint's optimizer state into ``learn.opt``; one line naming ``path`` when it does not fit."""
    from fastcore.foundation import L

    if learn.opt is None:
        learn.create_opt()
    saved = state.get("opt")
    try:
        learn.opt.load_state_dict({"state": list(saved["state"]), "hypers": L(saved["hypers"])})
    except (AssertionError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: the optimizer state does not fit the model ({type(error).__name__})") from None


# fastai's ``start_epoch`` skips epochs by cancelling them, but ``after_epoch`` still runs for
# them with nothing recorded: the callbacks below ignore the epochs a resumed run skips.


class _BestModel(SaveModelCallback):
    """Save the best epoch (atomic, stamped); on resume, start from the best value of the interrupted run."""

    def __init__(self, start_epoch: int, best: float | None, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch, self.resumed_best = start_epoch, best

    def before_fit(self):
        super().before_fit()
        self.settings = _checkpoint_settings(self.learn)
        if self.resumed_best is not None:
            self.best = self.resumed_best

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()

    def _save(self, name):
        path = Path(self.learn.path) / self.learn.model_dir / f"{name}.pth"
        record = {"epoch": self.epoch + 1, "best": float(self.best), "settings": self.settings}
        self.last_saved_path = _write_checkpoint(self.learn, path, record, with_opt=False)

    def after_fit(self, **kwargs):
        # fastai reloads the best epoch with weights_only=False, which unpickles anything a
        # planted best.pth holds: load it as data, checked like a resumed checkpoint.
        path = Path(self.learn.path) / self.learn.model_dir / f"{self.fname}.pth"
        if not path.is_file():  # no epoch improved on the start value (e.g. a NaN loss): keep the last weights
            logger.warning("%s: no best epoch was saved; keeping the last epoch's weights", path)
            return
        _load_weights(self.learn, path, _read_checkpoint(path, self.settings))


class _EarlyStopping(EarlyStoppingCallback):
    def __init__(self, start_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()


class _SaveLast(Callback):
    """Save model + optimizer after every epoch with the epoch count, so a run can resume.

    ``last.pth`` carries its own record (epoch, best value, settings), written in the same
    atomic rename as the weights; ``last_epoch.json`` repeats it for people and tools.
    """

    order = 70

    def __init__(self, start_epoch: int = 0):
        self.start_epoch = start_epoch

    def before_fit(self):
        self.settings = _checkpoint_settings(self.learn)

    def after_epoch(self):
        from radiology.io import atomic_write

        if self.epoch < self.start_epoch:
            return
        tracker = next((cb for cb in self.learn.cbs if isinstance(cb, _BestModel)), None)
        best = None if tracker is None else float(tracker.best)
        record = {"epoch": self.epoch + 1, "best": best, "settings": self.settings}
        folder = Path(self.learn.path) / self.learn.model_dir
        _write_checkpoint(self.learn, folder / f"{CHECKPOINT}.pth", record, with_opt=True)
        atomic_write(folder / "last_epoch.json", json.dumps(record).encode())


def _keep_epochs_before(path: Path, start_epoch: int) -> None:
    """Drop the log rows of epochs the checkpoint does not hold.

    An interruption after an epoch was logged but before its checkpoint was saved leaves a row
    the resumed run logs again.
    """
    from radiology.io import atomic_write

    header, *rows = path.read_text().splitlines(keepends=True)

    def epoch_of(row: str) -> int:
        first = row.split(",", 1)[0].strip()
        return int(first) if first.isdigit() else start_epoch

    kept = [row for row in rows if epoch_of(row) < start_epoch]
    if len(kept) < len(rows):
        atomic_write(path, "".join([header, *kept]).encode())


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
        if continuing:
            _keep_epochs_before(path, self.start_epoch)
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

    Rows whose (single-label) label is empty are unlabeled: they are left out with a logged
    warning giving their count. Nothing but the table (and DICOM headers, for UIDs) is read.

    Raises
    ------
    ValueError
        One line naming the problem, for a dataset that cannot be trained on: image values
        outside ``root`` (unless ``allow_outside_root``), no labeled image, one class only, a
        class without images.
    """
    from radiology.data import from_csv, from_folder

    if config.folder is not None:
        items = from_folder(config.folder)
        source = Path(config.folder).name
    else:
        root = config.root if config.root is not None else Path(config.csv).parent
        items = from_csv(config.csv, root, config.image_cols, config.label_cols,
                         multi_label=config.multi_label, group_col=config.group_col, progress=progress,
                         allow_outside_root=config.allow_outside_root)
        source = Path(config.csv).name
    unlabeled = int((~items.labeled).sum())
    if unlabeled:
        logger.warning("%s: %d row(s) with an empty label are unlabeled and left out of training", source, unlabeled)
        items = items.subset(np.flatnonzero(items.labeled))
    _check_items(items)
    return items


def _check_items(items) -> None:
    """Refuse, in one line, a dataset no model can be trained on."""
    if len(items) == 0:
        raise ValueError("empty dataset: no labeled images found")
    counts = items.class_counts()
    if items.multi_label:
        if len(items.classes) < 1 or not counts.any():
            raise ValueError("multi-label dataset has no positive label")
        return
    if int((counts > 0).sum()) < 2:
        present = np.flatnonzero(counts)
        only = items.classes[int(present[0])] if len(present) else "none"
        raise ValueError(f"need at least two classes to train, found one ({only})")
    empty = [name for name, n in zip(items.classes, counts) if n == 0]
    if empty:  # an output no image teaches (a class folder without images)
        raise ValueError(f"class(es) without any image: {', '.join(empty[:8])}{' ...' if len(empty) > 8 else ''}")


def _class_counts(items) -> str:
    """``nodule (1), normal (1)`` (multi-label: positives), for messages."""
    pairs = [f"{name} ({int(n)})" for name, n in zip(items.classes, items.class_counts())]
    return ", ".join(pairs[:8]) + (" ..." if len(pairs) > 8 else "")


def _check_readable(items, pipeline, cache, config: TrainConfig, progress: bool):
    """Read every image once, before training; ``(readable items, [(file, reason), ...])``.

    With a cache this pass fills it, so the first epoch decodes nothing a second time. An
    unreadable file stops the run here (one line: the count and the first files) unless
    ``config.skip_unreadable``, rather than at a random step of a later epoch.
    """
    from radiology.data import ImageDataset, drop_unreadable

    dataset, failures = drop_unreadable(ImageDataset(items, pipeline, cache=cache, channels=config.channels),
                                        progress=progress)
    if not failures:
        return items, failures
    if not config.skip_unreadable:
        shown = "; ".join(reason for _, reason in failures[:3])  # each reason starts with its file
        raise ValueError(f"{len(failures)} of {len(items)} training image(s) cannot be read ({shown}"
                         f"{' ...' if len(failures) > 3 else ''}): pass skip_unreadable=True to train without them")
    logger.warning("%d of %d training image(s) cannot be read and are left out (listed in %s)", len(failures),
                   len(items), DATA_REPORT)
    _check_items(dataset.items)
    return dataset.items, failures


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
    """Patient groups: the CSV's group column, else the DICOM PatientID (None for image files).

    Raises ``ValueError`` (one line with the class counts) when there are fewer patients
    (images, without groups) than the split's ``round(1 / valid_fraction)`` folds.
    """
    folds = max(2, round(1 / valid_fraction))
    groups = _patient_groups(items, folds)
    patients = len(items) if groups is None else len(np.unique(groups))
    if patients < folds:
        raise ValueError(f"{len(items)} labeled image(s) of {patients} patient(s) are too few for a validation split "
                         f"with valid_fraction {valid_fraction} (at least {folds} patients): {_class_counts(items)}")
    return groups


def _patient_groups(items, folds: int):
    if items.groups is not None:
        return np.asarray(items.groups)
    from radiology.data import dicom_patient_ids
    from radiology.io import IMAGE_SUFFIXES

    if all(paths[0].suffix.lower() in IMAGE_SUFFIXES for paths in items.paths):
        return None
    groups = dicom_patient_ids([paths[0] for paths in items.paths])
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

    Steps: read the labeled dataset → read every image once (filling the cache) →
    patient-grouped stratified split (``valid_fraction``) → model (timm backbone, offline
    ImageNet weights) → head on frozen features → fine-tune (:func:`fine_tune`) →
    validation metrics and plots → bundle (:func:`radiology.models.save_bundle`) with
    ``train.json`` holding the data summary, split sizes, metrics, versions and settings
    (:meth:`TrainConfig.to_record`: no folder of the user's named), and ``data_report.csv``
    listing the images left out (``skip_unreadable``).

    Every problem with the inputs stops the run before any training work, with one line
    naming the rows or files and nothing written to ``out``: an ``out`` holding a file it would
    write (unless ``overwrite``; only the run's own names are ever replaced, see
    :func:`_check_out_folder`), image values outside ``root``, unreadable images, fewer
    patients than the split needs. Rows with an empty label are left out with a warning;
    a class whose patients were all drawn for validation moves to training.

    Parameters
    ----------
    config : TrainConfig
    progress : bool
        fastai progress bars.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError, FileExistsError, NotADirectoryError, FileNotFoundError
        One line naming the setting, rows or files at fault (see above).
    """
    from fastai.torch_core import set_seed

    from radiology.augment import radiograph_augmentation
    from radiology.data import (
        ImageDataset,
        build_dataloaders,
        class_weights,
        data_report,
        group_overlap,
        keep_classes_in_training,
        open_cache,
        train_valid_split,
    )
    from radiology.io import atomic_write
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
    cache = open_cache(config.cache)
    items, unreadable = _check_readable(items, pipeline, cache, config, progress)
    groups = _groups(items, config.valid_fraction)
    train_idx, valid_idx = train_valid_split(items.targets, groups, valid_fraction=config.valid_fraction,
                                             seed=config.seed)
    # A rare class drawn for validation only would be scored but never learned.
    train_idx, valid_idx, moved = keep_classes_in_training(items.targets, groups, train_idx, valid_idx)
    if len(valid_idx) == 0:
        raise ValueError(f"every class needs its images in training, which leaves none for validation: too few "
                         f"images per class ({_class_counts(items)})")
    if moved:
        logger.warning("class(es) %s had images in validation only: those patients moved to training",
                       ", ".join(items.classes[i] for i in moved))
    out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
    atomic_write(out / DATA_REPORT, data_report(unreadable))
    leaked = len(group_overlap(groups, train_idx, valid_idx, warn=False)) if groups is not None else 0
    train_items, valid_items = items.subset(train_idx), items.subset(valid_idx)
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
    atomic_write(out / "report.txt", report.encode())
    if not items.multi_label:
        plot_confusion_matrix(targets, probs.argmax(1), items.classes, out / "confusion_matrix.png")
    plot_roc(targets, probs, items.classes, out / "roc.png", multi_label=items.multi_label)

    labels = {"classes": list(items.classes), "multi_label": bool(items.multi_label),
              "thresholds": None if thresholds is None else [float(t) for t in thresholds],
              "views": list(items.views), "channels": config.channels, "size": config.size}
    info = {
        "data": {"all": items.summary(), "train": train_items.summary(), "valid": valid_items.summary(),
                 "grouped_by": config.group_col or ("DICOM PatientID" if groups is not None else None),
                 "groups_on_both_sides": int(leaked), "unreadable_left_out": len(unreadable)},
        "validation_metrics": metrics,
        "settings": config.to_record(),
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
    from radiology.semisup import copies_of, semisup_callback

    unlabeled = from_unlabeled(config.unlabeled)
    # Images of the validation split must not be trained on, not even without their labels, nor
    # copies of them under another name: left out by content (bytes or SOP Instance UID), not by path.
    validation_files = [path for paths in valid_items.paths for path in paths]
    held_out = copies_of([paths[0] for paths in unlabeled.paths], validation_files)
    keep = np.flatnonzero(~held_out)
    excluded = int(held_out.sum())
    if excluded:
        logger.info("%d unlabeled file(s) are copies of validation images and are left out", excluded)
    dataset, skipped = drop_unreadable(ImageDataset(unlabeled.subset(keep), pipeline, cache=cache,
                                                    channels=config.channels), progress=progress)
    if len(dataset) == 0:
        raise ValueError(f"{config.unlabeled}: no readable unlabeled image (besides validation files)")
    if skipped:
        logger.warning("%d unlabeled file(s) could not be read and are left out (first: %s)",
                       len(skipped), skipped[0][1])
    callback = semisup_callback(config.semi, dataset, config.batch_size, num_workers=config.workers,
                                seed=config.seed, **config.semi_params)
    return callback, {"method": config.semi, "params": dict(config.semi_params), "unlabeled": len(dataset),
                      "unreadable": len(skipped), "validation_files_left_out": excluded}


def _check_out_folder(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or that holds a file this run would replace unasked.

    A run writes only its own names (:func:`_run_files`); anything else in ``out`` is never
    touched. Without ``overwrite``, a file of one of those names stops the run before any
    work (a model is named first: ``model.json`` or ``checkpoints/last.pth``), except that
    ``resume`` continues an interrupted run: a folder with its checkpoint.
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: --out is a file; it names the bundle folder to write")
    if overwrite or not out.is_dir():
        return
    last = f"{CHECKPOINT_DIR}/{CHECKPOINT}.pth"
    if resume and (out / last).is_file():
        return  # the interrupted run's own files
    found = [name for name in _run_files() if (out / name).exists()]
    models = [name for name in ("model.json", last) if name in found]
    if models:
        raise FileExistsError(f"{out} already holds a trained model ({models[0]}): pass overwrite=True to replace "
                              "it, resume=True to continue it, or another out")
    if found:
        raise FileExistsError(f"{out} already holds {found[0]}, which this run would replace: pass overwrite=True "
                              "to replace it, or another out")


def _run_files() -> tuple[str, ...]:
    """Every name a training run writes in its ``out`` folder (the bundle's, the run's own, the checkpoints)."""
    from radiology.models.bundle import BUNDLE_FILES

    checkpoints = tuple(f"{CHECKPOINT_DIR}/{name}" for name in (f"{CHECKPOINT}.pth", f"{BEST}.pth", "last_epoch.json"))
    return (*BUNDLE_FILES, "history.csv", "report.txt", "confusion_matrix.png", "roc.png", "lr_find.png",
            DATA_REPORT, *checkpoints)


def _resume_epoch(learn) -> int:
    """Load an interrupted run's ``checkpoints/last.pth`` into ``learn``; the number of epochs it had done.

    Everything is checked before training starts: the file loads as data only, is stamped
    with this run's settings (:func:`_checkpoint_settings`), and its weights and optimizer
    state fit the model; the best epoch it refers to (``best.pth``, loaded at the end of
    training) is checked the same way. With no checkpoint at all the run starts from scratch.

    Raises
    ------
    ValueError
        One line naming the checkpoint file and what is wrong with it.
    """
    folder = Path(learn.path) / learn.model_dir
    last, marker = folder / f"{CHECKPOINT}.pth", folder / "last_epoch.json"
    if not last.exists() and not marker.exists():
        logger.warning("resume: no checkpoint in %s, starting from scratch", folder)
        return 0
    settings = _checkpoint_settings(learn)
    state = _read_checkpoint(last, settings, device=getattr(learn.dls, "device", None) or "cpu")
    record = state["radiology"]
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"{last}: its record holds no epoch count; start again with overwrite")
    best = record.get("best")
    # best.pth is loaded at the end of training: damage there must stop the run now, not then.
    if (folder / f"{BEST}.pth").exists() or (isinstance(best, (int, float)) and np.isfinite(best)):
        _read_checkpoint(folder / f"{BEST}.pth", settings)
    _load_weights(learn, last, state)
    _load_optimizer(learn, last, state)
    return epoch


def _save_lr_find(learn, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learn.lr_find(show_plot=False)
    learn.recorder.plot_lr_find()
    plt.savefig(path, dpi=100)
    plt.close("all")
