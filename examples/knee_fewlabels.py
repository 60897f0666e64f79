"""Knee radiographs from DICOM with heavy imbalance and few labels: self-supervised pretraining →
fine-tune → FixMatch → GradCAM, scored on held-out patients.

Data (``../shared/data/knee`` layout)::

    ROOT/kl_grades/labels.csv      file,kl_grade,patient,...   (knee-joint crops, KL grades 0-4)
    ROOT/kl_grades/images/...      the crops (PNG)
    ROOT/radiographs/*.jpg         whole knee radiographs, no labels
    ROOT/svm_model.npy             knee-joint localizer weights

Steps:

1. The archive as a hospital has it: every image is wrapped as a DICOM file (CR, real pixels,
   no patient data) in ``OUT/archive``; everything below reads DICOM.
2. Knee localization: the whole radiographs go through a pipeline with a ``knee_crop`` step
   (HOG + linear SVM localizer) and their joint crops join the unlabeled pool.
3. The task: severe osteoarthritis (KL >= 3) against the rest, made as imbalanced as in
   practice (about 1 positive in 8), and few labels: 15 % of the training patients keep their
   label, the rest of their images are unlabeled. Test patients are split off FIRST.
4. ``radiology.ssl.pretrain`` (SimCLR) on the unlabeled pool → ``backbone.pt``.
5. Fine-tune from that backbone on the few labels (weighted sampler), then the same with
   FixMatch over the unlabeled images; both scored on the unseen test patients.
6. GradCAM overlays of the FixMatch model on test images (``OUT/gradcam``).

The KL grade is hard and the labeled set tiny: the pipeline, not the grade, is the point;
``bench/fewlabels.py`` measures whether the methods help. The same with the command line::

    radiology pretrain --root OUT/unlabeled --out backbone.pt --method simclr
    radiology train --csv labeled.csv --image-col file --label-col severe --group-col patient \\
        --pretrained backbone.pt --sampler weighted --unlabeled OUT/unlabeled_kl --semi fixmatch --out bundle
    radiology explain bundle test_images/ --out gradcam

Usage::

    python examples/knee_fewlabels.py [ROOT] [--out OUT]   # full: 224 px, 5 epochs
    python examples/knee_fewlabels.py --quick              # ../shared/data/knee, 240 crops, 64 px (CI)
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import add_run_arguments, anonymous_groups, elapsed, fmt, new_parser, set_threads, shared_data
from _common import train_predict_evaluate as train_and_score

from radiology.data import train_valid_split
from radiology.explain import explain_inputs
from radiology.geometry import KneeLocalizer
from radiology.io import read_image, write_image
from radiology.pipeline import KneeCrop, Percentile, Pipeline
from radiology.ssl import pretrain
from radiology.synthetic import write_phantom_dicom
from radiology.train import TrainConfig

QUICK = {"size": 64, "epochs": 1, "head_epochs": 4, "ssl_epochs": 1, "crops": 240, "radiographs": 12}
FULL = {"size": 224, "epochs": 5, "head_epochs": 20, "ssl_epochs": 20, "crops": None, "radiographs": None}
POSITIVE_SHARE = 0.125  # about 1 in 8: severe OA among knees seen in practice
LABELED_SHARE = 0.15


def build_parser():
    parser = new_parser(__doc__)
    parser.add_argument("root", type=Path, nargs="?", help="knee data folder (default with --quick: "
                                                           "../shared/data/knee)")
    parser.add_argument("--out", type=Path, default=Path("out/examples/knee_fewlabels"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="small, fast run (CI)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of patients held out for testing")
    add_run_arguments(parser)
    return parser


def to_dicom(image_path: Path, out: Path) -> Path:
    """Wrap one image as a CR DICOM (12 bits, no patient data): the archive as a hospital has it."""
    return write_phantom_dicom(out, read_image(image_path), bits_stored=12, patient_name="", patient_id="")


def make_task(root: Path, settings: dict, seed: int) -> pd.DataFrame:
    """Severe OA (KL >= 3) vs the rest, positives thinned to ``POSITIVE_SHARE`` (whole patients)."""
    table = pd.read_csv(root / "kl_grades" / "labels.csv", dtype={"patient": str})
    table["severe"] = np.where(table["kl_grade"] >= 3, "severe", "none_to_moderate")
    table["patient"] = anonymous_groups(table["patient"])
    rng = np.random.default_rng(seed)
    negatives = table[table["severe"] == "none_to_moderate"]
    if settings["crops"]:
        negatives = negatives[negatives["patient"].isin(
            rng.permutation(negatives["patient"].unique())[: int(settings["crops"] * (1 - POSITIVE_SHARE))])]
    wanted = max(4, round(len(negatives) * POSITIVE_SHARE / (1 - POSITIVE_SHARE)))
    positives = table[(table["severe"] == "severe") & ~table["patient"].isin(negatives["patient"])]
    positives = positives[positives["patient"].isin(rng.permutation(positives["patient"].unique())[:wanted])]
    return pd.concat([negatives, positives]).sort_values("file").reset_index(drop=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = args.root or shared_data() / "knee"
    if not (root / "kl_grades" / "labels.csv").is_file() or not (root / "svm_model.npy").is_file():
        if args.quick and args.root is None:
            print(f"skipped: {root} not found (the shared knee data)")
            return 0
        raise SystemExit(f"{root}: expected kl_grades/labels.csv and svm_model.npy")
    settings = QUICK if args.quick else FULL
    set_threads(args)
    started = time.time()
    out = args.out
    if out.exists():
        shutil.rmtree(out)  # a fresh run: the folders below are rebuilt from the source
    out.mkdir(parents=True)

    # 1. The archive, as DICOM.
    table = make_task(root, settings, args.seed)
    archive = out / "archive"
    table["file"] = [to_dicom(root / "kl_grades" / f, archive / "kl" / Path(f).with_suffix(".dcm").name)
                     .relative_to(archive).as_posix() for f in table["file"]]

    # 2. Knee localization on whole radiographs: their joint crops are unlabeled pretraining material.
    pool = out / "unlabeled"
    # The published weights are a pickle: read once, trusted, and kept as plain arrays (.npz).
    knee_weights = KneeLocalizer.load(root / "svm_model.npy", allow_pickle=True).save(out / "knee_svm.npz")
    localizer = Pipeline([Percentile(), KneeCrop(weights=str(knee_weights), size_px=384)])
    radiographs = sorted((root / "radiographs").glob("*.jpg"))[: settings["radiographs"]]
    for path in radiographs:
        dicom = to_dicom(path, archive / "radiographs" / path.with_suffix(".dcm").name)
        write_image(pool / "knee_crops" / path.with_suffix(".png").name, localizer.read(dicom))
    print(f"archive: {len(table)} labeled-task DICOMs ({(table['severe'] == 'severe').mean():.0%} severe), "
          f"{len(radiographs)} whole radiographs → knee crops by the localizer")

    # 3. Test patients first; then few labels among the rest, the other images unlabeled.
    targets = (table["severe"] == "severe").to_numpy().astype(int)
    groups = table["patient"].to_numpy()
    rest, test = train_valid_split(targets, groups, valid_fraction=args.test_fraction, seed=args.seed)
    unlabeled_idx, labeled_idx = train_valid_split(targets[rest], groups[rest], valid_fraction=LABELED_SHARE,
                                                   seed=args.seed)
    labeled, unlabeled = rest[labeled_idx], rest[unlabeled_idx]
    columns = ["file", "severe", "patient"]
    table.iloc[labeled][columns].to_csv(out / "labeled.csv", index=False)
    table.iloc[test][["file", "severe"]].to_csv(out / "test.csv", index=False)
    for name in table["file"].iloc[unlabeled]:  # labels withheld: only the images go on
        target = pool / "kl" / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(archive / name, target)
    print(f"{len(labeled)} labeled ({int(targets[labeled].sum())} severe), {len(unlabeled)} unlabeled, "
          f"{len(test)} test images of {len(set(groups[test]))} unseen patients")

    # 4. Self-supervised pretraining on every unlabeled image (DICOM crops + localized radiographs).
    ssl = pretrain(pool, out / "backbone.pt", method="simclr", size=settings["size"],
                   epochs=settings["ssl_epochs"], batch_size=32, cache="none", seed=args.seed,
                   overwrite=True, progress=not args.quiet)
    print(f"SimCLR: {ssl.images} unlabeled images, loss {ssl.history[0]['train_loss']:.3f} → "
          f"{ssl.history[-1]['train_loss']:.3f}")

    # 5. Fine-tune on the few labels, then with FixMatch over the unlabeled crops of the task.
    scores = {}
    for name, extra in (("fine-tune", {}), ("fine-tune + FixMatch", {"unlabeled": pool / "kl", "semi": "fixmatch"})):
        folder = out / name.replace(" + ", "_").replace("-", "_")
        folder.mkdir()
        config = TrainConfig(csv=out / "labeled.csv", root=archive, image_cols="file", label_cols="severe",
                             group_col="patient", pretrained=str(ssl.checkpoint), sampler="weighted",
                             size=settings["size"], epochs=settings["epochs"], head_epochs=settings["head_epochs"],
                             batch_size=16, cache="none", seed=args.seed, out=folder / "bundle", overwrite=True,
                             **extra)
        _, _, metrics = train_and_score(config, out / "test.csv", archive, folder, image_cols="file",
                                        label_cols="severe", quiet=args.quiet)
        scores[name] = metrics

    # 6. Where does the FixMatch model look? Overlays on the test images' original pixels.
    table.iloc[test[:8]][["file"]].to_csv(out / "explain.csv", index=False)
    cams = explain_inputs(out / "fine_tune_FixMatch" / "bundle", out / "explain.csv", out / "gradcam", root=archive,
                          image_cols="file", progress=not args.quiet)
    print(f"GradCAM: {len(cams)} overlays in {out / 'gradcam'}")

    print(f"\nheld-out test ({len(test)} images, {int(targets[test].sum())} severe):")
    for name, metrics in scores.items():
        print(f"  {name:22s} balanced accuracy {fmt(metrics['balanced_accuracy'])}, AUC {fmt(metrics['macro_auc'])}")
    print(f"(one split and seed: see bench/fewlabels.py for whether FixMatch helps) {elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
