"""Training on fastai: the Learner factory and the two stages of fine-tuning.

fastai runs every loop here (``Learner.fit_one_cycle``, its callbacks for early stopping,
best-model saving, CSV logging and progress); this module only chooses what goes in.

The default recipe (:func:`radiology.train.recipe.train`) is *head first, then fine-tune*
(linear probing then fine-tuning):

1. :func:`fit_head`: the backbone's pooled features are computed once (eval mode, no
   augmentation) and the head alone is fitted on them by a fastai Learner for
   ``head_epochs`` — cheap, and on a few hundred images it already matches a linear probe.
2. :func:`fine_tune`: the whole network is then fine-tuned for ``epochs`` with one-cycle,
   discriminative learning rates (backbone ``lr / lr_mult``) and GPU batch augmentation.
   Starting from a fitted head keeps the first fine-tuning steps from wrecking the
   pretrained features, which is why plain ``fine_tune`` loses to a frozen probe on small
   radiograph sets.

:func:`check_model_settings` and :func:`run_settings` are shared with self-supervised
pretraining (:func:`radiology.ssl.pretrain`). Checkpoints are in
:mod:`radiology.train.checkpoints`, the resumable callbacks in :mod:`radiology.train.callbacks`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import fastai.callback.schedule  # noqa: F401 - patches Learner.fit_one_cycle and lr_find
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from fastai.distributed import num_distrib, rank_distrib  # also adds Learner.distrib_ctx
from fastai.learner import Learner
from torch import nn

from radiology.pipeline import default_pipeline  # noqa: F401 - still importable from here, as before
from radiology.train.callbacks import EpochLog, History, SaveBest, SaveLast, StopEarly, TrainOnly
from radiology.train.checkpoints import BEST, CHECKPOINT, CHECKPOINT_DIR, checkpoint_settings, read_checkpoint
from radiology.train.distributed import single_process

logger = logging.getLogger(__name__)

__all__ = ["make_learner", "fit_head", "fine_tune", "run_settings", "check_model_settings", "PHASES"]

#: The phases of the recipe, by the name they have in ``history.csv``, the log and the trackers: the two of
#: every run, then the two of a refit on all training images (``TrainConfig.refit``).
PHASES = {"head": "head on frozen features", "fine_tune": "fine-tuning of the whole network",
          "refit_head": "head on frozen features of all training images",
          "refit": "refit of the whole network on all training images"}
HISTORY = "history.csv"


def _splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    return [list(model.backbone.parameters()), list(model.head.parameters())]


def make_learner(dls, model: nn.Module, loss_func: nn.Module, *, metrics=(), path: str | os.PathLike = ".",
                 cbs=(), wd: float = 1e-2):
    """A fastai ``Learner`` whose parameter groups are ``[backbone, head]``.

    Parameters
    ----------
    dls : fastai.data.core.DataLoaders
        Training and validation DataLoaders.
    model : nn.Module
        With ``.backbone`` and ``.head`` (:class:`radiology.models.RadiographClassifier`).
    loss_func : nn.Module
        From :func:`radiology.train.losses.make_loss`.
    metrics : sequence
        fastai metrics (:func:`radiology.train.metrics.fastai_metrics`).
    path : path
        Where fastai writes checkpoints (``path/checkpoints``) and logs.
    cbs : sequence of fastai callbacks
        Extra callbacks of the Learner.
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


def fit_head(learn, epochs: int, lr: float = 3e-3, *, wd: float = 1e-2, batch_size: int = 64, cbs=(),
             phase: str = "head") -> None:
    """Fit ``learn.model.head`` alone on frozen, pre-computed backbone features.

    The features of the training and validation images are computed once (backbone in eval
    mode, no augmentation); a second fastai Learner then fits the head on them with
    one-cycle for ``epochs`` epochs, which costs almost nothing next to one epoch through
    the backbone. The fitted head is left in ``learn.model``. Its epochs are the ``phase`` rows
    of ``history.csv`` in ``learn.path`` (a new log, unless ``learn.logged_phases`` names phases
    of this run to keep before them), shown as fastai's table when ``learn``
    has a progress bar, else logged one line each (:class:`~radiology.train.callbacks.EpochLog`).
    In a run of several processes (:mod:`radiology.train.distributed`) rank 0 alone fits the
    head, gathering nothing from the others; the other ranks return at once and receive its
    weights when fine-tuning wraps the model in DistributedDataParallel.

    Parameters
    ----------
    learn : fastai.learner.Learner
        From :func:`make_learner`.
    epochs : int
        One-cycle epochs of the head.
    lr : float
        Peak one-cycle learning rate.
    wd : float
        Weight decay of the head (a linear probe needs it on a few hundred images).
    batch_size : int
        Batch size of the pre-computed features.
    cbs : sequence of fastai callbacks
        Added to the head's Learner (e.g. the trackers of :class:`radiology.train.tracking.Tracking`).
    phase : str
        Its name in ``history.csv`` and the log: ``head``, or ``refit_head`` when a refit on all
        training images fits its head again (:func:`radiology.train.train`, ``refit``).
    """
    if epochs < 1 or rank_distrib():
        return  # a multi-process run: rank 0 alone (its weights reach the others when fine-tuning starts)
    with single_process():
        _fit_head(learn, epochs, lr, wd, batch_size, cbs, phase)


