"""Explanations (torch, pytorch-grad-cam): class activation maps of radiograph classifiers.

Where did the model look? A class activation map (CAM) weighs the feature maps of a layer
deep in the backbone by how much they move the explained output, then upsamples the
result to the image. Methods (:data:`METHODS`, from the ``grad-cam`` package): ``gradcam``,
``gradcampp`` (Grad-CAM++), ``hirescam``, ``layercam``, ``scorecam`` and ``eigencam``.

- :func:`find_target_layer`: the backbone's last spatial layer for any timm CNN (overridable).
- :func:`compute_cam`: maps for a batch at the input resolution, single-view ``(B, H, W)`` or
  one map per view ``(B, V, H, W)``; the explained class defaults to the prediction.
- :func:`cam_to_original`: a map back in the pixels of the *original* image, through the
  geometry the pipeline reports for that input
  (:meth:`radiology.pipeline.Pipeline.read` with ``with_geometry=True``: resizes, pads and
  crops undone, data-dependent crops included); :func:`overlay` draws it in colour, pixel
  for pixel.
- :func:`explanation_figure`: the overlay as a figure to show a reader: scaled so that its
  longest side is ``size`` (768 px by default; the original's geometry kept, peaks only
  scaled: :func:`figure_layout`), a caption band with the class explained, its probability
  and the method (``lesion  p=0.93  Grad-CAM``), and a colour bar from 0 to 1 labelled
  "relative evidence (per image)". No file name or header field is drawn.
- :func:`explain_inputs`: all of it for files and a bundle, what ``radiology explain`` runs
  (it writes figures; ``figure_size=None`` keeps the original's pixels).
- The pointing game (:mod:`radiology.explain.pointing`): :func:`pointing_game` scores map
  peaks against finding boxes (:func:`parse_boxes`, :func:`grow_boxes`,
  :func:`point_in_boxes`) beside the image-centre and random-point baselines
  (:func:`boxes_mask`); ``explain_inputs(..., boxes=read_boxes("labels.csv", "file"))`` and
  ``radiology explain --boxes`` write it as ``pointing.csv`` and ``pointing.json``.

Usage::

    from radiology.explain import explain_inputs
    table = explain_inputs("runs/bundle", "new_images/", "explanations/", method="gradcampp")
    # explanations/<file>__<label>__<method>.png figures, explanations/explanations.csv with
    # image, label, probability, method, overlay, peak_x, peak_y (original-image pixels), error

or, for arrays already preprocessed::

    from radiology.explain import cam_to_original, compute_cam, original_view, overlay
    stages = bundle.pipeline.trace(path, with_geometry=True)
    _, image, matrix = stages[-1]                                  # model input, original -> input
    cam = compute_cam(bundle.model, image[None, None])[0]          # (H, W) at the model input (gray)
    original = original_view(stages)                               # normalized, original pixels
    back = cam_to_original(cam, matrix, original.shape)
    rgb = overlay(original, back)                                  # uint8, the original's pixels
    figure = explanation_figure(original, back, label="lesion", probability=0.93, method="gradcam")

A map is as fine as its layer: the last stage of a CNN has a stride of 32 (7 × 7 cells at
224 px, 2 × 2 at 64 px). For small findings in small inputs name an earlier layer
(``target_layer="layer3"`` of a ResNet, ``"blocks.4"`` of an EfficientNet).

A map says where the evidence for one output lies in *this* model, not why, and not that
the model is right; maps are scaled to ``[0, 1]`` one by one, so they cannot be compared
in strength across images.
"""

from radiology.explain.cam import COLORMAPS, METHODS, cam_peak, cam_to_original, compute_cam, find_target_layer, overlay
from radiology.explain.figure import FIGURE_SIZE, FigureLayout, explanation_figure, figure_layout
from radiology.explain.overlays import (
    EXPLANATION_COLUMNS,
    POINTING_COLUMNS,
    explain_inputs,
    original_view,
    overlay_name,
    read_boxes,
)
from radiology.explain.pointing import (
    GROW,
    PointingGame,
    boxes_mask,
    grow_boxes,
    parse_boxes,
    point_in_boxes,
    pointing_game,
)

__all__ = [
    "METHODS", "COLORMAPS", "find_target_layer", "compute_cam", "cam_to_original", "cam_peak", "overlay",
    "explanation_figure", "figure_layout", "FigureLayout", "FIGURE_SIZE",
    "explain_inputs", "overlay_name", "original_view", "EXPLANATION_COLUMNS",
    "POINTING_COLUMNS", "read_boxes",
    "GROW", "parse_boxes", "grow_boxes", "boxes_mask", "point_in_boxes", "pointing_game", "PointingGame",
]
