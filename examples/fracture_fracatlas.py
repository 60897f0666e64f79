"""Fracture from DICOM (FracAtlas): fracture vs normal with heavy imbalance, GradCAM checked against the boxes.

Data: FracAtlas (Abedeen et al., "FracAtlas: A Dataset for Fracture Classification, Localization
and Segmentation of Musculoskeletal Radiographs", Scientific Data 10, 521 (2023); figshare
doi:10.6084/m9.figshare.22363012; CC BY 4.0: cite the paper), 4,083 radiographs (hand, leg, hip,
shoulder) of which 717 (about 17 %; 14 % in the project's subset) are fractured. Give the
folder, as figshare ships it, with ``--data`` (only read, never written to)::

    ROOT/images/Fractured/IMG0000019.jpg ...      the label is the folder
    ROOT/images/Non_fractured/IMG0000000.jpg ...
    ROOT/dataset.csv      image_id,hand,leg,hip,shoulder,mixed,hardware,multiscan,fractured,
                          fracture_count,frontal,lateral,oblique   (checked against the folders)
    ROOT/Annotations/     optional fracture boxes: COCO JSON/*.json, or PASCAL VOC/*.xml, or YOLO/*.txt

(``ROOT/FracAtlas/...`` is found as well.) A folder of DICOMs with a labels table is read too
(the project's ``../shared/data/fracture``)::

    ROOT/labels.csv       file,label[,patient][,boxes]   file: DICOM path relative to ROOT;
                          label: fracture/normal (or 1/0, Fractured/Non_fractured);
                          boxes: "x y w h;x y w h" in pixels of the stored image
    ROOT/dicom/...

Patient groups: FracAtlas publishes no patient ids. Its images are numbered in acquisition
order, so consecutive image numbers are grouped in blocks of 20 (``IMG0000000``-``IMG0000019``
is one group): a stand-in for patients, not a guarantee that no one's images straddle two
groups. A DICOM folder's ``patient`` column is used when there is one, else the DICOM PatientID.

Steps:

1. The archive as a hospital has it: each FracAtlas JPEG is wrapped as a DICOM file (DX, its
   pixels, longest side at most ``--max-side``, no patient data; PatientID = the image-number
   block) in ``OUT/archive``, boxes scaled with it; everything below reads DICOM. A DICOM
   folder is read in place.
2. Test groups are split off first (stratified, grouped); a model is trained on the rest with
   the weighted sampler (fractured and normal images drawn equally often; no class weights on
   top); it predicts the unseen groups, scored with AUC and balanced accuracy (accuracy alone
   would reward "never fractured" with 86 %).
3. GradCAM of the fracture class on the test fractures (``OUT/gradcam``); where boxes exist,
   the pointing game of :mod:`radiology.explain.pointing`: the share of maps whose peak lies
   inside a fracture box grown by 5 % of the image's longer side, beside the same share for
   the image centre (a model that always looked at the centre would score that) and the
   expected share for a random point: ``OUT/gradcam/cam_in_box.csv`` (with each box and
   image size), ``OUT/gradcam/pointing.csv`` and ``pointing.json`` (what ``radiology explain
   --boxes`` writes). The map is taken at ``--cam-layer``
   (default ``blocks.4``, stride 16: 14 x 14 at 224 px); the last layer's map (7 x 7, the
   library's default) is scored beside it in ``OUT/gradcam_last_layer``: a coarse map peaks
   where its few cells are, rarely on a thin fracture line.

Usage::

    python examples/fracture_fracatlas.py --data ROOT [--out OUT]   # 224 px, 5 epochs
    python examples/fracture_fracatlas.py --quick --data ROOT      # about 240 images (whole groups), 128 px
    python examples/fracture_fracatlas.py --quick                  # no data needed: a miniature FracAtlas
                                                                   # layout of SYNTHETIC phantoms (a
                                                                   # "fracture" is a thin dark line across a
                                                                   # bright bone band, its box known).
                                                                   # Its numbers mean nothing.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
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
from _miniature import write_fracatlas

from radiology.data import dicom_patient_ids, from_csv
from radiology.dicom import read_dicom
from radiology.explain import GROW, explain_inputs, parse_boxes, pointing_game
from radiology.io import read_image
from radiology.synthetic import write_phantom_dicom
from radiology.train import TrainConfig

FRACTURE, NORMAL = "fracture", "normal"
FOLDERS = {"Fractured": FRACTURE, "Non_fractured": NORMAL}
BLOCK = 20  # consecutive image numbers per group (FracAtlas has no patient ids)
# Boxes are grown by GROW (5 %) of the image's longer side when scoring CAM peaks (radiology.explain.GROW).
# GradCAM layer: the last stride-16 stage of the default backbone (tf_efficientnet_lite0): a 14 x 14 map at
# 224 px (6 x 6 at 96 px) instead of the last layer's 7 x 7 (3 x 3), fine enough to point at a fracture line.
CAM_LAYER = "blocks.4"
MAX_SIDE = 1024
QUICK = {"size": 128, "epochs": 1, "head_epochs": 6, "workers": 0}
QUICK_SYNTHETIC = {"size": 96, "epochs": 1, "head_epochs": 4, "workers": 0}
QUICK_IMAGES = 240
CSV_COLUMNS = ("image_id", "hand", "leg", "hip", "shoulder", "mixed", "hardware", "multiscan", "fractured",
               "fracture_count", "frontal", "lateral", "oblique")
LAYOUT = ("FracAtlas as published (images/Fractured/*.jpg, images/Non_fractured/*.jpg, dataset.csv, "
          "optional Annotations/), or a folder of DICOMs with labels.csv (file,label[,patient][,boxes])")


def build_parser():
    parser = new_parser(__doc__)
    add_data_arguments(parser, layout=LAYOUT, out="out/examples/fracture")
    parser.add_argument("--max-side", type=int, default=MAX_SIDE,
                        help=f"longest side of the DICOMs wrapped from FracAtlas JPEGs (default {MAX_SIDE})")
    parser.add_argument("--explain", type=int, default=64, help="at most this many test fractures get GradCAM "
                                                                "(default 64)")
    parser.add_argument("--cam-layer", default=CAM_LAYER,
                        help=f"backbone layer GradCAM explains (default {CAM_LAYER}, stride 16; 'last': the library's "
                             f"default; the last layer's coarser map is scored beside it)")
    add_training_arguments(parser, epochs_help="fine-tuning epochs (default: 5, quick: 1)",
                           size_help="input side in pixels (default: 224, quick: 128; synthetic: 96)",
                           test_fraction_help="share of groups held out for testing (default 0.25)")
    parser.set_defaults(test_fraction=0.25)
    add_run_arguments(parser)
    return parser


# ---------------------------------------------------------------------------------------------
# Reading the layouts


def image_group(name: str) -> str:
    """The group of a FracAtlas image: its number's block of ``BLOCK`` (``IMG0000045.jpg`` → ``"block2"``)."""
    digits = re.findall(r"\d+", Path(name).stem)
    if not digits:
        raise SystemExit(f"{name}: no image number in the name (FracAtlas names are IMG<number>.jpg)")
    return f"block{int(digits[-1]) // BLOCK}"


