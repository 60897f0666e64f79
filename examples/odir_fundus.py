"""ODIR-5K: eight diagnoses from a patient's two fundus photographs (dual-view, multi-label, colour).

Data: ODIR-5K, the Ocular Disease Intelligent Recognition training set (Peking University,
ODIR-2019 challenge; photographs collected by Shanggong Medical Technology; research use only,
do not redistribute), as its publishers ship it. Give the folder with ``--data`` (only read,
never written to); it may hold either packaging:

- Kaggle "ocular-disease-recognition-odir5k"::

      ROOT/full_df.csv               one row per photograph (rows of one patient repeat its labels)
      ROOT/preprocessed_images/      <ID>_left.jpg, <ID>_right.jpg (cropped, 512 px)
      ROOT/ODIR-5K/ODIR-5K/data.xlsx + Training Images/   (the original release, see below)

- the original release::

      ROOT/ODIR-5K_Training_Annotations(Updated)_V2.xlsx   (or data.xlsx, or that sheet saved as CSV)
      ROOT/ODIR-5K_Training_Images/  (or "Training Images/")

  one row per patient, columns ``ID, Patient Age, Patient Sex, Left-Fundus, Right-Fundus,
  Left-Diagnostic Keywords, Right-Diagnostic Keywords, N, D, G, C, A, H, M, O``.

The table and image folder are looked for in ROOT and up to two folders below it (a
``full_df.csv`` is taken first, with ``preprocessed_images/``). Reading ``.xlsx`` needs
``openpyxl`` (``pip install openpyxl``); without it, save the sheet as CSV (same columns) and
give the folder holding that. Patients whose two photographs are not both found are left out
(the Kaggle ``preprocessed_images`` misses a few). ``labels.csv`` with ``patient, left, right,
N ... O`` (image paths relative to ROOT; the project's ``../shared/data/fundus/odir``) is read
as well. Patient groups: the ODIR ``ID`` (one row per patient; no names exist).

The two eyes are two views of one sample (``image_cols=("left", "right")``: one shared
backbone, features concatenated), in colour (``channels=3``), with one sigmoid output per
diagnosis (``multi_label``; the loss is BCE with per-label positive weights, the training
default for multi-label). Per-label decision thresholds are tuned on the validation split
during training and stored in the bundle.

Steps: a test set of patients is split off first (stratified by each patient's rarest
label); the model is trained on the other patients only (its own validation split is carved
from them); the bundle predicts the unseen test patients; they are scored with the ODIR-5K
challenge score (``radiology.evaluate.odir_score``: kappa, F1 and AUC of the flattened
matrices at p > 0.5) beside the macro and per-label AUC. Written to OUT: ``labels.csv`` (the
table read, patient ids replaced by opaque groups), ``pipeline.json``, ``bundle/``,
``predictions.csv``, ``test_evaluation/``.

Usage::

    python examples/odir_fundus.py --data ROOT [--out OUT]   # the CLI's defaults (224 px, 5 epochs)
    python examples/odir_fundus.py --quick --data ROOT      # 200 patients, 128 px, 1 epoch
    python examples/odir_fundus.py --quick                  # no data needed: a miniature Kaggle layout
                                                            # (full_df.csv + preprocessed_images/) of
                                                            # SYNTHETIC colour fundus phantoms, 64 px.
                                                            # Its numbers mean nothing.

Rare labels (G, C, A, H, M: 3-6 % of patients) have only a handful of test positives in the
quick subset: their AUCs are very noisy there, or undefined (n/a) without a positive.
"""

from __future__ import annotations

import os
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
    quick_subset,
    set_threads,
    shown,
    train_predict_evaluate,
    train_settings,
    write_test_split,
)
from _miniature import write_odir

from radiology.data import from_csv
from radiology.evaluate import odir_score
from radiology.pipeline import Decode, Pipeline, default_pipeline
from radiology.train import TrainConfig

VIEWS = ("left", "right")
LABELS = ("N", "D", "G", "C", "A", "H", "M", "O")
PATIENT = "patient"
QUICK = {"size": 128, "epochs": 1, "head_epochs": 10, "workers": 0}
QUICK_SYNTHETIC = {"size": 64, "epochs": 1, "head_epochs": 3, "workers": 0}
QUICK_PATIENTS = 200
# The publisher's table: the Kaggle full_df.csv first, then the original sheet (or its CSV export).
TABLES = ("full_df.csv", "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", "data.xlsx",
          "ODIR-5K_Training_Annotations(Updated)_V2.csv", "data.csv")
IMAGE_FOLDERS = ("preprocessed_images", "ODIR-5K_Training_Images", "Training Images", "ODIR-5K_Training_Dataset")
ID, LEFT, RIGHT = "ID", "Left-Fundus", "Right-Fundus"
LAYOUT = ("ODIR-5K as published: full_df.csv + preprocessed_images/ (Kaggle), or "
          "ODIR-5K_Training_Annotations(Updated)_V2.xlsx / data.xlsx + ODIR-5K_Training_Images/ or Training Images/")


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=LAYOUT, out="out/examples/odir")
    add_training_arguments(parser, epochs_help="fine-tuning epochs (default: 5, quick: 1)",
                           size_help="input side in pixels (default: 224, quick: 128; synthetic: 64)")
    add_run_arguments(parser)
    return parser


def show(value) -> str:
    """A metric for printing (``n/a`` when undefined, e.g. an AUC without a positive)."""
    return fmt(value, nan_as_na=True)


# ---------------------------------------------------------------------------------------------
# Reading the publisher's layout


def _folders(root: Path, depth: int = 2):
    """ROOT and the folders below it, at most ``depth`` levels down, in sorted order."""
    level = [root]
    for _ in range(depth + 1):
        yield from level
        level = sorted(child for folder in level for child in folder.iterdir() if child.is_dir())


