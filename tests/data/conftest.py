"""Fixtures for radiology.data: small phantom DICOMs in the Kaggle UNIFESP layout."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from radiology.synthetic import phantom_radiograph, write_phantom_dicom

SIZE = (64, 56)


def write_case(path, *, seed: int, uid: str | None = None, patient: str | None = None, **kwargs):
    """A small phantom DICOM; optionally with its own PatientID."""
    path = write_phantom_dicom(path, phantom_radiograph(SIZE, seed=seed), sop_instance_uid=uid, **kwargs)
    if patient is not None:
        ds = pydicom.dcmread(path)
        ds.PatientID = patient
        ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def kaggle_tree(tmp_path):
    """``train/<study>/<series>/<uid>.dcm`` + ``train.csv`` (SOPInstanceUID,Target): 6 images, codes 3 and 11."""
    root = tmp_path / "unifesp"
    rows = []
    for i in range(6):
        uid = f"1.2.826.0.1.9999.{i + 1}"
        target = "11" if i % 3 == 0 else "3"
        write_case(root / "train" / f"1.2.3.{i // 2}" / f"1.2.4.{i}" / f"{uid}.dcm", seed=i, uid=uid,
                   patient=f"P{i // 2}", photometric="MONOCHROME1" if i % 2 else "MONOCHROME2",
                   encoding="rle" if i % 2 else "explicit")
        rows.append((uid, target))
    # Not DICOM: must be skipped while indexing.
    (root / "train" / "notes.txt").write_text("not dicom")
    (root / "train.csv").write_text("SOPInstanceUID,Target\n" + "".join(f"{u},{t}\n" for u, t in rows))
    return root, rows


@pytest.fixture
def labeled_phantoms(tmp_path):
    """12 phantom DICOMs with relative paths, 3 classes (6/4/2), patients of 2 images."""
    root = tmp_path / "phantoms"
    lines = ["file,label,patient"]
    labels = ["a"] * 6 + ["b"] * 4 + ["c"] * 2
    for i, label in enumerate(labels):
        write_case(root / label / f"{i}.dcm", seed=10 + i)
        lines.append(f"{label}/{i}.dcm,{label},p{i // 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def flip_lr(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[..., ::-1])
