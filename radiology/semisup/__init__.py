"""Semi-supervised learning (torch, fastai): FixMatch and MixMatch over labeled + unlabeled radiographs.

Labels are scarce, unlabeled radiographs are not. The two methods are fastai callbacks
added to an ordinary fine-tuning: the Learner's loader gives the labeled batches, a second
loader the unlabeled images, and the callback adds the unlabeled loss on training batches
only (validation and prediction are untouched).

- :class:`FixMatch` (Sohn et al., 2020): pseudo-labels from weak views (flip + shift) where
  the model is confident (≥ 0.95), trained on strong views (RandAugment-like + cutout);
  ``mu = 7`` unlabeled images per labeled one, ``lambda_u = 1``.
- :class:`MixMatch` (Berthelot et al., 2019): label guesses averaged over ``k = 2`` views and
  sharpened (``T = 0.5``), mixup of labeled and unlabeled (``alpha = 0.75``), L2 unlabeled
  loss with its weight ramped up to ``lambda_u = 75``.
- Imbalanced data: distribution alignment (ReMixMatch, :class:`DistributionAlignment`),
  on by default for FixMatch and optional for MixMatch, makes the pseudo-labels follow the
  labeled class frequencies instead of the model's majority-class bias.
- Memory: FixMatch plans its step at the first batch from the memory available
  (:func:`plan_fixmatch_step`): the paper's single pass when it fits, else a no-gradient
  pass over the weak views and, if needed, fewer unlabeled images per step, logged.

``radiology train --unlabeled`` leaves the validation images out of the unlabeled set by
content, not by path (:func:`copies_of`: same bytes, or same DICOM SOP Instance UID), so a
copy under another name is never trained on; ``train.json`` counts them
(``semi_supervised.validation_files_left_out``).

Both are for single-label ``(B, C, H, W)`` batches (``C`` = 1 or 3) in ``[0, 1]``; they
raise ``ValueError`` on multi-label targets or multi-view batches. Their per-batch path
reads nothing back from the GPU and copies nothing to it synchronously (augmentations are
drawn on the device, unlabeled batches come from pinned memory), and they work with
``learn.to_fp16()``.

Example
-------
::

    from radiology.data import ImageDataset, drop_unreadable, from_unlabeled
    from radiology.semisup import semisup_callback

    unlabeled, _ = drop_unreadable(ImageDataset(from_unlabeled(folder), pipeline, channels=1))
    learn = make_learner(dls, model, loss)            # dls: the labeled loaders, batch size B
    learn.add_cb(semisup_callback("fixmatch", unlabeled, B))   # or "mixmatch"; **params
    learn.fit_one_cycle(10, 1e-3)                     # + mask_rate, unsup_loss columns

    # the same by hand:
    learn.fit_one_cycle(10, 1e-3, cbs=FixMatch(unlabeled_loader(unlabeled, 7 * B), mu=7))

This subpackage imports torch; ``import radiology`` does not.
"""

from radiology.semisup.augment import (
    STRONG_OPS,
    StrongAugmentation,
    WeakAugmentation,
    strong_augmentation,
    weak_augmentation,
)
from radiology.semisup.callbacks import METHODS, FixMatch, MixMatch, semisup_callback, validate_semisup_params
from radiology.semisup.data import ImagesOnly, UnlabeledStream, copies_of, unlabeled_loader
from radiology.semisup.functional import (
    DistributionAlignment,
    mixup,
    one_hot,
    pseudo_labels,
    sharpen,
    soft_cross_entropy,
)
from radiology.semisup.memory import FixMatchPlan, available_memory, plan_fixmatch_step, unlabeled_batch_size

__all__ = [
    "semisup_callback",
    "validate_semisup_params",
    "METHODS",
    "FixMatch",
    "MixMatch",
    "WeakAugmentation",
    "StrongAugmentation",
    "weak_augmentation",
    "strong_augmentation",
    "STRONG_OPS",
    "unlabeled_loader",
    "UnlabeledStream",
    "ImagesOnly",
    "copies_of",
    "DistributionAlignment",
    "sharpen",
    "mixup",
    "pseudo_labels",
    "one_hot",
    "soft_cross_entropy",
    "unlabeled_batch_size",
    "plan_fixmatch_step",
    "available_memory",
    "FixMatchPlan",
]
