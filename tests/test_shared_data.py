"""Real data from ../shared/data (skipped when absent)."""

import numpy as np
import pandas as pd
import pydicom
import pytest

from radiology.convert import ConvertOptions, convert_folder, dicom_to_image, render_pipeline
from radiology.dicom import DicomError, read_dicom
from radiology.io import read_image
from tests.conftest import correlation, shared_path

BROKEN_IN_CORPUS = {"emri_small_jpeg_2k_lossless_too_short.dcm"}


def test_wrapped_chest_radiographs_reproduce_their_source_jpeg():
    root = shared_path("chest_xray_views")
    truth = pd.read_csv(root / "dicom_truth.csv")
    assert len(truth) == 60
    for row in truth.itertuples():
        image = dicom_to_image(root / row.file)
        reference = read_image(root / row.source_image)
        if reference.ndim == 3:
            reference = reference.mean(axis=2)
        assert image.shape == reference.shape, row.id
        r = correlation(image, reference)
        assert r >= 0.98, f"{row.id} ({row.photometric}, {row.transfer_syntax}): r={r:.4f}"


def test_corpus_converts_what_pydicom_decodes():
    folder = shared_path("dicom_corpus", "pydicom-data")
    decoded = failed = 0
    for path in sorted(folder.glob("*.dcm")):
        try:
            bare_ok = pydicom.dcmread(path).pixel_array.size > 0
        except Exception:  # noqa: BLE001 - whatever bare pydicom raises
            bare_ok = False
        try:
            image = dicom_to_image(path)
        except DicomError:
            assert not bare_ok or path.name in BROKEN_IN_CORPUS, f"{path.name} decodes with pydicom but not with us"
            failed += 1
            continue
        assert np.isfinite(image).all() and 0 <= image.min() <= image.max() <= 1
        decoded += 1
    assert decoded >= 70 and failed >= len(BROKEN_IN_CORPUS)


def test_corpus_broken_files_fail_typed():
    folder = shared_path("dicom_corpus", "pydicom-data")
    for name in BROKEN_IN_CORPUS:
        with pytest.raises(DicomError, match=name):
            read_dicom(folder / name)


def test_corpus_monochrome1_cr_is_bone_bright():
    path = shared_path("dicom_corpus", "pydicom-data", "RG1_J2KI.dcm")
    image = read_dicom(path)
    assert image.metadata.photometric == "MONOCHROME1"
    rendered = dicom_to_image(path, longest=256)
    raw = dicom_to_image(path, longest=256, polarity=False)
    assert correlation(rendered, raw) < -0.99
    # Collimated air / background dominates the borders: it must be dark once inverted.
    border = np.concatenate([rendered[:8].ravel(), rendered[-8:].ravel()])
    assert border.mean() < rendered.mean()


def test_unifesp_layout_by_uid(tmp_path):
    root = shared_path("unifesp_layout")
    report = convert_folder(root / "train", tmp_path / "png", ConvertOptions(render_pipeline(width=128), naming="uid"),
                            workers=2, progress=False)
    train = pd.read_csv(root / "train.csv")
    assert report.count("ok") == len(train) == len(report.table)
    converted = {name.removesuffix(".png") for name in report.table.output}
    assert converted == set(train.SOPInstanceUID.astype(str))
