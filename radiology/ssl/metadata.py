"""DICOM-metadata pretext: learn image features by predicting header fields every archive has for free.

Body part, view position, modality, manufacturer and photometric interpretation are
recorded for every radiograph a hospital stores. They are noisy (a knee filed as
"EXTREMITY", an AP labelled PA), but predicting them from the pixels still teaches a
backbone what radiographs look like, with no expert in the loop. One classification head
per field shares the backbone; missing or rare values are ignored by the loss.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from radiology.ssl.contrastive import _feature_dim

__all__ = ["HEADER_FIELDS", "HeaderTargets", "header_targets", "MetadataModel", "HeaderLoss"]

#: Header fields of :class:`radiology.dicom.DicomMetadata` the pretext task can predict.
HEADER_FIELDS = ("body_part", "view_position", "modality", "manufacturer", "photometric")


@dataclass
class HeaderTargets:
    """Class indices of header fields for a list of files.

    Attributes
    ----------
    fields : list of str
        The fields kept (those with at least two usable values).
    classes : dict of str to list of str
        The values of each field (upper-case, stripped), in index order.
    targets : numpy.ndarray
        ``int64`` ``(N, len(fields))``; ``-1`` where the value is missing, rare or unreadable.
    dropped : dict of str to str
        Fields left out, with the reason.
    """

    fields: list[str]
    classes: dict[str, list[str]]
    targets: np.ndarray
    dropped: dict[str, str] = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        """Number of classes of each kept field."""
        return [len(self.classes[name]) for name in self.fields]


def _values(path, fields: Sequence[str]) -> list[str | None]:
    from radiology.dicom import metadata_from_dataset, read_dataset

    try:
        meta = metadata_from_dataset(read_dataset(path, stop_before_pixels=True))
    except Exception:  # noqa: BLE001 - image files and broken headers have no fields
        return [None] * len(fields)
    out = []
    for name in fields:
        value = getattr(meta, name)
        value = " ".join(str(value).upper().split()) if value is not None else ""
        out.append(value or None)
    return out


def header_targets(paths: Sequence[str | os.PathLike], fields: Sequence[str] = HEADER_FIELDS, *,
                   min_count: int = 2, progress: bool = True) -> HeaderTargets:
    """Read header fields (headers only, no pixels) and turn them into class indices.

    Parameters
    ----------
    paths : sequence of path
        DICOM files (other files get ``-1`` everywhere).
    fields : sequence of str
        Names from :data:`HEADER_FIELDS`.
    min_count : int
        Values seen fewer times are treated as missing (a class needs examples).
    progress : bool
        Show a progress bar while the headers are read.

    Returns
    -------
    HeaderTargets
        Fields with fewer than two usable values are dropped, with the reason.

    Raises
    ------
    ValueError
        An unknown field, or no field left to predict.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> folder, image = pathlib.Path(tempfile.mkdtemp()), phantom_radiograph((32, 32))
    >>> paths = [write_phantom_dicom(folder / f"{i}.dcm", image, modality=m) for i, m in enumerate(["CR", "DX"] * 2)]
    >>> found = header_targets(paths, ["modality", "body_part"], progress=False)
    >>> found.fields, found.classes["modality"], found.targets[:, 0].tolist()
    (['modality'], ['CR', 'DX'], [0, 1, 0, 1])
    """
    unknown = [name for name in fields if name not in HEADER_FIELDS]
    if unknown:
        raise ValueError(f"unknown header field(s) {unknown}; choose from {list(HEADER_FIELDS)}")
    if not fields:
        raise ValueError("no header field given")
    from tqdm.auto import tqdm

    values = [_values(p, fields) for p in tqdm(paths, desc="reading headers", disable=not progress, leave=False)]
    kept, classes, columns, dropped = [], {}, [], {}
    for column, name in enumerate(fields):
        counts = Counter(row[column] for row in values if row[column] is not None)
        usable = sorted(value for value, n in counts.items() if n >= min_count)
        if len(usable) < 2:
            dropped[name] = f"{len(usable)} value(s) seen at least {min_count} times (need 2)"
            continue
        index = {value: i for i, value in enumerate(usable)}
        kept.append(name)
        classes[name] = usable
        columns.append([index.get(row[column], -1) for row in values])
    if not kept:
        raise ValueError("no header field has two usable values: " + "; ".join(f"{k}: {v}" for k, v in dropped.items()))
    targets = np.asarray(columns, dtype=np.int64).T.reshape(len(values), len(kept))
    return HeaderTargets(kept, classes, targets, dropped)


class MetadataModel(nn.Module):
    """An encoder with one linear head per header field; logits of all fields concatenated.

    Parameters
    ----------
    encoder : RadiographClassifier
        From :func:`radiology.models.create_model`; its pooled features feed the heads.
    sizes : sequence of int
        Classes per field (:attr:`HeaderTargets.sizes`).

    Examples
    --------
    >>> from radiology.models import create_model
    >>> model = MetadataModel(create_model("resnet18", 2, pretrained=None), [3, 2])
    >>> tuple(model(torch.rand(2, 1, 32, 32)).shape)
    (2, 5)
    """

    def __init__(self, encoder: nn.Module, sizes: Sequence[int]):
        super().__init__()
        if not sizes or min(sizes) < 2:
            raise ValueError(f"every field needs at least two classes, got {list(sizes)}")
        self.encoder = encoder
        self.sizes = [int(s) for s in sizes]
        self.heads = nn.Linear(_feature_dim(encoder), sum(self.sizes))

    @property
    def backbone(self) -> nn.Module:
        """The timm backbone (what :func:`radiology.ssl.save_backbone` writes)."""
        return self.encoder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every field, concatenated: ``(B, sum(sizes))``.

        Parameters
        ----------
        x : torch.Tensor, shape (B, C, H, W)
            Images, float in ``[0, 1]``.
        """
        return self.heads(self.encoder.dropout(self.encoder.forward_features(x)))


class HeaderLoss(nn.Module):
    """Mean over fields of the cross-entropy of each field's logits, ignoring ``-1`` targets.

    A field with no known value in a batch adds nothing (no NaN, no host synchronisation).

    Parameters
    ----------
    sizes : sequence of int
        Classes per field, in the order of the logits' columns (:attr:`HeaderTargets.sizes`).

    Examples
    --------
    >>> loss = HeaderLoss([2, 3])
    >>> logits = torch.tensor([[9.0, -9.0, 0.0, 0.0, 0.0]])
    >>> round(float(loss(logits, torch.tensor([[0, -1]]))), 4)  # only the first field counts
    0.0
    """

    def __init__(self, sizes: Sequence[int]):
        super().__init__()
        self.sizes = [int(s) for s in sizes]

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor
            ``(B, sum(sizes))``: the logits of every field, concatenated (:class:`MetadataModel`).
        targets : torch.Tensor
            ``(B, number of fields)``: the class index of each field, ``-1`` where it is unknown.
        """
        total = logits.new_zeros(())
        for column, part in enumerate(logits.float().split(self.sizes, dim=1)):
            target = targets[:, column]
            known = (target >= 0).sum()
            summed = F.cross_entropy(part, target.clamp_min(0), reduction="none").mul(target >= 0).sum()
            total = total + summed / known.clamp_min(1)
        return total / len(self.sizes)
