"""Unlabeled images for the semi-supervised callbacks: a shuffled loader and an endless stream of batches."""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from fastai.data.load import DataLoader
from torch.utils.data import Dataset

from radiology.io import file_digest

__all__ = ["unlabeled_loader", "UnlabeledStream", "ImagesOnly", "copies_of"]


def _instance_uid(path: Path) -> str | None:
    """The SOP Instance UID of a DICOM file, None for an image file or a file without one."""
    from radiology.dicom import DicomError, read_dataset
    from radiology.files import is_image_file

    if is_image_file(path):
        return None
    try:
        uid = read_dataset(path, stop_before_pixels=True).get("SOPInstanceUID")
    except (DicomError, OSError):
        return None
    return (str(uid).strip() or None) if uid else None


def _content_digest(path: Path) -> str | None:
    """:func:`radiology.io.file_digest` (as the image cache keys content), None when the file cannot be read."""
    try:
        return file_digest(path)
    except OSError:
        return None


def copies_of(files: Sequence[str | os.PathLike], originals: Sequence[str | os.PathLike]) -> np.ndarray:
    """Which of ``files`` hold one of the ``originals``, whatever their name.

    A file is a copy when its bytes are those of an original (SHA-256, as the image cache
    keys content) or, for DICOM, when both carry the same SOP Instance UID (the same image
    saved again, e.g. with another transfer syntax). The semi-supervised methods use it to
    keep validation images out of the unlabeled set: a copy under another path would
    otherwise be trained on. A UID that several originals share is ignored (some
    anonymizers give every file the same one). Only files of an original's size are hashed, and headers are
    read only when an original has a UID, so a large unlabeled folder costs little. Files
    that cannot be read are not copies (they are left out later as unreadable anyway).

    Parameters
    ----------
    files : sequence of path
        Candidates (e.g. the unlabeled images).
    originals : sequence of path
        Files that must not appear among ``files`` (e.g. the validation images).

    Returns
    -------
    numpy.ndarray of bool, ``(len(files),)``

    Examples
    --------
    >>> import shutil, tempfile
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> folder = Path(tempfile.mkdtemp())
    >>> original = write_phantom_dicom(folder / "a.dcm", phantom_radiograph((32, 32), seed=1))
    >>> other = write_phantom_dicom(folder / "b.dcm", phantom_radiograph((32, 32), seed=2))
    >>> copy = Path(shutil.copy(original, folder / "renamed.dcm"))
    >>> copies_of([original, other, copy], [original]).tolist()
    [True, False, True]
    """
    files = [Path(path) for path in files]
    originals = [Path(path) for path in originals]
    sizes = {path.stat().st_size for path in originals if path.is_file()}
    digests = {_content_digest(path) for path in originals if path.is_file()} - {None}
    # Some anonymizers give every file one UID: a UID shared by two originals identifies nothing.
    counts = Counter(_instance_uid(path) for path in originals)
    uids = {uid for uid, count in counts.items() if uid is not None and count == 1}
    found = np.zeros(len(files), dtype=bool)
    for index, path in enumerate(files):
        if not path.is_file():
            continue
        if path.stat().st_size in sizes and _content_digest(path) in digests:
            found[index] = True
        elif uids and _instance_uid(path) in uids:
            found[index] = True
    return found


def _first(item):
    return item[0] if isinstance(item, (tuple, list)) else item


