"""Chest findings, multi-label, in the NIH ChestX-ray14 layout: DenseNet-121, per-label AUC on held-out patients.

Data layout (NIH ChestX-ray14 as distributed: the NIH box folder or the Kaggle copy)::

    ROOT/Data_Entry_2017.csv   Image Index,Finding Labels,Follow-up #,Patient ID,...
                               (Finding Labels: "A|B" or "No Finding")
    ROOT/images/<Image Index>  the PNGs; or anywhere below ROOT (Kaggle: images_001/images/...)

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

    python examples/chest_findings_nih.py ROOT [--out OUT]   # the real set: 224 px, 3 epochs; use a GPU
    python examples/chest_findings_nih.py --quick            # SYNTHETIC phantoms, CPU-sized

No real chest-findings set is available offline: ``--quick`` writes synthetic phantoms with
drawn nodules, effusions and enlarged hearts in the NIH layout
(``radiology.synthetic.write_findings_dataset``) and runs the same code on them. Its numbers
say nothing about real radiographs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from radiology.data import from_csv, train_valid_split
from radiology.io import IMAGE_SUFFIXES
from radiology.models import load_bundle
from radiology.synthetic import write_findings_dataset
from radiology.train import TrainConfig, evaluate_predictions, predict_table, prediction_inputs, train

TABLE = "Data_Entry_2017.csv"
IMAGE, FINDINGS, PATIENT = "Image Index", "Finding Labels", "Patient ID"
NO_FINDING = "No Finding"
SYNTHETIC_FINDINGS = ("nodule", "effusion", "cardiomegaly")
QUICK = {"size": 64, "epochs": 8, "workers": 0, "batch_size": 32}
QUICK_IMAGES = 240


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", help=f"folder with {TABLE} and the images")
    parser.add_argument("--out", type=Path, default=Path("out/examples/chest_findings"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small, fast run on SYNTHETIC phantoms (CI)")
    parser.add_argument("--arch", default="densenet121", help="timm backbone (default densenet121)")
    parser.add_argument("--pretrained", default="none", help="none (default) | PATH | imagenet (needs the timm hub)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of patients held out for testing")
    parser.add_argument("--epochs", type=int, help="training epochs (default: 3, quick: 8)")
    parser.add_argument("--size", type=int, help="input side in pixels (default: 224, quick: 64)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 32)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (quick default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def anonymous_groups(patients) -> np.ndarray:
    """Patient ids replaced by opaque group numbers: the split files written below never hold an id."""
    codes, _ = pd.factorize(pd.Series(patients, dtype=str))
    return np.array([f"g{code}" for code in codes])


def image_paths(root: Path, names) -> list[str | None]:
    """Each ``Image Index`` as a path relative to ROOT: ``images/<name>``, else found anywhere below ROOT."""
    if all((root / "images" / name).is_file() for name in names):
        return [f"images/{name}" for name in names]
    found = {p.name: p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()}
    return [found.get(name) for name in names]


def fmt(value) -> str:
    """A metric for printing (``n/a`` when undefined, e.g. an AUC without a positive)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out
    if args.quick and args.root is None:
        out.mkdir(parents=True, exist_ok=True)
        print(f"quick mode: SYNTHETIC phantoms, not patients ({QUICK_IMAGES} images with "
              f"{', '.join(SYNTHETIC_FINDINGS)} drawn in; radiology.synthetic), {QUICK['size']} px, "
              f"{QUICK['epochs']} epochs. The numbers below say nothing about real radiographs.")
        root = write_findings_dataset(out / "synthetic", QUICK_IMAGES, findings=SYNTHETIC_FINDINGS, fmt="png",
                                      seed=args.seed + 1).parent
    elif args.root is None:
        raise SystemExit(f"give ROOT (a folder with {TABLE}), or --quick for a synthetic run")
    else:
        root = args.root
    if not (root / TABLE).is_file():
        raise SystemExit(f"{root / TABLE}: not found")
    torch.set_num_threads(args.threads or (2 if args.quick else torch.get_num_threads()))
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)

    table = pd.read_csv(root / TABLE, dtype=str, keep_default_na=False)
    data = pd.DataFrame({
        "file": image_paths(root, table[IMAGE].str.strip()),
        # "No Finding" is the empty label set: an empty cell, no label on.
        "findings": ["" if v.strip() == NO_FINDING else v.strip() for v in table[FINDINGS]],
        "patient": anonymous_groups(table[PATIENT]),
    })
    missing = data["file"].isna()
    if missing.all():
        raise SystemExit(f"{root}: none of the {len(data)} images of {TABLE} found below it")
    if missing.any():
        print(f"{int(missing.sum())} of {len(data)} images of {TABLE} not found below {root}: left out")
        data = data[~missing].reset_index(drop=True)
    items = from_csv(data, root, "file", "findings", multi_label=True, group_col="patient", progress=not args.quiet)
    counts = {name: int(n) for name, n in zip(items.classes, items.targets.sum(axis=0))}
    print(f"{len(items)} images, {len(set(items.groups))} patients, {int((items.targets.sum(1) == 0).sum())} "
          f"without a finding; positives per finding: {counts}")

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test = train_valid_split(items.targets, items.groups, valid_fraction=args.test_fraction, seed=args.seed)
    train_csv, test_csv = out / "train.csv", out / "test.csv"
    data.iloc[rest].to_csv(train_csv, index=False)
    data.iloc[test][["file", "findings"]].to_csv(test_csv, index=False)
    print(f"{len(rest)} images for training, {len(test)} held-out test images from "
          f"{len(set(items.groups[test]))} other patients")

    settings = dict(QUICK) if args.quick else {"workers": args.workers}
    for key, value in (("epochs", args.epochs), ("size", args.size), ("batch_size", args.batch_size)):
        if value is not None:
            settings[key] = value
    pretrained = None if args.pretrained.lower() == "none" else args.pretrained
    if pretrained is None:
        # From scratch: no head-only phase on random features, and the backbone learns at the head's rate.
        settings.update(head_epochs=0, lr_mult=1.0)
    config = TrainConfig(csv=train_csv, root=root, image_cols="file", label_cols="findings", multi_label=True,
                         group_col="patient", arch=args.arch, pretrained=pretrained, out=out / "bundle",
                         seed=args.seed, **settings)
    print(f"{config.arch}, pretrained: {config.pretrained or 'none (from scratch)'}; loss: {config.loss_name} "
          f"with per-label positive weights")
    result = train(config, progress=not args.quiet)

    bundle = load_bundle(result.bundle)
    predictions = predict_table(bundle, prediction_inputs(test_csv, root=root, image_cols="file"),
                                progress=not args.quiet)
    predictions.to_csv(out / "predictions.csv", index=False)
    metrics = evaluate_predictions(predictions, test_csv, image_cols="file", label_cols="findings",
                                   multi_label=True, thresholds=bundle.thresholds, out=out / "test_evaluation")

    print("finding        positives    AUC     F1  threshold")
    for name, threshold in zip(bundle.classes, bundle.thresholds):
        print(f"{name:<14} {metrics['support'][name]:9d}  {fmt(metrics['auc'][name]):>5}  "
              f"{fmt(metrics['f1'][name]):>5}  {threshold:9.2f}")
    print(f"metrics, report and ROC curves: {out / 'test_evaluation'}")
    kind = "SYNTHETIC phantoms" if args.quick and args.root is None else "images of unseen patients"
    print(f"held-out test ({metrics['n']} {kind}): macro AUC {fmt(metrics['macro_auc'])}, "
          f"micro F1 {fmt(metrics['micro_f1'])} [{time.time() - started:.0f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
