"""FixMatch and MixMatch as fastai callbacks: labeled batches from the Learner, unlabeled ones from a loader.

Both callbacks act on training batches only (``run_valid = False``): validation,
``Learner.validate`` and ``Learner.get_preds`` see the plain model. They need single-label
``(B, C, H, W)`` batches with class-index targets and a model with at least two logits.

Per training batch nothing is read back to the host (no ``.item()``, no boolean indexing,
no tensor in an ``if``) and nothing is copied to the device synchronously (the unlabeled
batches come from pinned memory, the views are drawn on the device): mask rates and losses
are accumulated on the device and turned into numbers once per epoch, for the
``labeled_loss`` / ``unsup_loss`` / … columns of the fastai log and the ``history``
attribute. Under fastai's mixed precision (``learn.to_fp16()``) the combined loss is set as
``learn.loss_grad`` in ``after_loss``, before ``MixedPrecision`` scales it for the backward
pass; MixMatch's guess pass runs under the same autocast.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.learner import ValueMetric
from torch import nn

from radiology.semisup.augment import strong_augmentation, weak_augmentation
from radiology.semisup.data import UnlabeledStream, unlabeled_loader
from radiology.semisup.functional import (
    DistributionAlignment,
    mixup,
    one_hot,
    pseudo_labels,
    sharpen,
    soft_cross_entropy,
)
from radiology.semisup.memory import WEAK_PASSES, FixMatchPlan, plan_fixmatch_step

__all__ = ["FixMatch", "MixMatch", "semisup_callback", "validate_semisup_params", "METHODS"]

logger = logging.getLogger(__name__)

#: The method names :func:`semisup_callback` takes.
METHODS = ("fixmatch", "mixmatch")

#: Who labels FixMatch's weak views: the model being trained, or a moving average of its weights.
TEACHERS = ("model", "ema")


class _SemiSupervised(Callback):
    """Shared plumbing: unlabeled stream, batch checks, device-side epoch statistics, log columns."""

    # Before MixedPrecision (10) and GradientAccumulation (6): the unlabeled term joins
    # ``loss_grad`` before either rescales it.
    order = 5
    run_valid = False
    _logged: tuple[str, ...] = ()

    def __init__(self, unlabeled, lambda_u: float, distribution_alignment: bool, log_metrics: bool):
        if lambda_u < 0:
            raise ValueError(f"lambda_u must be >= 0, got {lambda_u}")
        self.stream = UnlabeledStream(unlabeled)
        self.lambda_u = float(lambda_u)
        self.distribution_alignment = bool(distribution_alignment)
        self.alignment: DistributionAlignment | None = None
        self.log_metrics = bool(log_metrics)
        #: One dict per training epoch: ``epoch`` and the epoch means of the logged statistics.
        self.history: list[dict[str, float]] = []
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}
        self._columns: list[ValueMetric] = []

    # -- checks ---------------------------------------------------------------------------
    def _check_batch(self) -> torch.Tensor:
        if len(self.learn.xb) != 1 or len(self.learn.yb) != 1:
            raise ValueError(f"{type(self).__name__} needs (x, y) batches, got {len(self.learn.xb)} input(s) and "
                             f"{len(self.learn.yb)} target(s)")
        x, y = self.learn.xb[0], self.learn.yb[0]
        if x.ndim == 5:
            raise ValueError(f"{type(self).__name__} does not support multi-view (B, V, C, H, W) batches")
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__} needs (B, C, H, W) image batches, got shape {tuple(x.shape)}")
        if y.ndim != 1 or y.is_floating_point():
            raise ValueError(f"{type(self).__name__} is for single-label data (class-index targets of shape (B,)); "
                             f"got {y.dtype} targets of shape {tuple(y.shape)} (multi-label or soft targets are "
                             "not supported)")
        return x

    def _check_logits(self, logits: torch.Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] < 2:
            raise ValueError(f"{type(self).__name__} needs (B, classes >= 2) logits, got shape {tuple(logits.shape)}")

    def _unlabeled(self, n: int, like: torch.Tensor) -> torch.Tensor:
        images = self.stream.take(n, like.device)
        if images.shape[1:] != like.shape[1:]:
            raise ValueError(f"unlabeled images {tuple(images.shape[1:])} and labeled images "
                             f"{tuple(like.shape[1:])} differ in shape: use the same pipeline for both")
        return images

    def _align(self, n_classes: int) -> DistributionAlignment | None:
        if self.distribution_alignment and self.alignment is None:
            self.alignment = DistributionAlignment(n_classes)
        return self.alignment

    def _autocast(self, device: torch.device):
        """The Learner's mixed-precision autocast, for a forward pass made before fastai enters it."""
        amp = next((cb for cb in self.learn.cbs if type(cb).__name__ == "MixedPrecision"), None)
        context = getattr(amp, "autocast", None)
        if context is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=context.fast_dtype)

    @staticmethod
    def _augment(module: nn.Module, images: torch.Tensor) -> torch.Tensor:
        # Views are made in float32 outside autocast and without autograd, on the batch's device.
        with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
            return module.to(images.device)(images)

    # -- statistics ---------------------------------------------------------------------------
    def _record(self, **values) -> None:
        # Tensors are summed on their device, host numbers on the host: nothing crosses per batch.
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float()
            self._sums[name] = self._sums[name] + value if name in self._sums else value
            self._counts[name] = self._counts.get(name, 0) + 1

    def _epoch_mean(self, name: str) -> float:
        if self._counts.get(name):
            return float(self._sums[name]) / self._counts[name]  # once per epoch
        return float("nan")

    def before_fit(self):
        # ``validate`` and ``get_preds`` also send before_fit/after_fit, inside fastai's
        # validation context (which holds ``learn.lock``): that is no fit, keep the history
        # and add no columns.
        lock = getattr(self.learn, "lock", None)
        if lock is not None and lock.locked():
            return
        # cleared in place: assigning would trip fastai's shadowing warning (the learner's
        # ``history`` attribute is the History callback)
        self.history.clear()
        if self.log_metrics:
            self._columns = [ValueMetric(lambda name=name: self._epoch_mean(name), name) for name in self._logged]
            self.learn.metrics = list(self.learn.metrics) + self._columns

    def before_train(self):
        self._sums, self._counts = {}, {}

    def after_train(self):
        if self._counts:
            self.history.append({"epoch": int(self.epoch), **{name: self._epoch_mean(name) for name in self._logged}})

    def after_fit(self):
        if self._columns:
            self.learn.metrics = [m for m in self.learn.metrics if all(m is not ours for ours in self._columns)]
            self._columns = []


