"""Chest findings, multi-label, in the NIH ChestX-ray14 layout: DenseNet-121, per-label AUC on held-out patients.

Data: NIH ChestX-ray14 of Wang et al., "ChestX-ray8: Hospital-scale Chest X-ray Database and
Benchmarks on Weakly-Supervised Classification and Localization of Common Thorax Diseases",
CVPR 2017; distributed by the NIH Clinical Center (https://nihcc.app.box.com/v/ChestXray-NIHCC;
no restriction on use, cite the paper and acknowledge the NIH Clinical Center) and copied to
Kaggle (``nih-chest-xrays/data``). ``--data`` is the download as shipped, the images unpacked::

    ROOT/Data_Entry_2017.csv   Image Index,Finding Labels,Follow-up #,Patient ID,...
                               (Finding Labels: "A|B" or "No Finding")
    ROOT/images/<Image Index>  the PNGs; or anywhere below ROOT (Kaggle: images_001/images/...)

The patient is ``Patient ID`` (replaced by opaque groups before anything is written); rows
whose image is not found below ROOT are left out (counted).

"No Finding" is the empty label set (all outputs 0), not a class of its own. The model is a
``densenet121`` (the CheXNet backbone) with one sigmoid output per finding; the loss is BCE
with per-label positive weights (negatives / positives of the training split), which
``radiology.train.train`` uses by default for multi-label data.

Weights: no ImageNet weights for densenet121 exist offline here, so the default is
``--pretrained none`` (trained from scratch: one learning rate for the whole network and no
head-only phase, which would fit a head on random features). Give ``--pretrained PATH``
(a checkpoint, e.g. from ``radiology.ssl``, or a timm state dict) or ``--pretrained imagenet``
with network access to fine-tune instead.

Steps: a test set of patients is split off first (grouped by ``Patient ID``, stratified by
each image's rarest finding); the model is trained on the other patients only (its own
validation split is carved from them, and per-label thresholds are tuned there); the bundle
predicts the unseen test patients and ``evaluate_predictions`` scores them: per-label and
macro AUC. Written to OUT: ``bundle/``, ``predictions.csv``, ``test_evaluation/``.

Usage::

    python examples/chest_findings_nih.py --data ROOT [--out OUT]   # the real set: 224 px, 5 epochs; use a GPU
    python examples/chest_findings_nih.py --data ROOT --quick       # a 240-image subset (whole patients), 64 px
    python examples/chest_findings_nih.py --quick                   # SYNTHETIC miniature (120 images, 3 epochs,
                                                                    # CPU-sized; CI)

``--quick`` alone writes synthetic phantoms with drawn nodules, effusions and enlarged hearts in
the NIH layout under ``OUT/miniature`` (``radiology.synthetic.write_findings_dataset``) and runs
the same code on them. Its numbers say nothing about real radiographs.
"""

from __future__ import annotations

import time
from pathlib import Path

import _common as common
import pandas as pd
from _miniature import write_nih

from radiology.data import from_csv
from radiology.io import IMAGE_SUFFIXES
from radiology.train import TrainConfig

TABLE = "Data_Entry_2017.csv"
IMAGE, FINDINGS, PATIENT = "Image Index", "Finding Labels", "Patient ID"
NO_FINDING = "No Finding"
SYNTHETIC_FINDINGS = ("nodule", "effusion", "cardiomegaly")
QUICK = {"size": 64, "epochs": 8, "workers": 0, "batch_size": 32}
QUICK_IMAGES = 240
# --quick without --data: a smaller miniature, fewer epochs (densenet121 from scratch is slow on a CPU).
QUICK_SYNTHETIC = {"size": 64, "epochs": 3, "workers": 0, "batch_size": 32}
MINIATURE_IMAGES = 120
WHAT = f"NIH ChestX-ray14 as shipped: a folder with {TABLE} and the images below it"


def build_parser():
    parser = common.new_parser(__doc__)
    common.add_data_arguments(parser, layout=WHAT, out="out/examples/chest_findings")
    parser.add_argument("--arch", default="densenet121", help="timm backbone (default densenet121)")
    parser.add_argument("--pretrained", default="none", help="none (default) | PATH | imagenet (needs the timm hub)")
    common.add_training_arguments(parser, epochs_help="training epochs (default: 5, quick: 8, synthetic quick: 3)",
                                  size_help="input side in pixels (default: 224, quick: 64)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 32)")
    common.add_run_arguments(parser)
    return parser


