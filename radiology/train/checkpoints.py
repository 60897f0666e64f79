"""Training checkpoints: what they are stamped with, how they are written, read, checked and resumed.

A run saves ``checkpoints/last.pth`` (model + optimizer, every epoch) and
``checkpoints/best.pth`` (model, best epoch) under its ``out`` folder. Every file:

- is written atomically (:func:`radiology.io.atomic_write`): an interrupted save leaves the
  previous complete checkpoint in place;
- holds tensors, plain containers and numbers only, so it loads with
  ``torch.load(weights_only=True)``, which never runs code;
- carries a record ``{"epoch", "best", "settings"}`` whose settings
  (:func:`checkpoint_settings`) are compared on resume: weights of other settings are refused
  in one line naming the file and the settings that differ.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT", "CHECKPOINT_DIR", "BEST", "checkpoint_settings", "settings_differences",
           "write_checkpoint", "read_checkpoint", "load_weights", "resume_epoch"]

logger = logging.getLogger(__name__)

#: Stem of the checkpoint saved after every epoch (with the optimizer state), for resuming.
CHECKPOINT = "last"
#: Folder of the checkpoints inside a run's ``out`` (fastai's ``model_dir``).
CHECKPOINT_DIR = "checkpoints"
#: Stem of the checkpoint of the best epoch, loaded at the end of training.
BEST = "best"


def checkpoint_settings(learn) -> dict[str, Any]:
    """What a checkpoint belongs to: the model's architecture and the labels, views and preprocessing it learns.

    Weights resumed under any other value would silently mix two runs, so every checkpoint is
    stamped with this and compared on resume. The JSON round trip makes the stamp compare equal
    to its stored copy (tuples become lists).

    Parameters
    ----------
    learn : fastai.learner.Learner
        Its model (a :class:`radiology.models.RadiographClassifier` records its ``config``) and
        its training dataset (classes, channels, size, views, pipeline, where it has them).

    Returns
    -------
    dict
        JSON-plain settings; ``{"model": class name, ...}``.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> data = SimpleNamespace(classes=("a", "b"), multi_label=False, channels=1, size=(64, 64))
    >>> learn = SimpleNamespace(model=torch.nn.Linear(2, 2), dls=SimpleNamespace(train=SimpleNamespace(dataset=data)))
    >>> checkpoint_settings(learn)
    {'model': 'Linear', 'classes': ['a', 'b'], 'multi_label': False, 'channels': 1, 'size': [64, 64]}
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


def settings_differences(stamped: dict[str, Any], current: dict[str, Any]) -> str:
    """``key: stamped value -> current value`` for each setting that differs (long values by name only).

    Parameters
    ----------
    stamped : dict
        Settings recorded in a checkpoint.
    current : dict
        Settings of the run that loads it (:func:`checkpoint_settings`).

    Examples
    --------
    >>> settings_differences({"size": [64, 64], "channels": 1}, {"size": [128, 128], "channels": 1})
    'size [64, 64] in the checkpoint, [128, 128] now'
    >>> settings_differences({"pipeline": {"steps": list(range(40))}}, {})
    'pipeline (another value) in the checkpoint, null now'
    """

    def shown(value) -> str:
        text = json.dumps(value)
        return text if len(text) <= 60 else "(another value)"

    keys = [key for key in sorted(set(stamped) | set(current)) if stamped.get(key) != current.get(key)]
    return "; ".join(f"{key} {shown(stamped.get(key))} in the checkpoint, {shown(current.get(key))} now"
                     for key in keys)


