"""Loss functions for radiograph classifiers: torch modules that fastai can use directly.

Every loss takes raw logits ``(B, C)`` and targets (class indices ``(B,)`` for single-label,
a 0/1 float matrix ``(B, L)`` for multi-label), and has what fastai's own loss wrappers have:

- ``activation(logits)``: softmax (single-label) or sigmoid (multi-label), so
  ``Learner.get_preds`` returns probabilities;
- ``decodes(probs)``: the argmax class, or the ``p > threshold`` decisions;
- ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``), which ``get_preds(with_loss=True)`` switches.

The losses compute in float32 even under mixed precision, and move their weights to the
logits' device, so a loss built on the CPU works on a GPU batch.

:func:`make_loss` builds one by name from the training configuration.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LOSSES",
    "WeightedCrossEntropy",
    "FocalLoss",
    "BinaryFocalLoss",
    "NCEandRCE",
    "WeightedBCEWithLogits",
    "make_loss",
    "positive_weights",
]

#: Names :func:`make_loss` accepts.
LOSSES = ("ce", "focal", "nce_rce", "bce")
_REDUCTIONS = ("mean", "sum", "none")


def _as_weight(values, name: str, size: int | None = None) -> torch.Tensor | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        weight = values.detach().to("cpu", torch.float32).clone()
    else:
        weight = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if weight.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence, got shape {tuple(weight.shape)}")
    if size is not None and weight.numel() != size:
        raise ValueError(f"{name} has {weight.numel()} values for {size} outputs")
    if not torch.isfinite(weight).all() or (weight < 0).any():
        raise ValueError(f"{name} must be finite and non-negative")
    return weight


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(losses: torch.Tensor, reduction: str, denominator: torch.Tensor | None = None) -> torch.Tensor:
    if reduction == "none":
        return losses
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / denominator if denominator is not None else losses.mean()


class _SingleLabel(nn.Module):
    """Softmax activation and argmax decoding, as fastai's ``CrossEntropyLossFlat``."""

    # Integer targets cannot be blended: fastai's MixUp/CutMix then mix the two losses instead.
    y_int = True

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits, dim=-1)

    def decodes(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.argmax(dim=-1)

    @staticmethod
    def _inputs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if logits.ndim != 2:
            raise ValueError(f"expected logits of shape (B, C), got {tuple(logits.shape)}")
        # fastai hands TensorCategory/TensorBase subclasses; plain tensors keep torch ops simple.
        return logits.as_subclass(torch.Tensor).float(), targets.as_subclass(torch.Tensor).reshape(-1).long()


class _MultiLabel(nn.Module):
    """Sigmoid activation and thresholded decoding, as fastai's ``BCEWithLogitsLossFlat``."""

    thresh = 0.5

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)

    def decodes(self, probs: torch.Tensor) -> torch.Tensor:
        return probs > self.thresh

    @staticmethod
    def _inputs(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = logits.as_subclass(torch.Tensor).float()
        targets = targets.as_subclass(torch.Tensor).float()
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        return logits, targets


class WeightedCrossEntropy(_SingleLabel):
    """Cross-entropy with optional class weights and label smoothing (single-label).

    Exactly :func:`torch.nn.functional.cross_entropy`: with weights, the mean is weighted
    (divided by the sum of the targets' weights).

    Parameters
    ----------
    weight : array_like of float, shape (C,), optional
        Per-class weights, e.g. :func:`radiology.data.class_weights` (inverse frequency).
    label_smoothing : float, optional
        In ``[0, 1)``: the target becomes ``(1 - eps)`` one-hot plus ``eps / C`` everywhere.
    reduction : {"mean", "sum", "none"}, optional
        ``mean`` (weighted as described above), ``sum`` or ``none`` (one loss per sample).

    Examples
    --------
    >>> loss = WeightedCrossEntropy(weight=[1.0, 3.0], label_smoothing=0.1)
    >>> value = loss(torch.tensor([[2.0, -1.0], [0.5, 0.5]]), torch.tensor([0, 1]))
    >>> round(float(value), 4)
    0.6284
    """

    def __init__(self, weight=None, label_smoothing: float = 0.0, reduction: str = "mean"):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.register_buffer("weight", _as_weight(weight, "class weights"))
        self.label_smoothing = float(label_smoothing)
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor, shape (N, C)
            Raw model outputs.
        targets : torch.Tensor, shape (N,)
            Class indices.
        """
        logits, targets = self._inputs(logits, targets)
        weight = None if self.weight is None else self.weight.to(logits.device)
        return F.cross_entropy(
            logits, targets, weight=weight, label_smoothing=self.label_smoothing, reduction=self.reduction
        )


class FocalLoss(_SingleLabel):
    """Softmax focal loss (Lin et al. 2017) with optional class weights (single-label).

    Per sample ``-w[y] (1 - p_y)^gamma log p_y``: well-classified samples count less, so rare or
    hard classes drive training. The mean is weighted as in cross-entropy, so ``gamma=0`` gives
    exactly :class:`WeightedCrossEntropy`.

    Parameters
    ----------
    gamma : float, optional
        Focusing parameter, >= 0.
    weight : array_like of float, shape (C,), optional
        Per-class weights (the "alpha" of the paper, one per class).
    reduction : {"mean", "sum", "none"}, optional
        ``mean``, ``sum`` or ``none`` (one loss per sample).

    Examples
    --------
    >>> logits, targets = torch.tensor([[2.0, -1.0], [0.5, 0.5]]), torch.tensor([0, 1])
    >>> bool(torch.isclose(FocalLoss(gamma=0.0)(logits, targets), F.cross_entropy(logits, targets)))
    True
    """

    def __init__(self, gamma: float = 2.0, weight=None, reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("weight", _as_weight(weight, "class weights"))
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor, shape (N, C)
            Raw model outputs.
        targets : torch.Tensor, shape (N,)
            Class indices.
        """
        logits, targets = self._inputs(logits, targets)
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        # (1 - p)^gamma from log_p: -expm1(log_p) = 1 - p without cancellation near p = 1.
        losses = -((-torch.expm1(log_p)).clamp_min(0.0) ** self.gamma) * log_p
        denominator = None
        if self.weight is not None:
            sample_weight = self.weight.to(logits.device)[targets]
            losses = losses * sample_weight
            denominator = sample_weight.sum()
        return _reduce(losses, self.reduction, denominator)


class BinaryFocalLoss(_MultiLabel):
    """Sigmoid focal loss per label (multi-label), with optional per-label ``pos_weight``.

    Per element ``-[w y (1 - p)^gamma log p + (1 - y) p^gamma log(1 - p)]``; ``gamma=0`` is
    exactly :class:`WeightedBCEWithLogits`.

    Parameters
    ----------
    gamma : float, optional
        Focusing parameter, >= 0.
    pos_weight : array_like of float, shape (L,), optional
        Weight of the positive term per label (see :func:`positive_weights`).
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns the per-sample mean over labels, shape ``(B,)``.

    Examples
    --------
    >>> logits, targets = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 1.0]])
    >>> bool(torch.isclose(BinaryFocalLoss(0.0)(logits, targets), F.binary_cross_entropy_with_logits(logits, targets)))
    True
    """

    def __init__(self, gamma: float = 2.0, pos_weight=None, reduction: str = "mean"):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("pos_weight", _as_weight(pos_weight, "pos_weight"))
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor, shape (N, L)
            Raw model outputs.
        targets : torch.Tensor, shape (N, L)
            0/1 (or soft) label targets.
        """
        logits, targets = self._inputs(logits, targets)
        log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
        positive = -torch.exp(self.gamma * log_not_p) * log_p
        negative = -torch.exp(self.gamma * log_p) * log_not_p
        if self.pos_weight is not None:
            positive = positive * self.pos_weight.to(logits.device)
        losses = targets * positive + (1.0 - targets) * negative
        return _reduce(losses.mean(dim=1), self.reduction)


class NCEandRCE(_SingleLabel):
    """Active-passive loss for noisy labels: normalized CE + reverse CE (Ma et al., ICML 2020).

    ``alpha * NCE + beta * RCE`` per sample, with

    - ``NCE = log p_y / sum_k log p_k`` (cross-entropy normalized over all possible labels; in [0, 1]),
    - ``RCE = -sum_k p_k log q_k`` where ``q`` is the one-hot target and ``log 0`` is set to ``A``:
      ``RCE = -A (1 - p_y)``.

    Both terms are bounded, which makes the loss robust to mislabelled samples.

    Parameters
    ----------
    n_classes : int
        Needed to check the logits' width.
    alpha, beta : float, optional
        Weights of the active (NCE) and passive (RCE) terms. The paper uses (1, 1) for 10 classes
        and (10, 0.1) for 100 classes.
    log_zero : float, optional
        ``A``, the value of ``log 0`` in the reverse CE: -4 as in Wang et al. 2019 (symmetric CE).
        The authors' code clamps the one-hot at 1e-4, i.e. ``A = log(1e-4) ≈ -9.21``: only a
        rescaling of ``beta``.
    reduction : {"mean", "sum", "none"}, optional
        ``mean``, ``sum`` or ``none`` (one loss per sample).

    Examples
    --------
    >>> loss = NCEandRCE(2)
    >>> value = loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))  # p = (0.5, 0.5)
    >>> round(float(value), 4)  # NCE 0.5 + RCE 4 * 0.5
    2.5
    """

    def __init__(self, n_classes: int, alpha: float = 1.0, beta: float = 1.0, log_zero: float = -4.0,
                 reduction: str = "mean"):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"alpha and beta must be >= 0 and not both 0, got {alpha}, {beta}")
        if log_zero >= 0:
            raise ValueError(f"log_zero must be negative, got {log_zero}")
        self.n_classes, self.alpha, self.beta = int(n_classes), float(alpha), float(beta)
        self.log_zero = float(log_zero)
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, alpha={self.alpha}, beta={self.beta}, log_zero={self.log_zero}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor, shape (N, C)
            Raw model outputs.
        targets : torch.Tensor, shape (N,)
            Class indices.
        """
        logits, targets = self._inputs(logits, targets)
        if logits.shape[1] != self.n_classes:
            raise ValueError(f"logits have {logits.shape[1]} columns for n_classes={self.n_classes}")
        log_probs = F.log_softmax(logits, dim=-1)
        log_p = log_probs.gather(1, targets[:, None]).squeeze(1)
        nce = log_p / log_probs.sum(dim=1)
        rce = -self.log_zero * (1.0 - log_p.exp())
        return _reduce(self.alpha * nce + self.beta * rce, self.reduction)