class ImagesOnly(Dataset):
    """A dataset's images without their targets: item ``x`` or ``(x, y)`` becomes ``(x,)``.

    Parameters
    ----------
    dataset : torch Dataset
        Map-style dataset whose items are images ``x`` or tuples starting with the image.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> data = ImagesOnly(TensorDataset(torch.zeros(3, 1, 4, 4), torch.tensor([0, 1, 0])))
    >>> len(data), data[0][0].shape
    (3, torch.Size([1, 4, 4]))
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return (torch.as_tensor(_first(self.dataset[index])),)


def unlabeled_loader(dataset, batch_size: int, *, num_workers: int = 0, seed: int = 0,
                     pin_memory: bool | None = None) -> DataLoader:
    """A shuffled fastai ``DataLoader`` of the images of ``dataset`` (targets, if any, are dropped).

    The batches stay on the host: :class:`~radiology.semisup.FixMatch` and
    :class:`~radiology.semisup.MixMatch` copy them to the labeled batch's device without
    waiting (from pinned memory, ``non_blocking``), and make their own augmented views.

    Parameters
    ----------
    dataset : torch Dataset
        Items ``x`` or ``(x, y)`` with ``x`` a ``(C, H, W)`` float tensor in ``[0, 1]``, e.g. a
        :class:`radiology.data.ImageDataset` over the unlabeled images with the labeled set's
        pipeline and channels.
    batch_size : int
        For FixMatch, ``mu`` times the labeled batch size makes one unlabeled batch per step;
        for MixMatch, the labeled batch size.
    num_workers : int, optional
        Loader processes (as for the labeled loader).
    seed : int, optional
        Seeds the shuffling.
    pin_memory : bool, optional
        Pin the batches (default: when CUDA is available), so the copy to the GPU is asynchronous.

    Returns
    -------
    fastai.data.load.DataLoader
        Yields ``(x,)`` batches on the host; the last incomplete batch of an epoch is dropped
        (unless the dataset is smaller than one batch).

    Examples
    --------
    >>> loader = unlabeled_loader([torch.rand(1, 8, 8) for _ in range(10)], 4)
    >>> [tuple(b[0].shape) for b in loader]
    [(4, 1, 8, 8), (4, 1, 8, 8)]
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if len(dataset) == 0:
        raise ValueError("the unlabeled dataset is empty")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
    loader = DataLoader(ImagesOnly(dataset), bs=int(batch_size), shuffle=True,
                        drop_last=len(dataset) >= int(batch_size), num_workers=num_workers, device=None,
                        pin_memory=pin_memory, persistent_workers=num_workers > 0)
    loader.rng = random.Random(seed)
    return loader


class UnlabeledStream:
    """An endless stream of unlabeled images from a loader, cut into batches of any size.

    The loader is cycled forever (a new iterator when one is exhausted, so a shuffled loader
    reshuffles). Its batches are concatenated until ``n`` images are available; what is left
    over starts the next request. Only tensor shapes are looked at, never values, so nothing
    synchronizes with the GPU; a loader whose batch size is exactly ``n`` is cheapest.

    Parameters
    ----------
    loader : iterable
        Yields ``x``, ``(x,)`` or ``(x, anything)`` with ``x`` a ``(B, C, H, W)`` tensor.

    Examples
    --------
    >>> stream = UnlabeledStream([torch.zeros(3, 1, 2, 2), torch.ones(3, 1, 2, 2)])
    >>> stream.take(4, "cpu").flatten(1)[:, 0]
    tensor([0., 0., 0., 1.])
    >>> stream.take(4, "cpu").flatten(1)[:, 0]  # the leftovers, then the loader again from its start
    tensor([1., 1., 0., 0.])
    """

    def __init__(self, loader):
        if not hasattr(loader, "__iter__"):
            raise TypeError(f"unlabeled must be an iterable of batches (a DataLoader), got {type(loader).__name__}")
        self.loader = loader
        self._iterator = None
        self._pending: list[torch.Tensor] = []

    def _next_batch(self) -> torch.Tensor:
        for fresh in (False, True):
            if self._iterator is None or fresh:
                self._iterator = iter(self.loader)
            try:
                batch = _first(next(self._iterator))
            except StopIteration:
                continue
            if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
                raise ValueError("unlabeled batches must be (B, C, H, W) image tensors, got "
                                 f"{getattr(batch, 'shape', type(batch).__name__)}")
            return batch
        raise ValueError("the unlabeled loader yields no batch")

    def take(self, n: int, device) -> torch.Tensor:
        """The next ``n`` unlabeled images as one ``(n, C, H, W)`` float tensor on ``device``.

        Parameters
        ----------
        n : int
            Number of images.
        device : str or torch.device
            Where the tensor goes.
        """
        have = sum(part.shape[0] for part in self._pending)
        while have < n:
            part = self._next_batch()
            self._pending.append(part)
            have += part.shape[0]
        batch = self._pending[0] if len(self._pending) == 1 else torch.cat(
            [part.to(device, non_blocking=True) for part in self._pending])
        self._pending = [batch[n:]] if have > n else []
        return batch[:n].to(device, dtype=torch.float32, non_blocking=True)

    def reset(self) -> None:
        """Forget the leftovers and start a new pass over the loader at the next request."""
        self._iterator, self._pending = None, []
