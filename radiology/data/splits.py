"""Stratified, patient-grouped train/validation splits and k folds.

Images of one patient are strongly correlated: a patient on both sides of a split leaks
and inflates validation scores. With ``groups`` (patient ids), every patient's images
land on one side only (scikit-learn ``StratifiedGroupKFold``), while class proportions
are kept as close as the groups allow. Multi-label targets are stratified by each
sample's rarest positive label, so rare labels reach every fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["train_valid_split", "kfold_splits", "group_overlap", "stratification_labels", "untrained_classes",
           "keep_classes_in_training"]


def stratification_labels(targets: np.ndarray) -> np.ndarray:
    """One stratum per sample: the class (single-label) or the rarest positive label (multi-label).

    Single-label ``-1`` (unlabeled) is its own stratum; a multi-label sample with no
    positive label gets stratum ``L``.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices (``-1`` unlabeled) or ``(N, L)`` multi-label 0/1.

    Examples
    --------
    >>> stratification_labels(np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0]], np.float32)).tolist()
    [1, 0, 3, 0]
    """
    targets = np.asarray(targets)
    if targets.ndim == 1:
        return targets.astype(np.int64)
    if targets.ndim != 2:
        raise ValueError(f"targets must be (N,) or (N, L), got shape {targets.shape}")
    positive = targets > 0.5
    counts = positive.sum(axis=0)
    # Rank labels from rarest to most common; each sample takes its rarest positive one.
    rarity = np.where(positive, counts[None, :], np.iinfo(np.int64).max)
    strata = rarity.argmin(axis=1)
    strata[~positive.any(axis=1)] = targets.shape[1]
    return strata.astype(np.int64)


def kfold_splits(
    targets: np.ndarray, groups: Sequence | np.ndarray | None = None, n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, with ``groups``, patient-grouped) k-fold cross-validation.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices or ``(N, L)`` multi-label 0/1.
    groups : array-like of str, optional
        Patient ids; samples of one group never straddle train and validation.
    n_splits : int, optional
        Number of folds, at least 2.
    seed : int, optional
        Seed of the shuffled, stratified assignment of groups to folds.

    Returns
    -------
    list of (train_indices, valid_indices)
        Sorted ``int64`` arrays; every sample is in exactly one validation fold.

    Notes
    -----
    A class with fewer samples than folds goes where the groups allow. When no class has as
    many samples as there are folds (a few images of many classes), stratifying is impossible
    and the folds are made by group alone.

    Examples
    --------
    >>> folds = kfold_splits(np.array([0, 0, 0, 1, 1, 1]), n_splits=3)
    >>> [np.bincount(np.array([0, 0, 0, 1, 1, 1])[valid]).tolist() for _, valid in folds]
    [[1, 1], [1, 1], [1, 1]]
    """
    from sklearn.model_selection import StratifiedGroupKFold

    strata = stratification_labels(targets)
    n = len(strata)
    if n_splits < 2:
        raise ValueError(f"n_splits must be at least 2, got {n_splits}")
    groups = np.arange(n) if groups is None else np.asarray(groups).reshape(-1)
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} samples")
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} group(s) cannot fill {n_splits} folds")
    if np.unique(strata, return_counts=True)[1].max() < n_splits:
        # No class fills every fold (a few images of many classes): scikit-learn refuses to
        # stratify, so split by patient alone; train() then names the classes it cannot score.
        strata = np.zeros(n, np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes (fewer members than folds) are expected in real data: they go where they can.
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        return [(np.sort(train).astype(np.int64), np.sort(valid).astype(np.int64))
                for train, valid in splitter.split(np.zeros(n), strata, groups)]


def train_valid_split(
    targets: np.ndarray, groups: Sequence | np.ndarray | None = None, valid_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One stratified (and, with ``groups``, patient-grouped) train/validation split.

    The split is the first fold of :func:`kfold_splits` with ``k = round(1 / valid_fraction)``,
    so the validation share is ``1/k`` (0.2 → 1/5, 0.3 → 1/3, 0.15 → 1/7), adjusted by whole
    patient groups.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices or ``(N, L)`` multi-label 0/1.
    groups : array-like of str, optional
        Patient ids; samples of one group never straddle train and validation.
    valid_fraction : float
        Wanted validation share, between 0 and 1 (rounded as described above).
    seed : int
        Seed of the split, as in :func:`kfold_splits`.

    Returns
    -------
    (train_indices, valid_indices)
        Sorted ``int64`` arrays.

    Examples
    --------
    >>> targets = np.array([0] * 8 + [1] * 2)
    >>> train, valid = train_valid_split(targets, valid_fraction=0.5)
    >>> len(train), len(valid), int(targets[valid].sum())
    (5, 5, 1)
    """
    if not 0 < valid_fraction <= 0.5:
        raise ValueError(f"valid_fraction must be in (0, 0.5], got {valid_fraction}")
    train, valid = kfold_splits(targets, groups, n_splits=max(2, round(1 / valid_fraction)), seed=seed)[0]
    if groups is not None:
        group_overlap(groups, train, valid)
    return train, valid


def group_overlap(groups: Sequence | np.ndarray, a: np.ndarray, b: np.ndarray, *, warn: bool = True) -> list[str]:
    """Groups (patients) that have samples in both index sets ``a`` and ``b``.

    Parameters
    ----------
    groups : array-like
        Group of each sample.
    a, b : array-like of int
        Indices of the two sides (e.g. train and validation).
    warn : bool, optional
        Emit a ``UserWarning`` (counting the groups, not naming them: ids can be PHI) when
        any group is on both sides.

    Returns
    -------
    list of str
        Sorted; empty when the split is leak-free.

    Examples
    --------
    >>> group_overlap(["p1", "p1", "p2", "p3"], [0, 2], [1, 3], warn=False)
    ['p1']
    """
    groups = np.asarray(groups).astype(str).reshape(-1)
    left, right = set(groups[np.asarray(a, dtype=np.int64)]), set(groups[np.asarray(b, dtype=np.int64)])
    shared = sorted(str(g) for g in left & right)
    if shared and warn:
        warnings.warn(f"{len(shared)} patient group(s) have images on both sides of the split (leakage)",
                      UserWarning, stacklevel=2)
    return shared


def untrained_classes(targets: np.ndarray, train: np.ndarray, valid: np.ndarray) -> list[int]:
    """Classes (or labels) that the validation side has and the training side lacks.

    Patient groups move whole patients to one side: a class whose images all belong to
    patients drawn for validation would be scored but never learned.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices (``-1`` unlabeled, ignored) or ``(N, L)`` multi-label 0/1.
    train, valid : array-like of int
        Indices of the two sides.

    Returns
    -------
    list of int
        Sorted class (label) indices.

    Examples
    --------
    >>> untrained_classes(np.array([0, 0, 1, 1, 2]), np.array([0, 2, 3]), np.array([1, 4]))
    [2]
    >>> untrained_classes(np.array([[1, 0], [1, 1], [1, 0]], np.float32), np.array([0, 2]), np.array([1]))
    [1]
    """
    targets = np.asarray(targets)
    train, valid = np.asarray(train, dtype=np.int64), np.asarray(valid, dtype=np.int64)
    if targets.ndim == 2:
        positive = targets > 0.5
        return np.flatnonzero(positive[valid].any(axis=0) & ~positive[train].any(axis=0)).tolist()
    seen = set(targets[train].tolist())
    return sorted(int(c) for c in set(targets[valid].tolist()) - seen if c >= 0)


def keep_classes_in_training(targets: np.ndarray, groups: Sequence | np.ndarray | None, train: np.ndarray,
                             valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Move to training the validation patients of every class the training side lacks.

    A rare class (one or two patients) can be drawn for validation only: it would be scored
    but never learned. Its validation samples move to training together with every other
    sample of their patients, so no patient ends up on both sides.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices or ``(N, L)`` multi-label 0/1.
    groups : array-like of str, optional
        Patient ids (None: every sample is its own patient).
    train, valid : array-like of int
        Training and validation indices of a split, e.g. from :func:`train_valid_split`.

    Returns
    -------
    train, valid : numpy.ndarray
        Sorted ``int64`` indices; ``valid`` may end up empty.
    moved : list of int
        The classes (:func:`untrained_classes`) whose patients were moved.

    Examples
    --------
    >>> train, valid, moved = keep_classes_in_training(np.array([0, 0, 1, 1, 2]), ["a", "b", "c", "d", "c"],
    ...                                                np.array([0, 2]), np.array([1, 3, 4]))
    >>> train.tolist(), valid.tolist(), moved
    ([0, 2, 4], [1, 3], [2])
    """
    train, valid = np.asarray(train, dtype=np.int64), np.asarray(valid, dtype=np.int64)
    moved = untrained_classes(targets, train, valid)
    if not moved:
        return train, valid, moved
    targets = np.asarray(targets)
    if targets.ndim == 2:
        carrying = (targets[valid][:, moved] > 0.5).any(axis=1)
    else:
        carrying = np.isin(targets[valid], moved)
    groups = np.arange(len(targets)).astype(str) if groups is None else np.asarray(groups).astype(str).reshape(-1)
    moving = np.isin(groups[valid], groups[valid][carrying])
    return np.sort(np.r_[train, valid[moving]]), valid[~moving], moved
