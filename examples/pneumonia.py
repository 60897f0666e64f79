"""Pneumonia vs normal on pediatric chest X-rays: transfer learning, scored on held-out patients.

Data: the pediatric chest X-ray set of Kermany et al., "Identifying Medical Diagnoses and
Treatable Diseases by Image-Based Deep Learning", Cell 172(5), 2018; published as "Labeled
Optical Coherence Tomography (OCT) and Chest X-Ray Images for Classification", Mendeley Data,
doi:10.17632/rscbjbr9sj (licence CC BY 4.0). ``--data`` is the unpacked download as shipped::

    ROOT/chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg   (ROOT may also be chest_xray itself)

The label is the class folder. The patient is read from the file name: ``personN_bacteria_M``
→ ``personN_bacteria``, ``personN_virus_M`` → ``personN_virus``, ``IM-XXXX-YYYY`` →
``IM-XXXX`` and ``NORMAL2-IM-XXXX-YYYY`` → ``NORMAL2-IM-XXXX`` (series ``XXXX``); any other name
is a patient of its own.

Split: the publisher's three folders are pooled and split again by patient. Its ``val`` folder
holds 16 images, too few to validate (let alone tune) on, and its folders are not documented
to keep a patient's images together; a grouped split of our own guarantees that no patient's
images are on both sides.

Steps: a test set of patients is split off first (stratified, grouped by patient); the model
is trained on the other patients only (``radiology.train.train``: offline ImageNet
``tf_efficientnet_lite0``, head on frozen features, then fine-tuning; its own validation split
is carved from the training patients); the bundle then predicts the unseen test patients and
``evaluate_predictions`` scores them. Written to OUT: ``bundle/``, ``train.csv``/``test.csv``
(image paths relative to ROOT, opaque patient groups), ``predictions.csv``,
``test_evaluation/`` (``metrics.json``, ``report.txt``, ``confusion_matrix.png``, ``roc.png``).

Usage::

    python examples/pneumonia.py --data ROOT [--out OUT]   # the CLI's defaults (224 px, 5 epochs)
    python examples/pneumonia.py --data ROOT --quick       # a 300-image subset, 128 px, 1 epoch
    python examples/pneumonia.py --quick                   # SYNTHETIC miniature of the layout (CI):
                                                           # about a minute on a 2-core CPU, numbers mean nothing

The same run with the command line: ``radiology train --csv train.csv --root ROOT --image-col file
--label-col label --group-col patient --out bundle``, ``radiology predict bundle test.csv
--root ROOT --image-col file --out predictions.csv``, ``radiology evaluate --predictions
predictions.csv --labels test.csv --image-col file --label-col label --out test_evaluation``.
"""

from __future__ import annotations

import re
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
from _miniature import write_kermany

IMAGE, LABEL, PATIENT = "file", "label", "patient"
SPLITS, CLASSES = ("train", "test", "val"), ("NORMAL", "PNEUMONIA")
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_SYNTHETIC = {"size": 64, "epochs": 2, "head_epochs": 4, "workers": 0, "batch_size": 16}
QUICK_IMAGES = 300
WHAT = "the Kermany et al. download: a folder with chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}"
_PERSON = re.compile(r"^(person\d+_(?:bacteria|virus))_\d+$", re.IGNORECASE)
_SERIES = re.compile(r"^((?:NORMAL2-)?IM-\d+)-\d+$", re.IGNORECASE)


def patient_of(name: str) -> str:
    """The patient of a file of the set, from its name (see the module docstring)."""
    stem = Path(name).stem
    match = _PERSON.match(stem) or _SERIES.match(stem)
    return match.group(1) if match else stem


def read_layout(root: Path) -> tuple[Path, pd.DataFrame]:
    """The images of the set below ``root``: ``(chest_xray folder, table of file, label, patient, split)``.

    ``file`` is relative to the returned folder. Raises ``SystemExit`` naming what is missing.
    """
    base = root / "chest_xray" if (root / "chest_xray").is_dir() else root
    found = [s for s in SPLITS if any((base / s / c).is_dir() for c in CLASSES)]
    if not found:
        raise SystemExit(f"--data {root}: no chest_xray/{{train,test,val}}/{{NORMAL,PNEUMONIA}} folders "
                         f"(expected {WHAT})")
    rows = [{IMAGE: path.relative_to(base).as_posix(), LABEL: label, PATIENT: patient_of(path.name), "split": split}
            for split in found for label in CLASSES if (base / split / label).is_dir()
            for path in sorted((base / split / label).iterdir())
            if path.suffix.lower() in (".jpeg", ".jpg", ".png") and not path.name.startswith(".")]
    table = pd.DataFrame(rows, columns=[IMAGE, LABEL, PATIENT, "split"])
    missing = [c for c in CLASSES if not (table[LABEL] == c).any()]
    if missing:
        raise SystemExit(f"--data {root}: no images of {', '.join(missing)} in chest_xray/{{{','.join(found)}}}")
    return base, table


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=WHAT, out="out/examples/pneumonia")
    add_training_arguments(parser, epochs_help="fine-tuning epochs (default: 5, quick: 1)",
                           size_help=f"input side in pixels (default: 224, quick: {QUICK['size']})")
    add_run_arguments(parser)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    synthetic = is_synthetic(args)
    root, table = read_layout(data_root(args, write_kermany, what=WHAT))
    set_threads(args)
    started = time.time()
    counts = table.groupby(LABEL)[PATIENT].agg(["size", "nunique"])
    print(f"{len(table)} images in {', '.join(sorted(set(table['split'])))}: "
          + ", ".join(f"{c} {r['size']} ({r['nunique']} patients)" for c, r in counts.iterrows()))
    out, metrics = held_out_table(args, table, root, image=IMAGE, label=LABEL, patient=PATIENT,
                                  quick=QUICK_SYNTHETIC if synthetic else QUICK, quick_images=QUICK_IMAGES)

    print((out / "test_evaluation" / "report.txt").read_text())
    print(f"confusion matrix: {shown(out / 'test_evaluation' / 'confusion_matrix.png')}")
    kind = "SYNTHETIC phantoms: the numbers mean nothing" if synthetic else "images of unseen patients"
    print(f"held-out test ({metrics['n']} {kind}): accuracy {fmt(metrics['accuracy'])}, "
          f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, AUC {fmt(metrics['macro_auc'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
