"""Class imbalance: class weights, per-sample weights and a sampler that puts every class in every batch."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Sampler

__all__ = ["class_weights", "sample_weights", "MinPerClassSampler"]


def _counts(targets: np.ndarray, n_classes: int | None) -> np.ndarray:
    targets = np.asarray(targets)
    if targets.ndim == 2:
        if n_classes is not None and n_classes != targets.shape[1]:
            raise ValueError(f"n_classes={n_classes} but targets have {targets.shape[1]} labels")
        return (targets > 0.5).sum(axis=0).astype(np.float64)
    if targets.ndim != 1:
        raise ValueError(f"targets must be (N,) or (N, L), got shape {targets.shape}")
    labeled = targets[targets >= 0].astype(np.int64)
    if n_classes is None:
        n_classes = int(labeled.max()) + 1 if len(labeled) else 0
    if len(labeled) and labeled.max() >= n_classes:
        raise ValueError(f"target {int(labeled.max())} is out of range for {n_classes} classes")
    return np.bincount(labeled, minlength=n_classes).astype(np.float64)


def class_weights(targets: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Inverse-frequency class weights, scaled to mean 1 over the classes present.

    ``w_c ∝ 1 / count_c``: a loss weighted this way gives every class the same total
    weight. Classes absent from ``targets`` get weight 0 (there is nothing to weigh).
    Multi-label targets count positives per label. Unlabeled samples (``-1``) are ignored.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices or ``(N, L)`` multi-label 0/1.
    n_classes : int, optional
        Default: ``max(targets) + 1`` (single-label) or ``L``.

    Returns
    -------
    numpy.ndarray of float32, ``(n_classes,)``

    Examples
    --------
    >>> class_weights(np.array([0, 1, 1, 2, 2, 2, 2]), 3).round(4).tolist()  # counts 1, 2, 4
    [1.7143, 0.8571, 0.4286]
    """
    counts = _counts(targets, n_classes)
    present = counts > 0
    if not present.any():
        raise ValueError("no labeled samples")
    weights = np.zeros_like(counts)
    weights[present] = 1.0 / counts[present]
    weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


