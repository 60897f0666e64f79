"""Augment (torch, kornia): batch-first GPU augmentation for radiographs and multi-view inputs.

Conventions: a batch is a ``torch.Tensor`` ``(B, C, H, W)`` float in ``[0, 1]``; a
multi-view batch is ``(B, V, C, H, W)`` (e.g. left and right eye). Every transform is a
kornia ``nn.Module`` that draws its random parameters for the whole batch at once, on the
batch's device, so nothing synchronizes per sample. Randomness comes from torch's
generator: seed it (``torch.manual_seed``) for reproducible augmentation.

This subpackage imports torch; ``import radiology`` does not.
"""

from radiology.augment.transforms import MultiView, clahe_batch, count_host_syncs, radiograph_augmentation

__all__ = ["radiograph_augmentation", "MultiView", "clahe_batch", "count_host_syncs"]
