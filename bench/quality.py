"""The quality bar: ``radiology train`` defaults against two anchors on every shared task.

For each task of ``../shared/data`` one fixed, patient-grouped, stratified outer split holds
out ``--test-fraction`` of the patients as TEST (seed 0). Every method trains on the rest
only and is scored once on TEST:

* ``ours``: :func:`radiology.train.train` with ``TrainConfig`` defaults (only the data
  arguments set; ``--set key=value`` overrides for experiments), TEST predicted through the
  saved bundle (:meth:`radiology.predict.Ensemble.load`: a ``folds`` run predicts with its
  members' mean), as a user would.
* ``probe``: scikit-learn logistic regression on the frozen, pooled ImageNet features of the
  same backbone and offline weights (same pipeline; colour kept for 3-channel tasks), fitted
  on the inner-train images; ``C`` chosen on the inner validation split (the one ``train``
  carves: same function, fraction and seed). ``--probe-refit`` refits it on all training
  patients with that ``C``, as ours refits by default (``--set refit=false``: ours on the
  inner-train images alone, as the default probe).
* ``fastai``: fastai out of the box: ``vision_learner`` with the same timm backbone and offline
  weights, ``Resize(224)`` + ``aug_transforms()``, ImageNet normalization, ``fine_tune(5)``;
  validation = the same inner split. DICOMs are rendered once to 8-bit PNG (percentile window)
  since fastai cannot read them. Not run for the two-view task (ODIR).

``--tune`` never touches TEST: it trains ``ours`` variants on the training patients and
prints each one's metric on the inner validation split (``train``'s own), for choosing defaults.
``--nested`` scores on a patient-grouped part of the training patients instead of TEST (the same
rule once more; TEST is not read): for a lever that ``train``'s own split cannot judge, such as
the refit, which trains on it.

``--epoch-rules`` also scores, for ``ours``, every model a training run passes through (the
head-only model, then each fine-tuning epoch) on TEST, and prints what each rule for keeping one
would have kept: the lowest validation loss (what ``train`` does before its refit), the last epoch, the best
validation AUC / balanced accuracy / ODIR score, with or without the head-only model among the
candidates. Every rule chooses on the inner validation split (``history.csv``); TEST only scores.
The runs it scores are validated models (``refit=False``): a refit's epochs are not candidates.

The table shows ours vs anchors, the issue's reference numbers (probe / fastai) beside them.

Usage::

    python bench/quality.py                       # all tasks, all methods, ours over seeds 0, 1, 2
    python bench/quality.py --tasks pneumonia,knee --methods ours,probe
    python bench/quality.py --tune --tasks views  # inner-validation sweep, no TEST
    python bench/quality.py --quick               # smoke run: few images, tiny settings
    python bench/quality.py --epoch-rules --methods ours,probe   # which epoch to keep, on TEST
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback

from radiology.data import ImageCache, ImageDataset, from_csv, train_valid_split
from radiology.evaluate import accuracy, balanced_accuracy, macro_auc, odir_score, quadratic_kappa

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ODIR_LABELS = ("N", "D", "G", "C", "A", "H", "M", "O")


@dataclass(frozen=True)
class Task:
    csv: str
    image_cols: tuple[str, ...]
    label_cols: tuple[str, ...]
    group_col: str
    metrics: tuple[str, ...]  # the first is the primary one (probe's C and --tune choose by it)
    multi_label: bool = False
    channels: int = 1


TASKS = {
    "views": Task("chest_xray_views/labels.csv", ("file",), ("view",), "patientid", ("balanced_accuracy", "accuracy")),
    "pneumonia": Task("pneumonia/labels.csv", ("file",), ("label",), "patient", ("balanced_accuracy", "auc")),
    "bodypart": Task("bodypart/labels.csv", ("file",), ("Target",), "patient", ("accuracy", "balanced_accuracy")),
    "knee": Task("knee/kl_grades/labels.csv", ("file",), ("kl_grade",), "patient", ("qwk", "accuracy")),
    "odir": Task("fundus/odir/labels.csv", ("left", "right"), ODIR_LABELS, "patient", ("macro_auc", "odir_score"),
                 multi_label=True, channels=3),
    "fracture": Task("fracture/labels.csv", ("file",), ("label",), "patient", ("auc", "balanced_accuracy",
                                                                                "sens_at_spec90")),
}

#: The issue's numbers on its own held-out data: (linear probe, fastai out of the box).
REFERENCE = {
    ("views", "balanced_accuracy"): (0.51, 0.53),
    ("pneumonia", "balanced_accuracy"): (0.95, 0.92),
    ("pneumonia", "auc"): (0.99, 0.98),
    ("bodypart", "accuracy"): (0.79, 0.47),
    ("knee", "qwk"): (0.61, 0.41),
    ("odir", "macro_auc"): (0.77, None),
    ("fracture", "auc"): (0.77, None),
    ("fracture", "balanced_accuracy"): (0.63, None),
}

#: Our metric names -> the keys of ``train``'s validation metrics (classification_metrics).
INNER_KEYS = {"qwk": "quadratic_kappa", "auc": "macro_auc"}

#: ``--tune`` variants (TrainConfig overrides), each compared with the defaults on inner validation.
VARIANTS = {
    "defaults": {},
    "epochs=6": {"epochs": 6},
    "epochs=10": {"epochs": 10},
    "head_epochs=0": {"head_epochs": 0},
    "lr=3e-3": {"lr": 3e-3},
    "lr_mult=3": {"lr_mult": 3.0},
    "size=320": {"size": 320},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    "augment=False": {"augment": False},
    "epochs=10+lr_mult=3": {"epochs": 10, "lr_mult": 3.0},
    "rgb": {"pipeline": "rgb"},
    "lite1@240": {"arch": "tf_efficientnet_lite1", "size": 240},
    "lite2@260": {"arch": "tf_efficientnet_lite2", "size": 260},
    "size=384": {"size": 384},
    "head_epochs=40": {"head_epochs": 40},
    "mixup": {"mix": "mixup"},
    "cutmix": {"mix": "cutmix"},
    "weight_average=0.9": {"weight_average": 0.9},
}


def score(task: Task, targets: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The task's metrics on one prediction set."""
    if task.multi_label:
        return {"macro_auc": macro_auc(targets, probs), "odir_score": odir_score(targets, probs)["score"]}
    out = {"accuracy": accuracy(targets, probs), "balanced_accuracy": balanced_accuracy(targets, probs),
           "qwk": quadratic_kappa(targets, probs, probs.shape[1])}
    if probs.shape[1] == 2:
        out["auc"] = macro_auc(targets, probs)
        out["sens_at_spec90"] = sensitivity_at_specificity(targets, probs[:, 1], 0.9)
    return out