def sample_weights(targets: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """Per-sample weights for weighted sampling: every class drawn equally often on average.

    Single-label: the sample's class weight (:func:`class_weights`); unlabeled samples
    get 0. Multi-label: the largest weight among the sample's positive labels (its rarest
    label), or the mean weight when it has none.

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices (``-1`` unlabeled) or ``(N, L)`` multi-label 0/1.
    n_classes : int, optional
        Number of classes, as for :func:`class_weights`.

    Returns
    -------
    numpy.ndarray of float64, ``(N,)``, summing to 1

    Examples
    --------
    >>> sample_weights(np.array([0, 0, 0, 1])).round(3).tolist()
    [0.167, 0.167, 0.167, 0.5]
    """
    targets = np.asarray(targets)
    weights = class_weights(targets, n_classes).astype(np.float64)
    if targets.ndim == 1:
        per_sample = np.where(targets >= 0, weights[np.clip(targets, 0, None)], 0.0)
    else:
        positive = targets > 0.5
        per_sample = np.where(positive, weights[None, :], 0.0).max(axis=1)
        per_sample[~positive.any(axis=1)] = weights.mean()
    return per_sample / per_sample.sum()


class MinPerClassSampler(Sampler[int]):
    """Batches that each hold at least ``min_per_class`` samples of every class.

    Rare classes are otherwise absent from most batches, which starves their gradient and
    breaks batch-level metrics. Each batch first draws ``min_per_class`` samples of every
    class (cycling through a shuffled list of that class, so every member is used before
    any repeats), then fills up with samples from a shuffled pass over the whole dataset.
    Classes without any sample are skipped. Multi-label: "of class c" means positive for
    label c. Yields indices batch after batch, so consecutive chunks of ``batch_size``
    are the batches: use it with the same ``batch_size`` in a loader
    (``torch.utils.data.DataLoader(dataset, batch_size, sampler=sampler)``, or
    :func:`radiology.data.build_dataloaders` with ``sampler="min_per_class"``).

    Parameters
    ----------
    targets : numpy.ndarray
        ``(N,)`` class indices (``-1`` unlabeled: only used to fill) or ``(N, L)`` 0/1.
    batch_size : int
        Samples per batch; the loader must use the same.
    min_per_class : int, optional
        Samples of every class in each batch.
    n_batches : int, optional
        Batches per epoch (default ``N // batch_size``, at least 1).
    seed : int, optional
        Each epoch (each ``iter``) continues the same random stream.

    Examples
    --------
    >>> targets = np.array([0] * 90 + [1] * 8 + [2] * 2)
    >>> sampler = MinPerClassSampler(targets, batch_size=10, min_per_class=1, seed=0)
    >>> batches = sampler.batches()
    >>> len(batches), all(set(targets[b]) == {0, 1, 2} for b in batches)
    (10, True)
    """

    def __init__(self, targets: np.ndarray, batch_size: int, min_per_class: int = 1, *,
                 n_batches: int | None = None, seed: int = 0):
        targets = np.asarray(targets)
        if targets.ndim not in (1, 2) or len(targets) == 0:
            raise ValueError(f"targets must be a non-empty (N,) or (N, L) array, got shape {targets.shape}")
        if batch_size < 1 or min_per_class < 1:
            raise ValueError(f"batch_size and min_per_class must be positive, got {batch_size}, {min_per_class}")
        if targets.ndim == 1:
            n_classes = int(targets.max()) + 1 if (targets >= 0).any() else 0
            members = [np.flatnonzero(targets == c) for c in range(n_classes)]
        else:
            members = [np.flatnonzero(targets[:, c] > 0.5) for c in range(targets.shape[1])]
        self.members = [m for m in members if len(m)]
        needed = len(self.members) * min_per_class
        if needed > batch_size:
            raise ValueError(f"{len(self.members)} classes x {min_per_class} need batches of at least {needed}, "
                             f"got batch_size={batch_size}")
        self.n = len(targets)
        self.batch_size = batch_size
        self.min_per_class = min_per_class
        self.n_batches = n_batches if n_batches is not None else max(1, self.n // batch_size)
        if self.n_batches < 1:
            raise ValueError(f"n_batches must be positive, got {self.n_batches}")
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n_batches * self.batch_size

    def batches(self, rng: np.random.Generator | None = None) -> list[np.ndarray]:
        """One epoch of batches (``int64`` index arrays), drawn from ``rng`` (default: the sampler's own).

        Parameters
        ----------
        rng : numpy.random.Generator, optional
            Random stream to draw from; default the sampler's own, which each epoch continues.
        """
        rng = self._rng if rng is None else rng
        pools = [_Cycle(m, rng) for m in self.members]
        fill = _Cycle(np.arange(self.n), rng)
        out = []
        for _ in range(self.n_batches):
            chosen: list[int] = []
            for pool in pools:
                chosen.extend(pool.take(self.min_per_class))
            taken = set(chosen)
            # Fill with fresh samples; a small dataset may have to repeat some.
            attempts = 0
            while len(chosen) < self.batch_size:
                index = fill.take(1)[0]
                attempts += 1
                if index not in taken or attempts > 4 * self.n:
                    chosen.append(index)
                    taken.add(index)
            out.append(rng.permutation(np.asarray(chosen, dtype=np.int64)))
        return out

    def indices(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """One epoch as a flat index array (batch after batch).

        Parameters
        ----------
        rng : numpy.random.Generator, optional
            Random stream to draw from; default the sampler's own, which each epoch continues.
        """
        return np.concatenate(self.batches(rng))

    def __iter__(self):
        return iter(self.indices().tolist())


class _Cycle:
    """Endless shuffled passes over a set of indices."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self.items, self.rng = items, rng
        self.order, self.position = rng.permutation(items), 0

    def take(self, count: int) -> list[int]:
        out = []
        for _ in range(count):
            if self.position == len(self.order):
                self.order, self.position = self.rng.permutation(self.items), 0
            out.append(int(self.order[self.position]))
            self.position += 1
        return out


def weighted_indices(weights: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` indices drawn with replacement with probability ``weights`` (internal helper)."""
    return rng.choice(len(weights), size=count, replace=True, p=np.asarray(weights, np.float64)).astype(np.int64)

