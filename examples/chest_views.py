"""Chest radiograph view (PA / AP / AP supine) from the image, scored on held-out patients.

The acquisition view in PACS headers is often wrong or missing; this trains a 3-class
classifier that reads it from the pixels.

Data: the COVID-19 image data collection of Cohen et al., "COVID-19 Image Data Collection:
Prospective Predictions Are the Future", MELBA 2020 (arXiv:2006.11988),
https://github.com/ieee8023/covid-chestxray-dataset; each image carries its own licence
(listed in ``metadata.csv``'s ``license`` column: CC BY, CC BY-NC-SA, Apache 2.0, ...). ``--data``
is a clone or download of that repository as shipped::

    ROOT/metadata.csv          patientid,offset,sex,age,finding,...,view,modality,...,folder,filename,...
    ROOT/images/<filename>     the radiographs (ROOT/<folder>/<filename> in general)

Kept: rows with ``modality`` ``X-ray`` and ``view`` ``PA``, ``AP`` or ``AP Supine`` (classes
``PA``, ``AP``, ``AP_SUPINE``); lateral views, CT volumes and rows whose file is absent are left
out (counted). The patient is ``patientid``, one group per id.

Steps: a test set of patients is split off first (stratified, grouped by patient); the
model is trained on the other patients only (``radiology.train.train``: offline ImageNet
``tf_efficientnet_lite0``, head on frozen features, then fine-tuning; its own validation split
is carved from the training patients); the bundle then predicts the unseen test patients and
``evaluate_predictions`` scores them. Written to OUT: ``bundle/``, ``train.csv``/``test.csv``
(image paths relative to ROOT, opaque patient groups), ``predictions.csv``,
``test_evaluation/`` (``metrics.json``, ``report.txt``, ``confusion_matrix.png``, ``roc.png``).
Report balanced accuracy: the classes are unequal (PA is the most common).

Usage::

    python examples/chest_views.py --data ROOT [--out OUT]   # the CLI's defaults (224 px, 5 epochs)
    python examples/chest_views.py --data ROOT --quick       # about 410 images, 160 px, 1 epoch
    python examples/chest_views.py --quick                   # SYNTHETIC miniature of the layout (CI):
                                                             # about a minute on a 2-core CPU, numbers mean nothing

The same run with the command line: ``radiology train --csv train.csv --root ROOT --image-col file
--label-col view --group-col patient --out bundle``, ``radiology predict bundle test.csv --root ROOT
--image-col file --out predictions.csv``, ``radiology evaluate --predictions predictions.csv
--labels test.csv --image-col file --label-col view --out test_evaluation``.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from _common import (
    add_data_arguments,
    add_run_arguments,
    add_training_arguments,
    data_root,
    elapsed,
    fmt,
    held_out_table,
    is_synthetic,
    new_parser,
    set_threads,
    shown,
)
from _miniature import write_covid_views

IMAGE, LABEL, PATIENT = "file", "view", "patient"
VIEWS = {"PA": "PA", "AP": "AP", "AP SUPINE": "AP_SUPINE"}
COLUMNS = ("patientid", "view", "modality", "folder", "filename")
QUICK = {"size": 160, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_SYNTHETIC = {"size": 64, "epochs": 2, "head_epochs": 4, "workers": 0, "batch_size": 16}
QUICK_IMAGES = 410
WHAT = "the ieee8023/covid-chestxray-dataset repository: a folder with metadata.csv and images/"


def read_layout(root: Path) -> pd.DataFrame:
    """The radiographs of the three views: a table of file (relative to ``root``), view, patient.

    Raises ``SystemExit`` naming what is missing.
    """
    metadata = root / "metadata.csv"
    if not metadata.is_file():
        raise SystemExit(f"--data {root}: metadata.csv not found (expected {WHAT})")
    table = pd.read_csv(metadata, dtype=str, keep_default_na=False)
    absent = [c for c in COLUMNS if c not in table.columns]
    if absent:
        raise SystemExit(f"--data {root}: metadata.csv has no column {', '.join(absent)}")
    views = table["view"].str.strip().str.upper().map(VIEWS)
    keep = views.notna() & (table["modality"].str.strip().str.upper() == "X-RAY")
    files = (table["folder"].str.strip() + "/" + table["filename"].str.strip())[keep]
    present = files.map(lambda f: (root / f).is_file())
    kept = pd.DataFrame({IMAGE: files[present], LABEL: views[keep][present],
                         PATIENT: table["patientid"].str.strip()[keep][present]}).reset_index(drop=True)
    print(f"metadata.csv: {len(table)} rows, {int(keep.sum())} X-rays of views PA/AP/AP Supine"
          + (f", {int((~present).sum())} of them without their file (left out)" if (~present).any() else ""))
    if kept.empty:
        raise SystemExit(f"--data {root}: no image files of PA, AP or AP Supine X-rays found")
    return kept


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=WHAT, out="out/examples/chest_views")
    add_training_arguments(parser, epochs_help="fine-tuning epochs (default: 5, quick: 1)",
                           size_help=f"input side in pixels (default: 224, quick: {QUICK['size']})")
    add_run_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    synthetic = is_synthetic(args)
    root = data_root(args, write_covid_views, what=WHAT)
    table = read_layout(root)
    set_threads(args)
    started = time.time()
    counts = table.groupby(LABEL)[PATIENT].agg(["size", "nunique"])
    print(f"{len(table)} images: " + ", ".join(f"{c} {r['size']} ({r['nunique']} patients)"
                                               for c, r in counts.iterrows()))
    out, metrics = held_out_table(args, table, root, image=IMAGE, label=LABEL, patient=PATIENT,
                                  quick=QUICK_SYNTHETIC if synthetic else QUICK, quick_images=QUICK_IMAGES)

    print((out / "test_evaluation" / "report.txt").read_text())
    print(f"metrics, report and plots: {shown(out / 'test_evaluation')}")
    kind = "SYNTHETIC phantoms: the numbers mean nothing" if synthetic else "images of unseen patients"
    print(f"held-out test ({metrics['n']} {kind}): accuracy {fmt(metrics['accuracy'])}, "
          f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, macro AUC {fmt(metrics['macro_auc'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