def write_checkpoint(learn, path: Path, record: dict[str, Any], *, with_opt: bool) -> Path:
    """Save the model (and optimizer) of ``learn`` with its ``record`` to ``path`` atomically.

    Parameters
    ----------
    learn : fastai.learner.Learner
        The learner whose model (and optimizer) is saved.
    path : pathlib.Path
        Checkpoint file to write.
    record : dict
        ``{"epoch": int, "best": float or None, "settings": checkpoint_settings(learn)}``.
    with_opt : bool
        Also save the optimizer state (as plain containers, :func:`radiology.io.jsonable`).

    Returns
    -------
    pathlib.Path
        ``path``, once complete.
    """
    import io

    from fastai.torch_core import get_model

    from radiology.io import atomic_write, jsonable

    state: dict[str, Any] = {"model": get_model(learn.model).state_dict(), "radiology": record}
    if with_opt and learn.opt is not None:
        # fastai's state holds ``L`` lists and NumPy scalars, which weights_only loading refuses.
        state["opt"] = jsonable(learn.opt.state_dict())
    buffer = io.BytesIO()
    torch.save(state, buffer)
    # An interrupted save must never leave half a checkpoint where the last complete one was.
    return atomic_write(path, buffer.getvalue())


def read_checkpoint(path: Path, settings: dict[str, Any], device="cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`write_checkpoint`, loaded as data and checked against ``settings``.

    Parameters
    ----------
    path : pathlib.Path
        Checkpoint file to read.
    settings : dict
        :func:`checkpoint_settings` of the run that loads it.
    device : str or torch.device
        Where the tensors are loaded.

    Returns
    -------
    dict
        ``{"model": state dict, "radiology": record[, "opt": optimizer state]}``.

    Raises
    ------
    ValueError
        One line naming ``path``: missing, damaged, unstamped or code-carrying file, or one
        stamped with other settings (which are named).
    """
    import pickle

    if not path.is_file():
        raise ValueError(f"{path}: checkpoint missing (the run it belongs to is incomplete); start again with "
                         "overwrite=True")
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
                         "version wrote it); start again with overwrite=True")
    if record["settings"] != settings:
        raise ValueError(f"{path}: made with other settings ({settings_differences(record['settings'], settings)});"
                         " resume with the settings it was made with, or start again with overwrite=True")
    return state


def load_weights(learn, path: Path, state: dict[str, Any]) -> None:
    """Put the weights of a checked checkpoint (:func:`read_checkpoint`) into ``learn.model``.

    Parameters
    ----------
    learn : fastai.learner.Learner
        The learner whose model receives the weights.
    path : pathlib.Path
        The checkpoint file, named in errors.
    state : dict
        The checkpoint as returned by :func:`read_checkpoint`; its ``model`` entry is loaded.

    Raises
    ------
    ValueError
        One line naming ``path`` when they do not fit the model (missing, extra or reshaped tensors).
    """
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


def resume_epoch(learn) -> int:
    """Load an interrupted run's ``checkpoints/last.pth`` into ``learn``; the number of epochs it had done.

    Everything is checked before training starts: the file loads as data only, is stamped
    with this run's settings (:func:`checkpoint_settings`), and its weights and optimizer
    state fit the model; the best epoch it refers to (``best.pth``, loaded at the end of
    training) is checked the same way. With no checkpoint at all the run starts from scratch.

    Parameters
    ----------
    learn : fastai.learner.Learner
        Checkpoints are read from ``learn.path / learn.model_dir``.

    Returns
    -------
    int
        Epochs already done (0: none, start from scratch).

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
    settings = checkpoint_settings(learn)
    state = read_checkpoint(last, settings, device=getattr(learn.dls, "device", None) or "cpu")
    record = state["radiology"]
    epoch = record.get("epoch")
    if not isinstance(epoch, int) or epoch < 1:
        raise ValueError(f"{last}: its record holds no epoch count; start again with overwrite=True")
    best = record.get("best")
    # best.pth is loaded at the end of training: damage there must stop the run now, not then.
    if (folder / f"{BEST}.pth").exists() or (isinstance(best, (int, float)) and np.isfinite(best)):
        read_checkpoint(folder / f"{BEST}.pth", settings)
    load_weights(learn, last, state)
    _load_optimizer(learn, last, state)
    return epoch
