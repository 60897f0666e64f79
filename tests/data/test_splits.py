"""Splits: no patient on both sides, class proportions kept, every sample validated once."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from radiology.data import group_overlap, kfold_splits, stratification_labels, train_valid_split
from tests.conftest import shared_path


def grouped_data(seed=0):
    """300 images of 120 patients (1-4 images each), one class per patient, classes 60/30/10 %."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 5, 120)
    patient_class = rng.choice(3, 120, p=[0.6, 0.3, 0.1])
    groups = np.repeat([f"pt{i:03d}" for i in range(120)], sizes)
    targets = np.repeat(patient_class, sizes)
    order = rng.permutation(len(targets))
    return targets[order], groups[order]


def test_grouped_split_has_no_patient_on_both_sides_and_keeps_proportions():
    targets, groups = grouped_data()
    train, valid = train_valid_split(targets, groups, valid_fraction=0.2, seed=1)
    assert len(np.intersect1d(train, valid)) == 0 and len(train) + len(valid) == len(targets)
    assert group_overlap(groups, train, valid) == []
    assert len(valid) / len(targets) == pytest.approx(0.2, abs=0.03)
    overall = np.bincount(targets, minlength=3) / len(targets)
    np.testing.assert_allclose(np.bincount(targets[valid], minlength=3) / len(valid), overall, atol=0.04)
    np.testing.assert_allclose(np.bincount(targets[train], minlength=3) / len(train), overall, atol=0.04)
    again = train_valid_split(targets, groups, valid_fraction=0.2, seed=1)
    assert np.array_equal(again[1], valid)
    assert not np.array_equal(train_valid_split(targets, groups, valid_fraction=0.2, seed=2)[1], valid)


def test_kfold_validates_every_sample_once_without_leakage():
    targets, groups = grouped_data(seed=3)
    folds = kfold_splits(targets, groups, n_splits=4, seed=0)
    assert len(folds) == 4
    assert np.array_equal(np.sort(np.concatenate([v for _, v in folds])), np.arange(len(targets)))
    for train, valid in folds:
        assert not set(groups[train]) & set(groups[valid])
    with pytest.raises(ValueError, match="cannot fill 5 folds"):
        kfold_splits(targets[:3], groups[:3], n_splits=5)


def test_ungrouped_split_with_a_singleton_class():
    targets = np.array([0] * 40 + [1] * 9 + [2])
    train, valid = train_valid_split(targets, valid_fraction=0.2)
    assert len(valid) == 10 and np.bincount(targets[valid], minlength=3)[:2].tolist() == [8, 2]


def test_split_when_no_class_fills_every_fold():
    # A few labeled images of many classes (every class rarer than the folds): scikit-learn cannot
    # stratify; the split is by patient alone, still every sample once and no patient on both sides.
    targets = np.repeat(np.arange(8), 3)
    groups = np.array([f"p{i // 2}" for i in range(len(targets))])
    folds = kfold_splits(targets, groups, n_splits=5, seed=0)
    assert np.array_equal(np.sort(np.concatenate([v for _, v in folds])), np.arange(len(targets)))
    for train, valid in folds:
        assert len(valid) > 0 and not set(groups[train]) & set(groups[valid])
    train, valid = train_valid_split(targets, groups, valid_fraction=0.2, seed=0)
    assert len(train) + len(valid) == len(targets) and 2 <= len(valid) <= 8


def test_multi_label_rare_label_reaches_every_fold():
    rng = np.random.default_rng(0)
    targets = (rng.random((200, 4)) < [0.5, 0.3, 0.2, 0.0]).astype(np.float32)
    targets[rng.choice(200, 10, replace=False), 3] = 1  # rare label: 10 positives
    assert stratification_labels(targets)[targets[:, 3] > 0].tolist() == [3] * 10
    for _, valid in kfold_splits(targets, n_splits=5):
        assert targets[valid, 3].sum() == 2


def test_group_overlap_warns_without_naming_patients():
    with pytest.warns(UserWarning, match="1 patient group") as record:
        assert group_overlap(["alice", "alice", "bob"], [0, 2], [1]) == ["alice"]
    assert "alice" not in str(record[0].message)


def test_bodypart_patients_split_cleanly():
    with open(shared_path("bodypart", "labels.csv"), newline="") as file:
        rows = list(csv.DictReader(file))
    targets = np.array([int(r["Target"]) for r in rows])
    groups = np.array([r["patient"] for r in rows])
    train, valid = train_valid_split(targets, groups, valid_fraction=0.2)
    assert group_overlap(groups, train, valid) == []
    assert len(valid) / len(rows) == pytest.approx(0.2, abs=0.05)
    assert len(set(targets[valid])) >= 15  # most of the 22 classes are validated despite the long tail


def test_untrained_classes_are_those_only_in_validation():
    from radiology.data import untrained_classes

    targets = np.array([0, 0, 1, 1, 2, 2, -1])
    assert untrained_classes(targets, np.array([0, 2, 6]), np.array([1, 3, 4, 5])) == [2]
    assert untrained_classes(targets, np.array([0, 2, 4]), np.array([1, 3, 5, 6])) == []
    multi = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1]], np.float32)
    assert untrained_classes(multi, np.array([0]), np.array([1, 2])) == [1, 2]


def test_classes_drawn_for_validation_only_move_to_training_with_their_patients():
    from radiology.data import keep_classes_in_training

    targets = np.array([0, 0, 1, 1, 2, 2])
    groups = ["p0", "p1", "p2", "p3", "p4", "p4"]  # p4 has both class-2 images and nothing else
    train, valid, moved = keep_classes_in_training(targets, groups, np.array([0, 2]), np.array([1, 3, 4, 5]))
    assert moved == [2] and train.tolist() == [0, 2, 4, 5] and valid.tolist() == [1, 3]
    assert group_overlap(groups, train, valid, warn=False) == []
    same = keep_classes_in_training(targets, None, np.array([0, 2, 4]), np.array([1, 3, 5]))
    assert same[2] == [] and same[1].tolist() == [1, 3, 5]
