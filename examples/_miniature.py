"""Miniatures of public data sets in their publishers' layouts, made of synthetic phantoms (not an example).

``--quick`` without ``--data`` writes one of these under ``OUT/miniature`` and runs the example's
``--data`` code on it, so CI and a fresh clone need no downloaded data. The images are phantoms,
from :mod:`radiology.synthetic` or drawn here, with a class-dependent finding drawn in (so a model
can learn *something*); the file and folder names follow the publishers' conventions, so the layout
readers are exercised as they would be on the real sets. Nothing here resembles real anatomy
closely: numbers measured on a miniature mean nothing.

Each writer is ``write_NAME(folder, seed=0, ...) -> Path`` and returns the folder that
``--data`` would name.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom

from radiology.io import write_image
from radiology.synthetic import add_findings, phantom_dicom, phantom_radiograph, write_findings_dataset


def write_kermany(folder: Path, seed: int = 0, *, patients: int = 12, size: tuple[int, int] = (96, 112)) -> Path:
    """Kermany et al.'s pediatric pneumonia set: ``folder/chest_xray/{train,test,val}/{NORMAL,PNEUMONIA}/*.jpeg``.

    Names as published: normal patients ``IM-XXXX-YYYY.jpeg`` and ``NORMAL2-IM-XXXX-YYYY.jpeg``
    (series ``XXXX`` is the patient), pneumonia ``personN_bacteria_M.jpeg`` and
    ``personN_virus_M.jpeg``. Pneumonia images carry a drawn effusion-like opacity. Each patient's
    images lie in one of train (most), test and val (a few).

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the phantoms and the assignment to folders.
    patients : int, optional
        Patients per class (each with 1 to 3 images).
    size : (int, int), optional
        ``(rows, columns)`` of the images.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    split_of = ["test", "val"] + ["train"] * 6
    for label in ("NORMAL", "PNEUMONIA"):
        for p in range(patients):
            split = split_of[(p + (label == "PNEUMONIA")) % len(split_of)]
            for m in range(1, int(rng.integers(1, 4)) + 1):
                if label == "NORMAL":
                    series = 100 + 7 * p
                    name = (f"IM-{series:04d}-{m:04d}.jpeg" if p % 2 else f"NORMAL2-IM-{series:04d}-{m:04d}.jpeg")
                else:
                    kind = "bacteria" if p % 3 else "virus"
                    name = f"person{p + 1}_{kind}_{m + p}.jpeg"
                image = phantom_radiograph(size, seed=int(rng.integers(1 << 30)))
                if label == "PNEUMONIA":
                    image = add_findings(image, {"effusion"}, seed=int(rng.integers(1 << 30)))
                write_image(folder / "chest_xray" / split / label / name, image)
    return folder


