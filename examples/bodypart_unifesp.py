"""Body part from DICOM in the Kaggle UNIFESP layout: held-out score, then a Kaggle submission.

Data: the "UNIFESP X-ray Body Part Classifier Competition" (Kaggle, Universidade Federal de Sao
Paulo, https://www.kaggle.com/competitions/unifesp-x-ray-body-part-classifier; the competition's
rules govern the images: research and benchmarking only, do not redistribute). Give its folder,
as Kaggle ships it, with ``--data`` (only read, never written to)::

    ROOT/train/<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm
    ROOT/train.csv               SOPInstanceUID,Target   (Target: UNIFESP code 0-21, e.g. 3 = Chest)
    ROOT/test/<...>/<uid>.dcm    optional: the images to submit predictions for
    ROOT/sample_submission.csv   optional: the submission's UIDs and row order
    ROOT/test_labels.csv         optional (not from Kaggle): true test targets (SOPInstanceUID,Target),
                                 to score the submission

Patient groups: the DICOM PatientID of each file (the competition's anonymized id), or
``--patients CSV`` with ``SOPInstanceUID`` and ``patient`` columns.

The DICOMs are read directly (decoded, MONOCHROME1 inverted, percentile-normalized, resized
and cached by the bundle's pipeline): no PNG conversion is needed. Rows with several targets
(``"13 20"``) are left out: this example predicts one body part per image.

Steps:

1. Held-out estimate: a test set of patients is split off ``train.csv`` first (stratified,
   grouped by patient); a model is trained on the other patients only (its own validation
   split is carved from them); it predicts the unseen test patients, scored with accuracy,
   balanced accuracy and per-class recall (several body parts have only a few images).
2. Submission: a model trained on every labelled image predicts ``ROOT/test`` and writes
   ``OUT/submission.csv`` (``SOPInstanceUID,Target``, the Kaggle format, via
   ``kaggle_submission``), scored against ``test_labels.csv`` when there is one.
3. ``--convert``: also convert ``ROOT/train`` to 512-wide PNGs named by UID
   (``OUT/png/train/<uid>.png``), with the conversion report and a non-PHI metadata table,
   and check that every labelled image was converted.

Usage::

    python examples/bodypart_unifesp.py --data ROOT [--out OUT] [--convert]   # CLI defaults (224 px, 5 epochs)
    python examples/bodypart_unifesp.py --quick --data ROOT   # the same on at most 240 images, 128 px, 1 epoch
    python examples/bodypart_unifesp.py --data ROOT --folds 5 # 5 fold models per step, submitted as their mean
    python examples/bodypart_unifesp.py --quick               # no data needed: a miniature Kaggle layout
                                                              # (train/, train.csv, test/, sample_submission.csv)
                                                              # of SYNTHETIC phantoms, 3 classes (chest, knee,
                                                              # skull); 64 px. Its numbers mean nothing.

``--quick --data ../shared/data/unifesp_layout`` runs on the project's real-radiograph fixture
(chest and knee only). Step 2 with the command line: ``radiology train --csv ROOT/train.csv
--root ROOT/train --image-col SOPInstanceUID --label-col Target --out bundle``, then
``radiology predict bundle ROOT/sample_submission.csv --root ROOT/test --image-col
SOPInstanceUID --format kaggle --out submission.csv``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    add_data_arguments,
    add_run_arguments,
    add_training_arguments,
    anonymous_groups,
    data_root,
    elapsed,
    fmt,
    is_synthetic,
    new_parser,
    patient_subset,
    set_threads,
    shown,
    train_predict_evaluate,
    train_settings,
    write_test_split,
)
from _miniature import write_unifesp

from radiology.convert import ConvertOptions, convert_folder, render_pipeline
from radiology.data import dicom_patient_ids, from_csv
from radiology.dicom import metadata_table
from radiology.evaluate import evaluate_predictions
from radiology.predict import Ensemble, kaggle_submission, predict_table, prediction_inputs
from radiology.train import TrainConfig, train

UID, TARGET = "SOPInstanceUID", "Target"
BODY_PARTS = ("Abdomen", "Ankle", "Cervical Spine", "Chest", "Clavicles", "Elbow", "Feet", "Finger", "Forearm",
              "Hand", "Hip", "Knee", "Lower Leg", "Lumbar Spine", "Others", "Pelvis", "Shoulder", "Sinus", "Skull",
              "Thigh", "Thoracic Spine", "Wrist")
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_SYNTHETIC = {"size": 64, "epochs": 1, "head_epochs": 2, "workers": 0}
QUICK_IMAGES = 240  # --quick --data: at most this many labelled images (whole patients)
LAYOUT = ("the Kaggle UNIFESP folder: train/<Study>/<Series>/<SOP>.dcm, train.csv, "
          "optional test/ + sample_submission.csv")


def check_layout(root: Path) -> None:
    """Stop with a clear message when ROOT is not in the competition's layout."""
    missing = [name for name in ("train.csv", "train") if not (root / name).exists()]
    if missing:
        raise SystemExit(f"{root}: not the Kaggle UNIFESP layout, {' and '.join(missing)} not found "
                         f"(expected {LAYOUT})")
    columns = pd.read_csv(root / "train.csv", nrows=0).columns
    if UID not in columns or TARGET not in columns:
        raise SystemExit(f"{root / 'train.csv'}: expected the columns {UID},{TARGET}, found {','.join(columns)}")


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=LAYOUT, out="out/examples/bodypart")
    parser.add_argument("--patients", type=Path, help="CSV with SOPInstanceUID,patient for the grouped split "
                                                      "(default: the DICOM PatientID)")
    parser.add_argument("--no-holdout", action="store_true", help="skip step 1 (the held-out estimate)")
    parser.add_argument("--convert", action="store_true", help="also convert ROOT/train to PNGs (on with --quick)")
    add_training_arguments(parser, epochs_help="fine-tuning epochs (default: 5, quick: 1)",
                           size_help="input side in pixels (default: 224, quick: 128; synthetic: 64)",
                           test_fraction_help="share of patients held out in step 1")
    parser.add_argument("--folds", type=int, metavar="K",
                        help="train K models on patient-grouped folds in each step and predict with their mean "
                             "(the Kaggle practice; K times the time; default: one model)")
    add_run_arguments(parser)
    return parser


