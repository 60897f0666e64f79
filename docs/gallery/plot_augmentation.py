"""
GPU augmentation with kornia
============================

:func:`radiology.augment.radiograph_augmentation` returns one kornia module for
``(B, C, H, W)`` batches (flips, affine, random resized crop, brightness/contrast/gamma,
noise, random CLAHE, cutout) whose parameters are drawn for the whole batch on its device,
with no per-sample synchronization. :class:`radiology.augment.MultiView` applies it to
``(B, V, C, H, W)`` batches of several views per sample with the same parameters for every
view of a sample, and can swap left and right views when a sample is flipped.
"""

# %%
# Eight draws of the default augmentation, with random CLAHE and cutout switched on, on a
# synthetic chest phantom with a nodule. On a GPU, move the batch there first
# (``batch.cuda()``); nothing else changes.
import matplotlib.pyplot as plt
import torch

from radiology.augment import MultiView, radiograph_augmentation
from radiology.synthetic import add_findings, phantom_radiograph

torch.manual_seed(0)
image = add_findings(phantom_radiograph((256, 224), seed=5), {"nodule"}, seed=5)
batch = torch.from_numpy(image)[None, None].repeat(8, 1, 1, 1)  # (B, C, H, W)
augment = radiograph_augmentation(clahe_p=0.3, cutout_p=0.3)
out = augment(batch)
fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
for ax, sample in zip(axes.flat, out):
    ax.imshow(sample[0], cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
fig.suptitle("radiograph_augmentation(clahe_p=0.3, cutout_p=0.3), 8 draws", fontsize=10)
fig.tight_layout()

# %%
# Two views per sample (e.g. frontal and lateral, or left and right knee): ``MultiView``
# draws one set of parameters per sample and applies it to both views, so they stay
# aligned. Here the two views are the phantom and its mirror image.
views = torch.stack([torch.from_numpy(image), torch.from_numpy(image).flip(-1)])[:, None]  # (V, C, H, W)
multi = MultiView(radiograph_augmentation(hflip=0.5, degrees=15), shared=True)
pairs = multi(views[None].repeat(4, 1, 1, 1, 1))  # (B, V, C, H, W)
fig, axes = plt.subplots(2, 4, figsize=(10, 5.6))
for b in range(4):
    for v in range(2):
        axes[v, b].imshow(pairs[b, v, 0], cmap="gray", vmin=0, vmax=1)
        axes[v, b].set_title(f"sample {b}, view {v}", fontsize=8)
        axes[v, b].axis("off")
fig.tight_layout()
plt.show()
