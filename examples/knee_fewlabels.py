"""Knee radiographs from DICOM with heavy imbalance and few labels: self-supervised pretraining →
fine-tune → FixMatch → GradCAM, scored on held-out patients.

Data: the knee KL-grade set of Chen et al., "Fully automatic knee osteoarthritis severity
grading using deep neural networks with a novel ordinal loss", Computerized Medical Imaging
and Graphics 75, 2019; published as "Knee Osteoarthritis Severity Grading Dataset", Mendeley
Data, doi:10.17632/56rmx5bjcr.1 (licence CC BY 4.0), made from Osteoarthritis Initiative (OAI)
radiographs. ``--data`` is the unpacked download as shipped (or any folder above it, e.g.
``kneeKL224``)::

    ROOT/{train,val,test}/{0,1,2,3,4}/*.png    knee-joint crops, the folder is the KL grade

A file name is the participant id and the side (``9003175L.png``): the participant is the
leading digits, so both knees of a participant stay on one side of every split. The
publisher's split is not used: test and labeled patients are drawn again, grouped by
participant (the task below thins the classes first). Optional, for step 2:
``--radiographs DIR`` (whole knee radiographs, any image files) with ``--localizer
svm_model.npy`` (the HOG + SVM knee localizer weights).

Steps:

1. The archive as a hospital has it: every image is wrapped as a DICOM file (CR, real pixels,
   no patient data) in ``OUT/archive``; everything below reads DICOM.
2. Knee localization (only with ``--radiographs`` and ``--localizer``): the whole radiographs
   go through a pipeline with a ``knee_crop`` step (HOG + linear SVM localizer) and their
   joint crops join the unlabeled pool.
3. The task: severe osteoarthritis (KL >= 3) against the rest, made as imbalanced as in
   practice (about 1 positive in 8), and few labels: 15 % of the training patients keep their
   label, the rest of their images are unlabeled. Test patients are split off FIRST.
4. ``radiology.ssl.pretrain`` (SimCLR) on the unlabeled pool → ``backbone.pt``.
5. Fine-tune from that backbone on the few labels (weighted sampler), then the same with
   FixMatch over the unlabeled images; both scored on the unseen test patients. Each with the
   defaults: the plain run refits on all its labeled images once its epoch is chosen, the
   FixMatch run keeps its validated model (``train`` never refits a semi-supervised run).
6. GradCAM overlays of the FixMatch model on test images (``OUT/gradcam``).

The KL grade is hard and the labeled set tiny: the pipeline, not the grade, is the point;
``bench/fewlabels.py`` measures whether the methods help. The same with the command line::

    radiology pretrain --root OUT/unlabeled --out backbone.pt --method simclr
    radiology train --csv labeled.csv --image-col file --label-col severe --group-col patient \\
        --pretrained backbone.pt --sampler weighted --unlabeled OUT/unlabeled_kl --semi fixmatch --out bundle
    radiology explain bundle test_images/ --out gradcam

Usage::

    python examples/knee_fewlabels.py --data ROOT [--out OUT]   # full: 224 px, 5 epochs
    python examples/knee_fewlabels.py --data ROOT --quick       # about 240 crops, 64 px
    python examples/knee_fewlabels.py --quick                   # SYNTHETIC miniature of the layout (CI):
                                                                # numbers mean nothing
    ... --radiographs DIR --localizer svm_model.npy             # adds step 2

``OUT`` is rebuilt at each run: the archive file names are opaque (``kl/knee00012.dcm``), so
no participant id reaches an output.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    add_data_arguments,
    add_run_arguments,
    anonymous_groups,
    data_root,
    elapsed,
    fmt,
    is_synthetic,
    new_parser,
    set_threads,
    shown,
)
from _common import train_predict_evaluate as train_and_score
from _miniature import write_oai_kl

from radiology.data import train_valid_split
from radiology.explain import explain_inputs
from radiology.geometry import KneeLocalizer
from radiology.io import IMAGE_SUFFIXES, file_digest, read_image, write_image
from radiology.pipeline import KneeCrop, Percentile, Pipeline
from radiology.ssl import pretrain
from radiology.synthetic import write_phantom_dicom
from radiology.train import TrainConfig

QUICK = {"size": 64, "epochs": 1, "head_epochs": 4, "ssl_epochs": 1, "crops": 240, "radiographs": 12}
FULL = {"size": 224, "epochs": 5, "head_epochs": 20, "ssl_epochs": 20, "crops": None, "radiographs": None}
POSITIVE_SHARE = 0.125  # about 1 in 8: severe OA among knees seen in practice
LABELED_SHARE = 0.15
SPLITS, GRADES = ("train", "val", "test"), ("0", "1", "2", "3", "4")
WHAT = "the Chen et al. knee KL download: a folder with {train,val,test}/{0,1,2,3,4}/*.png"
OWN_FOLDERS = ("miniature", "archive", "unlabeled", "fine_tune", "fine_tune_FixMatch", "gradcam")
_PARTICIPANT = re.compile(r"^(\d+)")
# KneeLocalizer's published svm_model.npy (Tiulpin et al., MIT): the one pickle this example unpickles.
PUBLISHED_LOCALIZER_SHA256 = "b5c143e84132a2c90d3d5fb50a288258dc3fa9d38dfafa7994d7af0b680cfe71"


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=WHAT, out="out/examples/knee_fewlabels")
    parser.add_argument("--radiographs", type=Path, metavar="DIR", help="whole knee radiographs for step 2")
    parser.add_argument("--localizer", type=Path, metavar="NPY", help="knee localizer weights (svm_model.npy)")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of patients held out for testing")
    add_run_arguments(parser)
    return parser


def participant_of(name: str) -> str:
    """The participant of a knee image: the leading digits of its name (``9003175L.png`` → ``9003175``)."""
    stem = Path(name).stem
    match = _PARTICIPANT.match(stem)
    return match.group(1) if match else stem


def find_base(root: Path) -> Path | None:
    """``root``, or the first folder below it (3 levels at most) that holds the split folders."""
    def holds(folder: Path) -> bool:
        return any((folder / s / g).is_dir() for s in SPLITS for g in GRADES)
    if holds(root):
        return root
    for depth in ("*", "*/*", "*/*/*"):
        for folder in sorted(p for p in root.glob(depth) if p.is_dir()):
            if holds(folder):
                return folder
    return None


def read_layout(root: Path) -> tuple[Path, pd.DataFrame]:
    """The knee crops: ``(folder of the splits, table of file, kl_grade, patient, split)``.

    ``file`` is relative to the returned folder. Raises ``SystemExit`` naming what is missing.
    """
    base = find_base(root)
    if base is None:
        raise SystemExit(f"--data {root}: no {{train,val,test}}/{{0,1,2,3,4}} folders found (expected {WHAT})")
    rows = [{"file": path.relative_to(base).as_posix(), "kl_grade": int(grade), "patient": participant_of(path.name),
             "split": split}
            for split in SPLITS for grade in GRADES if (base / split / grade).is_dir()
            for path in sorted((base / split / grade).iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")]
    table = pd.DataFrame(rows, columns=["file", "kl_grade", "patient", "split"])
    if table.empty:
        raise SystemExit(f"--data {root}: no images in its {{train,val,test}}/{{0,1,2,3,4}} folders")
    if not (table["kl_grade"] >= 3).any() or not (table["kl_grade"] < 3).any():
        raise SystemExit(f"--data {root}: the task needs images of grades 0-2 and of grades 3-4")
    return base, table


def to_dicom(image_path: Path, out: Path) -> Path:
    """Wrap one image as a CR DICOM (12 bits, no patient data): the archive as a hospital has it."""
    return write_phantom_dicom(out, read_image(image_path), bits_stored=12, patient_name="", patient_id="")


def make_task(table: pd.DataFrame, settings: dict, seed: int) -> pd.DataFrame:
    """Severe OA (KL >= 3) vs the rest, positives thinned to ``POSITIVE_SHARE`` of the images (whole patients)."""
    table = table.copy()
    table["severe"] = np.where(table["kl_grade"] >= 3, "severe", "none_to_moderate")
    table["patient"] = anonymous_groups(table["patient"])
    rng = np.random.default_rng(seed)
    negatives = table[table["severe"] == "none_to_moderate"]
    if settings["crops"]:
        negatives = negatives[negatives["patient"].isin(
            rng.permutation(negatives["patient"].unique())[: int(settings["crops"] * (1 - POSITIVE_SHARE) / 2)])]
    wanted = max(4, round(len(negatives) * POSITIVE_SHARE / (1 - POSITIVE_SHARE)))
    positives = table[(table["severe"] == "severe") & ~table["patient"].isin(negatives["patient"])]
    sizes = positives.groupby("patient").size()
    order = rng.permutation(sizes.index.to_numpy())
    chosen = order[: max(1, int(np.searchsorted(np.cumsum(sizes[order].to_numpy()), wanted, side="right")))]
    positives = positives[positives["patient"].isin(chosen)]
    return pd.concat([negatives, positives]).sort_values("file").reset_index(drop=True)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if (args.radiographs is None) != (args.localizer is None):
        raise SystemExit("step 2 needs both --radiographs DIR and --localizer svm_model.npy")
    if args.localizer is not None and not args.localizer.is_file():
        raise SystemExit(f"--localizer {args.localizer}: not found")
    if args.radiographs is not None and not args.radiographs.is_dir():
        raise SystemExit(f"--radiographs {args.radiographs}: not a folder")
    settings = QUICK if args.quick else FULL
    out = args.out
    for name in OWN_FOLDERS:  # a fresh run: this example's own folders are rebuilt
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    synthetic = is_synthetic(args)
    base, source = read_layout(data_root(args, write_oai_kl, what=WHAT))
    set_threads(args)
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)

    # 1. The archive, as DICOM (opaque names: no participant id in any output).
    table = make_task(source, settings, args.seed)
    archive = out / "archive"
    table["file"] = [to_dicom(base / f, archive / "kl" / f"knee{i:05d}.dcm").relative_to(archive).as_posix()
                     for i, f in enumerate(table["file"])]

    # 2. Knee localization on whole radiographs: their joint crops are unlabeled pretraining material.
    pool = out / "unlabeled"
    radiographs = []
    if args.localizer is not None:
        # The published weights are a pickle: unpickled only when the file is byte for byte the published one,
        # then kept as plain arrays (.npz); an .npz (KneeLocalizer.save) is read without unpickling.
        trusted = args.localizer.suffix != ".npz" and file_digest(args.localizer) == PUBLISHED_LOCALIZER_SHA256
        if args.localizer.suffix != ".npz" and not trusted:
            raise SystemExit(f"--localizer {shown(args.localizer)}: not the published svm_model.npy (its SHA-256 "
                             "differs) and not an .npz: a pickled file is not read, it could run code")
        knee_weights = KneeLocalizer.load(args.localizer, allow_pickle=trusted).save(out / "knee_svm.npz")
        localizer = Pipeline([Percentile(), KneeCrop(weights=str(knee_weights), size_px=384)])
        radiographs = sorted(p for p in args.radiographs.rglob("*")
                             if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[: settings["radiographs"]]
        for i, path in enumerate(radiographs):
            dicom = to_dicom(path, archive / "radiographs" / f"radiograph{i:05d}.dcm")
            write_image(pool / "knee_crops" / f"radiograph{i:05d}.png", localizer.read(dicom))
    print(f"archive: {len(table)} labeled-task DICOMs ({(table['severe'] == 'severe').mean():.0%} severe)"
          + (f", {len(radiographs)} whole radiographs → knee crops by the localizer" if radiographs else
             " (no --radiographs/--localizer: step 2, knee localization, left out)"))

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
    print(f"GradCAM: {len(cams)} overlays in {shown(out / 'gradcam')}")

    kind = "SYNTHETIC phantoms: the numbers mean nothing" if synthetic else "images of unseen patients"
    print(f"\nheld-out test ({len(test)} {kind}, {int(targets[test].sum())} severe):")
    for name, metrics in scores.items():
        print(f"  {name:22s} balanced accuracy {fmt(metrics['balanced_accuracy'])}, AUC {fmt(metrics['macro_auc'])}")
    print(f"(one split and seed: see bench/fewlabels.py for whether FixMatch helps) {elapsed(started)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
