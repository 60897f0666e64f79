"""``radiology train`` and ``pretrain``: fastai training and self-supervised pretraining."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from pathlib import Path

from radiology.cli.common import headline, positive


def add_train_parsers(commands) -> None:
    """Add the train commands to the ``radiology`` subparsers."""
    train = commands.add_parser("train", help="train a classifier on DICOMs or images and write a bundle")
    source = train.add_argument_group("data")
    source.add_argument("--csv", type=Path, help="label table (CSV)")
    source.add_argument("--root", type=Path, help="folder the CSV's image column is relative to (default: CSV's)")
    source.add_argument("--folder", type=Path, help="instead of --csv: one subfolder per class")
    source.add_argument("--image-col", dest="image_cols", default=None,
                        help="image column(s), comma-separated for views, e.g. left,right (default: image)")
    source.add_argument("--label-col", dest="label_cols", default=None,
                        help="label column; with --multi-label one 'A|B' column or several 0/1 columns (N,D,G)")
    source.add_argument("--multi-label", action="store_true", default=None, help="several labels per image")
    source.add_argument("--group-col", help="patient column for the grouped split (default: a column named "
                        "patient, patient_id, Patient ID, PatientID, subject_id..., else the DICOM PatientID)")
    model = train.add_argument_group("model")
    model.add_argument("--arch", help="timm backbone (default tf_efficientnet_lite0)")
    model.add_argument("--pretrained", help="imagenet (default; offline for tf_efficientnet_lite0/1/2, the timm hub "
                       "for other archs) | none | PATH | timm hub name")
    model.add_argument("--size", type=positive, help="input side in pixels (default 224)")
    model.add_argument("--channels", type=int, choices=(1, 3), help="1 gray (default) or 3 for colour photographs")
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=int, help="fine-tuning epochs of the whole network (default 5)")
    fit.add_argument("--head-epochs", type=int, help="head-only epochs on frozen features first (default 20)")
    fit.add_argument("--lr", type=float, help="peak fine-tuning learning rate (default 1e-3)")
    fit.add_argument("--batch-size", type=positive, help="batch size (default 32)")
    fit.add_argument("--seed", type=int, help="random seed (default 0)")
    fit.add_argument("--loss", choices=("auto", "ce", "focal", "nce_rce", "bce"))
    fit.add_argument("--sampler", choices=("shuffle", "weighted", "min_per_class"))
    fit.add_argument("--freeze-bn-stats", action=argparse.BooleanOptionalAction, default=None,
                     help="fine-tune with the pretrained batch-norm statistics fixed (default: on; "
                          "measured in the modeling guide)")
    fit.add_argument("--mix", choices=("mixup", "cutmix"),
                     help="mix pairs of training images while fine-tuning (fastai's MixUp or CutMix; default: "
                          "none; measured in the modeling guide)")
    fit.add_argument("--valid-fraction", type=float, help="validation share, grouped by patient (default 0.2)")
    fit.add_argument("--folds", type=positive, metavar="K",
                     help="train K models on K patient-grouped folds (each validated on the fold it did not train "
                          "on) and save them as one ensemble bundle that predicts with their mean; train.json holds "
                          "the out-of-fold metrics; K times the time (default 1: one model, --valid-fraction)")
    fit.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                     help="once the epoch is chosen on the validation split, train again on every training image "
                          "(validation included) for those epochs and save that model; train.json keeps the "
                          "validation metrics of the first model; about 1.5 times the time (default: on for one "
                          "supervised model in one process, off with --folds or --semi; measured in the "
                          "modeling guide); --no-refit saves the validated model")
    fit.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    fit.add_argument("--cache", help="preprocessed-image cache folder, or 'none'")
    fit.add_argument("--lr-find", action="store_true", default=None, help="save fastai's lr_find plot in the bundle")
    fit.add_argument("--resume", action="store_true", default=None, help="continue an interrupted run in --out")
    fit.add_argument("--overwrite", action="store_true", default=None,
                     help="replace a bundle or checkpoint already in --out (refused without it)")
    fit.add_argument("--skip-unreadable", action="store_true", default=None,
                     help="leave out unreadable or empty images (listed in data_report.csv) instead of stopping")
    fit.add_argument("--allow-outside-root", action="store_true", default=None,
                     help="accept CSV image paths outside --root")
    semi = train.add_argument_group("semi-supervised (single-label)")
    semi.add_argument("--unlabeled", type=Path, help="folder of unlabeled DICOMs/images used while fine-tuning")
    semi.add_argument("--semi", choices=("fixmatch", "mixmatch"),
                      help="semi-supervised method (needs --unlabeled); fixmatch fits its step to the memory "
                           "available (logged): mu x --batch-size unlabeled images in one pass when they fit, else "
                           "a no-gradient pass for the weak views and fewer unlabeled images per step; override "
                           "with --semi-param weak_pass=joint|no_grad, unlabeled_batch=N or memory_fraction=F; "
                           "teacher=ema labels the weak views with a moving average of the weights (measured: ties)")
    semi.add_argument("--semi-param", action="append", metavar="KEY=VALUE",
                      help="a setting of the method instead of its default, e.g. lambda_u=10 or "
                           "mu=3; fixmatch's unlabeled_batch=N is used as given, unchecked, while mu is still capped "
                           "to the memory (repeat the flag for several; replaces the config file's semi_params)")
    track = train.add_argument_group("experiment tracking (pip install 'radiology[track]')")
    track.add_argument("--log", action="append", metavar="TRACKER",
                       help="log the run to tensorboard, mlflow and/or wandb (repeat the flag or give a comma list; "
                            "default none): offline, in --log-dir; nothing naming a patient or a folder is logged")
    track.add_argument("--log-dir", type=Path, help="folder of the trackers' files: runs/ (tensorboard --logdir "
                                                    "DIR/runs), mlruns/ (MLflow's local store), wandb/ (default --out)")
    train.add_argument("--config", type=Path, help="YAML/JSON file with the same keys; flags override it")
    train.add_argument("--pipeline", type=Path, help="preprocessing pipeline file (default: percentile, resize, pad)")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars and no progress messages "
                       "(without a terminal, bars are replaced by one line per epoch anyway)")


    pretrain = commands.add_parser("pretrain", help="self-supervised pretraining of a backbone on unlabeled images")
    pretrain.add_argument("--root", type=Path, required=True, help="folder of unlabeled DICOMs and/or images")
    pretrain.add_argument("--out", type=Path, required=True, help="backbone checkpoint to write (e.g. backbone.pt)")
    pretrain.add_argument("--method", choices=("simclr", "byol", "metadata"), default="simclr",
                          help="simclr (default), byol, or metadata: predict DICOM header fields")
    pretrain.add_argument("--fields", help="metadata: comma-separated header fields to predict (default: all that "
                                           "vary): body_part, view_position, modality, manufacturer, photometric")
    pretrain.add_argument("--arch", default="tf_efficientnet_lite0", help="timm backbone (default: the train default)")
    pretrain.add_argument("--pretrained", default="imagenet", help="starting weights: imagenet (default; offline for "
                          "tf_efficientnet_lite0/1/2, the timm hub for other archs) | none | PATH")
    pretrain.add_argument("--epochs", type=positive, default=10, help="default 10")
    pretrain.add_argument("--size", type=positive, default=224, help="input side in pixels (default 224)")
    pretrain.add_argument("--channels", type=int, choices=(1, 3), default=1)
    pretrain.add_argument("--batch-size", type=positive, default=64, help="images per step (default 64)")
    pretrain.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    pretrain.add_argument("--temperature", type=float, default=0.2, help="simclr: NT-Xent temperature (default 0.2)")
    pretrain.add_argument("--pipeline", type=Path, help="preprocessing pipeline file (default: percentile, resize, "
                                                        "pad; use the one you will train with)")
    pretrain.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    pretrain.add_argument("--cache", help="preprocessed-image cache folder, or 'none'")
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--overwrite", action="store_true", help="replace an existing --out checkpoint")
    pretrain.add_argument("-q", "--quiet", action="store_true", help="no progress bars")



_TRAIN_FLAGS = (
    "csv", "root", "folder", "image_cols", "label_cols", "multi_label", "group_col", "arch", "pretrained", "size",
    "channels", "epochs", "head_epochs", "lr", "batch_size", "seed", "loss", "sampler", "freeze_bn_stats",
    "valid_fraction", "folds", "refit", "mix", "workers", "cache", "lr_find", "resume", "overwrite", "pipeline", "out",
    "unlabeled", "semi", "skip_unreadable", "allow_outside_root", "log_dir",
)


def _key_values(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` strings as a dict; values read as JSON (numbers, true/false), else kept as text."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[key.strip()] = text
    return values


def run_train(args: argparse.Namespace) -> int:
    """Run ``radiology train`` with parsed arguments; returns the exit code."""
    with _progress_messages(quiet=args.quiet, verbose=getattr(args, "verbose", False)):
        logging.getLogger("radiology.train").info("loading torch, fastai and timm")
        from radiology.train import TrainConfig, train

        flags = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}
        if args.semi_param:
            flags["semi_params"] = _key_values(args.semi_param, "--semi-param")
        if args.log:
            flags["log"] = ",".join(args.log)
        config = TrainConfig.load(args.config, **flags) if args.config else TrainConfig.from_dict(flags)
        result = train(config, progress=not args.quiet)
    if not result.metrics:  # another process of a multi-GPU run; rank 0 reports
        return 0
    print(f"{'out-of-fold validation' if config.folds > 1 else 'validation'}: {headline(result.metrics)}")
    refit = json.loads((result.bundle / "train.json").read_text()).get("refit")
    if refit:  # the line above scored the model that chose the epoch; the bundle's has no held-out images
        print(f"refit: the bundle's model trained on all {refit['images']} training images for those epochs")
    print(f"bundle: {result.bundle}")
    return 0


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


@contextlib.contextmanager
def _progress_messages(*, quiet: bool, verbose: bool):
    """The training's progress messages (``radiology.train`` at INFO) on stdout as plain lines, beside fastai's table.

    Warnings keep the form and the stream (stderr) of every command's; ``--quiet`` keeps only
    them, ``--verbose`` adds the debug messages.
    """
    log = logging.getLogger("radiology.train")
    messages = logging.StreamHandler(sys.stdout)
    messages.setFormatter(logging.Formatter("%(message)s"))
    messages.addFilter(_BelowWarning())
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    warnings.setLevel(logging.WARNING)
    before = log.level, log.propagate
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    log.propagate = False  # the root's handler would print them a second time
    log.addHandler(messages)
    log.addHandler(warnings)
    try:
        yield
    finally:
        log.removeHandler(messages)
        log.removeHandler(warnings)
        log.setLevel(before[0])
        log.propagate = before[1]


def run_pretrain(args: argparse.Namespace) -> int:
    """Run ``radiology pretrain`` with parsed arguments; returns the exit code."""
    from radiology.pipeline import Pipeline
    from radiology.ssl import pretrain

    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip()) if args.fields else None
    pipeline = Pipeline.load(args.pipeline) if args.pipeline else None
    result = pretrain(args.root, args.out, method=args.method, arch=args.arch,
                      pretrained=None if args.pretrained.lower() == "none" else args.pretrained,
                      channels=args.channels, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, temperature=args.temperature, fields=fields, pipeline=pipeline,
                      workers=args.workers, cache=args.cache, seed=args.seed, overwrite=args.overwrite,
                      progress=not args.quiet)
    last = result.history[-1]
    print(f"{result.images} images ({len(result.skipped)} unreadable, left out), {len(result.history)} epochs: "
          f"train loss {last['train_loss']:.4f}, valid loss {last['valid_loss']:.4f}")
    if args.method == "metadata":
        accuracy = ", ".join(f"{k} {v:.3f}" for k, v in result.info["valid_accuracy"].items() if v is not None)
        print(f"header fields {', '.join(result.info['fields'])}; validation accuracy: {accuracy or 'n/a'}")
    print(f"backbone: {result.checkpoint} (train with --pretrained {result.checkpoint} --arch {args.arch})")
    return 0