class WeightedBCEWithLogits(_MultiLabel):
    """Binary cross-entropy on logits per label (multi-label), with per-label ``pos_weight``.

    Exactly :func:`torch.nn.functional.binary_cross_entropy_with_logits`, plus optional label
    smoothing of the 0/1 targets towards 0.5 (``y (1 - eps) + eps / 2``).

    Parameters
    ----------
    pos_weight : array_like of float, shape (L,), optional
        Weight of the positive term per label; ``neg / pos`` (:func:`positive_weights`) balances
        each label's positives against its negatives.
    label_smoothing : float, optional
        In ``[0, 1)``.
    thresh : float, optional
        Decision threshold used by :meth:`decodes`.
    reduction : {"mean", "sum", "none"}, optional
        ``"none"`` returns the per-sample mean over labels, shape ``(B,)``.

    Examples
    --------
    >>> loss = WeightedBCEWithLogits(pos_weight=[3.0])
    >>> round(float(loss(torch.tensor([[0.0]]), torch.tensor([[1.0]]))), 4)  # 3 * log 2
    2.0794
    """

    def __init__(self, pos_weight=None, label_smoothing: float = 0.0, thresh: float = 0.5, reduction: str = "mean"):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.register_buffer("pos_weight", _as_weight(pos_weight, "pos_weight"))
        self.label_smoothing = float(label_smoothing)
        self.thresh = float(thresh)
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}, thresh={self.thresh}"

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        logits : torch.Tensor, shape (N, L)
            Raw model outputs.
        targets : torch.Tensor, shape (N, L)
            0/1 (or soft) label targets.
        """
        logits, targets = self._inputs(logits, targets)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.device)
        losses = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight, reduction="none")
        return _reduce(losses.mean(dim=1), self.reduction)


def positive_weights(targets, max_weight: float = 100.0) -> np.ndarray:
    """Per-label ``pos_weight`` = negatives / positives, clipped to ``[1 / max_weight, max_weight]``.

    A label without positives gets ``max_weight`` (it cannot be balanced; the clip keeps the loss
    finite for the positives a later batch may hold).

    Parameters
    ----------
    targets : array_like, shape (N, L)
        0/1 training labels.
    max_weight : float, optional
        > 0.

    Returns
    -------
    numpy.ndarray of float32, shape (L,)

    Examples
    --------
    >>> positive_weights([[1, 0], [0, 0], [0, 1], [0, 0]])
    array([3., 3.], dtype=float32)
    """
    targets = np.asarray(targets, dtype=np.float64)
    if targets.ndim != 2 or targets.shape[0] == 0:
        raise ValueError(f"targets must be a non-empty (N, L) 0/1 matrix, got shape {targets.shape}")
    if not np.isin(targets, (0.0, 1.0)).all():
        raise ValueError("targets must hold only 0 and 1")
    if max_weight <= 0:
        raise ValueError(f"max_weight must be > 0, got {max_weight}")
    positives = targets.sum(axis=0)
    negatives = targets.shape[0] - positives
    with np.errstate(divide="ignore"):
        ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), max_weight)
    return np.clip(ratio, 1.0 / max_weight, max_weight).astype(np.float32)


def make_loss(
    name: str,
    *,
    n_classes: int,
    multi_label: bool,
    class_weights=None,
    pos_weight=None,
    label_smoothing: float = 0.0,
    gamma: float = 2.0,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> nn.Module:
    """Build a loss by name.

    Parameters
    ----------
    name : {"ce", "focal", "nce_rce", "bce"}
        - ``"ce"``: :class:`WeightedCrossEntropy` (single-label; ``class_weights``, ``label_smoothing``).
        - ``"focal"``: :class:`FocalLoss` (single-label; ``gamma``, ``class_weights``) or
          :class:`BinaryFocalLoss` (multi-label; ``gamma``, ``pos_weight``).
        - ``"nce_rce"``: :class:`NCEandRCE` for noisy labels (single-label; ``alpha``, ``beta``).
        - ``"bce"``: :class:`WeightedBCEWithLogits` (multi-label; ``pos_weight``, ``label_smoothing``).
    n_classes : int
        Number of model outputs (classes or labels); weights must have this length.
    multi_label : bool
        One sigmoid output per label instead of a softmax over classes.
    class_weights : array_like of float, shape (n_classes,), optional
        Single-label per-class weights.
    pos_weight : array_like of float, shape (n_classes,), optional
        Multi-label per-label positive weights (:func:`positive_weights`).
    label_smoothing : float, optional
        For ``"ce"`` and ``"bce"``.
    gamma : float, optional
        For ``"focal"``.
    alpha, beta : float, optional
        For ``"nce_rce"``.

    Returns
    -------
    torch.nn.Module
        With ``activation``, ``decodes`` and ``reduction`` for fastai.

    Raises
    ------
    ValueError
        Unknown name, a loss that does not fit the task (e.g. ``"bce"`` for single-label), or an
        option the chosen loss does not use.

    Examples
    --------
    >>> make_loss("focal", n_classes=3, multi_label=False, gamma=1.0)
    FocalLoss(gamma=1.0)
    >>> make_loss("hinge", n_classes=3, multi_label=False)
    Traceback (most recent call last):
    ...
    ValueError: unknown loss 'hinge'; choose from ce, focal, nce_rce, bce
    """
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(LOSSES)}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    class_weights = _as_weight(class_weights, "class_weights", n_classes)
    pos_weight = _as_weight(pos_weight, "pos_weight", n_classes)
    if multi_label:
        if class_weights is not None:
            raise ValueError("class_weights are for single-label losses; use pos_weight for multi-label")
        if name == "bce":
            return WeightedBCEWithLogits(pos_weight=pos_weight, label_smoothing=label_smoothing)
        if name == "focal":
            if label_smoothing:
                raise ValueError("label_smoothing is not supported by the focal loss")
            return BinaryFocalLoss(gamma=gamma, pos_weight=pos_weight)
        raise ValueError(f"loss {name!r} is single-label only; use 'bce' or 'focal' for multi-label")
    if n_classes < 2:
        raise ValueError("single-label classification needs n_classes >= 2")
    if pos_weight is not None:
        raise ValueError("pos_weight is for multi-label losses; use class_weights for single-label")
    if name == "bce":
        raise ValueError("loss 'bce' is multi-label only; use 'ce', 'focal' or 'nce_rce' for single-label")
    if name == "ce":
        return WeightedCrossEntropy(weight=class_weights, label_smoothing=label_smoothing)
    if label_smoothing:
        raise ValueError(f"label_smoothing is not supported by loss {name!r}")
    if name == "focal":
        return FocalLoss(gamma=gamma, weight=class_weights)
    if class_weights is not None:
        raise ValueError("class_weights are not supported by loss 'nce_rce'")
    return NCEandRCE(n_classes, alpha=alpha, beta=beta)
