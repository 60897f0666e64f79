"""fastai ``DataLoaders`` for :class:`ImageDataset`: sampling strategies and GPU batch augmentation.

The loaders are fastai's own :class:`fastai.data.load.DataLoader`: it collates, moves each
batch to ``device`` and then calls ``after_batch``, so augmentation runs on whole batches
on the GPU (:mod:`radiology.augment`), for the training loader only. Custom sampling
(weighted, at least k per class in every batch) overrides ``get_idxs``, fastai's hook
that lists the sample indices of one epoch; fastai cuts that list into batches, also
across worker processes, in order.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader
from torch import nn

from radiology.augment import MultiView
from radiology.data.sampling import MinPerClassSampler, sample_weights, weighted_indices

__all__ = ["build_dataloaders", "SampledDataLoader", "SAMPLERS"]

#: Sampling strategies of the training loader.
SAMPLERS = ("shuffle", "weighted", "min_per_class")


class SampledDataLoader(DataLoader):
    """A fastai ``DataLoader`` with a sampling strategy and a batch augmentation.

    Parameters
    ----------
    dataset : torch Dataset
        Map-style dataset returning ``(x, y)``.
    sampling : {"shuffle", "weighted", "min_per_class"}
        How an epoch's indices are drawn when ``shuffle=True``: a permutation (fastai's
        default), ``len(dataset)`` draws with replacement proportional to ``weights``, or
        the batches of ``sampler`` (:class:`MinPerClassSampler`).
    weights : numpy.ndarray, optional
        Per-sample probabilities for ``"weighted"``.
    sampler : MinPerClassSampler, optional
        For ``"min_per_class"``; its ``batch_size`` must equal ``bs``.
    augment : torch.nn.Module, optional
        Applied to ``x`` of every batch after it is moved to ``device`` (``(B, C, H, W)``;
        ``(B, V, C, H, W)`` batches go through :class:`radiology.augment.MultiView` with
        shared parameters unless ``augment`` already is one).
    **kwargs
        fastai ``DataLoader`` arguments (``bs``, ``shuffle``, ``drop_last``,
        ``num_workers``, ``device``, ...).

    Notes
    -----
    Every random draw comes from the loader's ``rng`` (fastai's ``random.Random``, re-seeded
    from itself at each epoch): seed it for reproducible epochs. A copy made with
    ``new(shuffle=False)`` (what ``Learner.get_preds`` does) reads the dataset in order,
    without sampling or augmentation.
    """

    def __init__(self, dataset=None, sampling: str = "shuffle", weights: np.ndarray | None = None,
                 sampler: MinPerClassSampler | None = None, augment: nn.Module | None = None, **kwargs):
        if sampling not in SAMPLERS:
            raise ValueError(f"sampling must be one of {SAMPLERS}, got {sampling!r}")
        if sampling == "weighted" and weights is None:
            raise ValueError("weighted sampling needs weights")
        if sampling == "min_per_class" and sampler is None:
            raise ValueError("min_per_class sampling needs a MinPerClassSampler")
        self.sampling, self.weights, self.sampler, self.augment = sampling, weights, sampler, augment
        self._views_augment: nn.Module | None = None
        super().__init__(dataset=dataset, **kwargs)
        if sampler is not None and sampler.batch_size != self.bs:
            raise ValueError(f"the sampler makes batches of {sampler.batch_size}, the loader of {self.bs}")

    def get_idxs(self):
        if not self.shuffle or self.sampling == "shuffle" or not self.n:
            return super().get_idxs()
        # Draw from fastai's per-epoch rng so one seed makes the whole run reproducible.
        rng = np.random.default_rng(self.rng.randint(0, 2**32 - 1))
        if self.sampling == "weighted":
            return weighted_indices(self.weights, self.n, rng).tolist()
        return self.sampler.indices(rng).tolist()

    def after_batch(self, b):
        """Augment ``x`` of a training batch (shuffled loaders with ``augment`` only).

        Parameters
        ----------
        b : tuple of torch.Tensor
            The batch ``(x, y, ...)``, already on the loader's device.
        """
        if self.augment is None or not self.shuffle:
            return b
        x, *rest = b
        module = self.augment
        if x.ndim == 5 and not isinstance(module, MultiView):
            if self._views_augment is None:
                self._views_augment = MultiView(module)
            module = self._views_augment
        with torch.no_grad():
            x = module.to(x.device)(x)
        return (x, *rest)

    def new(self, dataset=None, cls=None, **kwargs):
        """A copy of the loader (fastai's ``DataLoader.new``), keeping the sampling and augmentation.

        They are kept when the copy shuffles the same dataset; the copy draws from its own ``rng``,
        seeded from this loader's.

        Parameters
        ----------
        dataset : torch Dataset, optional
            Dataset of the copy; default this loader's.
        cls : type, optional
            Class of the copy, as in fastai.
        **kwargs
            Loader arguments that replace this loader's (``shuffle``, ``bs``, ...).
        """
        shuffle = kwargs.get("shuffle", self.shuffle)
        same_data = dataset is None or dataset is self.dataset
        if shuffle and same_data:
            kwargs = {"sampling": self.sampling, "weights": self.weights, "sampler": self.sampler,
                      "augment": self.augment, **kwargs}
        out = super().new(dataset=dataset, cls=cls, **kwargs)
        out.rng = random.Random(self.rng.randint(0, 2**32 - 1))
        return out


def _device(device) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build_dataloaders(
    train_ds,
    valid_ds,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    sampler: str = "shuffle",
    augment: nn.Module | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    min_per_class: int = 1,
    valid_batch_size: int | None = None,
    drop_last: bool = True,
) -> DataLoaders:
    """fastai ``DataLoaders`` (train, valid) over two datasets, with sampling and GPU augmentation.

    Parameters
    ----------
    train_ds, valid_ds : ImageDataset
        Any map-style dataset returning ``(x, y)``; the non-``"shuffle"`` samplers need
        ``train_ds.targets``.
    batch_size : int, optional
        Training batch size.
    num_workers : int, optional
        Worker processes reading and preprocessing images (kept alive across epochs).
    sampler : {"shuffle", "weighted", "min_per_class"}
        Training order: a permutation; class-balanced draws with replacement
        (:func:`radiology.data.sample_weights`); or batches with at least
        ``min_per_class`` samples of every class (:class:`MinPerClassSampler`).
    augment : torch.nn.Module, optional
        Batch augmentation, e.g. :func:`radiology.augment.radiograph_augmentation`, run on
        ``device`` on training batches only; multi-view batches use
        :class:`radiology.augment.MultiView` (pass one to choose its options).
    device : str or torch.device, optional
        Where batches go (default CUDA when available, else CPU).
    seed : int, optional
        Seeds the shuffling and sampling. Augmentation draws from torch's global generator
        (``torch.manual_seed``), as kornia does.
    min_per_class : int, optional
        For ``sampler="min_per_class"``.
    valid_batch_size : int, optional
        Default ``batch_size``.
    drop_last : bool, optional
        Drop the last incomplete training batch (batch-norm dislikes tiny batches); ignored
        when the training set is smaller than one batch.

    Returns
    -------
    fastai.data.core.DataLoaders
        ``.train`` (:class:`SampledDataLoader`, shuffled) and ``.valid`` (in order).

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = TensorDataset(torch.rand(8, 1, 16, 16), torch.tensor([0, 1] * 4))
    >>> dls = build_dataloaders(data, data, batch_size=4, device="cpu")
    >>> x, y = dls.train.one_batch()
    >>> tuple(x.shape), tuple(y.shape), len(dls.train), len(dls.valid)
    ((4, 1, 16, 16), (4,), 2, 2)
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    if augment is not None and not isinstance(augment, nn.Module):
        raise TypeError(f"augment must be a torch.nn.Module, got {type(augment).__name__}")
    if len(train_ds) == 0 or valid_ds is None:
        raise ValueError("build_dataloaders needs a non-empty training set and a validation set")
    weights = min_sampler = None
    if sampler != "shuffle":
        targets = getattr(train_ds, "targets", None)
        if targets is None:
            raise ValueError(f"sampler={sampler!r} needs train_ds.targets")
        if sampler == "weighted":
            weights = sample_weights(targets)
        else:
            min_sampler = MinPerClassSampler(targets, batch_size, min_per_class, seed=seed)
    device = _device(device)
    common = {"num_workers": num_workers, "device": device, "pin_memory": device.type == "cuda",
              "persistent_workers": num_workers > 0}
    train = SampledDataLoader(train_ds, sampling=sampler, weights=weights, sampler=min_sampler, augment=augment,
                              bs=batch_size, shuffle=True, drop_last=drop_last and len(train_ds) >= batch_size,
                              **common)
    train.rng = random.Random(seed)
    valid = DataLoader(valid_ds, bs=valid_batch_size or batch_size, shuffle=False, drop_last=False, **common)
    return DataLoaders(train, valid, device=device)
