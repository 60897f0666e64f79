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
challenge score (``radiology.evaluate.odir_score``: kappa, F1 and AUC of the flattened
matrices at p > 0.5) beside the macro and per-label AUC. Written to OUT: ``pipeline.json``,
``bundle/``, ``predictions.csv``, ``test_evaluation/``.

Usage::

    python examples/odir_fundus.py ROOT [--out OUT]   # full data, the CLI's defaults (224 px, 5 epochs)
    python examples/odir_fundus.py --quick            # ../shared/data/fundus/odir: 200 patients,
                                                      # 128 px, 1 epoch (a few minutes on a 2-core CPU)

Rare labels (G, C, A, H, M: 3-6 % of patients) have only a handful of test positives in the
quick subset: their AUCs are very noisy there, or undefined (n/a) without a positive.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from _common import (
    anonymous_groups,
    elapsed,
    fmt,
    labels_parser,
    labels_root,
    quick_subset,
    set_threads,
    train_predict_evaluate,
    train_settings,
    write_test_split,
)

from radiology.data import from_csv
from radiology.evaluate import odir_score
from radiology.pipeline import Decode, Pipeline, default_pipeline
from radiology.train import TrainConfig

VIEWS = ("left", "right")
LABELS = ("N", "D", "G", "C", "A", "H", "M", "O")
PATIENT = "patient"
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_PATIENTS = 200


def build_parser():
    return labels_parser(__doc__, "fundus/odir", "out/examples/odir", QUICK["size"])


def show(value) -> str:
    """A metric for printing (``n/a`` when undefined, e.g. an AUC without a positive)."""
    return fmt(value, nan_as_na=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = labels_root(args, "fundus/odir")
    if root is None:
        return 0
    set_threads(args)
    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)[[PATIENT, *VIEWS, *LABELS]]
    table[PATIENT] = anonymous_groups(table[PATIENT])
    items = from_csv(table, root, VIEWS, LABELS, multi_label=True, group_col=PATIENT, progress=not args.quiet)
    if args.quick:
        table, items = quick_subset(table, items, QUICK_PATIENTS, args.seed, "patients (both eyes each)", QUICK)

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test, train_csv, test_csv = write_test_split(table, items.targets, items.groups, out, [*VIEWS, *LABELS],
                                                       test_fraction=args.test_fraction, seed=args.seed)
    print(f"{len(rest)} patients for training, {len(test)} held-out test patients")

    settings = train_settings(args, QUICK)
    # Colour photographs: the default preprocessing (percentile, resize, pad) with colour kept;
    # without Decode(color="keep") every image would be read as gray.
    pipeline = Pipeline(default_pipeline(settings.get("size", 224)).steps, decode=Decode(color="keep"))
    pipeline.save(out / "pipeline.json")
    config = TrainConfig(csv=train_csv, root=root, image_cols=VIEWS, label_cols=LABELS, multi_label=True,
                         group_col=PATIENT, channels=3, pipeline=out / "pipeline.json", out=out / "bundle",
                         overwrite=True, seed=args.seed, **settings)
    print(f"loss: {config.loss_name} with per-label positive weights; views {', '.join(VIEWS)}; 3 channels")
    bundle, predictions, metrics = train_predict_evaluate(config, test_csv, root, out, image_cols=VIEWS,
                                                          label_cols=LABELS, quiet=args.quiet, multi_label=True,
                                                          tuned_thresholds=True)
    # The challenge's score, straight from the two matrices (predict_table keeps the CSV's row order).
    truth = pd.read_csv(test_csv)[list(LABELS)].to_numpy(np.float32)
    odir = odir_score(truth, predictions[[f"prob_{name}" for name in LABELS]].to_numpy())

    print("label  positives    AUC  threshold")
    for name, threshold in zip(LABELS, bundle.thresholds):
        print(f"{name:>5}  {metrics['support'][name]:9d}  {show(metrics['auc'][name]):>5}  {threshold:9.2f}")
    print(f"metrics, report and ROC curves: {out / 'test_evaluation'}")
    print(f"held-out test ({metrics['n']} unseen patients): ODIR score {show(odir['score'])} "
          f"(kappa {show(odir['kappa'])}, F1 {show(odir['f1'])}, AUC {show(odir['auc'])}), "
          f"macro AUC {show(metrics['macro_auc'])}, micro F1 at the tuned thresholds {show(metrics['micro_f1'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
