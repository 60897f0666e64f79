"""Pneumonia vs normal on pediatric chest X-rays: transfer learning, scored on held-out patients.

Data layout (the Kermany et al. pediatric set as in ``../shared/data/pneumonia``)::

    ROOT/labels.csv    file,label,patient     (file relative to ROOT; label NORMAL or PNEUMONIA)
    ROOT/images/...    the radiographs (JPEG/PNG, or DICOM)

Steps: a test set of patients is split off first (stratified, grouped by ``patient``); the
model is trained on the other patients only (``radiology.train.train``: offline ImageNet
``tf_efficientnet_lite0``, head on frozen features, then fine-tuning; its own validation split
is carved from the training patients); the bundle then predicts the unseen test patients and
``evaluate_predictions`` scores them. Written to OUT: ``bundle/``, ``predictions.csv`` (no
patient ids), ``test_evaluation/`` (``metrics.json``, ``report.txt``, ``confusion_matrix.png``,
``roc.png``).

Usage::

    python examples/pneumonia.py ROOT [--out OUT]     # full data, the CLI's defaults (224 px, 5 epochs)
    python examples/pneumonia.py --quick              # ../shared/data/pneumonia: a 300-image subset,
                                                      # 128 px, 1 epoch (a few minutes on a 2-core CPU)

The same run with the command line: ``radiology train --csv train.csv --image-col file
--label-col label --group-col patient --out bundle``, ``radiology predict bundle test.csv
--image-col file --out predictions.csv``, ``radiology evaluate --predictions predictions.csv
--labels test.csv --image-col file --label-col label --out test_evaluation``.
"""

from __future__ import annotations

from _common import elapsed, fmt, held_out_classification, labels_parser

IMAGE, LABEL, PATIENT = "file", "label", "patient"
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_IMAGES = 300


def build_parser():
    return labels_parser(__doc__, "pneumonia", "out/examples/pneumonia", QUICK["size"])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run = held_out_classification(args, image=IMAGE, label=LABEL, patient=PATIENT, quick=QUICK,
                                  quick_images=QUICK_IMAGES, quick_folder="pneumonia")
    if run is None:
        return 0
    out, metrics, started = run

    print((out / "test_evaluation" / "report.txt").read_text())
    print(f"confusion matrix: {out / 'test_evaluation' / 'confusion_matrix.png'}")
    print(f"held-out test ({metrics['n']} images of unseen patients): accuracy {fmt(metrics['accuracy'])}, "
          f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, AUC {fmt(metrics['macro_auc'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
