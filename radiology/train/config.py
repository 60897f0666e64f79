"""Training settings: one dataclass that the CLI flags, a YAML/JSON file and Python all fill."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from radiology.io import column_names

__all__ = ["TrainConfig", "MAX_SIZE", "MAX_FOLDS"]

_LOSSES = ("auto", "ce", "focal", "nce_rce", "bce")
_SAMPLERS = ("shuffle", "weighted", "min_per_class")
_SEMI = ("fixmatch", "mixmatch")
_MIXES = ("mixup", "cutmix")
#: Experiment trackers ``log`` may name (:mod:`radiology.train.tracking`).
_TRACKERS = ("tensorboard", "mlflow", "wandb")
#: Largest model input side: 2048 px keeps full-resolution chest films; beyond it a batch no longer fits memory.
MAX_SIZE = 2048
#: Most fold models one ``folds`` run trains.
MAX_FOLDS = 20
# train.json keeps only the file name of these, and only whether these locations were given.
_NAMED_FILES = ("csv", "pipeline")
_LOCATIONS = ("out", "root", "folder", "unlabeled", "log_dir")


def _names(value) -> tuple[str, ...] | None:
    """``"a,b"`` or ``["a", "b"]`` → ``("a", "b")``; None stays None."""
    return column_names(value) or None


@dataclass(frozen=True)
class TrainConfig:
    """Everything :func:`radiology.train.train` needs; the CLI's ``radiology train`` flags map 1:1.

    Data comes from ``csv`` (+ ``root``, ``image_cols``, ``label_cols``) or from ``folder``
    (one subfolder per class). The defaults are chosen to beat both a linear probe on
    frozen ImageNet features and fastai's out-of-the-box ``fine_tune`` on a few hundred
    radiographs, and to finish in a few minutes on a 2-core CPU for ~500 images:
    offline ImageNet ``tf_efficientnet_lite0`` at 224 px, one gray input channel, the
    head fitted first on frozen features, then a short discriminative fine-tune.

    Parameters
    ----------
    out : path
        Bundle directory to write.
    csv, root : path, optional
        Label table and the folder its image column is relative to (default: the CSV's folder).
    folder : path, optional
        Class-per-subfolder dataset (instead of ``csv``).
    image_cols : str or sequence of str
        Image column(s); several columns are views of one sample (e.g. ``"left,right"``).
    label_cols : str or sequence of str, optional
        Label column; with ``multi_label`` either one column of ``A|B`` strings or one 0/1
        column per label.
    multi_label : bool
        Sigmoid outputs, one per label.
    group_col : str, optional
        Patient column for a grouped split; without it, a column the CSV's header calls
        ``patient``, ``patient_id``, ``Patient ID``, ``PatientID``, ``subject_id`` ...
        (:func:`~radiology.train.patient_column_of`), else the DICOM PatientIDs when every
        input is a DICOM that has one (read, never written out). With neither, the split is
        by image and the run warns.
    arch : str
        Any timm backbone name.
    pretrained : str or None
        ``"imagenet"`` (offline weights for ``tf_efficientnet_lite0/1/2``), a checkpoint path,
        a timm hub name, or ``None``/``"none"``.
    size : int
        Square model input side, 1 to :data:`MAX_SIZE` (2048); the default pipeline resizes
        the longest side and pads.
    channels : {1, 3}
        Gray input (first convolution adapted) or RGB (colour photographs).
    epochs : int
        Fine-tuning epochs of the whole network.
    head_epochs : int
        Epochs of the head alone on frozen, pre-computed features (0 skips it).
    lr : float, optional
        Peak fine-tuning learning rate of the head group (the backbone gets
        ``lr / lr_mult``); default 1e-3.
    head_lr : float
        Learning rate of the head-only phase.
    lr_mult : float
        Ratio of the head's to the backbone's fine-tuning learning rate: the backbone
        peaks at ``lr / lr_mult``.
    batch_size : int
        Images per training batch (at least 1).
    seed : int
        Seed of the train/validation split, the sampler and the weight initialisation,
        so that a run can be repeated.
    valid_fraction : float
        Share of the samples (of the patients, when grouped) held out for validation,
        strictly between 0 and 1. Not used with ``folds`` of 2 or more.
    folds : int
        1 (the default): one model, validated on ``valid_fraction`` of the patients. ``K`` from
        2 to :data:`MAX_FOLDS`: ``K`` models, each validated on one of ``K`` patient-grouped
        folds and trained on the others, saved as one ensemble bundle (``out/fold-1`` ...
        ``out/fold-K`` and an ``ensemble.json``) that predicts with their mean probability; its
        ``train.json`` holds the out-of-fold metrics (every image scored by the model that did
        not train on it). ``K`` times the training time; fold 1 is the split of the one-model
        run with ``valid_fraction = 1 / K``.
    refit : bool or None
        After the run above has chosen its epoch on the validation split, train a new model on
        every training image (validation images included) for the same head epochs and the
        fine-tuning epochs kept, on the same schedule, and save that one (``train.json``:
        ``refit``; its validation metrics, and a multi-label task's decision thresholds, stay
        those of the model that chose the epoch, the refit having no held-out image left). About
        1.5 times the training time. ``None`` (the default): refit wherever it applies — one
        model (``folds`` 1), no ``semi``, one process — and not otherwise; ``True`` asks for it
        and refuses the others; ``False`` saves the validated model. ``resume`` continues the
        validated run, and the refit then starts afresh.
    loss : {"auto", "ce", "focal", "nce_rce", "bce"}
        ``auto`` = class-weighted cross-entropy (single-label) or BCE with per-label positive
        weights (multi-label).
    label_smoothing : float
        Label smoothing of the loss, in [0, 1); 0 turns it off.
    mix : {"mixup", "cutmix"}, optional
        Mix pairs of training images while fine-tuning (and in the refit), with fastai's
        ``MixUp`` (blends two images and their losses; alpha 0.4) or ``CutMix`` (pastes a
        rectangle of one image into the other, losses weighted by area; alpha 1; one image
        column only). Off by default; what each did on the shared tasks is in the modeling
        guide. Not with ``semi`` (MixMatch mixes on its own).
    weight_average : float
        Decay of an exponential moving average of the weights while fine-tuning (and in the
        refit), e.g. 0.9 (about the last ten steps); the average is what is validated, chosen,
        saved and kept (:class:`~radiology.train.callbacks.WeightAverage`). 0 (the default)
        turns it off; measured in the modeling guide.
    sampler : {"shuffle", "weighted", "min_per_class"}
        How training batches are drawn: shuffled, weighted so that every class is drawn
        equally often on average, or with at least one sample of every class per batch.
    class_weights : bool
        Weight the loss by inverse class frequency (single-label ``ce``/``focal``).
    augment : bool
        GPU batch augmentation (flips, small affine, brightness/contrast) while training.
    freeze_bn_stats : bool
        Fine-tune with the batch-norm layers' running statistics fixed at the pretrained ones
        (:class:`~radiology.train.callbacks.FrozenBatchNormStats`); their scale and shift still
        learn. On by default: on the shared tasks it lowered the validation loss on 3 of 4 and
        raised held-out knee KL kappa by 0.13 (within the noise elsewhere, mixed on fractures;
        modeling guide). Only with pretrained weights (``pretrained`` not ``None``): random
        weights have no statistics worth keeping, and the setting is then ignored.
    pipeline : path, optional
        Preprocessing pipeline file (JSON/YAML); default percentile → resize → pad.
    workers : int
        DataLoader worker processes.
    cache : path or "none", optional
        Preprocessed-image cache folder (default ``$RADIOLOGY_CACHE`` or
        ``~/.cache/radiology/images``); ``"none"`` disables it. Every training image is
        read once before training (filling the cache), so an unreadable file stops the run
        before any work.
    patience : int
        Early stopping patience in epochs (0 = off).
    lr_find : bool
        Run fastai's ``lr_find`` first and save its plot as ``lr_find.png`` in the bundle.
    resume : bool
        Continue an interrupted run from the last epoch checkpoint in ``out``.
    overwrite : bool
        Replace a bundle or checkpoint already in ``out``. Without it (or ``resume``), a
        run refuses such a folder instead of losing an earlier model.
    fusion : {"concat", "mean"}
        How views are combined.
    unlabeled : path, optional
        Folder of unlabeled DICOMs/images (any layout) for semi-supervised fine-tuning;
        needs ``semi``. Files of the validation split found there are left out.
    semi : {"fixmatch", "mixmatch"}, optional
        Semi-supervised method added to the fine-tuning stage (:mod:`radiology.semisup`,
        the papers' defaults); single-label, single-view data only.
    semi_params : dict, optional
        Settings of the ``semi`` method that replace the paper's defaults, e.g.
        ``{"lambda_u": 10, "rampup_epochs": 5}`` for MixMatch
        (:func:`radiology.semisup.validate_semisup_params` lists and checks them).
    skip_unreadable : bool
        Leave out training images that cannot be read (listed with their reason in the
        bundle's ``data_report.csv``). Without it such a file stops the run before
        training, naming the count and the first files.
    allow_outside_root : bool
        Accept CSV image values that point outside ``root`` (``../x.dcm``, absolute
        paths); refused by default, naming the rows.
    log : str or sequence of str
        Experiment trackers to log the run to, any of ``"tensorboard"``, ``"mlflow"`` and
        ``"wandb"`` (a comma-separated string works too); empty (the default) logs to none.
        Each needs its package (:mod:`radiology.train.tracking`); a missing one stops the run
        before any work, naming the ``pip install``.
    log_dir : path, optional
        Folder of the trackers' files: TensorBoard writes ``log_dir/runs``, MLflow's local
        store is ``log_dir/mlruns`` and W&B's offline runs go to ``log_dir/wandb``; default
        ``out``. Share one ``log_dir`` between runs to compare them.
    extra : dict, optional
        Free-form additional settings; training does not read them, but they are stored
        with the others in the bundle's ``train.json``.

    Notes
    -----
    Rows of ``csv`` whose (single-label) label is empty are unlabeled: training leaves them
    out with a logged warning giving their count.
    """

    out: str | os.PathLike = "bundle"
    csv: str | os.PathLike | None = None
    root: str | os.PathLike | None = None
    folder: str | os.PathLike | None = None
    image_cols: tuple[str, ...] = ("image",)
    label_cols: tuple[str, ...] | None = ("label",)
    multi_label: bool = False
    group_col: str | None = None
    arch: str = "tf_efficientnet_lite0"
    pretrained: str | None = "imagenet"
    size: int = 224
    channels: int = 1
    epochs: int = 5
    head_epochs: int = 20
    lr: float | None = None
    head_lr: float = 3e-3
    lr_mult: float = 3.0
    batch_size: int = 32
    seed: int = 0
    valid_fraction: float = 0.2
    folds: int = 1
    refit: bool | None = None
    loss: str = "auto"
    label_smoothing: float = 0.0
    mix: str | None = None
    weight_average: float = 0.0
    sampler: str = "shuffle"
    class_weights: bool = True
    augment: bool = True
    freeze_bn_stats: bool = True
    pipeline: str | os.PathLike | None = None
    workers: int = 0
    cache: str | os.PathLike | None = None
    patience: int = 0
    lr_find: bool = False
    resume: bool = False
    overwrite: bool = False
    fusion: str = "concat"
    unlabeled: str | os.PathLike | None = None
    semi: str | None = None
    semi_params: dict[str, Any] = field(default_factory=dict)
    skip_unreadable: bool = False
    allow_outside_root: bool = False
    log: tuple[str, ...] = ()
    log_dir: str | os.PathLike | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_cols", _names(self.image_cols) or ("image",))
        object.__setattr__(self, "label_cols", _names(self.label_cols))
        object.__setattr__(self, "log", tuple(dict.fromkeys(name.lower() for name in _names(self.log) or ())))
        unknown = [name for name in self.log if name not in _TRACKERS]
        if unknown:
            raise ValueError(f"log names unknown tracker(s) {', '.join(map(repr, unknown))}; known: {_TRACKERS}")
        # A config file's "false" (a JSON string) is a true value: a switch takes booleans only.
        switches = [f.name for f in fields(self) if f.type in ("bool", bool)]
        wrong = [name for name in switches if not isinstance(getattr(self, name), bool)]
        if wrong:
            raise ValueError(", ".join(f"{name} must be true or false, got {getattr(self, name)!r}" for name in wrong))
        if self.pretrained is not None and str(self.pretrained).lower() == "none":
            object.__setattr__(self, "pretrained", None)
        if (self.csv is None) == (self.folder is None):
            raise ValueError("give exactly one data source: csv (with root) or folder")
        if self.csv is not None and not self.label_cols:
            raise ValueError("a CSV needs a label column (label_cols)")
        for name in ("size", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("epochs", "head_epochs", "workers", "patience"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "head_lr", "lr_mult"):
            value = getattr(self, name)
            if value is not None and not 0 < float(value) < float("inf"):
                raise ValueError(f"{name} must be positive, got {value}")
        if int(self.size) > MAX_SIZE:
            raise ValueError(f"size {self.size} is above the maximum of {MAX_SIZE} pixels")
        if self.epochs + self.head_epochs == 0:
            raise ValueError("nothing to train: epochs and head_epochs are both 0")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not 0 < self.valid_fraction < 1:
            raise ValueError(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or not 1 <= self.folds <= MAX_FOLDS:
            raise ValueError(f"folds must be an integer from 1 (one model) to {MAX_FOLDS}, got {self.folds!r}")
        if self.refit is not None and not isinstance(self.refit, bool):
            raise ValueError(f"refit must be True, False or None (refit wherever it applies), got {self.refit!r}")
        if self.refit and self.folds > 1:
            raise ValueError(f"refit trains one model on every training image: it cannot be combined with folds "
                             f"({self.folds}), whose models each leave their fold out")
        if self.refit and self.semi is not None:
            raise ValueError(f"refit cannot be combined with semi ({self.semi!r}): not measured")
        if self.loss not in _LOSSES:
            raise ValueError(f"loss must be one of {_LOSSES}, got {self.loss!r}")
        if self.mix is not None and self.mix not in _MIXES:
            raise ValueError(f"mix must be one of {_MIXES} or None, got {self.mix!r}")
        if self.mix is not None and self.semi is not None:
            raise ValueError(f"mix ({self.mix!r}) cannot be combined with semi ({self.semi!r}): not measured, and "
                             "MixMatch mixes images on its own")
        if self.mix == "cutmix" and len(self.image_cols) > 1:
            raise ValueError("cutmix pastes a rectangle of one image into another: it takes one image column, "
                             f"got {len(self.image_cols)} ({', '.join(self.image_cols)}); use mix='mixup'")
        if isinstance(self.weight_average, bool) or not isinstance(self.weight_average, (int, float)) or not (
                0 <= self.weight_average < 1):
            raise ValueError(f"weight_average must be in [0, 1) (0: off), got {self.weight_average!r}")
        if self.sampler not in _SAMPLERS:
            raise ValueError(f"sampler must be one of {_SAMPLERS}, got {self.sampler!r}")
        if self.fusion not in ("concat", "mean"):
            raise ValueError(f"fusion must be 'concat' or 'mean', got {self.fusion!r}")
        if self.semi is not None and self.semi not in _SEMI:
            raise ValueError(f"semi must be one of {_SEMI}, got {self.semi!r}")
        if (self.semi is None) != (self.unlabeled is None):
            raise ValueError("semi-supervised training needs both an unlabeled folder and a method "
                             "(unlabeled=FOLDER and semi='fixmatch' or semi='mixmatch')")
        if self.semi is not None and self.multi_label:
            raise ValueError(f"{self.semi} is for single-label data; multi_label cannot be combined with semi")
        if self.semi is not None and len(self.image_cols) > 1:
            raise ValueError(f"{self.semi} is for single-view data; several image columns cannot be combined with semi")
        if self.semi is not None and self.epochs < 1:
            raise ValueError(f"{self.semi} runs in the fine-tuning stage: epochs must be >= 1")
        if self.semi_params:
            if self.semi is None:
                raise ValueError("semi_params need a semi-supervised method (semi='fixmatch' or semi='mixmatch')")
            from radiology.semisup import validate_semisup_params

            object.__setattr__(self, "semi_params", validate_semisup_params(self.semi, self.semi_params))
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")

    @property
    def loss_name(self) -> str:
        """The loss actually used (``auto`` resolved)."""
        if self.loss != "auto":
            return self.loss
        return "bce" if self.multi_label else "ce"

    @property
    def peak_lr(self) -> float:
        """Fine-tuning learning rate of the head group."""
        return 1e-3 if self.lr is None else float(self.lr)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (paths as strings), as stored in a bundle's ``train.json``."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, os.PathLike):
                data[key] = str(value)
            elif isinstance(value, tuple):
                data[key] = list(value)
        return data

    def to_record(self) -> dict[str, Any]:
        """The settings as a bundle's ``train.json`` records them: no folder of the user's is named.

        A bundle is shared, and the folders it was trained from can name a patient or a
        user (``/home/jdoe/Doe_John/``). ``csv``, ``pipeline`` and a ``pretrained`` checkpoint
        keep their file name only; ``out``, ``root``, ``folder``, ``unlabeled`` and ``log_dir`` are recorded
        as given or not, ``cache`` as used or not (``True``/``False``).

        Examples
        --------
        >>> record = TrainConfig(csv="/data/Doe_John/labels.csv", out="/home/x/bundle").to_record()
        >>> record["csv"], record["out"], record["root"], record["cache"]
        ('labels.csv', True, False, True)
        """
        data = self.to_dict()
        for key in _NAMED_FILES:
            if data[key] is not None:
                data[key] = Path(data[key]).name
        if self.pretrained is not None:
            from radiology.models.pretrained import is_checkpoint_path

            if is_checkpoint_path(self.pretrained):
                data["pretrained"] = Path(self.pretrained).name
        for key in _LOCATIONS:
            data[key] = data[key] is not None
        data["cache"] = self.cache is None or str(self.cache).strip().lower() != "none"  # the rule of open_cache
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides) -> TrainConfig:
        """Build from a mapping with the CLI's keys (``image-col`` or ``image_cols`` alike).

        Unknown keys are an error naming them; ``overrides`` win over ``data``.

        Parameters
        ----------
        data : dict
            Settings by name; dashes and underscores are alike, and ``image_col``,
            ``label_col`` and ``label`` stand for ``image_cols`` and ``label_cols``.
        **overrides
            Settings that replace those of ``data``, with the same keys.

        Examples
        --------
        >>> TrainConfig.from_dict({"csv": "labels.csv", "image-col": "file", "label-col": "view"}).image_cols
        ('file',)
        """
        aliases = {"image_col": "image_cols", "label_col": "label_cols", "label": "label_cols"}
        known = {f.name for f in fields(cls)}
        settings: dict[str, Any] = {}
        for key, value in {**data, **overrides}.items():
            name = key.replace("-", "_")
            name = aliases.get(name, name)
            if name not in known:
                raise ValueError(f"unknown training setting {key!r}; known: {sorted(known - {'extra'})}")
            settings[name] = value
        return cls(**settings)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides) -> TrainConfig:
        """Read a YAML or JSON settings file (same keys as the CLI flags).

        Parameters
        ----------
        path : str or os.PathLike
            The settings file; a ``.yaml``/``.yml`` suffix is read as YAML, anything else
            as JSON. It must hold a mapping.
        **overrides
            Settings that replace those of the file (see :meth:`from_dict`).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such config file")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text) or {}
            else:
                data = json.loads(text)
        except Exception as error:  # noqa: BLE001 - any parse error is a usage error with the file named
            raise ValueError(f"{path}: not valid {path.suffix.lstrip('.').upper() or 'JSON'}: "
                             f"{' '.join(str(error).split())}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        return cls.from_dict(data, **overrides)

    def replace(self, **changes) -> TrainConfig:
        """A copy with some settings changed.

        Parameters
        ----------
        **changes
            New values by field name; the copy is validated like a new config.
        """
        return replace(self, **changes)