class FixMatch(_SemiSupervised):
    """FixMatch: confident pseudo-labels of weak views train the strong views of unlabeled images.

    For each labeled batch of ``B`` images the callback takes ``mu * B`` unlabeled images and
    makes a weak view (flip + translation) and a strong view (RandAugment-like + cutout) of
    each. The teacher's prediction of the weak view (no gradient) gives a pseudo-label where
    its probability reaches ``threshold``; the strong view is trained on it with
    cross-entropy, as in the paper. The loss is
    ``supervised + lambda_u * unsupervised``, where the
    supervised part is ``learn.loss_func`` on the labeled logits (class weights, focal loss
    … are kept) and the unsupervised part is averaged over all ``mu * B`` images (masked
    ones count as zero), as in the paper. ``learn.pred`` is left holding the labeled logits.

    Imbalanced data: with ``distribution_alignment`` the weak-view probabilities are
    rescaled (:class:`~radiology.semisup.DistributionAlignment`) so that, on average, the
    pseudo-labels follow the class frequencies of the labeled batches rather than the
    model's bias towards the majority class — without it, the minority class seldom
    reaches the confidence threshold.

    Memory: the paper's joint pass holds ``(1 + 2 mu) B`` images with gradients (about 80 MB
    each for ``tf_efficientnet_lite0`` at 224 px: 38 GB at ``B = 32``). At the first training
    batch of each fit the callback therefore plans the step from the memory available on the
    batch's device (:func:`~radiology.semisup.memory.plan_fixmatch_step`): with
    ``weak_pass="auto"`` it keeps the joint pass when ``mu * B`` unlabeled images fit in
    ``memory_fraction`` of it, else it labels the weak views in a separate no-gradient pass
    first (``(1 + mu) B`` images with gradients, about 40 % less; in ``bench/fewlabels.py``,
    with batch-norm statistics updated by every batch, that scored AUC 0.892 ± 0.014 against
    0.904 ± 0.018; with them fixed the two passes compute the same function); and if the step
    is still too large it takes fewer unlabeled images. What was chosen is logged (a warning
    when the unlabeled batch is reduced) and kept in :attr:`plan`. ``unlabeled_batch`` fixes
    the number of unlabeled images per step instead, unchecked.

    Teacher: by default the model being trained labels its own weak views (the paper). With
    ``teacher="ema"`` an exponential moving average of its weights does (a mean teacher,
    updated after every optimizer step), starting from the model the fit starts with — after
    :func:`radiology.train.train`'s head phase, the head-first model; its pass has no
    gradient (``weak_pass`` "auto" or "no_grad"), so it also needs less memory. Measured
    with ``bench/fewlabels.py`` (pneumonia, 10 % of the labels, 64 px, five seeds) it ties the
    paper's teacher: balanced accuracy −0.001 ± 0.009, AUC +0.003 ± 0.003.

    Parameters
    ----------
    unlabeled : iterable
        A loader of unlabeled batches ``x``, ``(x,)`` or ``(x, anything)`` (the second part is
        ignored), e.g. :func:`~radiology.semisup.unlabeled_loader`; cycled forever. Its
        batches are concatenated or split to give ``mu * B`` images per step; a batch size of
        ``mu * B`` avoids the copying. The images are not augmented by the loader.
    threshold : float, optional
        Confidence needed for a pseudo-label (0.95 in the paper).
    mu : int, optional
        Unlabeled images per labeled image (7 in the paper): ``mu * B`` per step unless memory
        is short (see above).
    lambda_u : float, optional
        Weight of the unlabeled loss (1 in the paper).
    weak, strong : torch.nn.Module, optional
        Default :func:`~radiology.semisup.weak_augmentation` and
        :func:`~radiology.semisup.strong_augmentation`.
    distribution_alignment : bool, optional
        Align the pseudo-labelling probabilities to the class prior
        (:class:`DistributionAlignment`), for imbalanced classes.
    temperature : float, optional
        Softmax temperature of the pseudo-labelling probabilities (1 in the paper).
    weak_pass : {"auto", "joint", "no_grad"}, optional
        With ``teacher="model"``: ``joint``: weak views in the one forward pass (the paper),
        so that batch-norm statistics see all of them; ``no_grad``: in a separate
        forward pass without gradient (batch-norm statistics of that pass are the weak
        views' own); ``auto``: ``joint`` when it fits, else ``no_grad``.
    unlabeled_batch : int, optional
        Unlabeled images per step, used as given (no memory check); 0 (the default) chooses
        ``mu * B`` or fewer, from the memory available.
    memory_fraction : float, optional
        Share of the available memory the step's estimated activations may take (0.5).
    teacher : {"model", "ema"}, optional
        Who labels the weak views (see above).
    ema_decay : float, optional
        With ``teacher="ema"``: the share of the teacher's weights kept at each step, in
        ``(0, 1)``; after ``n`` steps the starting weights still count ``ema_decay ** n``.
    log_metrics : bool, optional
        Add ``labeled_loss`` (``learn.loss_func`` on the labeled images), ``unsup_loss``
        (unweighted) and ``mask_rate`` (fraction of unlabeled images above the threshold)
        columns, training-epoch means, to the fastai log (and ``history.csv`` of
        :func:`radiology.train.fine_tune`).

    Attributes
    ----------
    labeled_loss, unsup_loss, mask_rate : torch.Tensor
        Of the last training batch (0-d tensors on the device; ``unsup_loss`` unweighted).
    history : list of dict
        Per training epoch: ``epoch``, ``labeled_loss``, ``unsup_loss``, ``mask_rate``.
    alignment : DistributionAlignment or None
        Its running means, after training.
    plan : FixMatchPlan or None
        The weak pass and unlabeled images per step chosen at the fit's first batch.
    ema_model : torch.nn.Module or None
        With ``teacher="ema"``: the teacher (in evaluation mode, no gradient) of the last fit.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> from radiology.semisup import unlabeled_loader
    >>> fixmatch = FixMatch(unlabeled_loader(TensorDataset(torch.rand(14, 1, 32, 32)), 14), mu=7)
    >>> fixmatch.threshold, fixmatch.mu, fixmatch.lambda_u, fixmatch.weak_pass
    (0.95, 7, 1.0, 'auto')

    With a Learner (:func:`radiology.train.make_learner`):
    ``learn.fit_one_cycle(10, 1e-3, cbs=FixMatch(unlabeled_dl))``.
    """

    _logged = ("labeled_loss", "unsup_loss", "mask_rate")

    def __init__(self, unlabeled, *, threshold: float = 0.95, mu: int = 7, lambda_u: float = 1.0,
                 weak: nn.Module | None = None, strong: nn.Module | None = None, distribution_alignment: bool = True,
                 temperature: float = 1.0, weak_pass: str = "auto", unlabeled_batch: int = 0,
                 memory_fraction: float = 0.5, teacher: str = "model", ema_decay: float = 0.99,
                 log_metrics: bool = True):
        super().__init__(unlabeled, lambda_u, distribution_alignment, log_metrics)
        if weak_pass not in WEAK_PASSES:
            raise ValueError(f"weak_pass must be one of {list(WEAK_PASSES)}, got {weak_pass!r}")
        if teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {list(TEACHERS)}, got {teacher!r}")
        if teacher == "ema" and weak_pass == "joint":
            raise ValueError("teacher='ema' labels the weak views in a pass of its own: use weak_pass 'auto' or "
                             "'no_grad', or teacher='model' for 'joint'")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        if int(unlabeled_batch) < 0:
            raise ValueError(f"unlabeled_batch must be >= 0 (0: chosen from memory), got {unlabeled_batch}")
        if not 0.0 < memory_fraction <= 1.0:
            raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if int(mu) < 1:
            raise ValueError(f"mu must be a positive integer, got {mu}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.threshold, self.mu, self.temperature = float(threshold), int(mu), float(temperature)
        self.weak = weak if weak is not None else weak_augmentation()
        self.strong = strong if strong is not None else strong_augmentation()
        self.weak_pass, self.unlabeled_batch = weak_pass, int(unlabeled_batch)
        self.memory_fraction = float(memory_fraction)
        self.teacher, self.ema_decay = teacher, float(ema_decay)
        self.ema_model: nn.Module | None = None
        self.plan: FixMatchPlan | None = None
        self.mask_rate = self.unsup_loss = self.labeled_loss = None
        self._n_labeled = 0
        self._unsup: torch.Tensor | None = None
        self._weak_logits: torch.Tensor | None = None

    def before_fit(self):
        super().before_fit()
        lock = getattr(self.learn, "lock", None)
        if lock is None or not lock.locked():
            self.plan = None  # planned again at this fit's first training batch
            if self.teacher == "ema":
                self.ema_model = copy.deepcopy(self._student()).eval().requires_grad_(False)

    def _student(self) -> nn.Module:
        return getattr(self.learn.model, "module", self.learn.model)  # unwrapped from DDP

    def after_step(self):
        if self.ema_model is None:
            return
        with torch.no_grad():
            for mean, now in zip(self.ema_model.parameters(), self._student().parameters()):
                mean.lerp_(now.detach(), 1.0 - self.ema_decay)
            for mean, now in zip(self.ema_model.buffers(), self._student().buffers()):
                mean.copy_(now)  # batch-norm statistics, when they are not fixed

    def _plan(self, x: torch.Tensor) -> FixMatchPlan:
        """Weak pass and unlabeled images per step, from the memory on ``x``'s device (once per fit)."""
        if self.plan is None or self.plan.requested != self.mu * x.shape[0]:
            arch = getattr(getattr(self.learn.model, "backbone", None), "default_cfg", {}).get("architecture")
            self.plan = plan_fixmatch_step(x.shape[0], self.mu, image_size=tuple(x.shape[2:]), channels=x.shape[1],
                                           weak_pass="no_grad" if self.teacher == "ema" else self.weak_pass,
                                           unlabeled_batch=self.unlabeled_batch,
                                           fraction=self.memory_fraction, device=x.device, arch=arch)
            reduced = self.plan.unlabeled < self.plan.requested
            logger.log(logging.WARNING if reduced else logging.INFO, "%s", self.plan.message)
        return self.plan

    def before_batch(self):
        x = self._check_batch()
        plan = self._plan(x)
        self._n_labeled = x.shape[0]
        images = self._unlabeled(plan.unlabeled, x)
        weak, strong = self._augment(self.weak, images), self._augment(self.strong, images)
        if plan.weak_pass == "no_grad":
            # Pseudo-labels need no gradient: a separate pass keeps none of its activations.
            labeler = self.ema_model if self.ema_model is not None else self.learn.model
            with torch.no_grad(), self._autocast(x.device):
                self._weak_logits = labeler(weak.to(x.dtype))
            self.learn.xb = (torch.cat([x, strong.to(x.dtype)]),)
        else:
            self._weak_logits = None
            self.learn.xb = (torch.cat([x, weak.to(x.dtype), strong.to(x.dtype)]),)

    def after_pred(self):
        logits = self.learn.pred
        self._check_logits(logits)
        n = self._n_labeled
        if self._weak_logits is not None:
            labeled, weak, strong = logits[:n], self._weak_logits, logits[n:]
            self._check_logits(weak)
            self._weak_logits = None
        else:
            n_unlabeled = (logits.shape[0] - n) // 2
            labeled, weak, strong = logits[:n], logits[n:n + n_unlabeled].detach(), logits[n + n_unlabeled:]
        alignment = self._align(logits.shape[1])
        if alignment is not None:
            alignment.update_prior(self.learn.yb[0])
        labels, mask = pseudo_labels(weak, self.threshold, temperature=self.temperature, alignment=alignment)
        losses = F.cross_entropy(strong.float(), labels, reduction="none")
        self._unsup = (losses * mask).mean()
        self.mask_rate, self.unsup_loss = mask.mean(), self._unsup.detach()
        self._record(mask_rate=self.mask_rate, unsup_loss=self.unsup_loss)
        self.learn.pred = labeled

    def after_loss(self):
        if self._unsup is None:
            return
        self.labeled_loss = self.learn.loss_grad.detach()
        self._record(labeled_loss=self.labeled_loss)
        self.learn.loss_grad = self.learn.loss_grad + self.lambda_u * self._unsup
        self.learn.loss = self.learn.loss_grad.detach().clone()
        self._unsup = None


class MixMatch(_SemiSupervised):
    """MixMatch: sharpened guesses for unlabeled images, mixup of everything, L2 on the unlabeled part.

    Per labeled batch ``(x, y)`` of ``B`` images the callback takes ``B`` unlabeled images
    and, following the paper:

    1. makes ``k`` augmented views of each (default :func:`~radiology.semisup.weak_augmentation`);
    2. guesses their label: the model's probabilities (no gradient, one extra forward pass)
       averaged over the ``k`` views, optionally distribution-aligned (ReMixMatch, for
       imbalanced data, see :class:`~radiology.semisup.DistributionAlignment`), then
       :func:`~radiology.semisup.sharpen`-ed with ``temperature``;
    3. shuffles the labeled images (one-hot targets) and the ``k B`` unlabeled views (guessed
       targets) together and :func:`~radiology.semisup.mixup`-s each part with that shuffle,
       ``λ ~ Beta(alpha, alpha)`` per sample and ``λ' = max(λ, 1 − λ)``;
    4. trains on one forward pass over the ``(1 + k) B`` mixed images with
       ``soft cross-entropy(labeled part) + λu(t) · mean squared error(probabilities, targets)``
       on the unlabeled part, ``λu(t)`` rising linearly from 0 to ``lambda_u`` over the first
       ``rampup_epochs`` epochs of each fit.

    The labeled term is MixMatch's own soft-target cross-entropy (mixed targets are soft), so
    ``learn.loss_func`` is not used while training; it still scores validation.
    ``learn.pred`` is left holding the logits of the mixed labeled images.

    Parameters
    ----------
    unlabeled : iterable
        As for :class:`FixMatch`; ``B`` images are taken per step.
    k : int, optional
        Augmented views per unlabeled image (2 in the paper).
    temperature : float, optional
        Sharpening temperature (0.5).
    alpha : float, optional
        Beta distribution parameter of mixup (0.75).
    lambda_u : float, optional
        Final weight of the unlabeled loss (75 in the paper for CIFAR-10).
    rampup_epochs : float, optional
        Length of the linear ramp of the unlabeled weight, in epochs (the paper ramps over
        its first 16 000 of about a million steps; a short fine-tune needs a short ramp).
        0 uses ``lambda_u`` from the start.
    augment : torch.nn.Module, optional
        Makes each of the ``k`` views.
    distribution_alignment : bool, optional
        Align the guesses before sharpening (off in the original MixMatch).
    log_metrics : bool, optional
        Add ``labeled_loss`` (soft cross-entropy of the mixed labeled images), ``unsup_loss``
        (unweighted) and ``lambda_u`` columns, training-epoch means, to the fastai log.

    Attributes
    ----------
    labeled_loss, unsup_loss : torch.Tensor
        Of the last training batch (0-d tensors on the device; ``unsup_loss`` unweighted).
    history : list of dict
        Per training epoch: ``epoch``, ``labeled_loss``, ``unsup_loss``, ``lambda_u``.

    Examples
    --------
    >>> mixmatch = MixMatch([torch.rand(8, 1, 32, 32)])
    >>> mixmatch.k, mixmatch.temperature, mixmatch.alpha, mixmatch.lambda_u
    (2, 0.5, 0.75, 75.0)
    """

    _logged = ("labeled_loss", "unsup_loss", "lambda_u")

    def __init__(self, unlabeled, *, k: int = 2, temperature: float = 0.5, alpha: float = 0.75,
                 lambda_u: float = 75.0, rampup_epochs: float = 2.0, augment: nn.Module | None = None,
                 distribution_alignment: bool = False, log_metrics: bool = True):
        super().__init__(unlabeled, lambda_u, distribution_alignment, log_metrics)
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if not alpha > 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        if rampup_epochs < 0:
            raise ValueError(f"rampup_epochs must be >= 0, got {rampup_epochs}")
        self.k, self.temperature, self.alpha = int(k), float(temperature), float(alpha)
        self.rampup_epochs = float(rampup_epochs)
        self.augment = augment if augment is not None else weak_augmentation()
        self.unsup_loss = self.labeled_loss = None
        self._targets: torch.Tensor | None = None
        self._n_labeled = 0
        self._mixed_loss: torch.Tensor | None = None

    def current_lambda_u(self) -> float:
        """The unlabeled weight at the current training step (a host number: fastai counts steps on the host)."""
        if self.rampup_epochs == 0:
            return self.lambda_u
        n_iter = max(int(getattr(self.learn, "n_iter", 1) or 1), 1)
        progress = (self.epoch + self.iter / n_iter) / self.rampup_epochs
        return self.lambda_u * min(max(progress, 0.0), 1.0)

    def _guess(self, views: torch.Tensor, n: int) -> torch.Tensor:
        with torch.no_grad(), self._autocast(views.device):
            logits = self.learn.model(views)
        self._check_logits(logits)
        with torch.no_grad():
            probs = torch.softmax(logits.float(), dim=1)
            probs = probs.view(self.k, n, -1).mean(dim=0)
            alignment = self._align(probs.shape[1])
            if alignment is not None:
                probs = alignment(probs)
            return sharpen(probs, self.temperature)

    def before_batch(self):
        x = self._check_batch()
        y = self.learn.yb[0]
        n = x.shape[0]
        images = self._unlabeled(n, x)
        views = torch.cat([self._augment(self.augment, images) for _ in range(self.k)]).to(x.dtype)
        guess = self._guess(views, n)
        n_classes = guess.shape[1]
        if self.alignment is not None:
            self.alignment.update_prior(y)
        inputs = torch.cat([x, views])
        targets = torch.cat([one_hot(y, n_classes), guess.repeat(self.k, 1)])
        # A permutation by sorting random keys: CUDA's randperm may draw small ones on the host.
        order = torch.rand(inputs.shape[0], device=inputs.device).argsort()
        lam = torch.distributions.Beta(torch.full((inputs.shape[0],), self.alpha, device=inputs.device),
                                       torch.full((inputs.shape[0],), self.alpha, device=inputs.device),
                                       validate_args=False).sample()
        mixed, self._targets = mixup(inputs, targets, inputs[order], targets[order], lam)
        self._n_labeled = n
        self.learn.xb = (mixed.to(x.dtype),)

    def after_pred(self):
        logits = self.learn.pred
        self._check_logits(logits)
        n, targets = self._n_labeled, self._targets
        labeled_loss = soft_cross_entropy(logits[:n], targets[:n])
        self.labeled_loss = labeled_loss.detach()
        unsup_loss = F.mse_loss(torch.softmax(logits[n:].float(), dim=1), targets[n:])
        self.unsup_loss = unsup_loss.detach()
        weight = self.current_lambda_u()
        self._mixed_loss = labeled_loss + weight * unsup_loss
        self._record(labeled_loss=self.labeled_loss, unsup_loss=self.unsup_loss, lambda_u=weight)
        self.learn.pred = logits[:n]

    def after_loss(self):
        if self._mixed_loss is None:
            return
        self.learn.loss_grad = self._mixed_loss
        self.learn.loss = self._mixed_loss.detach().clone()
        self._mixed_loss = self._targets = None


#: The callbacks' module arguments: objects, which no settings file or flag can give.
_MODULE_ARGS = ("weak", "strong", "augment")
#: Keyword arguments that are not settings (the modules, the log columns).
_NOT_SETTINGS = frozenset({*_MODULE_ARGS, "log_metrics"})


def _method_class(method: str) -> type[FixMatch] | type[MixMatch]:
    name = str(method).lower()
    if name not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    return FixMatch if name == "fixmatch" else MixMatch


def validate_semisup_params(method: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Check FixMatch/MixMatch settings given as plain values (a config file, the command line).

    The settings a file or a flag can give are the callback's numbers and switches (not its
    augmentation modules or its log columns). Each is checked by the callback's own
    constructor, so the rules live in one place; nothing is trained or read.

    Parameters
    ----------
    method : {"fixmatch", "mixmatch"}
        The semi-supervised method the settings are for.
    params : mapping
        Keyword arguments of :class:`FixMatch` or :class:`MixMatch`, e.g.
        ``{"lambda_u": 10, "rampup_epochs": 5}``.

    Returns
    -------
    dict
        ``params`` as a plain dict.

    Raises
    ------
    ValueError
        An unknown name (the known ones are listed) or a value the callback refuses.

    Examples
    --------
    >>> validate_semisup_params("mixmatch", {"lambda_u": 10})
    {'lambda_u': 10}
    >>> validate_semisup_params("fixmatch", {"threshold": 2})
    Traceback (most recent call last):
    ...
    ValueError: fixmatch setting threshold=2: threshold must be in [0, 1], got 2
    """
    cls = _method_class(method)
    name = cls.__name__.lower()
    signature = inspect.signature(cls.__init__)
    known = sorted(p.name for p in signature.parameters.values()
                   if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_SETTINGS)
    # The constructor's checks run without building its augmentation modules.
    modules = {module: nn.Identity() for module in _MODULE_ARGS if module in signature.parameters}
    params = dict(params)
    for key, value in params.items():
        if key not in known:
            raise ValueError(f"unknown {name} setting {key!r}; known: {known}")
        default = signature.parameters[key].default
        if isinstance(default, str):
            if not isinstance(value, str):
                raise ValueError(f"{name} setting {key}={value!r}: expected a name")
        else:
            expected = ("true or false" if isinstance(default, bool) else "an integer" if isinstance(default, int)
                        else "a number")
            if (isinstance(value, bool) != isinstance(default, bool)
                    or not isinstance(value, int if isinstance(default, int) else (int, float))):
                raise ValueError(f"{name} setting {key}={value!r}: expected {expected}")

    def check(settings: dict) -> None:
        cls([torch.zeros(1, 1, 2, 2)], **modules, **settings)

    try:  # every name and type is known good: the constructor's own rules, on the settings together
        check(params)
    except ValueError as together:
        for key, value in params.items():  # name the setting that is wrong on its own, if one is
            try:
                check({key: value})
            except ValueError as error:
                raise ValueError(f"{name} setting {key}={value!r}: {error}") from None
        raise ValueError(f"{name} settings {params}: {together}") from None
    return params


def semisup_callback(method: str, unlabeled, batch_size: int, *, num_workers: int = 0, seed: int = 0,
                     **params) -> FixMatch | MixMatch:
    """The FixMatch or MixMatch callback over an unlabeled dataset, for a labeled batch size: the one entry point.

    Builds the unlabeled loader (:func:`~radiology.semisup.unlabeled_loader`, ``mu ×
    batch_size`` images per batch for FixMatch, or its ``unlabeled_batch``; ``batch_size``
    for MixMatch) and the callback. FixMatch takes fewer unlabeled images per step when
    ``mu × batch_size`` would not fit the memory at hand, and says so (see :class:`FixMatch`).
    Add it to a Learner whose training loader gives single-label ``(B, C, H, W)`` batches of
    ``batch_size`` images: ``learn.add_cb(...)`` before fine-tuning, or ``cbs=`` of one fit.

    Parameters
    ----------
    method : {"fixmatch", "mixmatch"}
        The semi-supervised method: :class:`FixMatch` or :class:`MixMatch`.
    unlabeled : torch Dataset
        Unlabeled images, items ``x`` or ``(x, y)`` (``y`` ignored), with the same pipeline and
        channels as the labeled set, e.g.
        ``drop_unreadable(ImageDataset(from_unlabeled(folder), pipeline, channels=c))[0]``.
    batch_size : int
        The labeled batch size.
    num_workers : int, optional
        Processes of the unlabeled loader.
    seed : int, optional
        Shuffling seed of the unlabeled loader (offset by the process rank under
        ``accelerate launch``, so ranks see different unlabeled images).
    **params
        The callback's parameters (:class:`FixMatch`: ``threshold``, ``mu``, ``lambda_u``, …;
        :class:`MixMatch`: ``k``, ``temperature``, ``alpha``, ``lambda_u``, ``rampup_epochs``, …);
        the papers' defaults otherwise.

    Returns
    -------
    FixMatch or MixMatch

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> callback = semisup_callback("fixmatch", TensorDataset(torch.rand(64, 1, 32, 32)), 4, mu=7)
    >>> type(callback).__name__, callback.stream.loader.bs
    ('FixMatch', 28)
    """
    from fastai.torch_core import rank_distrib

    cls = _method_class(method)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    # FixMatch takes mu images per labeled one (its own default unless given), MixMatch one. A bad
    # mu is left to FixMatch's own check, not to the loader's.
    mu = params.get("mu", inspect.signature(FixMatch).parameters["mu"].default) if cls is FixMatch else 1
    per_step = int(params.get("unlabeled_batch") or 0) if cls is FixMatch else 0
    loader = unlabeled_loader(unlabeled, per_step if per_step > 0 else max(int(batch_size) * int(mu), 1),
                              num_workers=num_workers,
                              seed=seed + rank_distrib())
    return cls(loader, **params)