def write_covid_views(folder: Path, seed: int = 0, *, patients: int = 24, size: tuple[int, int] = (96, 96)) -> Path:
    """The ieee8023 covid-chestxray-dataset: ``folder/metadata.csv`` and ``folder/images/<filename>``.

    ``metadata.csv`` has the publisher's columns that matter here (``patientid, offset, sex,
    age, finding, view, modality, folder, filename``); views ``PA``, ``AP`` and ``AP Supine``
    (the AP views with a widened heart, supine ones also with an effusion), plus rows the
    example must leave out: lateral views (``L``) and CT slices (modality ``CT``, folder
    ``volumes``, no file).

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the phantoms.
    patients : int, optional
        Patients (each with 1 to 3 radiographs of one view).
    size : (int, int), optional
        ``(rows, columns)`` of the images.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    drawn = {"PA": set(), "AP": {"cardiomegaly"}, "AP Supine": {"cardiomegaly", "effusion"}}
    rows = []
    for p in range(patients):
        view = ("PA", "AP", "AP Supine")[p % 3]
        for m in range(int(rng.integers(1, 4))):
            filename = f"covid-{p + 1}-{m}.jpg" if p % 2 else f"{p + 1:04d}-{m}-{seed}.png"
            image = phantom_radiograph(size, seed=int(rng.integers(1 << 30)))
            if drawn[view]:
                image = add_findings(image, drawn[view], seed=int(rng.integers(1 << 30)))
            write_image(folder / "images" / filename, image)
            rows.append({"patientid": str(p + 1), "offset": m, "sex": "MF"[p % 2], "age": 30 + p, "finding":
                         "Pneumonia/Viral/COVID-19", "view": view, "modality": "X-ray", "folder": "images",
                         "filename": filename})
        if p % 5 == 0:  # a lateral view and a CT volume of the same patient: not for this task
            write_image(folder / "images" / f"lateral-{p + 1}.png", phantom_radiograph(size, seed=p).T.copy())
            rows.append({**rows[-1], "view": "L", "filename": f"lateral-{p + 1}.png"})
            rows.append({**rows[-1], "view": "Axial", "modality": "CT", "folder": "volumes",
                         "filename": f"ct-{p + 1}.nii.gz"})
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder


def knee_phantom(grade: int, side: str, size: int = 80, seed: int = 0) -> np.ndarray:
    """A knee-radiograph-like phantom whose joint space narrows with the KL grade.

    Femur above, tibia below, the fibula on the lateral side (mirrored for ``side="L"``); the
    joint gap is about ``(14 - 3 * grade) %`` of the height, grades 3 and 4 add osteophytes and
    subchondral sclerosis.

    Parameters
    ----------
    grade : int
        Kellgren-Lawrence grade, 0 to 4.
    side : {"L", "R"}
        The knee.
    size : int, optional
        Side of the square image in pixels.
    seed : int, optional
        Seed of the jitter and noise.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape (size, size)
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    centre = 0.5 + rng.uniform(-0.04, 0.04)
    gap = max(0.01, (0.14 - 0.03 * grade) * rng.uniform(0.9, 1.1))
    image = 0.15 + 0.2 * (np.abs(x - 0.5) < 0.36)  # soft tissue
    femur = (y < centre - gap / 2 - 0.08 * (1 - ((x - 0.5) / 0.26) ** 2).clip(0)) | \
        ((y < centre - gap / 2) & (np.abs(x - 0.5) < 0.26))
    femur &= np.abs(x - 0.5) < 0.26 + 0.1 * (y > centre - 0.25)
    tibia = (y > centre + gap / 2) & (np.abs(x - 0.5) < 0.24 + 0.04 * (y < centre + 0.15))
    fib_x = 0.78 if side == "R" else 0.22
    fibula = (y > centre + gap / 2 + 0.1) & (np.abs(x - fib_x) < 0.05)
    image = np.where(femur | tibia | fibula, 0.75, image)
    if grade >= 3:
        near = np.abs(y - centre) < gap / 2 + 0.05
        image = np.where((femur | tibia) & near, 0.95, image)  # sclerosis
        for edge in (0.24, 0.76):  # osteophytes at the joint margins
            image = np.where((x - edge) ** 2 + (y - centre) ** 2 < (0.035 + 0.01 * (grade - 3)) ** 2, 0.9, image)
    image = image + rng.normal(0, 0.03, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def write_oai_kl(folder: Path, seed: int = 0, *, participants: int = 110, size: int = 80) -> Path:
    """Chen et al.'s OAI knee KL-grade set: ``folder/{train,val,test}/{0,1,2,3,4}/<id><side>.png``.

    One image per knee, named by the participant's 7-digit id and side (``9003175L.png``);
    both knees of a participant lie in the same split folder. Grades are imbalanced as in
    the real set (most 0-2), and both knees of a participant are severe (KL >= 3) or neither.

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds grades, phantoms and splits.
    participants : int, optional
        Participants (two knees each).
    size : int, optional
        Side of the square images.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    for p in range(participants):
        split = ("train",) * 7 + ("val", "test", "test")
        split = split[p % len(split)]
        severe = p % 5 == 0
        for side in "LR":
            grade = int(rng.integers(3, 5)) if severe else int(rng.choice(3, p=[0.45, 0.3, 0.25]))
            image = knee_phantom(grade, side, size, seed=int(rng.integers(1 << 30)))
            write_image(folder / split / str(grade) / f"{9000000 + 137 * p + seed:07d}{side}.png", image)
    return folder


def write_nih(folder: Path, seed: int = 0, *, count: int = 240,
              findings: tuple[str, ...] = ("nodule", "effusion", "cardiomegaly")) -> Path:
    """NIH ChestX-ray14: ``folder/Data_Entry_2017.csv`` and ``folder/images/*.png``.

    A thin wrapper of :func:`radiology.synthetic.write_findings_dataset` (which writes this
    layout for several findings).

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the phantoms and findings.
    count : int, optional
        Number of images (each its own patient).
    findings : tuple of str, optional
        The findings drawn (at least two, for the NIH layout).

    Returns
    -------
    Path
        ``folder``.
    """
    return write_findings_dataset(folder, count, findings=findings, fmt="png", seed=seed + 1).parent


# The UNIFESP codes (the ``Target`` column) of the body parts drawn, which differ visibly.
_UNIFESP_CLASSES = {3: "chest", 11: "knee", 18: "skull"}


def _body_part_phantom(kind: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A radiograph-like phantom of one body part (float32 [0, 1], bone bright)."""
    if kind == "chest":
        return phantom_radiograph(shape, seed=int(rng.integers(1 << 30)))
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cx, cy = cols * rng.uniform(0.45, 0.55), rows * rng.uniform(0.45, 0.55)
    image = np.full(shape, 0.05, np.float32)
    if kind == "knee":  # soft tissue, femur with condyles above a joint gap, tibia with its plateau below
        image[np.abs(x - cx) < 0.32 * cols] = 0.35
        bone = ((np.abs(x - cx) < 0.13 * cols) & (np.abs(y - cy) > 0.03 * rows)) \
            | (((x - cx) / (0.22 * cols)) ** 2 + ((y - cy + 0.09 * rows) / (0.07 * rows)) ** 2 < 1) \
            | ((np.abs(x - cx) < 0.21 * cols) & (y > cy + 0.03 * rows) & (y < cy + 0.1 * rows))
        image[bone] = 0.85
    else:  # skull: a bright elliptical vault around the brain, the face below
        r = ((x - cx) / (0.36 * cols)) ** 2 + ((y - cy) / (0.42 * rows)) ** 2
        image[r < 1.25] = 0.85
        image[r < 1.0] = 0.4
        image[(np.abs(x - cx) < 0.2 * cols) & (y > cy + 0.35 * rows)] = 0.6
    image = cv2.GaussianBlur(image, (0, 0), 1.0)
    return np.clip(image + rng.normal(0, 0.02, shape).astype(np.float32), 0, 1)


def _write_unifesp_dicom(folder: Path, image: np.ndarray, patient: str, rng: np.random.Generator) -> str:
    """Write one phantom as ``folder/<Study>/<Series>/<SOP>.dcm`` (the competition's layout); its SOP UID."""
    ds = phantom_dicom(image, bits_stored=12, photometric="MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2",
                       encoding="rle" if rng.random() < 0.5 else "explicit", patient_name="", patient_id=patient)
    path = folder / ds.StudyInstanceUID / ds.SeriesInstanceUID / f"{ds.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(ds.SOPInstanceUID)


def write_unifesp(folder: Path, seed: int = 0, *, patients: int = 12, test_images: int = 5,
                  size: tuple[int, int] = (96, 96)) -> Path:
    """The Kaggle UNIFESP X-ray Body Part Classifier Competition: ``folder/train/<Study>/<Series>/<SOP>.dcm``.

    Beside ``train/``: ``train.csv`` (``SOPInstanceUID,Target``), ``test/`` (the same layout),
    ``sample_submission.csv`` (the test UIDs in shuffled order, Target 0) and
    ``test_labels.csv`` (their true targets; not from Kaggle). The images are SYNTHETIC
    phantoms of three body parts (Target 3 chest, 11 knee, 18 skull) stored as DICOM (12 bits,
    MONOCHROME1 or MONOCHROME2, RLE or uncompressed); a train patient (the DICOM PatientID,
    ``SYNTHETIC-<part>-<n>``) has 1 or 2 images of one body part.

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the phantoms, the DICOM encodings and the test order.
    patients : int, optional
        Train patients per body part.
    test_images : int, optional
        Test images per body part.
    size : (int, int), optional
        ``(rows, columns)`` of the images.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    train_rows, test_rows = [], []
    for code, kind in _UNIFESP_CLASSES.items():
        for p in range(patients):
            patient = f"SYNTHETIC-{kind}-{p:02d}"
            for _ in range(1 + int(rng.random() < 0.5)):
                uid = _write_unifesp_dicom(folder / "train", _body_part_phantom(kind, size, rng), patient, rng)
                train_rows.append((uid, code))
        for p in range(test_images):
            uid = _write_unifesp_dicom(folder / "test", _body_part_phantom(kind, size, rng), f"SYNTHETIC-test-{p}",
                                       rng)
            test_rows.append((uid, code))
    order = rng.permutation(len(test_rows))
    columns = ["SOPInstanceUID", "Target"]
    pd.DataFrame(train_rows, columns=columns).to_csv(folder / "train.csv", index=False)
    test = pd.DataFrame([test_rows[i] for i in order], columns=columns)
    test.assign(Target=0).to_csv(folder / "sample_submission.csv", index=False)
    test.to_csv(folder / "test_labels.csv", index=False)
    return folder


# ODIR-5K's eight diagnoses (its label columns, in order) with keywords like the publisher's per-eye ones.
_ODIR_KEYWORDS = {"N": "normal fundus", "D": "moderate non proliferative retinopathy", "G": "glaucoma",
                  "C": "cataract", "A": "dry age-related macular degeneration", "H": "hypertensive retinopathy",
                  "M": "pathological myopia", "O": "epiretinal membrane"}


def _fundus_phantom(side: int, eye: str, findings, rng: np.random.Generator) -> np.ndarray:
    """A colour fundus phantom (uint8 RGB): an orange retina on black, optic disc, vessels, findings drawn in."""
    image = np.zeros((side, side, 3), np.float32)
    c = side / 2
    radius = 0.46 * side
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    r = np.hypot(x - c, y - c) / radius
    retina = r < 1
    shade = (1 - 0.35 * r ** 2)[..., None] * np.array([0.80, 0.38, 0.16], np.float32)  # RGB
    image[retina] = shade[retina]
    sign = 1 if eye == "right" else -1  # the disc sits on the nasal side
    disc = (c + sign * 0.45 * radius * rng.uniform(0.9, 1.1), c + rng.uniform(-0.05, 0.05) * radius)
    for angle in rng.uniform(0, 2 * np.pi, 6):  # vessels from the disc
        end = (disc[0] + np.cos(angle) * radius * 1.2, disc[1] + np.sin(angle) * radius * 1.2)
        cv2.line(image, tuple(int(v) for v in disc), tuple(int(v) for v in end), (0.45, 0.08, 0.05), 2)
    disc_r = int(0.13 * radius * (1.6 if "G" in findings else 1.0))
    cv2.circle(image, tuple(int(v) for v in disc), disc_r, (0.98, 0.9, 0.55), -1)
    if "G" in findings:  # glaucoma: a wide, pale cup
        cv2.circle(image, tuple(int(v) for v in disc), int(disc_r * 0.75), (1.0, 1.0, 0.9), -1)
    if "M" in findings:  # myopia: a pale crescent beside the disc
        cv2.ellipse(image, tuple(int(v) for v in disc), (disc_r * 2, disc_r * 2), 0, -60 + 90 * (1 - sign),
                    60 + 90 * (1 - sign), (0.95, 0.8, 0.6), -1)
    # (colour, how many, radius in image sides): haemorrhages, drusen, cotton-wool spots, a grey membrane
    spots = {"D": ((0.25, 0.02, 0.02), 8, 1 / 40), "A": ((1.0, 0.95, 0.35), 8, 1 / 40),
             "H": ((1.0, 1.0, 1.0), 4, 1 / 40), "O": ((0.55, 0.55, 0.6), 1, 1 / 8)}
    for name, (colour, count, size) in spots.items():
        if name in findings:
            spread = 0.25 if name == "A" else 0.6  # drusen at the macula, the others anywhere
            for _ in range(count):
                a, d = rng.uniform(0, 2 * np.pi), radius * spread * np.sqrt(rng.uniform())
                cv2.circle(image, (int(c + d * np.cos(a)), int(c + d * np.sin(a))), max(2, int(side * size)),
                           colour, -1)
    image = np.clip(image + rng.normal(0, 0.02, image.shape), 0, 1).astype(np.float32)
    if "C" in findings:  # cataract: blurred and hazy
        image = 0.6 * cv2.GaussianBlur(image, (0, 0), side / 40) + 0.25
    image[~retina] = 0
    return (image * 255).round().astype(np.uint8)


def write_odir(folder: Path, seed: int = 0, *, patients: int = 64, side: int = 128) -> Path:
    """ODIR-5K as Kaggle ships it: ``folder/full_df.csv`` and ``folder/preprocessed_images/<ID>_{left,right}.jpg``.

    ``full_df.csv`` has one row per photograph (a patient's two rows repeat its labels) with the
    publisher's columns ``ID, Patient Age, Patient Sex, Left-Fundus, Right-Fundus,
    Left-Diagnostic Keywords, Right-Diagnostic Keywords, N, D, G, C, A, H, M, O`` and Kaggle's
    ``filepath, filename``; IDs are numbers with gaps. The images are SYNTHETIC colour fundus
    phantoms (retina, optic disc, vessels). A third of the patients are normal; every diagnosis
    occurs (round-robin over the diseased patients, a second one now and then); a patient-level
    label is drawn into one or both eyes, and the per-eye keywords say which.

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the diagnoses, the phantoms and the ages and sexes.
    patients : int, optional
        Patients (two photographs each).
    side : int, optional
        Side of the square photographs in pixels.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    images = folder / "preprocessed_images"
    images.mkdir(parents=True, exist_ok=True)
    labels = tuple(_ODIR_KEYWORDS)
    views = ("left", "right")
    rows = []
    diseases = labels[1:]
    for i in range(patients):
        patient = str(i * 3 + 1)  # ODIR ids are numbers with gaps
        found = set()
        if i % 3:  # a third of the patients are normal
            found.add(diseases[i % len(diseases)])
            if rng.random() < 0.2:
                found.add(diseases[int(rng.integers(len(diseases)))])
        per_eye = {"left": set(), "right": set()}
        for name in sorted(found):
            for eye in (("left", "right") if rng.random() < 0.5 else (str(rng.choice(views)),)):
                per_eye[eye].add(name)
        names = {}
        for eye in views:
            names[eye] = f"{patient}_{eye}.jpg"
            cv2.imwrite(str(images / names[eye]), cv2.cvtColor(_fundus_phantom(side, eye, per_eye[eye], rng),
                                                               cv2.COLOR_RGB2BGR))
        keywords = {eye: "，".join(_ODIR_KEYWORDS[n] for n in sorted(per_eye[eye])) or _ODIR_KEYWORDS["N"]
                    for eye in views}
        diagnosed = {name: int(name in found) for name in labels}
        diagnosed["N"] = int(not found)
        for eye in views:  # full_df.csv: one row per photograph
            rows.append({"ID": patient, "Patient Age": str(int(rng.integers(30, 80))),
                         "Patient Sex": str(rng.choice(["Male", "Female"])), "Left-Fundus": names["left"],
                         "Right-Fundus": names["right"], "Left-Diagnostic Keywords": keywords["left"],
                         "Right-Diagnostic Keywords": keywords["right"], **diagnosed,
                         "filepath": f"preprocessed_images/{names[eye]}", "filename": names[eye]})
    pd.DataFrame(rows).to_csv(folder / "full_df.csv", index=False)
    return folder



def _limb_phantom(shape: tuple[int, int], rng: np.random.Generator, fractured: bool):
    """A bone-like phantom (float32 [0, 1]): a bright bone band in soft tissue; a fracture is a thin
    dark line across the band (the part below shifted a little). Returns ``(image, box or None)``."""
    rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float32)
    cx = cols * rng.uniform(0.4, 0.6)
    half = cols * rng.uniform(0.09, 0.13)
    tilt = rng.uniform(-0.15, 0.15)  # the band leans a little
    centre = cx + tilt * (y - rows / 2)
    image = np.full(shape, 0.08, np.float32)
    image[np.abs(x - centre) < cols * 0.33] = 0.35
    box = None
    if fractured:
        level = rows * rng.uniform(0.25, 0.75)
        slope = rng.uniform(-0.35, 0.35)
        line = level + slope * (x - cx)
        shift = rng.choice([-1, 1]) * rng.uniform(2.5, 5.0)
        centre = np.where(y > line, centre + shift, centre)
        bone = np.abs(x - centre) < half
        image[bone] = 0.82
        image[bone & (np.abs(y - line) < 2.0)] = 0.3  # the fracture line
        ys = level + slope * (np.array([cx - half, cx + half]) - cx)
        x0, x1 = cx - half - 3 + tilt * (level - rows / 2), cx + half + 3 + tilt * (level - rows / 2)
        box = (float(x0), float(ys.min() - 4), float(x1 - x0), float(ys.max() - ys.min() + 8))
    else:
        image[np.abs(x - centre) < half] = 0.82
    image[np.abs(x - centre) < half * 0.45] -= 0.15  # the marrow cavity
    image = cv2.GaussianBlur(image, (0, 0), 0.8)
    return np.clip(image + rng.normal(0, 0.02, shape).astype(np.float32), 0, 1), box


def write_fracatlas(folder: Path, seed: int = 0, *, count: int = 160, fractured: float = 0.2,
                    size: tuple[int, int] = (160, 128)) -> Path:
    """FracAtlas as figshare ships it: ``folder/images/{Fractured,Non_fractured}/IMG<number>.jpg``.

    Beside ``images/``: ``dataset.csv`` (the publisher's columns ``image_id, hand, leg, hip,
    shoulder, mixed, hardware, multiscan, fractured, fracture_count, frontal, lateral,
    oblique``, agreeing with the folders) and ``Annotations/COCO JSON/COCO_fracture_masks.json``
    with one box (``x, y, w, h`` in pixels) per fractured image. The images are SYNTHETIC
    phantoms: a bright bone band in soft tissue, a fracture a thin dark line across it (the
    part below shifted a little), its box known. Images are numbered ``IMG0000000`` onwards.

    Parameters
    ----------
    folder : Path
        Created; the data set's root.
    seed : int, optional
        Seeds the labels, the phantoms and the body parts and views.
    count : int, optional
        Number of images.
    fractured : float, optional
        Probability that an image is fractured.
    size : (int, int), optional
        ``(rows, columns)`` of the images.

    Returns
    -------
    Path
        ``folder``.
    """
    rng = np.random.default_rng(seed)
    is_fractured = rng.random(count) < fractured
    rows, images, annotations = [], [], []
    for number, broken in enumerate(is_fractured):
        name = f"IMG{number:07d}.jpg"
        image, box = _limb_phantom(size, rng, bool(broken))
        target = folder / "images" / ("Fractured" if broken else "Non_fractured") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), (image * 255).round().astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
        part = ("hand", "leg", "hip", "shoulder")[int(rng.integers(4))]
        view = ("frontal", "lateral", "oblique")[int(rng.integers(3))]
        rows.append({"image_id": name, **{p: int(p == part) for p in ("hand", "leg", "hip", "shoulder")},
                     "mixed": 0, "hardware": 0, "multiscan": 0, "fractured": int(broken),
                     "fracture_count": int(broken), **{v: int(v == view) for v in ("frontal", "lateral", "oblique")}})
        if broken:
            images.append({"id": len(images), "file_name": name, "height": size[0], "width": size[1]})
            annotations.append({"id": len(annotations), "image_id": images[-1]["id"], "category_id": 1,
                                "bbox": [round(v, 1) for v in box]})
    pd.DataFrame(rows).to_csv(folder / "dataset.csv", index=False)
    coco = folder / "Annotations" / "COCO JSON" / "COCO_fracture_masks.json"
    coco.parent.mkdir(parents=True, exist_ok=True)
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "fractured"}]}))
    return folder
