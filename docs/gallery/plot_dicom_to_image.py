"""
DICOM to image: polarity, VOI windows and LUTs, percentile normalization
========================================================================

:func:`radiology.convert.dicom_to_image` turns a DICOM file into a ``float32`` image in
``[0, 1]`` with bone bright. By default it ignores the header's display window and clips at
the 0.5th and 99.5th percentiles, so files from different vendors come out alike; the
header's VOI window (or VOI LUT) is used only with ``normalization="voi"``. Polarity is the
one thing taken from the header: ``MONOCHROME1`` (bright = low values) is inverted.
"""

# %%
# Real images shipped with pydicom
# --------------------------------
# pydicom's wheel carries a few real images: a CT slice of the head (JPEG 2000 with a brain
# window in its header), a small CT and MR slice and an MR of the abdomen. Percentile
# normalization shows the whole range; the header window (``normalization="voi"``) shows
# what the radiologist chose to look at; histogram scaling equalizes.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from radiology.convert import dicom_to_image
from radiology.dicom import read_dicom
from radiology.synthetic import add_findings, phantom_radiograph, write_phantom_dicom

names = ["J2K_pixelrep_mismatch.dcm", "examples_overlay.dcm", "MR_small.dcm"]
settings = [{}, {"normalization": "voi"}, {"normalization": "histogram"}]
titles = ["percentile 0.5/99.5 (default)", "header VOI window", "histogram (100 bins)"]
fig, axes = plt.subplots(len(names), 3, figsize=(9, 9))
for row, name in zip(axes, names):
    path = get_testdata_file(name)
    metadata = read_dicom(path).metadata
    for ax, kwargs, title in zip(row, settings, titles):
        ax.imshow(dicom_to_image(path, longest=256, **kwargs), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    row[0].text(0, -0.25, f"{name}\n{metadata.modality}, {metadata.transfer_syntax}", fontsize=8,
                transform=row[0].transAxes, va="top")
fig.tight_layout()

# %%
# MONOCHROME1: inverted polarity
# ------------------------------
# Computed radiography often stores ``MONOCHROME1``: low values are displayed bright. The
# stored values of such a file look like a negative; :func:`~radiology.convert.dicom_to_image`
# inverts them so that bone is bright, like every other image. The file here is a synthetic
# chest phantom with a nodule, written by :func:`radiology.synthetic.write_phantom_dicom`.
folder = Path(tempfile.mkdtemp())
phantom = add_findings(phantom_radiograph((384, 320), seed=1), {"nodule"}, seed=1)
mono1 = write_phantom_dicom(folder / "mono1.dcm", phantom, photometric="MONOCHROME1", bits_stored=12)
stored = read_dicom(mono1, modality_lut=False).pixels
fig, axes = plt.subplots(1, 2, figsize=(7, 4))
axes[0].imshow(stored, cmap="gray")
axes[0].set_title("stored values (MONOCHROME1)", fontsize=9)
axes[1].imshow(dicom_to_image(mono1), cmap="gray", vmin=0, vmax=1)
axes[1].set_title("dicom_to_image: bone bright", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

# %%
# A VOI LUT Sequence
# ------------------
# Instead of a window, a header may carry a VOI LUT: a table from stored values to display
# values. ``normalization="voi"`` applies it (it takes precedence over a window, as in the
# standard). Here a phantom gets a gamma-shaped LUT that brightens the lungs.
ds = pydicom.dcmread(write_phantom_dicom(folder / "lut.dcm", phantom, bits_stored=12))
item = Dataset()
item.LUTDescriptor = [4096, 0, 16]
item.LUTData = (np.linspace(0, 1, 4096) ** 0.5 * 65535).astype(np.uint16).tolist()
item["LUTData"].VR = "US"
ds.VOILUTSequence = [item]
ds.save_as(folder / "lut.dcm")
fig, axes = plt.subplots(1, 2, figsize=(7, 4))
for ax, kwargs, title in zip(axes, [{}, {"normalization": "voi"}], ["percentile (LUT ignored)", "VOI LUT applied"]):
    ax.imshow(dicom_to_image(folder / "lut.dcm", **kwargs), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