def box_list(text: str) -> list[tuple[float, float, float, float]]:
    """``"x y w h;x y w h"`` → a list of boxes (empty text: none), by :func:`radiology.explain.parse_boxes`."""
    return [tuple(float(v) for v in box) for box in parse_boxes(text)]


def format_boxes(boxes) -> str:
    """A list of boxes → ``"x y w h;x y w h"`` (pixels, one decimal)."""
    return ";".join(" ".join(f"{v:.1f}" for v in box) for box in boxes)


def read_annotations(folder: Path) -> tuple[dict[str, list], bool]:
    """Fracture boxes by image file name from FracAtlas' ``Annotations/``.

    COCO JSON is read first, else PASCAL VOC, else YOLO. Returns ``(boxes, normalized)``:
    ``(x, y, w, h)`` in pixels, or for YOLO as shares of the image (``normalized`` True).
    """
    boxes: dict[str, list] = {}
    if not folder.is_dir():
        return boxes, False
    for path in sorted(folder.rglob("*.json")):
        coco = json.loads(path.read_text())
        if not {"images", "annotations"} <= set(coco):
            continue
        names = {image["id"]: Path(image["file_name"]).name for image in coco["images"]}
        for annotation in coco["annotations"]:
            if annotation.get("bbox"):
                boxes.setdefault(names[annotation["image_id"]], []).append(tuple(map(float, annotation["bbox"])))
        return boxes, False
    for path in sorted(folder.rglob("*.xml")):
        tree = ElementTree.parse(path).getroot()
        name = Path(tree.findtext("filename") or path.with_suffix(".jpg").name).name
        for found in tree.iter("bndbox"):
            x0, y0, x1, y1 = (float(found.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.setdefault(name, []).append((x0, y0, x1 - x0, y1 - y0))
    if boxes:
        return boxes, False
    for path in sorted(folder.rglob("*.txt")):
        for line in path.read_text().splitlines():
            values = line.split()
            if len(values) == 5:  # class, centre x, centre y, width, height as shares of the image
                cx, cy, w, h = map(float, values[1:])
                boxes.setdefault(path.with_suffix(".jpg").name, []).append((cx - w / 2, cy - h / 2, w, h))
    return boxes, True


def fracatlas_root(root: Path) -> Path | None:
    """ROOT (or ROOT/FracAtlas) when it holds FracAtlas' ``images/`` and ``dataset.csv``."""
    for candidate in (root, root / "FracAtlas"):
        if (candidate / "dataset.csv").is_file() and any((candidate / "images" / f).is_dir() for f in FOLDERS):
            return candidate
    return None


def read_fracatlas(root: Path) -> pd.DataFrame:
    """FracAtlas as published → ``source, label, group, boxes, normalized`` (one row per JPEG).

    ``source`` is relative to ROOT; the label is the folder (``dataset.csv`` is checked against
    it and disagreements are counted); groups are blocks of ``BLOCK`` image numbers.
    """
    table = pd.read_csv(root / "dataset.csv", dtype=str, keep_default_na=False)
    if not {"image_id", "fractured"} <= set(table.columns):
        raise SystemExit(f"{root / 'dataset.csv'}: not FracAtlas' table, expected the columns "
                         f"{','.join(CSV_COLUMNS)}")
    listed = dict(zip(table["image_id"].str.strip(), table["fractured"].str.strip()))
    boxes, normalized = read_annotations(root / "Annotations")
    rows = []
    for folder, label in FOLDERS.items():
        for path in sorted((root / "images" / folder).glob("*")):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                rows.append({"source": path.relative_to(root).as_posix(), "label": label,
                             "group": image_group(path.name), "boxes": boxes.get(path.name, []),
                             "normalized": normalized, "listed": listed.get(path.name)})
    if not rows:
        raise SystemExit(f"{root / 'images'}: no images in {' or '.join(FOLDERS)}")
    data = pd.DataFrame(rows)
    unlisted = data["listed"].isna()
    disagree = ~unlisted & (data["listed"] != np.where(data["label"] == FRACTURE, "1", "0"))
    print(f"FracAtlas: {len(data)} images; labels from the folders ({int(disagree.sum())} disagree with "
          f"dataset.csv, {int(unlisted.sum())} not in it); boxes for {int((data['boxes'].str.len() > 0).sum())} "
          f"images from {'Annotations/' if boxes else 'nowhere (no Annotations/)'}")
    return data.drop(columns="listed")


def label_of(value: str) -> str:
    """A labels.csv label → ``fracture`` / ``normal``."""
    text = str(value).strip().lower()
    if text in ("fracture", "fractured", "1", "yes", "true"):
        return FRACTURE
    if text in ("normal", "non_fractured", "not fractured", "0", "no", "false"):
        return NORMAL
    raise SystemExit(f"labels.csv: label {value!r} is neither fracture nor normal")


def read_dicom_folder(root: Path) -> pd.DataFrame:
    """A folder of DICOMs with ``labels.csv`` → ``file, label, group, boxes``."""
    table = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    missing = [c for c in ("file", "label") if c not in table.columns]
    if missing:
        raise SystemExit(f"{root / 'labels.csv'}: missing the columns {', '.join(missing)} "
                         f"(expected file,label[,patient][,boxes])")
    data = pd.DataFrame({"file": table["file"], "label": [label_of(v) for v in table["label"]]})
    if "patient" in table.columns:
        data["group"] = table["patient"].to_numpy()
        how = "the patient column"
    else:
        data["group"] = dicom_patient_ids([root / f for f in table["file"]])
        how = "the DICOM PatientID"
    data["boxes"] = [box_list(v) for v in table["boxes"]] if "boxes" in table.columns else [[]] * len(data)
    print(f"DICOM folder: {len(data)} images; groups from {how}; boxes for "
          f"{int((data['boxes'].str.len() > 0).sum())} images")
    return data


def read_layout(root: Path) -> tuple[pd.DataFrame, Path | None]:
    """The images of ROOT: ``(table, fracatlas)`` where ``fracatlas`` is FracAtlas' root (JPEGs to
    wrap) or None for a DICOM folder read in place. SystemExit naming both layouts otherwise."""
    if (root / "labels.csv").is_file():
        return read_dicom_folder(root), None
    found = fracatlas_root(root)
    if found is None:
        raise SystemExit(f"{root}: neither FracAtlas (dataset.csv + images/Fractured, images/Non_fractured) "
                         f"nor a DICOM folder with labels.csv; expected {LAYOUT}")
    return read_fracatlas(found), found


# ---------------------------------------------------------------------------------------------
# Step 1: the archive


def wrap_as_dicom(root: Path, table: pd.DataFrame, archive: Path, max_side: int) -> pd.DataFrame:
    """Each JPEG → ``archive/<name>.dcm`` (DX, 12 bits, no patient data, PatientID = its group);
    boxes brought to the stored pixels. Returns the table with ``file`` (relative to ``archive``)."""
    files, boxes = [], []
    for source, group, found, normalized in zip(table["source"], table["group"], table["boxes"],
                                                table["normalized"]):
        image = read_image(root / source)
        if image.ndim == 3:
            image = image.mean(axis=2)
        rows, cols = image.shape
        if normalized:
            found = [(x * cols, y * rows, w * cols, h * rows) for x, y, w, h in found]
        scale = min(1.0, max_side / max(rows, cols))
        sx = sy = 1.0
        if scale < 1:
            image = cv2.resize(image, (round(cols * scale), round(rows * scale)), interpolation=cv2.INTER_AREA)
            # Box corners scale by each axis' own factor (the rounded size), exactly as the pixels moved.
            sy, sx = image.shape[0] / rows, image.shape[1] / cols
        name = Path(source).with_suffix(".dcm").name
        write_phantom_dicom(archive / name, np.clip(image, 0, 1).astype(np.float32), bits_stored=12, modality="DX",
                            pixel_spacing=None, patient_name="", patient_id=group)
        files.append(name)
        boxes.append([(x * sx, y * sy, w * sx, h * sy) for x, y, w, h in found])
    return table.assign(file=files, boxes=boxes)


# ---------------------------------------------------------------------------------------------
# Step 3: where the maps point


def explain_fractures(out: Path, image_root: Path, test_table: pd.DataFrame, limit: int, quiet: bool,
                      layer: str | None = CAM_LAYER, folder: str = "gradcam"):
    """GradCAM of the fracture class on the test fractures (overlays in ``OUT/folder``), peaks scored
    against their boxes by the library's pointing game (``OUT/folder/cam_in_box.csv``, ``pointing.csv``,
    ``pointing.json``); ``layer`` None: the library's default (last) layer. Returns the
    :class:`radiology.explain.PointingGame`."""
    fractures = test_table[test_table["label"] == FRACTURE].head(limit)
    if fractures.empty:
        return pointing_game([], [], [])
    fractures[["file"]].to_csv(out / "explain.csv", index=False)
    cams = explain_inputs(out / "bundle", out / "explain.csv", out / folder, root=image_root, image_cols="file",
                          label=FRACTURE, target_layer=layer, progress=not quiet,
                          boxes=dict(zip(fractures["file"], fractures["boxes"])), grow=GROW)
    cams = cams.drop_duplicates("image").set_index("image")
    peaks, shapes = [], []
    for file in fractures["file"]:
        row = cams.loc[file] if file in cams.index else None
        ok = row is not None and not (pd.notna(row["error"]) and row["error"]) and pd.notna(row["peak_x"])
        peaks.append((float(row["peak_x"]), float(row["peak_y"])) if ok else None)
        shapes.append(read_dicom(image_root / file).pixels.shape[:2])
    game = pointing_game(peaks, list(fractures["boxes"]), shapes, grow=GROW)
    rows = [{"image": file, "peak_x": "" if peak is None else peak[0], "peak_y": "" if peak is None else peak[1],
             "boxes": format_boxes(found), "rows": shape[0], "cols": shape[1],
             "peak_in_box": bool(hit) if scored else "", "centre_in_box": bool(centre) if scored else ""}
            for file, found, peak, shape, hit, centre, scored in zip(fractures["file"], fractures["boxes"], peaks,
                                                                     shapes, game.hit, game.centre_hit, game.scored)]
    pd.DataFrame(rows).to_csv(out / folder / "cam_in_box.csv", index=False)
    return game


# ---------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    root = data_root(args, write_fracatlas, what=LAYOUT)
    table, fracatlas = read_layout(root)
    set_threads(args)
    synthetic = is_synthetic(args)
    quick = QUICK_SYNTHETIC if synthetic else QUICK
    started = time.time()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    table["group"] = anonymous_groups(table["group"])
    targets = (table["label"] == FRACTURE).to_numpy().astype(int)
    if args.quick and len(table) > QUICK_IMAGES:
        keep = patient_subset(targets, table["group"].to_numpy(), QUICK_IMAGES, seed=args.seed)
        print(f"quick mode: a subset of {len(keep)} of {len(table)} images (whole groups)")
        table, targets = table.iloc[keep].reset_index(drop=True), targets[keep]
    print(f"{len(table)} images, {int(targets.sum())} fractured ({targets.mean():.0%}), "
          f"{table['group'].nunique()} groups")

    # 1. The archive, as DICOM (a DICOM folder is read where it is).
    if fracatlas is not None:
        image_root = out / "archive"
        table = wrap_as_dicom(fracatlas, table, image_root, args.max_side)
        print(f"== step 1: {len(table)} JPEGs wrapped as DICOM in {shown(image_root)}")
    else:
        image_root = root

    # 2. Test groups first; the model never sees them.
    items = from_csv(table[["file", "label", "group"]], image_root, "file", "label", group_col="group",
                     progress=not args.quiet)
    rest, test, train_csv, test_csv = write_test_split(table[["file", "label", "group"]], items.targets, items.groups,
                                                       out, ["file", "label"], test_fraction=args.test_fraction,
                                                       seed=args.seed)
    print(f"== step 2: {len(rest)} images for training ({int(targets[rest].sum())} fractured), {len(test)} held-out "
          f"test images ({int(targets[test].sum())} fractured) from {len(set(items.groups[test]))} other groups")
    config = TrainConfig(csv=train_csv, root=image_root, image_cols="file", label_cols="label", group_col="group",
                         sampler="weighted", class_weights=False, out=out / "bundle", overwrite=True, seed=args.seed,
                         **train_settings(args, quick))
    _, _, metrics = train_predict_evaluate(config, test_csv, image_root, out, image_cols="file", label_cols="label",
                                           quiet=args.quiet)

    # 3. Where the model looks on the test fractures.
    layer = None if args.cam_layer.lower() in ("last", "none", "") else args.cam_layer
    cams = {args.cam_layer: explain_fractures(out, image_root, table.iloc[test], args.explain, args.quiet,
                                              layer=layer),
            "last layer": explain_fractures(out, image_root, table.iloc[test], args.explain, args.quiet,
                                            layer=None, folder="gradcam_last_layer")}
    kind = "SYNTHETIC phantoms" if synthetic else "images of unseen groups"
    print(f"held-out test ({metrics['n']} {kind}, {int(targets[test].sum())} fractured): AUC "
          f"{fmt(metrics['auc'].get(FRACTURE), nan_as_na=True)}, balanced accuracy "
          f"{fmt(metrics['balanced_accuracy'])}, fracture recall {fmt(metrics['recall'].get(FRACTURE))}, "
          f"normal recall {fmt(metrics['recall'].get(NORMAL))}")
    cam = cams[args.cam_layer]
    if cam.n:
        last = cams["last layer"]
        print(f"GradCAM ({args.cam_layer}) on {cam.n} test fractures with boxes: peak inside a fracture box "
              f"(grown by {GROW:.0%} of the longer side) {cam.hits}/{cam.n} ({fmt(cam.hit_rate)}); "
              f"last layer {last.hits}/{last.n} ({fmt(last.hit_rate)}); the image centre is inside one "
              f"{cam.centre_hits}/{cam.n} ({fmt(cam.centre_rate)}), a random point {fmt(cam.random_rate)}: "
              f"{shown(out / 'gradcam' / 'cam_in_box.csv')}")
    else:
        print("GradCAM: no test fracture with a box, nothing to score")
    if synthetic:
        print("(SYNTHETIC phantoms: these numbers say nothing about real radiographs)")
    print(elapsed(started))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