def find_table(root: Path) -> Path:
    """The publisher's label table below ROOT (see ``TABLES``); SystemExit naming the layout when none."""
    found = {}
    for folder in _folders(root):
        for name in TABLES:
            if name not in found and (folder / name).is_file():
                found[name] = folder / name
    for name in TABLES:
        if name in found:
            return found[name]
    raise SystemExit(f"{root}: no ODIR-5K table found ({', '.join(TABLES)}, in it or up to two folders below); "
                     f"expected {LAYOUT}")


def read_table(path: Path) -> pd.DataFrame:
    """The publisher's table as strings; ``.xlsx`` needs openpyxl (a clear message without it)."""
    if path.suffix.lower() == ".xlsx":
        try:
            import openpyxl  # noqa: F401 - pandas' reader of .xlsx
        except ImportError:
            raise SystemExit(f"{path.name}: reading .xlsx needs openpyxl (pip install openpyxl); or save the sheet "
                             f"as CSV with the same columns (e.g. data.csv beside it) and give that folder") from None
        table = pd.read_excel(path, dtype=str).fillna("")
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in (ID, LEFT, RIGHT, *LABELS) if c not in table.columns]
    if missing:
        raise SystemExit(f"{path.name}: not an ODIR-5K table, missing the columns {', '.join(missing)}")
    return table


def find_images(root: Path, table_path: Path) -> list[Path]:
    """The image folders below ROOT, the one beside the table's kind first (Kaggle: preprocessed_images)."""
    folders = [f for f in _folders(root, depth=3) if f.name in IMAGE_FOLDERS]
    kaggle = table_path.name == "full_df.csv"
    return sorted(folders, key=lambda f: (f.name != "preprocessed_images") if kaggle
                  else (f.name == "preprocessed_images"))


def read_odir(root: Path) -> pd.DataFrame:
    """One row per patient: ``patient, left, right, N ... O`` (image paths relative to ROOT).

    Reads the publisher's layout (module docstring), or a ``labels.csv`` with those columns.
    Patients whose two photographs are not both found are left out (the count is printed).
    """
    labels_csv = root / "labels.csv"
    if labels_csv.is_file():
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
        if {PATIENT, *VIEWS, *LABELS} <= set(table.columns):
            print(f"table: {shown(labels_csv)} (patient, left, right, N ... O)")
            return table[[PATIENT, *VIEWS, *LABELS]]
    table_path = find_table(root)
    table = read_table(table_path)
    rows = len(table)
    # full_df.csv repeats a patient's row for each of its photographs; the labels are per patient.
    table = table.drop_duplicates(ID).reset_index(drop=True)
    folders = find_images(root, table_path)
    if not folders:
        raise SystemExit(f"{root}: no image folder ({', '.join(IMAGE_FOLDERS)}) found; expected {LAYOUT}")
    # Both eyes of a patient from one folder: the first that holds the two photographs.
    contents = [(folder.relative_to(root).as_posix(), set(os.listdir(folder))) for folder in folders]
    pairs = []
    for left, right in zip(table[LEFT].str.strip(), table[RIGHT].str.strip()):
        where = next((prefix for prefix, names in contents if left in names and right in names), None)
        pairs.append((f"{where}/{left}", f"{where}/{right}") if where is not None else (None, None))
    data = pd.DataFrame({PATIENT: table[ID].str.strip(), "left": [p[0] for p in pairs],
                         "right": [p[1] for p in pairs]})
    for name in LABELS:
        data[name] = pd.to_numeric(table[name], errors="coerce").fillna(0).astype(int).astype(str)
    found = data["left"].notna() & data["right"].notna()
    print(f"table: {table_path.relative_to(root).as_posix()} ({rows} rows, {len(table)} patients); images from "
          f"{', '.join(f.relative_to(root).as_posix() for f in folders)}")
    if not found.any():
        raise SystemExit(f"{root}: none of the photographs named in {table_path.name} found in "
                         f"{', '.join(f.name for f in folders)}")
    if not found.all():
        print(f"{int((~found).sum())} patients without both photographs left out")
    return data[found].reset_index(drop=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = data_root(args, write_odir, what=LAYOUT)
    table = read_odir(root)
    set_threads(args)
    synthetic = is_synthetic(args)
    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    table[PATIENT] = anonymous_groups(table[PATIENT])
    table.to_csv(out / "labels.csv", index=False)
    items = from_csv(table, root, VIEWS, LABELS, multi_label=True, group_col=PATIENT, progress=not args.quiet)
    quick = QUICK_SYNTHETIC if synthetic else QUICK
    if args.quick:
        table, items = quick_subset(table, items, QUICK_PATIENTS, args.seed, "patients (both eyes each)", quick)

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test, train_csv, test_csv = write_test_split(table, items.targets, items.groups, out, [*VIEWS, *LABELS],
                                                       test_fraction=args.test_fraction, seed=args.seed)
    print(f"{len(rest)} patients for training, {len(test)} held-out test patients")

    settings = train_settings(args, quick)
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
    print(f"metrics, report and ROC curves: {shown(out / 'test_evaluation')}")
    kind = "SYNTHETIC phantom patients: these numbers say nothing about real eyes" if synthetic \
        else "unseen patients"
    print(f"held-out test ({metrics['n']} {kind}): ODIR score {show(odir['score'])} "
          f"(kappa {show(odir['kappa'])}, F1 {show(odir['f1'])}, AUC {show(odir['auc'])}), "
          f"macro AUC {show(metrics['macro_auc'])}, micro F1 at the tuned thresholds {show(metrics['micro_f1'])} "
          f"{elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
