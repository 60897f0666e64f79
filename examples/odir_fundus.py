"""ODIR-5K: eight diagnoses from a patient's two fundus photographs (dual-view, multi-label, colour).

Data layout (ODIR-5K, one row per patient, as ``../shared/data/fundus/odir``)::

    ROOT/labels.csv    patient,left,right,N,D,G,C,A,H,M,O,...
                       (left/right: photograph paths relative to ROOT; N...O: 0/1 patient-level labels)
    ROOT/images/...    the colour photographs

The two eyes are two views of one sample (``image_cols=("left", "right")``: one shared
backbone, features concatenated), in colour (``channels=3``), with one sigmoid output per
diagnosis (``multi_label``; the loss is BCE with per-label positive weights, the training
default for multi-label). Per-label decision thresholds are tuned on the validation split
during training and stored in the bundle.

Steps: a test set of patients is split off first (stratified by each patient's rarest
label); the model is trained on the other patients only (its own validation split is carved
from them); the bundle predicts the unseen test patients; they are scored with the ODIR-5K
challenge score (``radiology.train.metrics.odir_score``: kappa, F1 and AUC of the flattened
matrices at p > 0.5) beside the macro and per-label AUC. Written to OUT: ``pipeline.json``,
``bundle/``, ``predictions.csv``, ``test_evaluation/``.

Usage::

    python examples/odir_fundus.py ROOT [--out OUT]   # full data, the CLI's defaults (224 px, 3 epochs)
    python examples/odir_fundus.py --quick            # ../shared/data/fundus/odir: 200 patients,
                                                      # 128 px, 1 epoch (a few minutes on a 2-core CPU)

Rare labels (G, C, A, H, M: 3-6 % of patients) have only a handful of test positives in the
quick subset: their AUCs are very noisy there, or undefined (n/a) without a positive.
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
from radiology.pipeline import Decode, Pipeline
from radiology.train import TrainConfig, default_pipeline, evaluate_predictions, predict_table, prediction_inputs, train
from radiology.train.metrics import odir_score

# ../shared/data beside the repository (RADIOLOGY_SHARED_DATA overrides it, as in the tests).
SHARED = Path(os.environ.get("RADIOLOGY_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
VIEWS = ("left", "right")
LABELS = ("N", "D", "G", "C", "A", "H", "M", "O")
PATIENT = "patient"
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_PATIENTS = 200


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, nargs="?", help="folder with labels.csv (default with --quick: "
                                                           "../shared/data/fundus/odir)")
    parser.add_argument("--out", type=Path, default=Path("out/examples/odir"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small, fast run on a subset (CI)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of patients held out for testing")
    parser.add_argument("--epochs", type=int, help="fine-tuning epochs (default: 3, quick: 1)")
    parser.add_argument("--size", type=int, help="input side in pixels (default: 224, quick: 128)")
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
    """About ``count`` samples of whole patients, label proportions kept (one stratified, grouped fold).

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
    """A metric for printing (``n/a`` when undefined, e.g. an AUC without a positive)."""
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.3f}"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root or (SHARED / "fundus" / "odir" if args.quick else None)
    if root is None:
        raise SystemExit("give ROOT (a folder with labels.csv), or --quick for ../shared/data/fundus/odir")
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

    table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)[[PATIENT, *VIEWS, *LABELS]]
    table[PATIENT] = anonymous_groups(table[PATIENT])
    items = from_csv(table, root, VIEWS, LABELS, multi_label=True, group_col=PATIENT, progress=not args.quiet)
    if args.quick and len(table) > QUICK_PATIENTS:
        keep = patient_subset(items.targets, items.groups, QUICK_PATIENTS, seed=args.seed)
        print(f"quick mode: a subset of {len(keep)} of {len(table)} patients (both eyes each), "
              f"{QUICK['size']} px, {QUICK['epochs']} fine-tuning epoch")
        table, items = table.iloc[keep].reset_index(drop=True), items.subset(keep)

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test = train_valid_split(items.targets, items.groups, valid_fraction=args.test_fraction, seed=args.seed)
    train_csv, test_csv = out / "train.csv", out / "test.csv"
    table.iloc[rest].to_csv(train_csv, index=False)
    table.iloc[test][[*VIEWS, *LABELS]].to_csv(test_csv, index=False)
    print(f"{len(rest)} patients for training, {len(test)} held-out test patients")

    settings = dict(QUICK) if args.quick else {"workers": args.workers}
    settings.update({k: v for k, v in (("epochs", args.epochs), ("size", args.size)) if v is not None})
    # Colour photographs: the default preprocessing (percentile, resize, pad) with colour kept;
    # without Decode(color="keep") every image would be read as gray.
    pipeline = Pipeline(default_pipeline(settings.get("size", 224)).steps, decode=Decode(color="keep"))
    pipeline.save(out / "pipeline.json")
    config = TrainConfig(csv=train_csv, root=root, image_cols=VIEWS, label_cols=LABELS, multi_label=True,
                         group_col=PATIENT, channels=3, pipeline=out / "pipeline.json", out=out / "bundle",
                         seed=args.seed, **settings)
    print(f"loss: {config.loss_name} with per-label positive weights; views {', '.join(VIEWS)}; 3 channels")
    result = train(config, progress=not args.quiet)

    bundle = load_bundle(result.bundle)
    predictions = predict_table(bundle, prediction_inputs(test_csv, root=root, image_cols=VIEWS),
                                progress=not args.quiet)
    predictions.to_csv(out / "predictions.csv", index=False)
    metrics = evaluate_predictions(predictions, test_csv, image_cols=VIEWS, label_cols=LABELS, multi_label=True,
                                   thresholds=bundle.thresholds, out=out / "test_evaluation")
    # The challenge's score, straight from the two matrices (predict_table keeps the CSV's row order).
    truth = pd.read_csv(test_csv)[list(LABELS)].to_numpy(np.float32)
    odir = odir_score(truth, predictions[[f"prob_{name}" for name in LABELS]].to_numpy())

    print("label  positives    AUC  threshold")
    for name, threshold in zip(LABELS, bundle.thresholds):
        print(f"{name:>5}  {metrics['support'][name]:9d}  {fmt(metrics['auc'][name]):>5}  {threshold:9.2f}")
    print(f"metrics, report and ROC curves: {out / 'test_evaluation'}")
    print(f"held-out test ({metrics['n']} unseen patients): ODIR score {fmt(odir['score'])} "
          f"(kappa {fmt(odir['kappa'])}, F1 {fmt(odir['f1'])}, AUC {fmt(odir['auc'])}), "
          f"macro AUC {fmt(metrics['macro_auc'])}, micro F1 at the tuned thresholds {fmt(metrics['micro_f1'])} "
          f"[{time.time() - started:.0f} s]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
