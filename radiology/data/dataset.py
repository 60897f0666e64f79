"""A torch ``Dataset`` of preprocessed images: :class:`LabeledImages` + a pipeline (+ cache)."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from radiology.data.cache import ImageCache, _read
from radiology.data.labels import LabeledImages
from radiology.errors import one_line
from radiology.geometry.resize import target_size
from radiology.intensity import to_gray

__all__ = ["ImageDataset", "model_input", "output_size", "drop_unreadable", "input_error", "unreadable_reason",
           "data_report"]

#: Steps that keep the image's height and width (intensity only).
_SHAPE_KEEPING = {"percentile", "histogram", "minmax", "voi", "clahe", "enhance"}


def output_size(pipeline) -> tuple[int, int] | None:
    """The ``(height, width)`` every image has after ``pipeline``, or None when it depends on the input.

    A pipeline has a fixed output size when its last geometric steps are ``resize`` with
    ``longest`` followed by ``pad_square``, or ``resize`` with both ``width`` and
    ``height`` (optionally followed by ``pad_square``). Intensity steps may come after.

    Parameters
    ----------
    pipeline : radiology.pipeline.Pipeline
        The pipeline to inspect; no image is read.

    Examples
    --------
    >>> from radiology.pipeline import CLAHE, PadSquare, Pipeline, Resize
    >>> output_size(Pipeline([Resize(longest=224), PadSquare(), CLAHE()]))
    (224, 224)
    >>> output_size(Pipeline([Resize(width=224), PadSquare()])) is None
    True
    """
    size: tuple[int, int] | None = None
    longest: int | None = None  # the longest side is known, the other is not
    for step in pipeline.steps:
        name = getattr(step, "name", "")
        if name in _SHAPE_KEEPING:
            continue
        if name == "resize":
            if size is not None:
                size = target_size(size, width=step.width, height=step.height, longest=step.longest)
                longest = None
            elif step.width is not None and step.height is not None:
                size, longest = (int(step.height), int(step.width)), None
            else:
                size, longest = None, (int(step.longest) if step.longest is not None else None)
        elif name == "pad_square":
            if size is not None:
                size = (max(size),) * 2
            elif longest is not None:
                size, longest = (longest, longest), None
        else:  # crops, knee localization and unknown steps: the size depends on the image
            size, longest = None, None
    return size


def model_input(image: np.ndarray, channels: int, name: str = "image") -> np.ndarray:
    """One view of a pipeline's output as a model takes it: ``(C, H, W)`` float32.

    The one rule from ``Pipeline.read``'s image to a model's input, for training
    (:class:`ImageDataset`) and serving (:meth:`radiology.models.Bundle.model_input`) alike:
    a gray ``(H, W)`` image is repeated into ``channels``; an RGB ``(H, W, 3)`` image is kept
    for 3 channels and otherwise made gray first (:func:`radiology.intensity.to_gray`, the
    ITU-R BT.601 luma).

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` or ``(H, W, 3)`` float in ``[0, 1]``, what ``Pipeline.read`` returns.
    channels : int
        The model's input channels (``in_chans``), >= 1.
    name : str, optional
        Names the input in errors.

    Returns
    -------
    numpy.ndarray of float32, shape (channels, H, W)

    Raises
    ------
    ValueError
        Another shape, or ``channels`` < 1; the message starts with ``name``.

    Examples
    --------
    >>> gray = np.array([[0.0, 0.5], [1.0, 0.25]], np.float32)
    >>> model_input(gray, 3).shape, bool((model_input(gray, 3)[2] == gray).all())
    ((3, 2, 2), True)
    >>> rgb = np.stack([gray, gray, np.ones_like(gray)], axis=-1)
    >>> model_input(rgb, 3).shape, model_input(rgb, 1).shape
    ((3, 2, 2), (1, 2, 2))
    >>> model_input(np.zeros((2, 2, 4)), 1, "a.png")
    Traceback (most recent call last):
    ...
    ValueError: a.png: pipeline produced shape (2, 2, 4), expected (H, W) or (H, W, 3)
    """
    image = np.asarray(image)
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"{name}: channels must be a positive integer, got {channels!r}")
    if image.ndim == 3 and image.shape[2] == 3:
        if channels == 3:
            return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        image = to_gray(image)
    if image.ndim != 2:
        raise ValueError(f"{name}: pipeline produced shape {image.shape}, expected (H, W) or (H, W, 3)")
    return np.repeat(image[None].astype(np.float32, copy=False), int(channels), axis=0)


class ImageDataset(Dataset):
    """Samples of a :class:`LabeledImages`, preprocessed by a pipeline, as tensors.

    Parameters
    ----------
    items : LabeledImages
        The samples: image paths (one per view) and targets.
    pipeline : radiology.pipeline.Pipeline
        Must produce a fixed size (end with ``resize(longest=n)`` + ``pad_square``):
        checked here, and every image is checked again when loaded.
    cache : ImageCache, optional
        On-disk cache of the pipeline's output (recommended for training).
    channels : {1, 3}
        Gray images are repeated into ``channels``; RGB images are kept (3) or made gray
        with :func:`radiology.intensity.to_gray` (1): :func:`model_input`, as bundles do.

    Returns (``__getitem__``)
    -------------------------
    x : torch.Tensor of float32 in [0, 1]
        ``(C, H, W)``, or ``(V, C, H, W)`` for several views.
    y : torch.Tensor
        Single-label: ``int64`` scalar (``-1`` unlabeled); multi-label: ``float32`` ``(L,)``.

    Examples
    --------
    >>> import tempfile
    >>> from radiology.data.labels import from_paths
    >>> from radiology.pipeline import PadSquare, Pipeline, Resize
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> path = write_phantom_dicom(Path(tempfile.mkdtemp()) / "p.dcm", phantom_radiograph((64, 48)))
    >>> dataset = ImageDataset(from_paths([path]), Pipeline([Resize(longest=32), PadSquare()]), channels=3)
    >>> x, y = dataset[0]
    >>> tuple(x.shape), x.dtype, int(y)
    ((3, 32, 32), torch.float32, -1)
    """

    def __init__(self, items: LabeledImages, pipeline, *, cache: ImageCache | None = None, channels: int = 1):
        if not isinstance(items, LabeledImages):
            raise TypeError(f"items must be LabeledImages, got {type(items).__name__}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if cache is not None and not isinstance(cache, ImageCache):
            raise TypeError(f"cache must be an ImageCache, got {type(cache).__name__}")
        size = output_size(pipeline)
        if size is None:
            raise ValueError("the pipeline must produce a fixed size: end it with resize(longest=N) and pad_square")
        self.items = items
        self.pipeline = pipeline
        self.cache = cache
        self.channels = channels
        self.size = size

    def __len__(self) -> int:
        return len(self.items)

    @property
    def targets(self) -> np.ndarray:
        """The items' targets (for samplers and class weights)."""
        return self.items.targets

    @property
    def classes(self) -> list[str]:
        """Class names."""
        return self.items.classes

    @property
    def multi_label(self) -> bool:
        """Whether targets are multi-label."""
        return self.items.multi_label

    def read(self, path: Path) -> np.ndarray:
        """One view as ``float32`` ``(C, H, W)`` (from the cache when there is one).

        Parameters
        ----------
        path : pathlib.Path
            The image file of one view.
        """
        image = self.cache.load(path, self.pipeline) if self.cache is not None else _read(self.pipeline, Path(path))
        if image.shape[:2] != self.size:
            raise ValueError(f"{path}: the pipeline gave {image.shape[:2]}, expected {self.size}")
        return model_input(image, self.channels, str(path))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        views = [self.read(path) for path in self.items.paths[index]]
        x = torch.from_numpy(views[0] if len(views) == 1 else np.stack(views))
        target = self.items.targets[index]
        y = torch.tensor(target, dtype=torch.float32 if self.items.multi_label else torch.int64)
        return x, y


def drop_unreadable(dataset: ImageDataset, *, progress: bool = True) -> tuple[ImageDataset, list[tuple[str, str]]]:
    """Read every sample once and keep those that can be read.

    Unlabeled archives hold files that are not images (structured reports, presentation
    states, broken files); one of them would stop a training run at a random step. With a
    cache this pass also fills it, so the first epoch costs nothing more.

    Parameters
    ----------
    dataset : ImageDataset
        The dataset to check; every sample is read once.
    progress : bool
        A progress bar.

    Returns
    -------
    dataset : ImageDataset
        Over the readable samples (the same object when all are).
    failures : list of (str, str)
        ``(id, reason)`` of every dropped sample; the reason is the one-line text ``predict``
        writes in its ``error`` column, the file named by its reference (``id``) instead of
        the full path the reader saw.

    Examples
    --------
    >>> import tempfile
    >>> from radiology.data import from_paths
    >>> from radiology.io import write_image
    >>> from radiology.pipeline import PadSquare, Pipeline, Resize
    >>> folder = Path(tempfile.mkdtemp())
    >>> good = write_image(folder / "good.png", np.ones((8, 6), np.float32))
    >>> bad = folder / "bad.dcm"
    >>> _ = bad.write_bytes(b"not a dicom")
    >>> data = ImageDataset(from_paths([good, bad]), Pipeline([Resize(longest=8), PadSquare()]))
    >>> kept, failures = drop_unreadable(data, progress=False)
    >>> len(kept), failures[0][0] == str(bad), failures[0][1].startswith(str(bad))
    (1, True, True)
    """
    from tqdm.auto import tqdm

    keep, failures = [], []
    for index in tqdm(range(len(dataset)), desc="reading images", disable=not progress, leave=False):
        paths, name = dataset.items.paths[index], dataset.items.ids[index]
        # Each view's reference as the user gave it ("a.dcm|b.dcm" for two views), for the reason text.
        views = name.split("|") if len(name.split("|")) == len(paths) else [name] * len(paths)
        reason = _first_failure(dataset, paths, views)
        if reason is None:
            keep.append(index)
        else:
            failures.append((name, reason))
    if not failures:
        return dataset, failures
    kept = ImageDataset(dataset.items.subset(keep), dataset.pipeline, cache=dataset.cache, channels=dataset.channels)
    return kept, failures


def _first_failure(dataset: ImageDataset, paths, views) -> str | None:
    for path, view in zip(paths, views):
        try:
            dataset.read(path)
        except Exception as error:  # noqa: BLE001 - any unreadable file is dropped with its reason
            return unreadable_reason(error, path, view)
    return None


# An absolute path (POSIX, or a Windows drive) that starts a word: the backstop for paths an error names
# besides the input's own, such as a symlink's target.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:-])(?:/|[A-Za-z]:[\\/])[^\s'\"]+")


def input_error(error: BaseException | str, paths: Sequence[str | os.PathLike], name: str) -> str:
    """The error cell of one input: the exception (or message) on one line, naming the input by ``name``.

    Readers name the file they failed on by its full path, which holds the caller's folders
    (often a patient's name). Every form of each path (as given, absolute, resolved) is
    replaced by the input's id, any other absolute path by ``<path>``, and undecodable bytes
    are shown as ``\\xNN``, as in convert's report.

    Parameters
    ----------
    error : BaseException or str
        What reading the input raised, or a message about it.
    paths : sequence of path
        The files of the input, one per view.
    name : str
        The input's id; for several views, the views' ids joined by ``|``.

    Returns
    -------
    str

    Examples
    --------
    >>> input_error(FileNotFoundError("/data/Doe_John/a.dcm: no such file"), ["/data/Doe_John/a.dcm"], "a.dcm")
    'a.dcm: no such file'
    >>> input_error(ValueError("bad link to /data/Doe_John/b.dcm"), ["/scans/a.dcm"], "a.dcm")
    'bad link to <path>'
    """
    from radiology.naming import display_name

    text = one_line(error) if isinstance(error, BaseException) else " ".join(str(error).split())
    paths = [Path(p) for p in paths]
    views = name.split("|")
    if len(views) != len(paths):
        views = [name] * len(paths)
    for path, view in zip(paths, views):
        forms = {os.fspath(path), os.fspath(path.absolute()), os.fspath(path.resolve())}
        for form in sorted(forms, key=len, reverse=True):  # longest first: a relative form lies inside the others
            text = text.replace(form, view)
    return display_name(_ABSOLUTE_PATH.sub("<path>", text))


def unreadable_reason(error: BaseException, path: str | Path, name: str) -> str:
    """Why a file could not be read, on one line that starts with its ``name`` instead of its ``path``.

    :func:`input_error`'s rule (the file named by the reference the user gave, never by an
    absolute path that may hold a patient's name; ``\\xNN`` for bytes that are not UTF-8),
    led by the name, as a report's reason column reads.

    Parameters
    ----------
    error : BaseException
        What reading the file raised.
    path : str or pathlib.Path
        The path the reader saw, replaced by ``name`` in the text.
    name : str
        The file's reference as the user gave it.

    Examples
    --------
    >>> unreadable_reason(ValueError("/data/Doe_John/a.dcm: not a DICOM file"), "/data/Doe_John/a.dcm", "a.dcm")
    'a.dcm: not a DICOM file'
    >>> unreadable_reason(ValueError("image is empty"), "/data/Doe_John/b\\udcff.png", "b\\udcff.png")
    'b\\\\xff.png: image is empty'
    """
    from radiology.naming import display_name

    reason, shown = input_error(error, [path], name), display_name(name)
    return reason if reason.startswith(shown) else f"{shown}: {reason}"


def data_report(failures: list[tuple[str, str]]) -> bytes:
    """The ``data_report.csv`` of a training run: one ``file, reason`` row per image left out.

    Parameters
    ----------
    failures : list of (str, str)
        ``(file, reason)`` of every image left out, e.g. from :func:`drop_unreadable`.

    Examples
    --------
    >>> report = data_report([("a.dcm", "a.dcm: not a DICOM file"), ("b\\udcff.png", "b\\\\xff.png: empty")])
    >>> report.decode().splitlines()
    ['file,reason', 'a.dcm,a.dcm: not a DICOM file', 'b\\\\xff.png,b\\\\xff.png: empty']
    """
    import csv
    import io

    from radiology.naming import display_name

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "reason"])
    writer.writerows((display_name(name), reason) for name, reason in failures)
    return text.getvalue().encode()