def sensitivity_at_specificity(targets, scores, specificity: float) -> float:
    """The share of positives found at the lowest threshold that keeps ``specificity`` on the negatives:
    what a clinician asks of a screening model (how many fractures at 90 % of normals cleared)."""
    from sklearn.metrics import roc_curve

    targets = np.asarray(targets)
    if targets.min() == targets.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(targets, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def paired_standard_errors(task: Task, targets, groups, probs: dict[str, list[np.ndarray]], n_boot: int = 300,
                           seed: int = 0) -> dict:
    """Patient-bootstrap standard errors of every method's metrics and of ours minus each anchor.

    ``probs`` holds each method's TEST probabilities, one array per training seed; a method's
    metric is the mean over its seeds (as in the table), so seed-to-seed variation is in it too.

    The same resampled TEST patients score every method (a paired bootstrap), so the error of a
    difference is not the sum of two methods' errors: with it, "beats the probe by more than one
    standard error" is a statement about the methods, not about which patients TEST drew.
    """
    targets, groups = np.asarray(targets), np.asarray(groups)
    codes = np.unique(groups, return_inverse=True)[1]
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    rng = np.random.default_rng(seed)
    draws: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_boot):
        picked = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scored = {method: [score(task, targets[picked], p[picked]) for p in runs]
                      for method, runs in probs.items()}
        for metric in task.metrics:
            mean = {method: float(np.mean([run.get(metric, np.nan) for run in runs]))
                    for method, runs in scored.items()}
            for method in probs:
                draws.setdefault((method, metric), []).append(mean[method])
                if method != "ours" and "ours" in probs:
                    draws.setdefault((f"ours-{method}", metric), []).append(mean["ours"] - mean[method])
    return {key: float(np.nanstd(values, ddof=1)) for key, values in draws.items()}


def align(probs: np.ndarray, have: list[str], want: list[str]) -> np.ndarray:
    """Columns of ``probs`` (named ``have``) in the order ``want``; classes never seen score 0."""
    out = np.zeros((len(probs), len(want)), np.float32)
    for column, name in enumerate(have):
        if str(name) in want:
            out[:, want.index(str(name))] = probs[:, column]
    return out


