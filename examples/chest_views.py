"""Chest radiograph view (PA / AP / AP supine) from the image, scored on held-out patients.

The acquisition view in PACS headers is often wrong or missing; this trains a 3-class
classifier that reads it from the pixels.

Data layout (as ``../shared/data/chest_xray_views``, from the COVID-19 chest X-ray lung box set)::

    ROOT/labels.csv    file,patientid,view,...   (file relative to ROOT; view PA, AP or AP_SUPINE)
    ROOT/images/...    the radiographs (JPEG/PNG, or DICOM)

Steps: a test set of patients is split off first (stratified, grouped by ``patientid``); the
model is trained on the other patients only (``radiology.train.train``: offline ImageNet
``tf_efficientnet_lite0``, head on frozen features, then fine-tuning; its own validation split
is carved from the training patients); the bundle then predicts the unseen test patients and
``evaluate_predictions`` scores them. Written to OUT: ``bundle/``, ``predictions.csv`` (no
patient ids), ``test_evaluation/`` (``metrics.json``, ``report.txt``, ``confusion_matrix.png``,
``roc.png``). Report balanced accuracy: the classes are unequal (PA is the most common).

Usage::

    python examples/chest_views.py ROOT [--out OUT]   # full data, the CLI's defaults (224 px, 3 epochs)
    python examples/chest_views.py --quick            # ../shared/data/chest_xray_views: all 410 images,
                                                      # 160 px, 1 epoch (a few minutes on a 2-core CPU)

The same run with the command line: ``radiology train --csv train.csv --image-col file
--label-col view --group-col patientid --out bundle``, ``radiology predict bundle test.csv
--image-col file --out predictions.csv``, ``radiology evaluate --predictions predictions.csv
--labels test.csv --image-col file --label-col view --out test_evaluation``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from radiology.data import from_csv, kfold_splits, train_valid_split
from radiology.models import load_bundle
from radiology.train import TrainConfig, evaluate_predictions, predict_table, prediction_inputs, train

# ../shared/data beside the repository (RADIOLOGY_SHARED_DATA overrides it, as in the tests).
SHARED = Path(os.environ.get("RADIOLOGY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
IMAGE, LABEL, PATIENT = "file", "view", "patientid"
QUICK = {"size": 160, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_IMAGES = 410


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", help="folder with labels.csv (default with --quick: "
                                                           "../shared/data/chest_xray_views)")
    parser.add_argument("--out", type=Path, default=Path("out/examples/chest_views"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small, fast run on a subset (CI)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of patients held out for testing")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: 3, quick: 1)")
    parser.add_argument("--size", type=int, help="input side in pixels (default: 224, quick: 160)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (quick default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return parser


def shown(path: Path) -> str:
    """A path as the user would type it from the current folder."""
    return os.path.relpath(path)


def anonymous_groups(patients) -> np.ndarray:
    """Patient ids replaced by opaque group numbers: the split files written below never hold an id."""
    codes, _ = pd.factorize(pd.Series(patients, dtype=str))
    return np.array([f"g{code}" for code in codes])


def patient_subset(targets, groups, count: int, seed: int = 0) -> np.ndarray:
    """About ``count`` samples of whole patients, class proportions kept (one stratified, grouped fold).

    With k folds of the data, one fold holds about 1/k of it: keep one fold when ``count`` is
    under half the data, else drop one.
    """
    n = len(targets)
    if count >= n:
        return np.arange(n)
    keep_fold = count <= n / 2
    k = max(2, round(n / count) if keep_fold else round(n / (n - count)))
    rest, fold = kfold_splits(targets, groups, n_splits=k, seed=seed)[0]
    return fold if keep_fold else rest


def fmt(value) -> str:
    """A metric for printing (``n/a`` when undefined, e.g. an AUC with one class present)."""
    return "n/a" if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root or (SHARED / "chest_xray_views" if args.quick else None)
    if root is None:
        raise SystemExit("give ROOT (a folder with labels.csv), or --quick for ../shared/data/chest_xray_views")
    labels_csv = root / "labels.csv"
    if not labels_csv.is_file():
        if args.quick:
            print(f"skipped: {shown(labels_csv)} not found")
            return 0
        raise SystemExit(f"{labels_csv}: not found")
    torch.set_num_threads(args.threads or (2 if args.quick else torch.get_num_threads()))
    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)[[IMAGE, LABEL, PATIENT]]
    table[PATIENT] = anonymous_groups(table[PATIENT])
    items = from_csv(table, root, IMAGE, LABEL, group_col=PATIENT, progress=not args.quiet)
    if args.quick and len(table) > QUICK_IMAGES:
        keep = patient_subset(items.targets, items.groups, QUICK_IMAGES, seed=args.seed)
        print(f"quick mode: a subset of {len(keep)} of {len(table)} images (whole patients), "
              f"{QUICK['size']} px, {QUICK['epochs']} fine-tuning epoch")
        table, items = table.iloc[keep].reset_index(drop=True), items.subset(keep)

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test = train_valid_split(items.targets, items.groups, valid_fraction=args.test_fraction, seed=args.seed)
    train_csv, test_csv = out / "train.csv", out / "test.csv"
    table.iloc[rest].to_csv(train_csv, index=False)
    table.iloc[test][[IMAGE, LABEL]].to_csv(test_csv, index=False)
    print(f"{len(rest)} images for training (patients grouped), {len(test)} held-out test images "
          f"from {len(set(items.groups[test]))} other patients")

    settings = dict(QUICK) if args.quick else {"workers": args.workers}
    settings.update({k: v for k, v in (("epochs", args.epochs), ("size", args.size)) if v is not None})
    config = TrainConfig(csv=train_csv, root=root, image_cols=IMAGE, label_cols=LABEL, group_col=PATIENT,
                         out=out / "bundle", seed=args.seed, **settings)
    result = train(config, progress=not args.quiet)

    bundle = load_bundle(result.bundle)
    predictions = predict_table(bundle, prediction_inputs(test_csv, root=root, image_cols=IMAGE),
                                progress=not args.quiet)
    predictions.to_csv(out / "predictions.csv", index=False)
    metrics = evaluate_predictions(predictions, test_csv, image_cols=IMAGE, label_cols=LABEL,
                                   out=out / "test_evaluation")

    print((out / "test_evaluation" / "report.txt").read_text())
    print(f"metrics, report and plots: {out / 'test_evaluation'}")
    print(f"held-out test ({metrics['n']} images of unseen patients): accuracy {fmt(metrics['accuracy'])}, "
          f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, macro AUC {fmt(metrics['macro_auc'])} "
          f"[{time.time() - started:.0f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
