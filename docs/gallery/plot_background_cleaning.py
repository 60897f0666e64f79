"""
Background cleaning: collimation, markers and labels
====================================================

:func:`radiology.geometry.clean_background` crops the uniform collimation bands along the
edges (:func:`~radiology.geometry.collimation_box`) and blanks everything outside the body
region(s) (:func:`~radiology.geometry.body_mask`): burned-in side markers, "STANDING"
labels, scanner borders. Inside the body region the pixels are left exactly as they were.
"""

# %%
# A synthetic bilateral knee radiograph (bone bright): two legs, bright collimation bands,
# a burned-in side marker "L" and a "STANDING" label between the legs.
import cv2
import matplotlib.pyplot as plt
import numpy as np

from radiology.geometry import body_mask, clean_background, collimation_box


def knee_radiograph(shape=(360, 600), seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = shape
    image = np.full(shape, 0.05, np.float32)
    for cx in (cols // 4, 3 * cols // 4):
        cy = rows // 2
        cv2.ellipse(image, (cx, cy), (88, int(rows * 0.75)), 0, 0, 360, 0.3, -1)      # soft tissue
        cv2.rectangle(image, (cx - 38, 0), (cx + 38, cy - 30), 0.72, -1)              # femur
        for side in (-1, 1):                                                          # condyles
            cv2.ellipse(image, (cx + side * 32, cy - 22), (34, 24), 0, 0, 360, 0.78, -1)
        cv2.rectangle(image, (cx - 66, cy + 8), (cx + 66, cy + 34), 0.74, -1)         # tibial plateau
        cv2.rectangle(image, (cx - 34, cy + 8), (cx + 34, rows), 0.7, -1)             # tibia
    image = cv2.GaussianBlur(image, (0, 0), 2.0) + rng.normal(0, 0.015, shape).astype(np.float32)
    cv2.putText(image, "L", (12, 50), cv2.FONT_HERSHEY_SIMPLEX, 1.3, 1.0, 3, cv2.LINE_AA)
    cv2.putText(image, "STANDING", (250, 345), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1.0, 1, cv2.LINE_AA)
    framed = np.full((rows + 48, cols + 60), 0.92, np.float32)                        # collimation
    framed[24:24 + rows, 30:30 + cols] = np.clip(image, 0, 1)
    return framed


radiograph = knee_radiograph()
x, y, w, h = collimation_box(radiograph)
print(f"image {radiograph.shape[1]}×{radiograph.shape[0]}, inside the collimation: x={x}, y={y}, {w}×{h}")

# %%
# The steps: the collimation box, the body mask found inside it, and the result.
inside = radiograph[y:y + h, x:x + w]
cleaned, box = clean_background(radiograph, return_box=True)
shown = np.repeat(radiograph[..., None], 3, axis=2).copy()
cv2.rectangle(shown, (x, y), (x + w - 1, y + h - 1), (1.0, 0.2, 0.2), 2)
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, image, title in zip(axes, [shown, body_mask(inside), cleaned],
                            ["collimation_box (red)", "body_mask inside it", f"clean_background, box {box}"]):
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
fig.tight_layout()

# %%
# The anatomy is untouched: inside the body mask the cleaned image equals the input.
mask = body_mask(inside)
print("pixels changed inside the body:", int(np.count_nonzero(cleaned[mask] != inside[mask])))
plt.show()
