"""The whole ``train`` recipe: a :class:`~radiology.train.TrainConfig` in, a model bundle out.

:func:`train` checks every input before any training work (out folder, model settings,
labeled rows, readable images, enough patients for the split), splits by patient, builds
the model, fits the head then fine-tunes (:mod:`radiology.train.learner`), optionally with
a semi-supervised callback over unlabeled images (:mod:`radiology.semisup`), resumes an
interrupted run from its checkpoint (:mod:`radiology.train.checkpoints`), evaluates on the
validation split, refits on every training image for the epochs chosen (by default) and writes
the bundle (:func:`radiology.models.save_bundle`) — or, with
``folds``, does so once per patient-grouped fold and writes the K bundles as one ensemble
with out-of-fold metrics (:func:`radiology.models.save_ensemble`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.mixup import CutMix, MixUp
from fastai.distributed import num_distrib, rank_distrib

from radiology.manifest import ENSEMBLE, MANIFEST, verified_bytes
from radiology.pipeline import Pipeline, default_pipeline
from radiology.train.callbacks import FrozenBatchNormStats, TrainOnly, WeightAverage
from radiology.train.checkpoints import BEST, CHECKPOINT, CHECKPOINT_DIR, resume_epoch
from radiology.train.config import TrainConfig
from radiology.train.distributed import distrib_ctx, process_group, single_process
from radiology.train.learner import PHASES, check_model_settings, fine_tune, fit_head, make_learner, run_settings
from radiology.train.tracking import Tracking, check_trackers

__all__ = ["TrainResult", "train", "load_items", "patient_column_of", "DATA_REPORT"]

logger = logging.getLogger(__name__)

#: The images a run left out and why (``file, reason``), written into every bundle.
DATA_REPORT = "data_report.csv"


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    bundle : pathlib.Path
        The bundle directory (load it with :func:`radiology.models.load_bundle`).
    metrics : dict
        Validation metrics of the model that chose the epoch (also in ``train.json``); after a
        refit (the default) the bundle holds a model trained on the validation images too, which
        has none.
    learner : fastai.learner.Learner
        The fastai Learner, for further work in Python.
    """

    bundle: Path
    metrics: dict[str, Any]
    learner: Any


