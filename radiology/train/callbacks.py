"""fastai callbacks of the fine-tuning stage that survive an interruption.

fastai's ``start_epoch`` skips the epochs a resumed run has already done by cancelling them,
but ``after_epoch`` still runs for them with nothing recorded: every callback here ignores
the epochs before its ``start_epoch``.

- :class:`SaveBest`: the best epoch as ``checkpoints/best.pth`` (atomic, stamped), reloaded as data at the end.
- :class:`SaveLast`: model + optimizer after every epoch as ``checkpoints/last.pth``, for resuming.
- :class:`StopEarly`: fastai's early stopping, counting from the resumed epoch.
- :class:`TrainOnly`: no validation pass, and an optional stop after some epochs of the schedule (a refit).
- :class:`History`: fastai's CSV log of both phases (a ``phase`` column); a resumed run appends its epochs.
- :class:`EpochLog`: one plain log line per epoch, for output that is not a terminal.
- :class:`FrozenBatchNormStats`: batch-norm layers keep the running statistics they came with while fine-tuning.
- :class:`WeightAverage`: a moving average of the weights is what is validated, saved and kept.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from pathlib import Path

import torch
from fastai.callback.core import Callback, CancelFitException, CancelValidException
from fastai.callback.progress import CSVLogger
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback, TrackerCallback
from fastai.distributed import rank_distrib
from fastai.learner import Recorder

from radiology.train.checkpoints import CHECKPOINT, checkpoint_settings, load_weights, read_checkpoint, write_checkpoint

__all__ = ["SaveBest", "SaveLast", "StopEarly", "TrainOnly", "History", "EpochLog", "FrozenBatchNormStats",
           "WeightAverage", "epoch_values"]

logger = logging.getLogger(__name__)


class SaveBest(SaveModelCallback):
    """Save the best epoch (atomic, stamped); on resume, start from the best value of the interrupted run.

    ``best_epoch`` is the epoch saved (1-based), also after a resume; once fitting is over the
    best weights are back in the model and ``learn.kept_epoch`` names their epoch.

    Parameters
    ----------
    start_epoch : int
        Epochs already done (they are not compared again).
    best : float or None
        The interrupted run's best value of ``monitor`` (from its ``last.pth`` record).
    best_epoch : int or None
        The interrupted run's best epoch, from the same record.
    **kwargs
        fastai's :class:`~fastai.callback.tracker.SaveModelCallback` (``monitor``, ``fname``).
    """

    def __init__(self, start_epoch: int, best: float | None, best_epoch: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch, self.resumed_best, self.best_epoch = start_epoch, best, best_epoch

    def before_fit(self):
        super().before_fit()
        self.settings = checkpoint_settings(self.learn)
        if self.resumed_best is not None:
            self.best = self.resumed_best

    def after_epoch(self):
        if self.epoch < self.start_epoch:
            return
        TrackerCallback.after_epoch(self)  # fastai's own would print its news instead of logging it
        if self.new_best:
            self.best_epoch = self.epoch + 1
            logger.info("best %s so far: %.4f at epoch %d, saved as %s.pth", self.monitor, float(self.best),
                        self.epoch + 1, self.fname)
            self._save(self.fname)

    def _save(self, name):
        path = Path(self.learn.path) / self.learn.model_dir / f"{name}.pth"
        record = {"epoch": self.epoch + 1, "best": float(self.best), "settings": self.settings}
        self.last_saved_path = write_checkpoint(self.learn, path, record, with_opt=False)

    def after_fit(self, **kwargs):
        """Load the best epoch's weights as data, checked like a resumed checkpoint.

        fastai's own reload would unpickle whatever ``best.pth`` holds. When no epoch was saved
        (no improvement on the start value), the last epoch's weights are kept with a warning.

        Parameters
        ----------
        **kwargs
            fastai's event arguments; unused.
        """
        # fastai reloads the best epoch with weights_only=False, which unpickles anything a
        # planted best.pth holds: load it as data, checked like a resumed checkpoint.
        path = Path(self.learn.path) / self.learn.model_dir / f"{self.fname}.pth"
        if not path.is_file():  # no epoch improved on the start value (e.g. a NaN loss): keep the last weights
            logger.warning("%s: no best epoch was saved; keeping the last epoch's weights", path)
            self.learn.kept_epoch = self.epoch + 1
            return
        load_weights(self.learn, path, read_checkpoint(path, self.settings))
        self.learn.kept_epoch = self.best_epoch  # recorded in train.json


class StopEarly(EarlyStoppingCallback):
    """fastai's early stopping that ignores the epochs a resumed run skips.

    Parameters
    ----------
    start_epoch : int
        Epochs a resumed run has already done; the callback ignores those before it.
    **kwargs
        fastai's :class:`~fastai.callback.tracker.EarlyStoppingCallback` (``monitor``, ``patience``).
    """

    def __init__(self, start_epoch: int, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()


class TrainOnly(Callback):
    """Train without validating, optionally stopping after the first ``stop_after`` epochs of the schedule.

    For a refit on all training images (:func:`radiology.train.train`, ``refit``): the
    validation images are training images then, so nothing is measured or chosen on them, and
    no validation pass is spent. The schedule (one-cycle over the Learner's ``n_epoch``) is left
    as it is; the fit ends before epoch ``stop_after + 1`` begins. The epoch log keeps its
    training loss (and time) only.

    Parameters
    ----------
    stop_after : int
        Epochs to run; 0 runs them all.
    """

    order = Recorder.order - 1  # before the Recorder names the logged values

    def __init__(self, stop_after: int = 0):
        if isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 0:
            raise ValueError(f"stop_after must be an integer >= 0, got {stop_after!r}")
        self.stop_after = stop_after

    def before_fit(self):
        # Without validation nothing fills the metrics: fastai would still name them in its log.
        self.kept = self.recorder.valid_metrics, self.learn.metrics
        self.recorder.valid_metrics, self.learn.metrics = False, []

    def before_epoch(self):
        if self.stop_after and self.epoch >= self.stop_after:
            raise CancelFitException()

    def before_validate(self):
        raise CancelValidException()

    def after_fit(self):
        self.recorder.valid_metrics, self.learn.metrics = self.kept


class SaveLast(Callback):
    """Save model + optimizer after every epoch with the epoch count, so a run can resume.

    ``last.pth`` carries its own record (epoch, best value of :class:`SaveBest`, settings),
    written in the same atomic rename as the weights; ``last_epoch.json`` repeats it for
    people and tools.

    Parameters
    ----------
    start_epoch : int
        Epochs a resumed run has already done; nothing is saved for the epochs before it.
    """

    order = 70

    def __init__(self, start_epoch: int = 0):
        self.start_epoch = start_epoch

    def before_fit(self):
        self.settings = checkpoint_settings(self.learn)

    def after_epoch(self):
        from radiology.io import atomic_write

        if self.epoch < self.start_epoch:
            return
        tracker = next((cb for cb in self.learn.cbs if isinstance(cb, SaveBest)), None)
        best = None if tracker is None else float(tracker.best)
        best_epoch = None if tracker is None else tracker.best_epoch
        record = {"epoch": self.epoch + 1, "best": best, "best_epoch": best_epoch, "settings": self.settings}
        folder = Path(self.learn.path) / self.learn.model_dir
        write_checkpoint(self.learn, folder / f"{CHECKPOINT}.pth", record, with_opt=True)
        atomic_write(folder / "last_epoch.json", json.dumps(record).encode())


def epoch_values(recorder) -> dict[str, float] | None:
    """The losses and metrics fastai's ``Recorder`` logged for the epoch just ended, by name.

    ``None`` for an epoch that did not run (a resumed run skips the epochs it has done: fastai
    cancels them and logs nothing but their number).

    Parameters
    ----------
    recorder : fastai.learner.Recorder
        ``learn.recorder``, read in ``after_epoch`` of a callback ordered after it.

    Returns
    -------
    dict or None
        ``{"train_loss": ..., "valid_loss": ..., metric: ...}``: numbers only (``epoch`` and
        ``time`` left out, and so is a value that is not a number).
    """
    names, log = list(recorder.metric_names), list(recorder.log)
    if len(log) != len(names):
        return None
    values = {}
    for name, value in zip(names, log):
        if name in ("epoch", "time"):
            continue
        try:
            values[name] = float(value)
        except (TypeError, ValueError):
            continue
    return values


def _read_history(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a ``history.csv``; rows of a log without a ``phase`` column are fine-tuning epochs."""
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
        header = list(reader.fieldnames or [])
    if header and "phase" not in header:
        header = ["phase", *header]
        for row in rows:
            row["phase"] = "fine_tune"
    return header, rows


def _merged_columns(header: list[str], names: list[str]) -> list[str]:
    """The columns of the log so far, then this phase's new ones (before ``time``, which stays last)."""
    new = [name for name in names if name not in header]
    if header and header[-1] == "time":
        return [*header[:-1], *new, "time"]
    return [*header, *new]


class History(CSVLogger):
    """fastai's CSV log of every epoch of both phases, one ``phase`` column naming each row's phase.

    ``history.csv`` reads ``phase,epoch,train_loss,valid_loss,<metrics>,time``; ``epoch``
    counts within the phase (``head`` rows then ``fine_tune`` rows). A phase with columns of
    its own (e.g. the losses of a semi-supervised callback) widens the log; earlier rows
    leave those cells empty. A resumed run keeps the other phases' rows and its own rows of
    the epochs its checkpoint holds (a row logged just before an interruption, with no saved
    checkpoint, is dropped and logged again), so every epoch appears once.

    Parameters
    ----------
    fname : str
        File name in ``learn.path`` (``history.csv``).
    start_epoch : int
        Epochs a resumed run has already done: above 0, the log keeps its rows of the earlier
        epochs (and of the other phases) and the new epochs are appended; 0 starts the phase
        afresh.
    phase : str
        Name of the phase in the ``phase`` column (:data:`~radiology.train.learner.PHASES`: ``head``,
        ``fine_tune``, ``refit_head``, ``refit``).
    keep : sequence of str
        Phases of this run logged before this one, whose rows a fresh start (``start_epoch``
        0) keeps; all other rows are dropped.
    """

    def __init__(self, fname: str = "history.csv", start_epoch: int = 0, phase: str = "fine_tune", keep=()):
        super().__init__(fname, append=start_epoch > 0 or bool(keep))
        self.start_epoch, self.phase, self.keep = start_epoch, phase, tuple(keep)

    def _kept(self, row: dict[str, str]) -> bool:
        phase = row.get("phase") or "fine_tune"
        if phase == self.phase:
            epoch = (row.get("epoch") or "").strip()
            return self.start_epoch > 0 and epoch.isdigit() and int(epoch) < self.start_epoch
        return self.start_epoch > 0 or phase in self.keep

    def before_fit(self):
        from radiology.io import atomic_write

        if hasattr(self, "gather_preds"):
            return
        path = self.path / self.fname
        header, rows = _read_history(path) if self.append and path.is_file() and path.stat().st_size else ([], [])
        rows = [row for row in rows if self._kept(row)]
        self.columns = _merged_columns(header if rows else [], ["phase", *self.recorder.metric_names])
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns, restval="", extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.getvalue().encode())
        self.file = path.open("a", newline="")
        self.writer = csv.DictWriter(self.file, self.columns, restval="", extrasaction="ignore", lineterminator="\n")
        self.old_logger, self.learn.logger = self.logger, self._write_line

    def _write_line(self, log):
        if self.epoch < self.start_epoch:
            self.old_logger(log)
            return
        row = {name: str(value) for name, value in zip(self.recorder.metric_names, log)}
        self.writer.writerow({**row, "phase": self.phase})
        self.file.flush()
        os.fsync(self.file.fileno())
        self.old_logger(log)


