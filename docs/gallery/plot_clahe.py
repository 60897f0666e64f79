"""
CLAHE: contrast-limited adaptive histogram equalization
=======================================================

:func:`radiology.intensity.clahe` is OpenCV's CLAHE on 8-bit, 16-bit or float images (float
images are processed at 16 bits, keeping the detail of 12–16-bit radiographs); the clip limit
bounds how much contrast, and noise, it adds. :func:`radiology.augment.clahe_batch` is the
same on a torch batch (kornia), for the GPU.
"""

# %%
# A low-contrast chest phantom (a nodule in the left lung) and a real CT slice shipped with
# pydicom, at three clip limits.
import matplotlib.pyplot as plt
from pydicom.data import get_testdata_file

from radiology.convert import dicom_to_image
from radiology.intensity import clahe
from radiology.synthetic import add_findings, phantom_radiograph

phantom = add_findings(phantom_radiograph((384, 336), seed=2), {"nodule"}, seed=2)
images = {
    "chest phantom, low contrast": 0.3 + 0.4 * phantom ** 1.5,
    "CT slice (pydicom)": dicom_to_image(get_testdata_file("J2K_pixelrep_mismatch.dcm"), longest=384),
}
clips = [None, 1.0, 2.0, 4.0]
fig, axes = plt.subplots(len(images), len(clips), figsize=(11, 6))
for row, (name, image) in zip(axes, images.items()):
    for ax, clip in zip(row, clips):
        ax.imshow(image if clip is None else clahe(image, clip_limit=clip), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name if clip is None else f"clahe, clip_limit={clip}", fontsize=9)
        ax.axis("off")
fig.tight_layout()

# %%
# The same on a batch with kornia: ``clahe_batch`` takes ``(B, C, H, W)`` tensors on any
# device. On 8-bit input it agrees with the OpenCV version to about two gray levels at most
# (kornia interpolates the tile mappings in float where OpenCV rounds them to 8 bits).
import numpy as np  # noqa: E402
import torch  # noqa: E402

from radiology.augment import clahe_batch  # noqa: E402

image8 = np.round(images["chest phantom, low contrast"] * 255).astype(np.uint8)
on_cpu = clahe(image8, 2.0).astype(np.float32) / 255
batch = torch.from_numpy(image8.astype(np.float32) / 255)[None, None]  # (B, C, H, W); .cuda() on a GPU
on_gpu = clahe_batch(batch, 2.0)[0, 0].numpy()
difference = np.abs(on_gpu - on_cpu)
print(f"kornia vs OpenCV: mean difference {difference.mean():.4f}, max {difference.max():.4f}")
fig, axes = plt.subplots(1, 3, figsize=(10, 4))
for ax, shown, title in zip(axes, [on_cpu, on_gpu, difference],
                            ["OpenCV (clahe, uint8)", "kornia (clahe_batch)", "absolute difference"]):
    ax.imshow(shown, cmap="magma" if title == "absolute difference" else "gray")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