def _fit_head(learn, epochs: int, lr: float, wd: float, batch_size: int, cbs, phase: str) -> None:
    model = learn.model
    train_plain = learn.dls.valid.new(dataset=learn.dls.train.dataset, shuffle=False, drop_last=False)
    logger.info("computing the backbone's features of %d training and %d validation images",
                len(learn.dls.train.dataset), len(learn.dls.valid.dataset))
    train_x, train_y = _features(model, train_plain)
    valid_x, valid_y = _features(model, learn.dls.valid)
    device = next(model.parameters()).device
    dls = DataLoaders(
        DataLoader(list(zip(train_x, train_y)), bs=batch_size, shuffle=True, drop_last=False, device=device),
        DataLoader(list(zip(valid_x, valid_y)), bs=256, device=device),
        device=device,
    )
    head_learner = Learner(dls, model.head, loss_func=learn.loss_func, metrics=learn.metrics, wd=wd,
                           path=learn.path, model_dir=learn.model_dir)
    head_learner.phase = phase
    bars = any(type(cb).__name__ == "ProgressCallback" for cb in learn.cbs)
    keep = tuple(getattr(learn, "logged_phases", ()))
    cbs = [*cbs, History(HISTORY, phase=phase, keep=keep)]
    if bars:
        head_learner.fit_one_cycle(epochs, lr, cbs=cbs)
    else:  # quiet: no bar, and no raw epoch rows (fastai prints them when the bar is gone); a plain line each
        head_learner.logger = _silent
        with head_learner.no_bar():
            head_learner.fit_one_cycle(epochs, lr, cbs=[*cbs, EpochLog(phase)])
    learn.logged_phases = (*keep, phase)  # fine_tune continues this history.csv


def run_settings(learn, progress: bool, device: torch.device) -> None:
    """Quiet unless ``progress``, mixed precision on a GPU: the settings every radiology run gives its Learner.

    Parameters
    ----------
    learn : fastai.learner.Learner
        Changed in place.
    progress : bool
        Keep fastai's progress bar and epoch lines; otherwise both are removed.
    device : torch.device
        A CUDA device switches the Learner to mixed precision (``to_fp16``).

    Examples
    --------
    >>> from fastai.data.core import DataLoaders
    >>> learn = Learner(DataLoaders([], []), nn.Linear(2, 2), loss_func=nn.MSELoss())
    >>> run_settings(learn, progress=False, device=torch.device("cpu"))
    >>> hasattr(learn, "progress"), learn.logger("epoch 0 ...")
    (False, None)
    """
    if not progress:
        learn.remove_cb(learn.progress)  # type: ignore[attr-defined]
        learn.logger = _silent
    if device.type == "cuda":
        learn.to_fp16()


def _silent(*args, **kwargs) -> None:
    return None