def load_task(name: str, data: Path, limit: int | None):
    task = TASKS[name]
    csv = data / task.csv
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if limit:
        # Smoke runs: whole patients, the first ones of a fixed shuffle.
        patients = table[task.group_col].drop_duplicates().sample(frac=1.0, random_state=0)
        keep = set(patients.iloc[: max(4, limit)])
        table = table[table[task.group_col].isin(keep)].reset_index(drop=True)
    items = from_csv(table, csv.parent, task.image_cols, task.label_cols, multi_label=task.multi_label,
                     group_col=task.group_col, progress=False)
    if len(items) != len(table):
        raise RuntimeError(f"{name}: {len(table)} rows but {len(items)} samples")
    return task, csv.parent, table, items


def sources(items):
    return [p[0] if len(p) == 1 else tuple(p) for p in items.paths]


# ----------------------------------------------------------------------------- ours


def colour_pipeline(size: int):
    """``default_pipeline(size)`` that keeps RGB: with ``channels=3`` the default one reads colour
    photographs as gray and repeats the gray image into three channels (the ``ours_rgb`` method)."""
    from radiology.pipeline import Decode, Pipeline, default_pipeline

    return Pipeline(default_pipeline(size).steps, Decode(color="keep"))


class EachEpochOnTest(Callback):
    """A fine-tuning callback that predicts TEST with the model as it is before fine-tuning (the
    head-only model) and after every epoch: ``probs["head"]``, ``probs[0]``, ``probs[1]``...
    Nothing is chosen with it; the rules read the validation history (see :func:`epoch_rules`)."""

    order = 90  # after fastai's Recorder, before SaveBest reloads the best weights

    def __init__(self, test_items, multi_label: bool):
        self.test_items, self.multi_label, self.probs = test_items, multi_label, {}

    @torch.no_grad()
    def predict(self, key) -> None:
        valid = self.learn.dls.valid
        data = ImageDataset(self.test_items, valid.dataset.pipeline, cache=valid.dataset.cache,
                            channels=valid.dataset.channels)
        model, was_training = self.learn.model, self.learn.model.training
        model.eval()
        out = []
        for xb, _ in valid.new(dataset=data, shuffle=False, drop_last=False):
            logits = model(xb).float()
            out.append((logits.sigmoid() if self.multi_label else logits.softmax(1)).cpu())
        model.train(was_training)
        self.probs[key] = torch.cat(out).numpy()

    def before_fit(self):
        self.predict("head")

    def after_epoch(self):
        self.predict(self.epoch)


def epoch_rules(history: pd.DataFrame, multi_label: bool) -> dict[str, object]:
    """Which model each rule keeps, chosen on the validation history only.

    Keys of the result are rule names, values the kept model (``"head"`` or a fine-tuning epoch).
    Ties keep the earliest (as ``train``'s SaveBest does)."""
    tune = history[history["phase"] == "fine_tune"].reset_index(drop=True)
    head = history[history["phase"] == "head"]
    rules: dict[str, object] = {"valid_loss (now)": int(tune["valid_loss"].idxmin()), "last": len(tune) - 1}
    metrics = ["macro_auc", "odir_score"] if multi_label else ["macro_auc", "balanced_accuracy"]
    for metric in metrics:
        if metric not in tune or tune[metric].isna().all():
            continue
        best = int(tune[metric].idxmax())
        rules[f"{metric}"] = best
        if len(head):
            rules[f"{metric} +head"] = "head" if head[metric].iloc[-1] > tune[metric].iloc[best] else best
    if len(head):
        rules["valid_loss +head"] = ("head" if head["valid_loss"].iloc[-1] < tune["valid_loss"].min()
                                     else rules["valid_loss (now)"])
    return rules