class EpochLog(Callback):
    """One plain log line per epoch (``logging`` at INFO): what fastai's table shows, without progress bars.

    For output that is not a terminal (a file, a pipe, a batch job's log), where fastai's
    bars would leave carriage returns and partial lines::

        head epoch 3/20: train_loss 0.6012, valid_loss 0.5874, accuracy 0.7000 (00:01)

    Parameters
    ----------
    phase : str
        Name of the phase at the start of every line (``head``, ``fine_tune``).
    start_epoch : int
        Epochs a resumed run has already done; they are skipped without a line.
    """

    order = Recorder.order + 2

    def __init__(self, phase: str = "fine_tune", start_epoch: int = 0):
        self.phase, self.start_epoch = phase, start_epoch

    def after_epoch(self):
        if self.epoch < self.start_epoch or rank_distrib():
            return
        values = epoch_values(self.recorder)
        if values is None:
            return
        shown = ", ".join(f"{name} {value:.4f}" for name, value in values.items())
        took = self.recorder.log[-1] if self.recorder.metric_names[-1] == "time" else None
        logger.info("%s epoch %d/%d: %s%s", self.phase, self.epoch + 1, self.n_epoch, shown,
                    f" ({took})" if took else "")


class FrozenBatchNormStats(Callback):
    """Fine-tune with the batch-norm layers' running statistics fixed (the layers in eval mode).

    The head is fitted on features computed with the pretrained statistics
    (:func:`~radiology.train.learner.fit_head`). In training mode, batch norm normalizes each
    batch by its own statistics and moves the running ones towards gray radiographs within
    an epoch: the features shift under the fitted head (the training loss jumps when
    fine-tuning starts), and on a few hundred images the network does not recover within a
    few epochs. With the statistics fixed, fine-tuning starts from the head's model; the
    layers' scale and shift still learn.

    Needs pretrained statistics: on a network with random weights they are the
    initial 0 and 1 (see :class:`~radiology.train.TrainConfig` ``freeze_bn_stats``).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2)).train()
    >>> callback = FrozenBatchNormStats()
    >>> callback.learn = SimpleNamespace(model=model)
    >>> callback.before_train()
    >>> model[0].training, model[1].training
    (True, False)
    """

    order = 0  # after fastai's TrainEvalCallback (order -10) has put the model in training mode

    def before_train(self):
        for module in self.learn.model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


