"""Validation images stay out of the unlabeled set by content (bytes or SOP Instance UID), not by path."""

import shutil

import numpy as np
import pydicom
import pytest

from radiology.semisup import copies_of
from radiology.synthetic import phantom_radiograph, write_findings_dataset, write_phantom_dicom
from radiology.train import TrainConfig, default_pipeline, load_items


def _resaved(source, target):
    """The same DICOM instance written again with other bytes (as a PACS export or an anonymizer does)."""
    dataset = pydicom.dcmread(source)
    dataset.ImageComments = "exported again"
    dataset.save_as(target)
    return target


def test_copies_are_found_by_bytes_or_instance_uid(tmp_path):
    original = write_phantom_dicom(tmp_path / "valid.dcm", phantom_radiograph((32, 32), seed=1))
    other = write_phantom_dicom(tmp_path / "other.dcm", phantom_radiograph((32, 32), seed=2))
    renamed = shutil.copy(original, tmp_path / "renamed.dcm")
    resaved = _resaved(original, tmp_path / "resaved.dcm")
    assert resaved.read_bytes() != original.read_bytes()
    found = copies_of([original, other, renamed, resaved, tmp_path / "gone.dcm"], [original])
    assert found.tolist() == [True, False, True, True, False]
    assert found.dtype == bool and copies_of([], [original]).shape == (0,)


def test_a_uid_shared_by_several_originals_identifies_nothing(tmp_path):
    # Some anonymizers give every file one SOP Instance UID: only byte copies can then be told apart.
    first, second, third = (write_phantom_dicom(tmp_path / f"{i}.dcm", phantom_radiograph((32, 32), seed=i),
                                                sop_instance_uid="1.2.3") for i in range(3))
    assert copies_of([third, shutil.copy(first, tmp_path / "copy.dcm")], [first, second]).tolist() == [False, True]


def test_image_files_are_compared_by_bytes(tmp_path):
    from radiology.io import write_image

    original = write_image(tmp_path / "a.png", phantom_radiograph((32, 32), seed=1))
    same_pixels_other_name = shutil.copy(original, tmp_path / "b.png")
    other = write_image(tmp_path / "c.png", phantom_radiograph((32, 32), seed=2))
    assert copies_of([same_pixels_other_name, other], [original]).tolist() == [True, False]


@pytest.fixture
def semi_config(tmp_path):
    """A labeled set, its validation items, and an unlabeled folder holding copies of two validation images."""
    csv = write_findings_dataset(tmp_path / "labeled", 8, size=(40, 40), seed=1)
    unlabeled = write_findings_dataset(tmp_path / "unlabeled", 6, size=(40, 40), seed=2).parent / "images"
    config = TrainConfig(csv=csv, image_cols="file", label_cols="label", out=tmp_path / "bundle", size=32,
                         unlabeled=unlabeled, semi="fixmatch", batch_size=2, cache="none")
    items = load_items(config, progress=False)
    valid = items.subset(np.array([0, 1]))
    shutil.copy(valid.paths[0][0], unlabeled / "a-copy-under-another-name.dcm")
    _resaved(valid.paths[1][0], unlabeled / "exported-again.dcm")
    return config, valid


def test_semi_supervised_training_leaves_out_copies_of_validation_images_and_counts_them(semi_config):
    from radiology.train.recipe import _semisup_callback

    config, valid = semi_config
    callback, summary = _semisup_callback(config, valid, default_pipeline(32), None, progress=False)
    assert summary["validation_files_left_out"] == 2
    assert summary["unlabeled"] == 6 and summary["unreadable"] == 0
    assert callback is not None