def run_ours(task: Task, root: Path, train_table: pd.DataFrame, test_items, work: Path, overrides: dict,
             cache: Path, device: str, each_epoch: bool = False):
    """Train the defaults (with ``overrides``) and predict TEST through the saved bundle.

    With ``each_epoch`` the info also holds ``"epochs"``: TEST probabilities of every model the
    run passed through and the validation history (for :func:`epoch_rules`)."""
    import radiology.train.recipe as recipe
    from radiology.predict import Ensemble
    from radiology.train import TrainConfig, train

    work.mkdir(parents=True, exist_ok=True)
    csv = work / "train.csv"
    train_table.to_csv(csv, index=False)
    if overrides.get("pipeline") == "rgb":  # the default pipeline, keeping colour (see colour_pipeline)
        overrides = {**overrides, "pipeline": colour_pipeline(int(overrides.get("size", 224))).save(work / "rgb.json")}
    config = TrainConfig(out=work / "bundle", csv=csv, root=root, image_cols=task.image_cols,
                         label_cols=task.label_cols, multi_label=task.multi_label, group_col=task.group_col,
                         channels=task.channels, cache=cache, overwrite=True, **overrides)
    recorder = EachEpochOnTest(test_items, task.multi_label) if each_epoch and test_items is not None else None
    if recorder is not None:  # the candidates are the validated run's models: a refit would overwrite them
        overrides = {**overrides, "refit": False}
    plain_fine_tune = recipe.fine_tune
    if recorder is not None:
        recipe.fine_tune = lambda *a, cbs=(), **k: plain_fine_tune(*a, cbs=[*cbs, recorder], **k)
    try:
        result = train(config, progress=False)
    finally:
        recipe.fine_tune = plain_fine_tune
    if test_items is None:
        return None, result.metrics
    # A --set folds=K run is an ensemble bundle: its members' mean, as `radiology predict` takes it.
    bundle = Ensemble.load(result.bundle, backend="eager", device=device)
    probs = np.mean([member.predict(sources(test_items), batch_size=64) for member in bundle.bundles], axis=0)
    metrics = dict(result.metrics)
    if recorder is not None:
        # Same class order as the bundle's (the recorder reads the training model).
        metrics["epochs"] = {"probs": {k: align(v, bundle.classes, list(test_items.classes))
                                       for k, v in recorder.probs.items()},
                             "history": pd.read_csv(Path(result.bundle) / "history.csv"),
                             "save_to": work / "epochs_on_test.npz"}
    return align(probs, bundle.classes, list(test_items.classes)), metrics


# ----------------------------------------------------------------------------- linear probe


@torch.no_grad()
def pooled_features(items, pipeline, cache, channels: int, device: str) -> np.ndarray:
    from radiology.models import create_model

    model = create_model("tf_efficientnet_lite0", 2, in_chans=channels, pretrained="imagenet",
                         views=len(items.views)).to(device).eval()
    loader = torch.utils.data.DataLoader(ImageDataset(items, pipeline, cache=cache, channels=channels),
                                         batch_size=64, num_workers=0)
    feats = []
    for x, _ in loader:
        with torch.autocast(device_type="cuda", enabled=device == "cuda"):
            feats.append(model.forward_features(x.to(device)).float().cpu())
    return torch.cat(feats).numpy()


def _fit_probe(task: Task, x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task.multi_label:
        model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=3000))
    else:
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_pipeline(StandardScaler(), model).fit(x, y)


def _probe_probs(model, x: np.ndarray, n_classes: int) -> np.ndarray:
    probs = model.predict_proba(x)
    if probs.shape[1] == n_classes:
        return probs
    return align(probs, [str(c) for c in model.classes_], [str(c) for c in range(n_classes)])


def run_probe(task: Task, train_items, test_items, size: int, cache, device: str, refit: bool = False):
    from radiology.pipeline import default_pipeline

    # Colour photographs: the probe sees colour (a stronger anchor than gray copies).
    pipeline = colour_pipeline(size) if task.channels == 3 else default_pipeline(size)
    n = len(train_items.classes)
    x_train = pooled_features(train_items, pipeline, cache, task.channels, device)
    y_train = np.asarray(train_items.targets)
    inner_train, inner_valid = train_valid_split(y_train, train_items.groups, valid_fraction=0.2, seed=0)
    scores = {}
    for c in (0.003, 0.01, 0.03, 0.1, 0.3, 1.0):
        model = _fit_probe(task, x_train[inner_train], y_train[inner_train], c)
        probs = _probe_probs(model, x_train[inner_valid], n)
        scores[c] = score(task, y_train[inner_valid], probs)[task.metrics[0]]
    best = max(scores, key=lambda c: (scores[c], -c))
    # The inner-train images by default; --probe-refit uses all training patients, as ours' default refit does.
    fit_on = np.arange(len(y_train)) if refit else inner_train
    model = _fit_probe(task, x_train[fit_on], y_train[fit_on], best)
    if test_items is None:
        return None, {"C": best, task.metrics[0]: scores[best]}
    x_test = pooled_features(test_items, pipeline, cache, task.channels, device)
    return _probe_probs(model, x_test, n), {"C": best, "inner_valid": scores[best]}