def part(code: str) -> str:
    """``"3"`` → ``"3 Chest"``."""
    return f"{code} {BODY_PARTS[int(code)]}" if code.isdigit() and int(code) < len(BODY_PARTS) else code


def single_target_labels(root: Path) -> pd.DataFrame:
    """``train.csv`` without its multi-target rows (``"13 20"``)."""
    labels = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)[[UID, TARGET]]
    labels[TARGET] = labels[TARGET].str.strip()
    several = labels[TARGET].str.contains(" ")
    if several.any():
        print(f"{int(several.sum())} rows with several targets (e.g. '13 20') left out: one body part per image")
    return labels[~several].reset_index(drop=True)


def patient_groups(labels: pd.DataFrame, items, args) -> np.ndarray:
    """Opaque patient groups: from ``--patients``, else from the DICOM PatientID (never written out)."""
    if args.patients is not None:
        patients = pd.read_csv(args.patients, dtype=str, keep_default_na=False).set_index(UID)["patient"]
        unknown = ~labels[UID].isin(patients.index)
        if unknown.any():
            raise SystemExit(f"{shown(args.patients)}: no patient for {int(unknown.sum())} of the labelled images")
        print(f"patients from {shown(args.patients)}")
        return anonymous_groups(patients.loc[labels[UID]].to_numpy())
    print("patients from the DICOM PatientID")
    return anonymous_groups(dicom_patient_ids(items.paths))


def labelled(root: Path, args):
    """``train.csv`` (single targets), its items and patient groups; with ``--quick --data``, at most
    ``QUICK_IMAGES`` images of whole patients."""
    labels = single_target_labels(root)
    items = from_csv(labels, root / "train", UID, TARGET, progress=not args.quiet)
    groups = patient_groups(labels, items, args)
    if args.quick and len(labels) > QUICK_IMAGES:
        keep = patient_subset(items.targets, groups, QUICK_IMAGES, seed=args.seed)
        print(f"quick mode: {len(keep)} of {len(labels)} labelled images (whole patients)")
        labels, items, groups = labels.iloc[keep].reset_index(drop=True), items.subset(keep), groups[keep]
    return labels, items, groups


def holdout(root: Path, out: Path, settings: dict, args) -> dict:
    """Step 1: split test patients off, train on the rest, score the unseen patients."""
    labels, items, groups = labelled(root, args)
    out.mkdir(parents=True, exist_ok=True)
    # The test patients are split off BEFORE training: the model never sees them.
    rest, test, train_csv, test_csv = write_test_split(labels.assign(patient=groups), items.targets, groups, out,
                                                       [UID, TARGET], test_fraction=args.test_fraction,
                                                       seed=args.seed)
    print(f"{len(rest)} images for training, {len(test)} held-out test images from {len(set(groups[test]))} "
          f"other patients; {len(items.classes)} classes")

    config = TrainConfig(csv=train_csv, root=root / "train", image_cols=UID, label_cols=TARGET, group_col="patient",
                         out=out / "bundle", overwrite=True, seed=args.seed, **settings)
    _, _, metrics = train_predict_evaluate(config, test_csv, root / "train", out, image_cols=UID, label_cols=TARGET,
                                           quiet=args.quiet)
    recalls = ", ".join(f"{part(code)} {fmt(value)}" for code, value in metrics["recall"].items()
                        if metrics["support"][code])
    print(f"per-class recall on the test patients: {recalls}")
    print(f"metrics, report, confusion matrix: {shown(out / 'test_evaluation')}")
    return metrics


