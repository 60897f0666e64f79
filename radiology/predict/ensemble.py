"""Several bundles as one model: averaged probabilities, with optional flip test-time augmentation."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from radiology.models.decisions import decide

__all__ = ["Ensemble"]


class Ensemble:
    """Average the probabilities of several bundles trained on the same labels.

    Parameters
    ----------
    bundles : sequence of radiology.models.Bundle
        Same classes (in the same order), label kind and number of views. Each member
        preprocesses with its *own* pipeline, so members may differ in size or steps.
    tta : bool
        Also average over horizontally flipped inputs (test-time augmentation); for two
        views the flipped pair is swapped too, as in training (left stays left-looking).

    Raises
    ------
    ValueError
        No bundle, or members that differ in classes, label kind or views.
    """

    def __init__(self, bundles: Sequence, *, tta: bool = False):
        bundles = list(bundles)
        if not bundles:
            raise ValueError("an ensemble needs at least one bundle")
        first = bundles[0]
        for other in bundles[1:]:
            if list(other.classes) != list(first.classes) or other.multi_label != first.multi_label:
                raise ValueError("ensemble members must share classes and label kind")
            if tuple(other.views) != tuple(first.views):
                raise ValueError("ensemble members must take the same views")
        self.bundles = bundles
        self.tta = bool(tta)

    @classmethod
    def load(cls, folders, *, backend: str = "export", device: str = "cpu", threads: int | None = None,
             tta: bool = False) -> Ensemble:
        """Load bundle folders as one ensemble; an ensemble bundle (``train --folds K``) adds its members.

        Every model counts once in the mean: ``[a 5-fold bundle, a one-model bundle]`` is an
        ensemble of six.

        Parameters
        ----------
        folders : path or sequence of paths
            Bundle folders, one-model or ensemble (:func:`radiology.models.bundle_members`).
        backend, device, threads
            As :func:`radiology.models.load_bundle` takes them, for every member.
        tta : bool
            Flip test-time augmentation, as the constructor takes it.

        Raises
        ------
        FileNotFoundError, ValueError, radiology.models.BundleError
            As :func:`~radiology.models.load_bundle` and :func:`~radiology.models.bundle_members`
            raise them, before any image is read; ``ValueError`` for members that disagree.
        """
        from radiology.models import bundle_members, load_bundle

        folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
        members = [member for folder in folders for member in bundle_members(folder)]
        return cls([load_bundle(member, backend=backend, device=device, threads=threads) for member in members],
                   tta=tta)

    @property
    def classes(self) -> list[str]:
        """Class (or label) names."""
        return list(self.bundles[0].classes)

    @property
    def multi_label(self) -> bool:
        """True for sigmoid, multi-label members."""
        return bool(self.bundles[0].multi_label)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-label decision thresholds (the members' mean; 0.5 where none were stored)."""
        stored = [np.asarray(b.thresholds if b.thresholds is not None else [0.5] * len(self.classes), np.float64)
                  for b in self.bundles]
        return np.mean(stored, axis=0)

    @property
    def views(self) -> tuple[str, ...]:
        """Image columns of one sample."""
        return tuple(self.bundles[0].views)

    def predict_arrays(self, member: int, batch: np.ndarray) -> np.ndarray:
        """Probabilities of one member for a preprocessed batch, with flip TTA when enabled.

        Parameters
        ----------
        member : int
            Index of the member bundle.
        batch : numpy.ndarray
            Images preprocessed by the member's pipeline, as
            :meth:`radiology.models.Bundle.predict_batch` takes them.
        """
        bundle = self.bundles[member]
        probs = bundle.predict_batch(batch)
        if self.tta:
            flipped = batch[..., ::-1].copy()
            if flipped.ndim == 5 and flipped.shape[1] == 2:
                flipped = flipped[:, ::-1].copy()
            probs = (probs + bundle.predict_batch(flipped)) / 2
        return probs

    def decide(self, probs: np.ndarray) -> list[str]:
        """The label of each row of (averaged) probabilities: :func:`radiology.models.decide` with
        the members' classes, label kind and mean :attr:`thresholds`.

        Parameters
        ----------
        probs : numpy.ndarray, shape (N, n_classes)
            Probabilities, usually averaged over the members.
        """
        return decide(probs, self.classes, multi_label=self.multi_label, thresholds=self.thresholds)