# ----------------------------------------------------------------------------- fastai out of the box


def _fastai_readable(paths, work: Path) -> list[str]:
    """Image files as they are; DICOMs rendered once to 8-bit PNG (fastai reads no DICOM)."""
    import cv2

    from radiology.io import IMAGE_SUFFIXES
    from radiology.pipeline import Percentile, Pipeline

    render = Pipeline([Percentile()])
    out = []
    for index, path in enumerate(paths):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            out.append(str(path))
            continue
        png = work / "png" / f"{index}.png"
        if not png.exists():
            png.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(png), np.round(np.clip(render.read(path), 0, 1) * 255).astype(np.uint8))
        out.append(str(png))
    return out


def run_fastai(task: Task, train_items, test_items, work: Path, device: str, epochs: int = 5, size: int = 224):
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        ImageBlock,
        Normalize,
        Resize,
        aug_transforms,
        imagenet_stats,
        set_seed,
        vision_learner,
    )
    from fastai.vision.all import accuracy as fastai_accuracy

    from radiology.models.pretrained import imagenet_state_dict

    if task.multi_label or len(train_items.views) > 1:
        return None, {}
    set_seed(0, reproducible=True)
    classes = list(train_items.classes)
    names = _fastai_readable([p[0] for p in train_items.paths], work)
    labels = [classes[t] for t in np.asarray(train_items.targets)]
    _, inner_valid = train_valid_split(np.asarray(train_items.targets), train_items.groups, valid_fraction=0.2,
                                       seed=0)
    is_valid = np.zeros(len(names), bool)
    is_valid[inner_valid] = True
    table = pd.DataFrame({"name": names, "label": labels, "is_valid": is_valid})
    # vocab: every class, also one whose few patients all landed on the validation side.
    block = DataBlock(blocks=(ImageBlock, CategoryBlock(vocab=classes)), get_x=ColReader("name"),
                      get_y=ColReader("label"), splitter=ColSplitter("is_valid"), item_tfms=Resize(size),
                      batch_tfms=aug_transforms())
    dls = block.dataloaders(table, bs=64, device=torch.device(device),
                            num_workers=min(8, os.cpu_count() or 1))
    # pretrained=True would download timm's weights; load the same offline weights ours uses instead,
    # and add the ImageNet normalization fastai adds for pretrained models.
    learn = vision_learner(dls, "tf_efficientnet_lite0", pretrained=False, metrics=fastai_accuracy)
    state = {k: v for k, v in imagenet_state_dict().items() if not k.startswith("classifier.")}
    learn.model[0].model.load_state_dict(state)
    dls.add_tfms([Normalize.from_stats(*imagenet_stats)], "after_batch")
    if device == "cuda":
        learn.to_fp16()
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs)
    if test_items is None:
        return None, {}
    test = pd.DataFrame({"name": _fastai_readable([p[0] for p in test_items.paths], work / "test")})
    with learn.no_bar():
        probs, _ = learn.get_preds(dl=learn.dls.test_dl(test))
    return align(probs.float().numpy(), list(learn.dls.vocab), list(test_items.classes)), {}


# ----------------------------------------------------------------------------- driver