def submission(root: Path, out: Path, settings: dict, args) -> dict | None:
    """Step 2: train on every labelled image, predict ROOT/test, write submission.csv (scored when possible)."""
    out.mkdir(parents=True, exist_ok=True)
    labels, _, groups = labelled(root, args)
    labels_csv = out / "train_labels.csv"
    labels.assign(patient=groups).to_csv(labels_csv, index=False)
    config = TrainConfig(csv=labels_csv, root=root / "train", image_cols=UID, label_cols=TARGET, group_col="patient",
                         out=out / "bundle", overwrite=True, seed=args.seed, **settings)
    bundle = Ensemble.load(train(config, progress=not args.quiet).bundle)  # one model, or --folds K models

    sample = root / "sample_submission.csv"
    if sample.is_file():  # its UIDs, in its order, found by their headers below test/
        inputs = prediction_inputs(sample, root=root / "test", image_cols=UID, progress=not args.quiet)
    else:  # every file below test/ (named <SOPInstanceUID>.dcm in this layout)
        inputs = prediction_inputs(root / "test", progress=not args.quiet)
    table = predict_table(bundle, inputs, progress=not args.quiet)
    failed = int((table["error"] != "").sum())
    result = kaggle_submission(table)
    result.to_csv(out.parent / "submission.csv", index=False)
    print(f"{len(result)} predictions ({failed} failed) written to {shown(out.parent / 'submission.csv')}")
    truth = root / "test_labels.csv"
    if not truth.is_file():
        return None
    scored = table.assign(image=result[UID].to_numpy())
    return evaluate_predictions(scored, truth, image_cols=UID, label_cols=TARGET, out=out / "test_evaluation")


def convert(root: Path, out: Path, workers: int, progress: bool = True) -> None:
    """Step 3: DICOM → 512-wide PNGs named by UID, the conversion report and a non-PHI metadata table."""
    options = ConvertOptions(render_pipeline(width=512), naming="uid")
    report = convert_folder(root / "train", out / "train", options, workers=workers, progress=progress)
    print(report.summary)
    metadata_table(root / "train", progress=progress).to_csv(out / "train_metadata.csv", index=False)
    labels = pd.read_csv(root / "train.csv", dtype={UID: str})
    converted = {Path(o).stem for o in report.table.output[report.table.status == "ok"]}
    missing = set(labels[UID]) - converted
    print(f"{len(labels) - len(missing)}/{len(labels)} labelled images converted to {shown(out / 'train')}")
    if missing:
        raise SystemExit(f"not converted: {len(missing)} labelled images, e.g. {sorted(missing)[0]}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.patients is not None and not args.patients.is_file():
        raise SystemExit(f"--patients {args.patients}: not found")
    root = data_root(args, write_unifesp, what=LAYOUT)
    check_layout(root)
    set_threads(args)
    synthetic = is_synthetic(args)
    settings = train_settings(args, QUICK_SYNTHETIC if synthetic else QUICK, keys=("epochs", "size", "folds"))
    if args.quick:
        print(f"quick mode: {settings['size']} px, {settings['epochs']} fine-tuning epoch")
    started = time.time()
    kind = "SYNTHETIC phantoms" if synthetic else "images of unseen patients"
    lines = []

    if not args.no_holdout:
        print(f"== step 1: held-out estimate on {shown(root / 'train.csv')}")
        metrics = holdout(root, args.out / "holdout", settings, args)
        lines.append(f"held-out test ({metrics['n']} {kind}): accuracy {fmt(metrics['accuracy'])}, "
                     f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, macro F1 {fmt(metrics['macro_f1'])}")

    if not (root / "test").is_dir():
        print(f"no submission: {shown(root / 'test')} not found")
    else:
        print(f"== step 2: submission for {shown(root / 'test')}")
        metrics = submission(root, args.out / "submission", settings, args)
        if metrics is not None:
            lines.append(f"submission scored against test_labels.csv ({metrics['n']} {kind}, "
                         f"{metrics['missing']} without prediction): accuracy {fmt(metrics['accuracy'])}, "
                         f"balanced accuracy {fmt(metrics['balanced_accuracy'])}")

    if args.convert or args.quick:
        print(f"== step 3: PNG conversion of {shown(root / 'train')}")
        convert(root, args.out / "png", workers=max(1, args.workers), progress=not args.quiet)

    for line in lines:
        print(line)
    if synthetic:
        print("(SYNTHETIC phantoms: these numbers say nothing about real radiographs)")
    print(elapsed(started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
