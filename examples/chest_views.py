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

    python examples/chest_views.py ROOT [--out OUT]   # full data, the CLI's defaults (224 px, 5 epochs)
    python examples/chest_views.py --quick            # ../shared/data/chest_xray_views: all 410 images,
                                                      # 160 px, 1 epoch (a few minutes on a 2-core CPU)

The same run with the command line: ``radiology train --csv train.csv --image-col file
--label-col view --group-col patientid --out bundle``, ``radiology predict bundle test.csv
--image-col file --out predictions.csv``, ``radiology evaluate --predictions predictions.csv
--labels test.csv --image-col file --label-col view --out test_evaluation``.
"""

from __future__ import annotations

from _common import elapsed, fmt, held_out_classification, labels_parser

IMAGE, LABEL, PATIENT = "file", "view", "patientid"
QUICK = {"size": 160, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_IMAGES = 410


def build_parser():
    return labels_parser(__doc__, "chest_xray_views", "out/examples/chest_views", QUICK["size"])


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    run = held_out_classification(args, image=IMAGE, label=LABEL, patient=PATIENT, quick=QUICK,
                                  quick_images=QUICK_IMAGES, quick_folder="chest_xray_views")
    if run is None:
        return 0
    out, metrics, started = run

    print((out / "test_evaluation" / "report.txt").read_text())
    print(f"metrics, report and plots: {out / 'test_evaluation'}")
    print(f"held-out test ({metrics['n']} images of unseen patients): accuracy {fmt(metrics['accuracy'])}, "
          f"balanced accuracy {fmt(metrics['balanced_accuracy'])}, macro AUC {fmt(metrics['macro_auc'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
