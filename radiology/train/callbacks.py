"""fastai callbacks of the fine-tuning stage that survive an interruption.

fastai's ``start_epoch`` skips the epochs a resumed run has already done by cancelling them,
but ``after_epoch`` still runs for them with nothing recorded: every callback here ignores
the epochs before its ``start_epoch``.

- :class:`SaveBest`: the best epoch as ``checkpoints/best.pth`` (atomic, stamped), reloaded as data at the end.
- :class:`SaveLast`: model + optimizer after every epoch as ``checkpoints/last.pth``, for resuming.
- :class:`StopEarly`: fastai's early stopping, counting from the resumed epoch.
- :class:`History`: fastai's CSV log; a resumed run appends its epochs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.callback.tracker import EarlyStoppingCallback, SaveModelCallback

from radiology.train.checkpoints import CHECKPOINT, checkpoint_settings, load_weights, read_checkpoint, write_checkpoint

__all__ = ["SaveBest", "SaveLast", "StopEarly", "History"]

logger = logging.getLogger(__name__)


class SaveBest(SaveModelCallback):
    """Save the best epoch (atomic, stamped); on resume, start from the best value of the interrupted run.

    Parameters
    ----------
    start_epoch : int
        Epochs already done (they are not compared again).
    best : float or None
        The interrupted run's best value of ``monitor`` (from its ``last.pth`` record).
    **kwargs
        fastai's :class:`~fastai.callback.tracker.SaveModelCallback` (``monitor``, ``fname``).
    """

    def __init__(self, start_epoch: int, best: float | None, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch, self.resumed_best = start_epoch, best

    def before_fit(self):
        super().before_fit()
        self.settings = checkpoint_settings(self.learn)
        if self.resumed_best is not None:
            self.best = self.resumed_best

    def after_epoch(self):
        if self.epoch >= self.start_epoch:
            super().after_epoch()

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
            return
        load_weights(self.learn, path, read_checkpoint(path, self.settings))


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
        record = {"epoch": self.epoch + 1, "best": best, "settings": self.settings}
        folder = Path(self.learn.path) / self.learn.model_dir
        write_checkpoint(self.learn, folder / f"{CHECKPOINT}.pth", record, with_opt=True)
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


class History(CSVLogger):
    """fastai's CSV log; a resumed run appends its epochs without a second header.

    Rows of epochs the checkpoint does not hold (logged, then interrupted before the save)
    are dropped first, so every epoch appears once.

    Parameters
    ----------
    fname : str
        File name in ``learn.path`` (``history.csv``).
    start_epoch : int
        Epochs a resumed run has already done: above 0, the log keeps only its rows of the earlier
        epochs and the new epochs are appended; 0 starts a new log.
    """

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
