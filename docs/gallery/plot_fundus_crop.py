"""
Fundus photographs: field of view and circular crop
===================================================

Fundus cameras image a round retina that the frame often cuts at the top and bottom.
:func:`radiology.geometry.fov_mask` finds the illuminated region,
:func:`~radiology.geometry.crop_to_fov` crops to it,
:func:`~radiology.geometry.fit_circle` fits the retina's circle *ignoring the edge points
on the image border* (where the frame, not the retina, ends), so
:func:`~radiology.geometry.circle_crop` restores the full disc, and
:func:`~radiology.geometry.fundus_crop` chains FOV → circle → FOV as ODIR-5K users do.
"""

# %%
# A synthetic fundus photograph: an orange retina with vignetting, optic disc, macula and
# vessels, cut by the frame at the top and bottom, dim stray light around it and a burned-in
# eye label ("OD") in a corner.
import cv2
import matplotlib.pyplot as plt
import numpy as np

from radiology.geometry import circle_crop, crop_to_fov, fit_circle, fov_mask, fundus_crop


def fundus_phantom(shape=(300, 420), center=(210, 150), radius=170, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
    d = np.hypot(x - center[0], y - center[1]) / radius
    image = np.clip(1 - 0.45 * d ** 2, 0, 1)[..., None] * np.array([0.85, 0.38, 0.16], np.float32)
    ox, oy = center[0] + 0.45 * radius, center[1] - 0.05 * radius  # optic disc
    disc = np.clip(1 - np.hypot(x - ox, y - oy) / (0.13 * radius), 0, 1) ** 0.5
    image += disc[..., None] * np.array([0.15, 0.45, 0.35], np.float32)
    image *= (1 - 0.35 * np.exp(-(np.hypot(x - center[0] + 0.15 * radius, y - center[1]) / (0.12 * radius)) ** 2)
              )[..., None]  # macula
    vessels = np.zeros(shape, np.float32)
    for k in range(10):
        t = np.linspace(0, 1, 60)
        theta = rng.uniform(0, 2 * np.pi) + rng.uniform(-1.2, 1.2) * t
        points = np.stack([ox + 1.3 * radius * t * np.cos(theta), oy + 1.3 * radius * t * np.sin(theta)], 1)
        cv2.polylines(vessels, [points.astype(np.int32)], False, 1.0, 3 if k < 4 else 1, cv2.LINE_AA)
    image *= (1 - 0.45 * cv2.GaussianBlur(vessels, (0, 0), 1.0))[..., None]
    image[d > 1] = 0.07  # dim stray light outside the retina
    cv2.putText(image, "OD", (8, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0.9, 0.9, 0.9), 2, cv2.LINE_AA)  # a label
    return np.clip(image + rng.normal(0, 0.01, image.shape), 0, 1).astype(np.float32)


photo = fundus_phantom()
mask = fov_mask(photo)
cx, cy, r = fit_circle(mask)
print(f"fitted circle: centre ({cx:.1f}, {cy:.1f}), radius {r:.1f} (true: (210, 150), 170)")

shown = photo.copy()
cv2.circle(shown, (round(cx), round(cy)), round(r), (0.2, 1.0, 0.2), 2)
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
axes[0].imshow(mask, cmap="gray")
axes[0].set_title("fov_mask", fontsize=9)
axes[1].imshow(shown)
axes[1].set_title("fit_circle (border points ignored)", fontsize=9)
for ax in axes:
    ax.axis("off")
fig.tight_layout()

# %%
# The three crops. ``crop_to_fov`` crops to the retina's box but keeps what lies in its
# corners (stray light, part of the label); ``circle_crop`` blanks everything outside the
# fitted circle and crops to the circle's box, clipped to the image (a retina cut by the
# frame stays cut); ``fundus_crop`` chains them and ends with a tight FOV crop.
crops = {"crop_to_fov": crop_to_fov(photo), "circle_crop": circle_crop(photo), "fundus_crop": fundus_crop(photo)}
fig, axes = plt.subplots(1, 3, figsize=(10, 3.8))
for ax, (name, crop) in zip(axes, crops.items()):
    ax.imshow(crop)
    ax.set_title(f"{name} {crop.shape[1]}×{crop.shape[0]}", fontsize=9)
    ax.axis("off")
fig.tight_layout()
plt.show()