class WeightAverage(Callback):
    """An exponential moving average of the weights while fine-tuning, validated, saved and kept in their place.

    After every optimizer step each parameter's average moves towards it by ``1 - d``, with
    ``d = min(decay, (1 + t) / (10 + t))`` after ``t`` steps (a short warm-up, so that the
    first steps are not held near the starting weights). At each validation the averaged
    weights replace the model's, so the validation loss, the best-epoch choice and the
    checkpoints (:class:`SaveBest`, :class:`SaveLast`) are those of the average; the trained
    weights come back before the next training epoch. When the fit ends — also without
    validation, as in a refit (:class:`TrainOnly`) — the model holds the average. A resumed
    run starts its average from the saved (averaged) weights. Buffers (batch-norm statistics)
    are not averaged: the model keeps its own.

    Parameters
    ----------
    decay : float
        Share of the average kept at each step, in ``(0, 1)``: 0.9 averages over about the
        last ten steps.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> model = torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.zeros_(model.weight)
    >>> callback = WeightAverage(decay=0.5)
    >>> callback.learn = SimpleNamespace(model=model)
    >>> callback.before_fit()  # the average starts at 0
    >>> with torch.no_grad():
    ...     _ = model.weight.fill_(1.0)  # a step moved the weight to 1
    >>> callback.after_step()  # warm-up: d = min(0.5, 2 / 11), so the average moves 9/11 of the way
    >>> callback.before_validate()
    >>> round(float(model.weight), 3)
    0.818
    >>> callback.before_train()  # the trained weight is back for the next epoch
    >>> float(model.weight)
    1.0
    """

    order = TrainOnly.order - 1  # swaps the average in before a refit's TrainOnly cancels the validation

    def __init__(self, decay: float = 0.9):
        if isinstance(decay, bool) or not 0.0 < float(decay) < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}")
        self.decay = float(decay)

    def _model(self) -> torch.nn.Module:
        return getattr(self.learn.model, "module", self.learn.model)  # unwrapped from DDP

    def before_fit(self):
        self.steps, self.trained = 0, None
        self.average = [p.detach().clone() for p in self._model().parameters()]

    @torch.no_grad()
    def after_step(self):
        self.steps += 1
        weight = 1.0 - min(self.decay, (1.0 + self.steps) / (10.0 + self.steps))
        for mean, now in zip(self.average, self._model().parameters()):
            mean.lerp_(now.detach(), weight)

    @torch.no_grad()
    def _swap_in_average(self):
        if self.trained is None:
            self.trained = [p.detach().clone() for p in self._model().parameters()]
            for now, mean in zip(self._model().parameters(), self.average):
                now.copy_(mean)

    def before_validate(self):
        self._swap_in_average()

    @torch.no_grad()
    def before_train(self):
        if self.trained is not None:
            for now, kept in zip(self._model().parameters(), self.trained):
                now.copy_(kept)
            self.trained = None

    def after_fit(self):
        # After the last validation the average is in place already, and SaveBest reloads the best epoch's.
        self._swap_in_average()