def load_items(config: TrainConfig, *, progress: bool = True):
    """The labeled dataset a config names (CSV or class folders), with its patient column if any.

    Rows whose (single-label) label is empty are unlabeled: they are left out with a logged
    warning giving their count. Nothing but the table (and DICOM headers, for UIDs) is read.

    Parameters
    ----------
    config : TrainConfig
        Names the data: ``csv`` with ``root``, ``image_cols``, ``label_cols`` and ``group_col``, or
        ``folder``.
    progress : bool
        Show a progress bar while DICOM files are indexed by UID (image values that are UIDs).

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
                         multi_label=config.multi_label, group_col=patient_column_of(config), progress=progress,
                         allow_outside_root=config.allow_outside_root)
        source = Path(config.csv).name
    unlabeled = int((~items.labeled).sum())
    if unlabeled:
        logger.warning("%s: %d row(s) with an empty label are unlabeled and left out of training", source, unlabeled)
        items = items.subset(np.flatnonzero(items.labeled))
    _check_items(items)
    return items


def patient_column_of(config: TrainConfig) -> str | None:
    """The patient column a run splits by: ``config.group_col``, else one the CSV's header names.

    A column the header calls ``patient``, ``patient_id``, ``Patient ID``, ``PatientID`` ...
    (:func:`radiology.data.patient_column`) is used without being asked for, and the run says
    so in its log: splitting a patient's images across training and validation inflates the
    validation scores, and a table that names patients should not need a flag to prevent it.

    Parameters
    ----------
    config : TrainConfig
        The run's settings; only ``group_col``, ``csv``, ``image_cols`` and ``label_cols`` are read
        (and of the CSV, its header line).

    Returns
    -------
    str or None
        None for class folders and for tables without such a column.
    """
    import pandas as pd

    from radiology.data import patient_column

    if config.group_col is not None or config.csv is None:
        return config.group_col
    try:
        header = pd.read_csv(config.csv, nrows=0, dtype=str).columns
    except (OSError, ValueError, UnicodeDecodeError):
        return None  # the full read (from_csv) reports what is wrong with the file
    used = [*_names(config.image_cols), *_names(config.label_cols)]
    found = patient_column(header, exclude=used)
    if found is not None:
        logger.info("%s: the validation split keeps each patient's images together (column %r; --group-col "
                    "names another)", Path(config.csv).name, found)
    return found


def _names(columns) -> list[str]:
    return [columns] if isinstance(columns, str) else list(columns or ())


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



def _groups(items, folds: int, setting: str):
    """Patient groups: the CSV's group column, else the DICOM PatientID (None for image files).

    Raises ``ValueError`` (one line with the class counts) when there are fewer patients
    (images, without groups) than the ``folds`` of the split that ``setting`` names.
    """
    groups = _patient_groups(items, folds)
    patients = len(items) if groups is None else len(np.unique(groups))
    if patients < folds:
        raise ValueError(f"{len(items)} labeled image(s) of {patients} patient(s) are too few for a validation split "
                         f"with {setting} (at least {folds} patients): {_class_counts(items)}")
    return groups


def _patient_groups(items, folds: int):
    if items.groups is not None:
        return np.asarray(items.groups)
    from radiology.data import dicom_patient_ids
    from radiology.files import is_image_file

    if all(is_image_file(paths[0]) for paths in items.paths):
        # Image files carry no PatientID: say once that the split cannot keep patients together.
        logger.warning("no patient column and no DICOM PatientID: the validation split is by image, so one "
                       "patient's images can sit on both sides (name the patient column with --group-col)")
        return None
    groups = dicom_patient_ids([paths[0] for paths in items.paths])
    if len(np.unique(groups)) < folds:
        # Anonymized archives often give every file one PatientID: a grouped split is impossible.
        logger.warning("the DICOM PatientIDs name only %d patient(s): the validation split ignores patients",
                       len(np.unique(groups)))
        return None
    return groups


def train(config: TrainConfig, *, progress: bool = True):
    """Train, evaluate on the held-out validation split, and write a bundle.

    Steps: read the labeled dataset → read every image once (filling the cache) →
    patient-grouped stratified split (``valid_fraction``) → model (timm backbone, offline
    ImageNet weights) → head on frozen features (:func:`~radiology.train.learner.fit_head`)
    → fine-tune (:func:`~radiology.train.learner.fine_tune`) → validation metrics and plots
    → bundle (:func:`radiology.models.save_bundle`) with ``train.json`` holding the data
    summary, split sizes, metrics, versions and settings (:meth:`TrainConfig.to_record`: no
    folder of the user's named), and ``data_report.csv`` listing the images left out
    (``skip_unreadable``).

    The run says what it does through :mod:`logging` (logger ``radiology.train``, INFO):
    what is read and cached, the split, the model, each phase by name before its epochs
    (``phase 1/2: head on frozen features (20 epochs, ...)``), the scoring and the export.
    ``history.csv`` holds the epochs of both phases (a ``phase`` column). With ``config.log``
    the run is also logged to TensorBoard, MLflow and/or W&B (:mod:`radiology.train.tracking`).

    With ``config.folds`` of ``K >= 2`` the split is ``K`` patient-grouped folds instead: one
    model per fold, each validated on its fold and written to ``out/fold-k`` as above, then
    ``out`` becomes one ensemble bundle (:func:`radiology.models.save_ensemble`) whose
    ``train.json`` holds the out-of-fold metrics, which the result's ``metrics`` are too (its
    ``learner`` is the last fold's). ``resume`` keeps the folds that finished.

    A one-model run then refits by default (``config.refit``: ``None`` refits one supervised
    model in one process, ``True`` asks for it, ``False`` turns it off): once validation has
    chosen the epoch, a new model (same seed) trains on every training image, validation images
    included, for the same head epochs and the kept fine-tuning epochs of the same schedule,
    validating on nothing (``refit_head`` and ``refit`` rows in ``history.csv``, training loss only); the
    bundle holds it, ``train.json`` its ``refit`` record and the validated model's metrics.

    Every problem with the inputs stops the run before any training work, with one line
    naming the rows or files and nothing written to ``out``: an ``out`` holding a file it
    would write (unless ``overwrite``; only the run's own names are ever replaced), image
    values outside ``root``, unreadable images, fewer patients than the split needs. Rows
    with an empty label are left out with a warning; a class whose patients were all drawn
    for validation moves to training.

    Parameters
    ----------
    config : TrainConfig
        All settings of the run, validated when it was built.
    progress : bool
        Progress bars (fastai's, tqdm's) where the output is a terminal or a notebook; when it
        is not (a file, a pipe), or with ``False``, no bar is drawn and every epoch is logged
        as one plain line instead (:class:`~radiology.train.callbacks.EpochLog`).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError, FileExistsError, NotADirectoryError, FileNotFoundError
        One line naming the setting, rows or files at fault (see above).
    radiology.train.tracking.TrackerUnavailable
        A tracker named in ``config.log`` is not installed (the line names the ``pip install``).

    Notes
    -----
    Launched as several processes (``torchrun --nproc_per_node N -m radiology.cli train ...``:
    GPUs through NCCL, CPUs through gloo, :mod:`radiology.train.distributed`), every process
    runs this function: the fine-tuning's batches are sharded across them and its validation
    metrics gathered from all of them; rank 0 alone checks and writes ``out``, fits the head,
    scores the final model and writes the bundle. The other ranks return a ``TrainResult``
    with empty ``metrics``.
    """
    with process_group():
        return _train(config, progress)


def _train(config: TrainConfig, progress: bool):
    """:func:`train` inside the process group of a multi-process run."""
    from fastai.torch_core import set_seed

    from radiology.data import open_cache, train_valid_split

    started = time.time()
    logger.info("checking the settings%s", f" and the tracker packages ({', '.join(config.log)})" if config.log else "")
    check_model_settings(config.arch, config.pretrained)
    if config.refit and num_distrib() > 1:
        raise ValueError("refit runs in one process: launch it without torchrun or accelerate")
    check_trackers(config.log)  # a missing tracker package stops the run before any work
    out = Path(config.out)
    if not rank_distrib():  # the other processes of a multi-process run write nothing there
        _check_out_folder(out, resume=config.resume, overwrite=config.overwrite, folds=config.folds)
    set_seed(config.seed, reproducible=True)
    bars, bars_err = progress and _interactive(sys.stdout), progress and _interactive(sys.stderr)
    logger.info("reading the labels of %s", Path(config.csv).name if config.csv is not None else
                f"the class folders of {Path(config.folder).name}")
    config = replace(config, group_col=patient_column_of(config))  # recorded in train.json as found
    items = load_items(config, progress=bars_err)
    pipeline = Pipeline.load(config.pipeline) if config.pipeline else default_pipeline(config.size, config.channels)
    cache = open_cache(config.cache)
    logger.info("%d labeled image(s): %s; reading each once to check it%s", len(items), _class_counts(items),
                f" and fill the cache in {cache.root}" if cache is not None else " (no cache)")
    items, unreadable = _check_readable(items, pipeline, cache, config, bars_err)
    if config.folds > 1:
        return _train_folds(config, items, unreadable, pipeline, cache, bars, bars_err, started)
    folds = max(2, round(1 / config.valid_fraction))
    groups = _groups(items, folds, f"valid_fraction {config.valid_fraction}")
    train_idx, valid_idx = train_valid_split(items.targets, groups, valid_fraction=config.valid_fraction,
                                             seed=config.seed)
    return _train_split(config, items, groups, train_idx, valid_idx, unreadable, pipeline, cache, bars, bars_err,
                        started).result


@dataclass
class _SplitRun:
    """One trained split: what :func:`train` returns for it, and its validation images and probabilities."""

    result: TrainResult
    valid_idx: np.ndarray
    probs: np.ndarray | None  # None on the other ranks of a multi-process run


def _train_split(config: TrainConfig, items, groups, train_idx, valid_idx, unreadable, pipeline, cache, bars: bool,
                 bars_err: bool, started: float) -> _SplitRun:
    """Train one model on ``train_idx``, validate it on ``valid_idx`` and write its bundle to ``config.out``."""
    from radiology.data import data_report, group_overlap, keep_classes_in_training
    from radiology.io import atomic_write

    out = Path(config.out)
    # A rare class drawn for validation only would be scored but never learned.
    train_idx, valid_idx, moved = keep_classes_in_training(items.targets, groups, train_idx, valid_idx)
    if len(valid_idx) == 0:
        raise ValueError(f"every class needs its images in training, which leaves none for validation: too few "
                         f"images per class ({_class_counts(items)})")
    if moved:
        logger.warning("class(es) %s had images in validation only: those patients moved to training",
                       ", ".join(items.classes[i] for i in moved))
    if not rank_distrib():
        out.mkdir(parents=True, exist_ok=True)  # only once the inputs are known to be usable
        atomic_write(out / DATA_REPORT, data_report(unreadable))
    leaked = len(group_overlap(groups, train_idx, valid_idx, warn=False)) if groups is not None else 0
    train_items, valid_items = items.subset(train_idx), items.subset(valid_idx)
    unscored = [name for name, n in zip(items.classes, valid_items.class_counts()) if n == 0]
    if unscored:  # too few patients of the class to give validation any
        logger.warning("%s %s: no %s in the validation split, so their recall and AUC are not measured",
                       "label(s)" if items.multi_label else "class(es)", ", ".join(map(str, unscored[:8])),
                       "positive image" if items.multi_label else "image")
    logger.info("split%s: %d training and %d validation image(s)", " by patient" if groups is not None else "",
                len(train_idx), len(valid_idx))
    # Under `accelerate launch` each process drives the GPU of its LOCAL_RANK.
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    semi, semi_info = (None, None)
    if config.semi is not None:
        semi, semi_info = _semisup_callback(config, valid_items, pipeline, cache, bars_err)
    logger.info("model: %s (%s weights), %d channel(s), %d px, on %s", config.arch, config.pretrained or "random",
                config.channels, config.size, device)
    learn = _learner(config, items, train_items, valid_items, pipeline, cache, device, bars)

    def refit_learner():
        """A new model and Learner that trains on every training image (``valid_items`` included)."""
        from fastai.torch_core import set_seed

        set_seed(config.seed, reproducible=True)
        return _learner(config, items, items.subset(np.concatenate([train_idx, valid_idx])), valid_items,
                        pipeline, cache, device, bars)

    start_epoch = resume_epoch(learn) if config.resume else 0
    data = {"all": items.summary(), "train": train_items.summary(), "valid": valid_items.summary(),
            "grouped_by": config.group_col or ("DICOM PatientID" if groups is not None else None),
            "groups_on_both_sides": int(leaked), "unreadable_left_out": len(unreadable)}
    tracking = None
    if config.log and not rank_distrib():  # only rank 0 of a multi-GPU run logs
        tracking = Tracking(config.log, config.log_dir if config.log_dir is not None else out,
                            params=_tracked_settings(config, data))
    with tracking if tracking is not None else contextlib.nullcontext():
        if tracking is not None:
            tracking.start()  # inside: a tracker failing to start ends those already started
        if config.lr_find and not rank_distrib():
            with single_process():
                _save_lr_find(learn, out / "lr_find.png")
        result, probs = _fit_and_save(config, learn, semi, semi_info, start_epoch, tracking, data, items, pipeline,
                                      device, started, refit_learner)
    return _SplitRun(result, np.asarray(valid_idx), probs)


def _learner(config: TrainConfig, items, fit_items, valid_items, pipeline, cache, device, bars: bool):
    """The model and fastai Learner of one run: trains on ``fit_items``, validates on ``valid_items``."""
    from radiology.augment import radiograph_augmentation
    from radiology.data import ImageDataset, build_dataloaders, class_weights
    from radiology.models import create_model
    from radiology.train.losses import make_loss, positive_weights
    from radiology.train.metrics import fastai_metrics

    fit_ds = ImageDataset(fit_items, pipeline, cache=cache, channels=config.channels)
    valid_ds = ImageDataset(valid_items, pipeline, cache=cache, channels=config.channels)
    augment = radiograph_augmentation(degrees=5.0, translate=0.03, scale=(0.95, 1.05)) if config.augment else None
    dls = build_dataloaders(fit_ds, valid_ds, batch_size=config.batch_size, num_workers=config.workers,
                            sampler=config.sampler, augment=augment, device=device, seed=config.seed)
    n_outputs = len(items.classes)
    model = create_model(config.arch, n_outputs, in_chans=config.channels, pretrained=config.pretrained,
                         views=len(items.views), fusion=config.fusion).to(device)
    weights = None
    if config.class_weights and not items.multi_label:
        weights = torch.as_tensor(class_weights(fit_items.targets, n_outputs), dtype=torch.float32)
    pos_weight = None
    if items.multi_label:
        pos_weight = torch.as_tensor(positive_weights(np.asarray(fit_items.targets)), dtype=torch.float32)
    loss = make_loss(config.loss_name, n_classes=n_outputs, multi_label=items.multi_label,
                     class_weights=weights, pos_weight=pos_weight, label_smoothing=config.label_smoothing)
    learn = make_learner(dls, model, loss.to(device), metrics=fastai_metrics(n_outputs, items.multi_label),
                         path=Path(config.out))
    run_settings(learn, bars, device)
    return learn


def _interactive(stream) -> bool:
    """Whether progress bars suit ``stream``: a terminal, or a notebook (fastprogress's and tqdm's widgets)."""
    from fastprogress.fastprogress import IN_NOTEBOOK

    try:
        return bool(IN_NOTEBOOK or stream.isatty())
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def _tracked_settings(config: TrainConfig, data: dict[str, Any]) -> dict[str, Any]:
    """What the trackers get as run parameters: the settings as ``train.json`` records them, and the data's counts.

    File names only, no folder of the user's (:meth:`TrainConfig.to_record`), no patient id;
    the free-form ``extra`` is left out.
    """
    settings = {key: value for key, value in config.to_record().items() if key not in ("extra", "log")}
    settings["refit"] = _refits(config)  # what the run does, not the setting (None: wherever it applies)
    summary = {"classes": data["all"]["classes"], "train_images": data["train"]["samples"],
               "valid_images": data["valid"]["samples"], "views": data["all"]["views"],
               "grouped_by": data["grouped_by"]}
    return {**settings, **{f"data/{key}": value for key, value in summary.items()}}


def _fit_and_save(config: TrainConfig, learn, semi, semi_info, start_epoch: int, tracking, data, items, pipeline,
                  device, started: float, refit_learner) -> tuple[TrainResult, np.ndarray | None]:
    """The two phases, the validation metrics, the refit (``config.refit``) and the bundle: the part of
    :func:`train` that the trackers log.

    Returns the result and the validation probabilities (None on the other ranks of a multi-process run).
    """
    from radiology.evaluate import best_thresholds
    from radiology.io import versions
    from radiology.models import save_bundle

    out, model, dls = Path(config.out), learn.model, learn.dls
    head = config.head_epochs if start_epoch == 0 else 0
    phases = (["head"] if config.head_epochs else []) + (["fine_tune"] if config.epochs else [])
    # A no-op in one process; under `torchrun` or `accelerate launch` fastai wraps the model in DDP,
    # shards the batches and gathers the validation predictions. Only rank 0 writes checkpoints,
    # logs and the bundle.
    with distrib_ctx(learn):
        if head:
            logger.info("phase %d/%d: %s (%d epochs, lr %g)", phases.index("head") + 1, len(phases), PHASES["head"],
                        head, config.head_lr)
            fit_head(learn, head, config.head_lr, cbs=_phase_callbacks(tracking, "head"))
        if config.epochs:
            resumed = f", resumed after epoch {start_epoch}" if start_epoch else ""
            frozen = _frozen_bn_stats(config)
            averaged = f", weights averaged (decay {config.weight_average:g})" if config.weight_average else ""
            options = "".join([", batch-norm statistics fixed" if frozen else "",
                               f", {config.mix}" if config.mix else "", averaged])
            logger.info("phase %d/%d: %s (%d epochs, lr %g, backbone %g%s%s)", phases.index("fine_tune") + 1,
                        len(phases), PHASES["fine_tune"], config.epochs, config.peak_lr,
                        config.peak_lr / config.lr_mult, options, resumed)
            extra = [semi] if semi is not None else []
            extra += _fine_tune_callbacks(config) + _phase_callbacks(tracking, "fine_tune")
            fine_tune(learn, config.epochs, config.peak_lr, lr_mult=config.lr_mult, patience=config.patience,
                      start_epoch=start_epoch, cbs=extra)
    if rank_distrib():
        return TrainResult(bundle=out, metrics={}, learner=learn), None
    if semi_info is not None and getattr(semi, "plan", None) is not None:
        semi_info["memory_plan"] = semi.plan.message  # what FixMatch chose for the memory at hand

    logger.info("scoring the validation split (%d images)", data["valid"]["samples"])
    with single_process():  # rank 0 alone, on the whole validation set
        probs, targets = learn.get_preds(dl=dls.valid)
    probs, targets = probs.float().numpy(), targets.numpy()
    thresholds = best_thresholds(targets, probs) if items.multi_label else None
    metrics = _score(out, targets, probs, items, thresholds)
    if tracking is not None:
        tracking.log_final(metrics)
    kept_epoch = getattr(learn, "kept_epoch", None)
    refit = None
    if _refits(config):
        learn.opt = None  # the validated model's optimizer state is not needed any more: free its memory
        model.cpu()
        learn = _refit(config, refit_learner(), kept_epoch, tracking)
        model = learn.model
        refit = {"images": data["train"]["samples"] + data["valid"]["samples"], "head_epochs": config.head_epochs,
                 "epochs": kept_epoch or 0,
                 # tuned on the validated model's validation scores: the refit has no held-out images to tune on
                 "thresholds": None if thresholds is None else "of the validated model"}

    labels = {"classes": list(items.classes), "multi_label": bool(items.multi_label),
              "thresholds": None if thresholds is None else [float(t) for t in thresholds],
              "views": list(items.views), "channels": config.channels, "size": config.size}
    info = {
        "data": data,
        "validation_metrics": metrics,
        "settings": config.to_record(),
        "semi_supervised": semi_info,
        "seed": config.seed,
        "versions": versions("torch", "fastai", "timm", "numpy"),
        "device": str(device),
        # processes that trained together (torchrun --nproc_per_node)
        "world_size": torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1,
        "seconds": round(time.time() - started, 1),
        # The fine-tuning epoch the bundle holds (1-based; None: no fine-tuning).
        "kept_epoch": kept_epoch,
        # With refit: the bundle's model trained on every training image for the epochs chosen above; the
        # validation metrics are those of the model that chose them (the refit has no held-out images).
        "refit": refit,
    }
    model.eval()
    logger.info("exporting the bundle to %s (weights, torch.export, ONNX, preprocessing)", out)
    bundle = save_bundle(out, model.cpu(), pipeline, labels, info, size=config.size)
    logger.info("done in %.0f s", time.time() - started)
    return TrainResult(bundle=Path(bundle), metrics=metrics, learner=learn), probs


def _refits(config: TrainConfig) -> bool:
    """Whether the run refits on every training image once its epoch is chosen (``TrainConfig.refit``).

    ``refit=None``, the default, refits wherever it applies: one model (``folds`` 1), supervised
    (no ``semi``), in one process. The validated model is what ``folds`` saves by design (each fold
    model leaves its fold out); ``semi`` with a refit was not measured; the other processes of a
    multi-process run would not stop with rank 0.
    """
    if config.refit is None:
        return config.folds == 1 and config.semi is None and num_distrib() <= 1
    return config.refit


def _phase_callbacks(tracking, phase: str) -> list:
    """The trackers' callbacks of one phase (:meth:`Tracking.callbacks`), none when the run is not tracked."""
    return tracking.callbacks(phase) if tracking is not None else []


def _frozen_bn_stats(config: TrainConfig) -> bool:
    """Whether fine-tuning keeps the batch-norm statistics fixed: random weights have none worth keeping."""
    return config.freeze_bn_stats and config.pretrained is not None


def _fine_tune_callbacks(config: TrainConfig) -> list:
    """What the fine-tuning phase and the refit's share: fixed batch-norm statistics, the ``mix`` of images and
    the ``weight_average``."""
    extra = [FrozenBatchNormStats()] if _frozen_bn_stats(config) else []
    if config.mix == "mixup":
        extra.append(MixUp())
    elif config.mix == "cutmix":
        extra.append(CutMix())
    if config.weight_average:
        extra.append(WeightAverage(config.weight_average))
    return extra


def _refit(config: TrainConfig, learn, kept_epoch: int | None, tracking):
    """Train ``learn`` (a new model on every training image) for the head epochs and the fine-tuning epochs
    the validated run kept, choosing nothing on validation images; returns it."""
    logger.info("refit on all %d training images: %s (%d epochs), then %s (%d of the %d epochs of the schedule)",
                len(learn.dls.train.dataset), PHASES["refit_head"], config.head_epochs, PHASES["refit"],
                kept_epoch or 0, config.epochs)
    learn.logged_phases = ("head", "fine_tune")  # the validated run's rows stay in history.csv
    fit_head(learn, config.head_epochs, config.head_lr, cbs=[TrainOnly(), *_phase_callbacks(tracking, "refit_head")],
             phase="refit_head")
    if kept_epoch:
        fine_tune(learn, config.epochs, config.peak_lr, lr_mult=config.lr_mult, stop_after=kept_epoch,
                  phase="refit", cbs=[*_fine_tune_callbacks(config), *_phase_callbacks(tracking, "refit")])
    return learn


def _score(out: Path, targets: np.ndarray, probs: np.ndarray, items, thresholds) -> dict[str, Any]:
    """Validation metrics of ``probs``, with ``report.txt``, ``roc.png`` and (single-label) ``confusion_matrix.png``
    written to ``out``."""
    from radiology.evaluate import classification_metrics, classification_report, plot_confusion_matrix, plot_roc
    from radiology.io import atomic_write

    metrics = classification_metrics(targets, probs, items.classes, multi_label=items.multi_label,
                                     thresholds=thresholds)
    report = classification_report(targets, probs, items.classes, multi_label=items.multi_label,
                                   thresholds=thresholds)
    atomic_write(out / "report.txt", report.encode())
    if not items.multi_label:
        plot_confusion_matrix(targets, probs.argmax(1), items.classes, out / "confusion_matrix.png")
    plot_roc(targets, probs, items.classes, out / "roc.png", multi_label=items.multi_label)
    return metrics


def _train_folds(config: TrainConfig, items, unreadable, pipeline, cache, bars: bool, bars_err: bool,
                 started: float) -> TrainResult:
    """``config.folds`` models on patient-grouped folds, saved as one ensemble bundle with out-of-fold metrics."""
    from fastai.torch_core import set_seed

    from radiology.data import data_report, keep_classes_in_training, kfold_splits
    from radiology.io import atomic_write, versions
    from radiology.models import save_ensemble

    out, k = Path(config.out), config.folds
    groups = _groups(items, k, f"folds {k}")
    splits = []
    for train_idx, valid_idx in kfold_splits(items.targets, groups, n_splits=k, seed=config.seed):
        # Every fold is checked before any trains: a class drawn for one fold's validation only moves to training.
        train_idx, valid_idx, _ = keep_classes_in_training(items.targets, groups, train_idx, valid_idx)
        if len(valid_idx) == 0:
            raise ValueError(f"folds {k}: every class needs its images in training, which leaves a fold without "
                             f"validation images: too few images per class ({_class_counts(items)})")
        splits.append((train_idx, valid_idx))
    if not rank_distrib():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / DATA_REPORT, data_report(unreadable))
    oof = np.full((len(items), len(items.classes)), np.nan)
    members, runs = [], []
    for fold, (train_idx, valid_idx) in enumerate(splits, 1):
        name = f"{FOLD_PREFIX}{fold}"
        fold_out = out / name
        members.append(name)
        if config.resume and _finished(fold_out, config):
            logger.info("fold %d/%d: kept from the interrupted run (%s)", fold, k, name)
            oof[valid_idx] = _predict_items(fold_out, items.subset(valid_idx))
            continue
        logger.info("fold %d/%d (bundle %s)", fold, k, name)
        set_seed(config.seed, reproducible=True)  # each fold as it would run alone, resumed or not
        resume = config.resume and (fold_out / CHECKPOINT_DIR / f"{CHECKPOINT}.pth").is_file()
        run = _train_split(replace(config, out=fold_out, resume=resume), items, groups, train_idx, valid_idx,
                           unreadable, pipeline, cache, bars, bars_err, time.time())
        runs.append(run)
        if run.probs is not None:
            oof[run.valid_idx] = run.probs
    last = runs[-1].result.learner if runs else None
    if rank_distrib():
        return TrainResult(bundle=out, metrics={}, learner=last)
    scored = np.flatnonzero(~np.isnan(oof[:, 0]))
    targets = np.asarray(items.targets)[scored]
    thresholds = None
    if items.multi_label:  # what the ensemble decides by: the members' mean
        thresholds = np.mean([json.loads((out / name / "labels.json").read_text())["thresholds"] for name in members],
                             axis=0)
    logger.info("scoring the out-of-fold predictions (%d images, each by the model that did not train on it)",
                len(scored))
    metrics = _score(out, targets, oof[scored], items, thresholds)
    info = {
        "data": {"all": items.summary(), "scored_out_of_fold": int(len(scored)),
                 "grouped_by": config.group_col or ("DICOM PatientID" if groups is not None else None),
                 "unreadable_left_out": len(unreadable)},
        "validation": f"out of fold: {k} patient-grouped folds, each image scored by the model not trained on it",
        "validation_metrics": metrics,
        "folds": [{"member": name, "validation_images": int(len(valid_idx)),
                   "validation_metrics": json.loads((out / name / "train.json").read_text())["validation_metrics"]}
                  for name, (_, valid_idx) in zip(members, splits)],
        "settings": config.to_record(),
        "seed": config.seed,
        "versions": versions("torch", "fastai", "timm", "numpy"),
        "seconds": round(time.time() - started, 1),
    }
    save_ensemble(out, members, info)
    logger.info("ensemble of %d fold models written to %s; done in %.0f s", k, out, time.time() - started)
    return TrainResult(bundle=out, metrics=metrics, learner=last)


#: Member folders of a ``folds`` run: ``fold-1`` ... ``fold-K``.
FOLD_PREFIX = "fold-"


def _finished(fold_out: Path, config: TrainConfig) -> bool:
    """Whether a fold of an interrupted ``folds`` run saved its bundle, with the settings of this run."""
    from radiology.models import verify_bundle

    if not (fold_out / MANIFEST).is_file():
        return False
    files = verify_bundle(fold_out)
    # The bytes checked against the manifest, not a second read of the file.
    record = json.loads(verified_bytes(fold_out, files, "train.json"))
    saved = record.get("settings") if isinstance(record, dict) else None
    if not isinstance(saved, dict):
        raise ValueError(f"{fold_out.name}/train.json: holds no settings; start over with overwrite")
    now = config.to_record()
    # A folds run never refits, whether refit says None (the default) or False: not a difference.
    differ = sorted(key for key in now if key not in ("resume", "overwrite", "refit") and saved.get(key) != now[key])
    if differ:
        raise ValueError(f"{fold_out.name} was trained with other settings ({', '.join(differ[:5])}): resume with "
                         "the settings of the interrupted run, or start over with overwrite")
    return True


def _predict_items(folder: Path, items) -> np.ndarray:
    """A saved fold model's probabilities for ``items``, in their order and its class order."""
    from radiology.models import load_bundle

    bundle = load_bundle(folder)
    if list(bundle.classes) != list(items.classes):
        raise ValueError(f"{folder.name} was trained on other classes ({', '.join(bundle.classes[:5])}) than the "
                         "labels now have: start over with overwrite")
    return bundle.predict([paths[0] if len(paths) == 1 else tuple(paths) for paths in items.paths])


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


def _check_out_folder(out: Path, *, resume: bool, overwrite: bool, folds: int = 1) -> None:
    """Refuse an ``out`` that is a file, or that holds a file this run would replace unasked.

    A run writes only its own names (:func:`_run_files`; a ``folds`` run: the ensemble's and,
    in ``fold-1`` ... ``fold-K``, each member's); anything else in ``out`` is never touched.
    Without ``overwrite``, a file of one of those names, or a model of either kind, stops the
    run before any work (a model is named first: ``model.json``, ``ensemble.json`` or a
    checkpoint), except that ``resume`` continues an interrupted run: a folder with its
    checkpoint (or, for ``folds``, a fold's checkpoint or finished bundle).
    """
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is a file, not a folder; out names the folder of the bundle to write")
    if overwrite or not out.is_dir():
        return
    last = f"{CHECKPOINT_DIR}/{CHECKPOINT}.pth"
    members = [f"{FOLD_PREFIX}{fold}" for fold in range(1, folds + 1)] if folds > 1 else []
    if resume:
        marks = [f"{member}/{name}" for member in members for name in (last, MANIFEST)] if members else [last]
        if any((out / mark).is_file() for mark in marks):
            return  # the interrupted run's own files
    # Either kind of run refuses the other's model: a folds run over a one-model bundle and the reverse.
    names = _run_files() + (ENSEMBLE,) + tuple(f"{member}/{name}" for member in members for name in _run_files())
    found = [name for name in names if (out / name).exists()]
    models = [name for name in found if name.rsplit("/", 1)[-1] in ("model.json", ENSEMBLE) or name.endswith(last)]
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


def _save_lr_find(learn, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    learn.lr_find(show_plot=False)
    learn.recorder.plot_lr_find()
    plt.savefig(path, dpi=100)
    plt.close("all")