def image_paths(root: Path, names) -> list[str | None]:
    """Each ``Image Index`` as a path relative to ROOT: ``images/<name>``, else found anywhere below ROOT."""
    if all((root / "images" / name).is_file() for name in names):
        return [f"images/{name}" for name in names]
    found = {p.name: p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    return [found.get(name) for name in names]


def show(value) -> str:
    """A metric for printing (``n/a`` when undefined, e.g. an AUC without a positive)."""
    return common.fmt(value, nan_as_na=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out
    synthetic = common.is_synthetic(args)
    quick = QUICK_SYNTHETIC if synthetic else QUICK
    root = common.data_root(args, lambda folder, seed: write_nih(folder, seed, count=MINIATURE_IMAGES,
                                                                 findings=SYNTHETIC_FINDINGS), what=WHAT)
    if synthetic:
        print(f"{MINIATURE_IMAGES} phantoms with {', '.join(SYNTHETIC_FINDINGS)} drawn in, {quick['size']} px, "
              f"{quick['epochs']} epochs")
    if not (root / TABLE).is_file():
        raise SystemExit(f"--data {root}: {TABLE} not found (expected {WHAT})")
    common.set_threads(args)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)

    table = pd.read_csv(root / TABLE, dtype=str, keep_default_na=False)
    data = pd.DataFrame({
        "file": image_paths(root, table[IMAGE].str.strip()),
        # "No Finding" is the empty label set: an empty cell, no label on.
        "findings": ["" if v.strip() == NO_FINDING else v.strip() for v in table[FINDINGS]],
        "patient": common.anonymous_groups(table[PATIENT]),
    })
    missing = data["file"].isna()
    if missing.all():
        raise SystemExit(f"--data {root}: none of the {len(data)} images of {TABLE} found below it")
    if missing.any():
        print(f"{int(missing.sum())} of {len(data)} images of {TABLE} not found below --data: left out")
        data = data[~missing].reset_index(drop=True)
    items = from_csv(data, root, "file", "findings", multi_label=True, group_col="patient", progress=not args.quiet)
    if args.quick and not synthetic:
        data, items = common.quick_subset(data, items, QUICK_IMAGES, args.seed, "images (whole patients)", QUICK)
    counts = {name: int(n) for name, n in zip(items.classes, items.targets.sum(axis=0))}
    print(f"{len(items)} images, {len(set(items.groups))} patients, {int((items.targets.sum(1) == 0).sum())} "
          f"without a finding; positives per finding: {counts}")

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test, train_csv, test_csv = common.write_test_split(data, items.targets, items.groups, out,
                                                              ["file", "findings"], test_fraction=args.test_fraction,
                                                              seed=args.seed)
    print(f"{len(rest)} images for training, {len(test)} held-out test images from "
          f"{len(set(items.groups[test]))} other patients")

    settings = common.train_settings(args, quick, keys=("epochs", "size", "batch_size"))
    pretrained = None if args.pretrained.lower() == "none" else args.pretrained
    if pretrained is None:
        # From scratch: no head-only phase on random features, and the backbone learns at the head's rate.
        settings.update(head_epochs=0, lr_mult=1.0)
    config = TrainConfig(csv=train_csv, root=root, image_cols="file", label_cols="findings", multi_label=True,
                         group_col="patient", arch=args.arch, pretrained=pretrained, out=out / "bundle",
                         overwrite=True, seed=args.seed, **settings)
    print(f"{config.arch}, pretrained: {config.pretrained or 'none (from scratch)'}; loss: {config.loss_name} "
          f"with per-label positive weights")
    bundle, _, metrics = common.train_predict_evaluate(config, test_csv, root, out, image_cols="file",
                                                       label_cols="findings", quiet=args.quiet, multi_label=True,
                                                       tuned_thresholds=True)

    print("finding        positives    AUC     F1  threshold")
    for name, threshold in zip(bundle.classes, bundle.thresholds):
        print(f"{name:<14} {metrics['support'][name]:9d}  {show(metrics['auc'][name]):>5}  "
              f"{show(metrics['f1'][name]):>5}  {threshold:9.2f}")
    print(f"metrics, report and ROC curves: {common.shown(out / 'test_evaluation')}")
    kind = "SYNTHETIC phantoms: the numbers mean nothing" if synthetic else "images of unseen patients"
    print(f"held-out test ({metrics['n']} {kind}): macro AUC {show(metrics['macro_auc'])}, "
          f"micro F1 {show(metrics['micro_f1'])} {common.elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