def fine_tune(learn, epochs: int, lr: float = 1e-3, *, lr_mult: float = 10.0, patience: int = 0,
              monitor: str = "valid_loss", start_epoch: int = 0, cbs=(), stop_after: int = 0,
              phase: str = "fine_tune") -> None:
    """Fine-tune the whole network with one-cycle and discriminative learning rates.

    The backbone's group peaks at ``lr / lr_mult``, the head's at ``lr``. The best epoch
    (by ``monitor``) is saved as ``checkpoints/best.pth`` and loaded at the end
    (``learn.kept_epoch`` names it, 1-based; measured against other rules in
    ``bench/quality.py --epoch-rules``); every epoch
    is also saved with its optimizer state as ``checkpoints/last.pth`` so an interrupted
    run can continue (``start_epoch``). Both files are written atomically, hold tensors and
    numbers only (they load without unpickling code) and are stamped with the settings they
    belong to (:mod:`radiology.train.checkpoints`); ``last_epoch.json`` repeats the stamp for
    people. ``patience`` > 0 adds early stopping. The epochs are the ``fine_tune`` rows of
    ``history.csv`` in ``learn.path`` (after the ``head`` rows of :func:`fit_head`, when it ran
    on ``learn`` first), shown as fastai's table when ``learn`` has a progress bar, else
    logged one line each (:class:`~radiology.train.callbacks.EpochLog`).

    Parameters
    ----------
    learn : fastai.learner.Learner
        From :func:`make_learner` (with a fitted head, usually).
    epochs : int
        Total fine-tuning epochs, including the ``start_epoch`` already done.
    lr : float
        Peak one-cycle learning rate of the head group.
    lr_mult : float
        The backbone's peak learning rate is ``lr / lr_mult``.
    patience : int
        Early-stopping patience in epochs of no improvement of ``monitor``; 0 turns it off.
    monitor : str
        ``valid_loss`` or a metric name.
    start_epoch : int
        Epochs already done (resume: :func:`radiology.train.checkpoints.resume_epoch` has
        loaded ``checkpoints/last.pth``).
    cbs : sequence of fastai callbacks
        Added for this stage only (e.g. :class:`radiology.semisup.FixMatch`).
    stop_after : int
        0 (the default): the best epoch by ``monitor`` is kept, as above. ``n`` from 1 to
        ``epochs``: a refit — the one-cycle schedule of ``epochs`` runs to the end of epoch ``n``
        and that model is kept (``learn.kept_epoch`` is ``n``); nothing is chosen on the
        validation images (they may be training images then) and no checkpoint is written.
    phase : str
        Its name in ``history.csv`` and the log: ``fine_tune``, or ``refit``.

    Raises
    ------
    ValueError
        ``start_epoch`` > 0 and ``checkpoints/last.pth`` is damaged or belongs to other settings,
        or ``stop_after`` is not within ``0 .. epochs``, or is given with ``start_epoch`` or in a
        run of several processes.
    """
    if not 0 <= stop_after <= epochs:
        raise ValueError(f"stop_after must be from 0 to epochs ({epochs}), got {stop_after}")
    if stop_after and start_epoch:
        raise ValueError("a refit (stop_after) starts afresh: it cannot resume (start_epoch)")
    if stop_after and num_distrib() > 1:
        raise ValueError("a refit (stop_after) runs in one process")
    if epochs < 1:
        return
    # fastai's unfreeze clears the optimizer state: keep the one a resumed run has just loaded.
    resumed = learn.opt.state_dict() if start_epoch and learn.opt is not None else None
    learn.phase = phase
    learn.unfreeze()
    if resumed is not None:
        learn.opt.load_state_dict(resumed)
    if rank_distrib():  # another process of a multi-GPU run: rank 0 saves and logs
        learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), start_epoch=start_epoch, cbs=list(cbs))
        return
    logged = [History(HISTORY, start_epoch, phase=phase, keep=getattr(learn, "logged_phases", ()))]
    if not any(type(cb).__name__ == "ProgressCallback" for cb in learn.cbs):
        logged.append(EpochLog(phase, start_epoch))
    if stop_after:
        learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), cbs=[*cbs, *logged, TrainOnly(stop_after)])
        learn.kept_epoch = stop_after
        return
    last = Path(learn.path) / learn.model_dir / f"{CHECKPOINT}.pth"
    best = best_epoch = None
    if start_epoch and last.is_file():
        record = read_checkpoint(last, checkpoint_settings(learn))["radiology"]
        best, best_epoch = record.get("best"), record.get("best_epoch")
        best_epoch = best_epoch if isinstance(best_epoch, int) and 0 < best_epoch <= start_epoch else None
    cbs = [
        *cbs,
        SaveBest(start_epoch, best, best_epoch, monitor=monitor, fname=BEST),
        SaveLast(start_epoch),
        *logged,
    ]
    if patience and num_distrib() <= 1:  # one rank stopping early would leave the others waiting
        cbs.append(StopEarly(start_epoch, monitor=monitor, patience=patience))
    learn.fit_one_cycle(epochs, slice(lr / lr_mult, lr), cbs=cbs, start_epoch=start_epoch)



def check_model_settings(arch: str, pretrained) -> None:
    """Fail before any image is read when the backbone ``arch`` or its weights ``pretrained`` cannot be had.

    Parameters
    ----------
    arch : str
        A timm model name.
    pretrained : str, path or None
        ``None``/``"none"`` (random weights), ``"imagenet"``, a hub name, or a checkpoint file
        (which must exist).

    Raises
    ------
    ValueError
        ``arch`` is not a timm model.
    FileNotFoundError
        ``pretrained`` names a checkpoint file that does not exist.

    Examples
    --------
    >>> check_model_settings("resnet18", "imagenet")
    >>> check_model_settings("no_such_net", None)
    Traceback (most recent call last):
    ...
    ValueError: unknown backbone 'no_such_net' (see timm.list_models())
    >>> check_model_settings("resnet18", "missing/weights.pt")
    Traceback (most recent call last):
    ...
    FileNotFoundError: pretrained weights missing/weights.pt: no such file
    """
    import timm

    from radiology.models.pretrained import is_checkpoint_path

    if not timm.is_model(arch):
        raise ValueError(f"unknown backbone {arch!r} (see timm.list_models())")
    if pretrained is None or str(pretrained).lower() in ("none", "imagenet"):
        return
    if is_checkpoint_path(str(pretrained)) and not Path(str(pretrained)).is_file():
        raise FileNotFoundError(f"pretrained weights {pretrained}: no such file")