def _value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _fmt(value) -> str:
    return "   -  " if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:6.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default="ours,ours_rgb,probe,fastai",
                        help="ours_rgb = ours with a colour-keeping pipeline (3-channel tasks only)")
    parser.add_argument("--test-fraction", type=float, default=0.25)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="TrainConfig override for ours (repeatable), e.g. --set epochs=6")
    parser.add_argument("--seeds", default="0,1,2",
                        help="training seeds of ours (comma list; one draw is not a result); the split stays seed 0")
    parser.add_argument("--tune", action="store_true", help="inner-validation sweep of VARIANTS (no TEST)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="with --tune: which variants")
    parser.add_argument("--select", action="store_true",
                        help="with --tune: then score on TEST (with --methods) the one variant whose mean "
                             "inner-validation gain over the tasks is largest (chosen without TEST)")
    parser.add_argument("--probe-refit", action="store_true",
                        help="refit the probe on all training patients, as ours refits by default (default: the "
                             "inner-train part)")
    parser.add_argument("--epoch-rules", action="store_true",
                        help="ours: score every epoch's model on TEST and print what each rule for keeping "
                             "one (chosen on inner validation) would have scored")
    parser.add_argument("--nested", action="store_true",
                        help="score on a patient-grouped part of the training patients instead of TEST (TEST is "
                             "not read): to choose a lever that train's own validation cannot judge, e.g. refit")
    parser.add_argument("--quick", action="store_true", help="smoke run: few patients, tiny settings")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--cache", type=Path, default=None, help="image cache (default: <work>/cache)")
    parser.add_argument("--json", type=Path, default=None,
                        help="write all results here, and every run's TEST probabilities beside it (.npz)")
    args = parser.parse_args()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-quality-"))
    cache = ImageCache(args.cache or work / "cache")
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    limit = None
    fastai_epochs, size = 5, 224
    if args.quick:
        limit, fastai_epochs = 24, 1
        overrides = {"size": 64, "epochs": 1, "head_epochs": 2, "batch_size": 8, **overrides}
        size = 64
    size = int(overrides.get("size", size))
    methods = [m for m in args.methods.split(",") if m]
    seeds = [int(s) for s in args.seeds.split(",") if s][: 1 if args.quick else None]
    results = []
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else os.cpu_count()} "
          f"{'GPU' if device == 'cuda' else 'CPU cores'}), work {work}", flush=True)
    names = [t for t in args.tasks.split(",") if t]
    if args.tune:
        # Inner-validation numbers do not depend on the exported bundle: skip torch.export + ONNX there.
        import radiology.models

        export = radiology.models.save_bundle
        radiology.models.save_bundle = lambda folder, *a, **k: Path(folder)
        variants = [v for v in args.variants.split(",") if v]
        for name in names:
            task, root, table, items, split = _split(name, args, limit)
            for variant in variants:
                for seed in seeds:
                    started = time.time()
                    # The inner-validation metrics are the validated model's: a refit would only cost time.
                    settings = {"refit": False, **overrides, **VARIANTS[variant], "seed": seed}
                    _, inner = run_ours(task, root, split["train_table"], None,
                                        work / name / f"tune-{variant}-{seed}", settings, cache.root, device)
                    value = inner.get(INNER_KEYS.get(task.metrics[0], task.metrics[0]))
                    extra = inner.get("odir", {}).get("score") if task.multi_label else inner.get("accuracy")
                    results.append({"task": name, "variant": variant, "seed": seed, "inner_valid": inner,
                                    "seconds": round(time.time() - started, 1)})
                    print(f"  tune {variant:22s} seed {seed}: inner-valid {task.metrics[0]} {_fmt(value)} "
                          f"({'odir' if task.multi_label else 'acc'} {_fmt(extra)})  "
                          f"{time.time() - started:5.1f}s", flush=True)
        gains = _tune_table(results)
        radiology.models.save_bundle = export
        if args.select and gains:
            best = max(gains, key=gains.get)
            print(f"\nselected on inner validation: {best!r} (mean gain {gains[best]:+.3f}); scoring it on TEST",
                  flush=True)
            overrides = {**overrides, **VARIANTS[best]}
            results.append({"selected": best, "overrides": overrides})
        else:
            names = []
    tests = {}  # task -> its TEST items, for the paired bootstrap of the table
    rule_rows: list[dict] = []  # --epoch-rules
    for name in names:
        task, root, table, items, split = _split(name, args, limit)
        train_items, test_items = split["train_items"], split["test_items"]
        tests[name] = test_items
        for method in methods:
            for seed in (seeds if method.startswith("ours") else [0]):
                started = time.time()
                if method in ("ours", "ours_rgb"):
                    if method == "ours_rgb" and task.channels != 3:
                        continue
                    extra = {"pipeline": "rgb"} if method == "ours_rgb" else {}
                    probs, info = run_ours(task, root, split["train_table"], test_items,
                                           work / name / f"{method}-{seed}", {**overrides, **extra, "seed": seed},
                                           cache.root, device, each_epoch=args.epoch_rules and method == "ours")
                    if "epochs" in info:
                        rule_rows.extend(_epoch_rule_rows(task, name, seed, test_items, probs, info.pop("epochs")))
                    info = {"inner_valid": {k: info.get(k) for k in ("accuracy", "balanced_accuracy",
                                                                      "quadratic_kappa", "macro_auc")},
                            "overrides": {k: str(v) for k, v in overrides.items()}}
                elif method == "probe":
                    probs, info = run_probe(task, train_items, test_items, size, cache, device, args.probe_refit)
                elif method == "fastai":
                    probs, info = run_fastai(task, train_items, test_items, work / name / "fastai", device,
                                             fastai_epochs, size)
                else:
                    raise SystemExit(f"unknown method {method!r}")
                if probs is None:
                    continue
                metrics = score(task, np.asarray(test_items.targets), probs)
                seconds = round(time.time() - started, 1)
                results.append({"task": name, "method": method, "seed": seed, "n_test": len(test_items),
                                "test": metrics, "info": info, "seconds": seconds, "probs": probs})
                shown = "  ".join(f"{k} {_fmt(metrics.get(k))}" for k in task.metrics)
                print(f"  {method:7s} seed {seed}: {shown}   ({seconds:.0f}s)", flush=True)
    if names:
        _table([r for r in results if "method" in r], tests)
    if rule_rows:
        _rules_table(rule_rows)
        results.extend(rule_rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        kept = [{k: v for k, v in r.items() if k != "probs"} for r in results]
        args.json.write_text(json.dumps(kept, indent=1, default=float))
        # The probabilities, so that seeds of separate runs can be pooled and other rules scored later.
        arrays = {f"{r['task']}__{r['method']}__{r['seed']}": r["probs"] for r in results if "probs" in r}
        for name, items in tests.items():
            arrays[f"{name}__targets"] = np.asarray(items.targets)
            arrays[f"{name}__groups"] = np.asarray(items.groups, dtype=str)
        np.savez_compressed(args.json.with_suffix(".npz"), **arrays)


def _split(name: str, args, limit):
    """The task's data and its fixed outer split (seed 0): TEST patients are never trained on."""
    task, root, table, items = load_task(name, args.data, limit)
    train_idx, test_idx = train_valid_split(items.targets, items.groups, valid_fraction=args.test_fraction, seed=0)
    if args.nested:
        # The same rule once more inside the training patients; the outer TEST patients are dropped unread.
        inner_train, inner_test = train_valid_split(items.targets[train_idx], items.groups[train_idx],
                                                    valid_fraction=args.test_fraction, seed=0)
        train_idx, test_idx = train_idx[inner_train], train_idx[inner_test]
        print(f"\n-- {name}: --nested, the outer TEST is left out; scoring on part of the training patients",
              flush=True)
    n_patients = len(set(items.groups[test_idx]))
    print(f"\n== {name}: {len(items)} samples; TEST {len(test_idx)} samples / {n_patients} patients "
          f"(seed 0), train {len(train_idx)}", flush=True)
    split = {"train_items": items.subset(train_idx), "test_items": items.subset(test_idx),
             "train_table": table.iloc[train_idx].reset_index(drop=True)}
    return task, root, table, items, split


def _epoch_rule_rows(task: Task, name: str, seed: int, test_items, bundle_probs, epochs) -> list[dict]:
    """One row per rule: the model it keeps and that model's TEST metrics, with the paired standard
    error of its difference to what ``train`` keeps today (the lowest validation loss)."""
    rules = epoch_rules(epochs["history"], task.multi_label)
    probs, targets = epochs["probs"], np.asarray(test_items.targets)
    if epochs.get("save_to") is not None:  # everything, for rules not thought of yet
        np.savez_compressed(epochs["save_to"], targets=targets, groups=np.asarray(test_items.groups, dtype=str),
                            history=epochs["history"].to_json(), **{f"probs_{k}": v for k, v in probs.items()})
    now = probs[rules["valid_loss (now)"]]
    if not np.allclose(now, bundle_probs, atol=2e-3):  # the recorder must see the model train() keeps
        print(f"  note: the bundle's TEST probabilities differ from epoch {rules['valid_loss (now)']}'s by "
              f"{np.abs(now - bundle_probs).max():.4f}", flush=True)
    every = {k: score(task, targets, p) for k, p in probs.items()}  # each model scored once
    rows = []
    for rule, kept in rules.items():
        errors = paired_standard_errors(task, targets, test_items.groups, {"ours": [probs[kept]], "now": [now]})
        rows.append({"task": name, "rule": rule, "seed": seed, "kept": kept, "test": every[kept],
                     "d_vs_now": {m: float(every[kept][m] - every[rules["valid_loss (now)"]][m])
                                  for m in task.metrics},
                     "se_vs_now": {m: errors[("ours-now", m)] for m in task.metrics}})
    print(f"  every model on TEST ({name}, seed {seed}): " + "; ".join(
        f"{k}: " + " ".join(f"{_fmt(v.get(m))}" for m in task.metrics) for k, v in every.items()), flush=True)
    return rows


def _rules_table(rows) -> None:
    print("\nWHICH MODEL TO KEEP (chosen on inner validation; TEST scores; d = minus the lowest-validation-loss "
          "epoch, ± paired patient-bootstrap standard error)")
    for row in rows:
        task = TASKS[row["task"]]
        cells = "  ".join(f"{m} {_fmt(row['test'].get(m))} (d {row['d_vs_now'][m]:+.3f} ±{row['se_vs_now'][m]:.3f})"
                          for m in task.metrics)
        print(f"  {row['task']:10s} seed {row['seed']} {row['rule']:24s} keeps {str(row['kept']):>4s}  {cells}")


def _tune_table(results) -> dict[str, float]:
    gains: dict[str, list[float]] = {}
    print("\nINNER VALIDATION (training patients only; TEST untouched): mean over seeds, difference to defaults")
    for name in dict.fromkeys(r["task"] for r in results):
        task = TASKS[name]
        key = INNER_KEYS.get(task.metrics[0], task.metrics[0])
        rows = [r for r in results if r["task"] == name]
        means = {}
        for variant in dict.fromkeys(r["variant"] for r in rows):
            found = [r["inner_valid"].get(key) for r in rows if r["variant"] == variant]
            means[variant] = float(np.mean([v for v in found if v is not None])) if any(
                v is not None for v in found) else float("nan")
        base = means.get("defaults", float("nan"))
        for variant, value in means.items():
            print(f"  {name:10s} {variant:22s} {key} {_fmt(value)}  ({value - base:+.3f})")
            gains.setdefault(variant, []).append(value - base)
    gains = {variant: float(np.nanmean(values)) for variant, values in gains.items() if variant != "defaults"}
    for variant, gain in sorted(gains.items(), key=lambda item: -item[1]):
        print(f"  mean gain over tasks  {variant:22s} {gain:+.3f}")
    return gains


def _table(results, tests) -> None:
    print("\nTEST (held-out patients); ours = mean over seeds; ± = patient-bootstrap standard error (300 draws); "
          "d = ours minus the anchor ± its paired standard error; reference = the issue's probe / fastai")
    print(f"{'task':10s} {'n':>4s} {'metric':17s} {'ours':>14s} {'probe':>14s} {'fastai':>14s}  {'ref':>9s}  "
          f"verdict (beats = by more than one paired standard error)")
    for name in dict.fromkeys(r["task"] for r in results):
        task, rows, test_items = TASKS[name], [r for r in results if r["task"] == name], tests[name]
        probs = {}
        for method in ("ours", "probe", "fastai", "ours_rgb"):
            runs = [r["probs"] for r in rows if r["method"] == method]
            if runs:
                probs[method] = runs
        errors = paired_standard_errors(task, test_items.targets, test_items.groups, probs)
        for metric in task.metrics:
            value = {m: float(np.mean([r["test"].get(metric, np.nan) for r in rows if r["method"] == m]))
                     for m in probs}
            cells = {m: f"{value[m]:6.3f} ±{errors[(m, metric)]:5.3f} " if m in value else f"{'-':>14s}"
                     for m in ("ours", "probe", "fastai")}

            ref = REFERENCE.get((name, metric))
            ref_text = "" if ref is None else "/".join("-" if v is None else f"{v:.2f}" for v in ref)
            verdicts = []
            for anchor in ("probe", "fastai"):
                if "ours" in value and anchor in value:
                    diff, error = value["ours"] - value[anchor], errors[(f"ours-{anchor}", metric)]
                    word = "beats" if diff > error else ("loses to" if diff < -error else "ties")
                    verdicts.append(f"{word} {anchor} (d {diff:+.3f} ±{error:.3f})")
            if "ours_rgb" in value:
                verdicts.append(f"ours_rgb {value['ours_rgb']:.3f}")
            print(f"{name:10s} {rows[0]['n_test']:4d} {metric:17s} {cells['ours']} {cells['probe']} {cells['fastai']}  "
                  f"{ref_text:>9s}  {'; '.join(verdicts)}")

if __name__ == "__main__":
    sys.exit(main())
