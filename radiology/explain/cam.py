"""Class activation maps of radiograph classifiers with pytorch-grad-cam, and their overlays.

The maps come from the ``grad-cam`` package (Gildenblat et al.); this module adds what a
:class:`~radiology.models.RadiographClassifier` needs around it: the target layer found for
any timm CNN backbone, a map per view of multi-view models (the views share one backbone,
so each view is explained with the other views held fixed), the predicted class as the
default target, and maps brought back onto the original image (:func:`cam_to_original`).
"""

from __future__ import annotations

import contextlib
import io
import weakref
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, ScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from radiology.geometry.affine import warp_back

__all__ = ["METHODS", "COLORMAPS", "find_target_layer", "compute_cam", "cam_to_original", "overlay", "cam_peak"]

#: CAM methods by name: pytorch-grad-cam classes. ``eigencam`` is class-agnostic (first principal
#: component of the activations: targets are ignored); ``scorecam`` runs one forward pass per
#: channel of the target layer (slow on large layers).
METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcampp": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "scorecam": ScoreCAM,
    "eigencam": EigenCAM,
}
#: Colormaps :func:`overlay` takes by name (OpenCV colormaps).
COLORMAPS = {"jet": cv2.COLORMAP_JET, "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO,
             "magma": cv2.COLORMAP_MAGMA, "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT,
             "bone": cv2.COLORMAP_BONE}

_FOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # backbone -> name of its target layer


def _backbone(model: nn.Module) -> nn.Module:
    backbone = getattr(model, "backbone", None)
    return backbone if isinstance(backbone, nn.Module) else model


def _input_channels(module: nn.Module) -> int:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            return layer.in_channels
    return 3


def _input_side(backbone: nn.Module) -> int:
    # The arch's own input size: fixed-size backbones accept nothing else, and at it the last
    # stages keep a spatial extent larger than 1 x 1 (which tells them from pooled outputs).
    size = (getattr(backbone, "pretrained_cfg", None) or {}).get("input_size") or (3, 224, 224)
    return int(max(size[-2:]))


def _last_spatial_layer(backbone: nn.Module) -> str:
    # (name, output shape, pass-through) of every module call, in the order the calls finish.
    events: list[tuple[str, tuple[int, ...], bool]] = []
    calls: dict[str, int] = {}
    names = {module: name for name, module in backbone.named_modules() if name}

    def record(module, inputs, output):
        name = names[module]
        calls[name] = calls.get(name, 0) + 1
        if isinstance(output, torch.Tensor):
            # Pass-through modules (Identity, in-place activations) hand back their input: the
            # module that made the tensor is the one to name.
            events.append((name, tuple(output.shape), any(output is value for value in inputs)))

    handles = [module.register_forward_hook(record) for module in names]
    training = backbone.training
    side = _input_side(backbone)
    try:
        backbone.eval()  # no batch-norm statistics updated by the probe
        parameter = next(backbone.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        with torch.no_grad():
            backbone(torch.zeros(1, _input_channels(backbone), side, side, device=device))
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(training)
    # A module called more than once per forward (a shared activation) would hand the CAM several
    # activations for one input: only modules called once qualify.
    spatial = [index for index, (name, shape, passed) in enumerate(events)
               if len(shape) == 4 and max(shape[-2:]) > 1 and not passed and calls[name] == 1]
    kind = type(backbone).__name__
    # Token sequences (B, N, C) after the last feature map: a transformer, whose only 4-D layer is
    # the patch embedding (no class evidence there).
    if not spatial or any(len(shape) == 3 for _, shape, _ in events[spatial[-1] + 1:]):
        raise ValueError(f"{kind} has no final (B, C, H, W) feature map (a vision transformer?): give target_layer")
    name, shape, _ = events[spatial[-1]]
    width = getattr(backbone, "num_features", None)
    if width and shape[-1] == width != shape[1]:
        raise ValueError(f"{kind} ends in channels-last (B, H, W, C) feature maps ({name}: {list(shape)}); CAMs "
                         f"need (B, C, H, W): give a channels-first target_layer")
    return name  # hooks fire when a module finishes: the last one is the deepest feature map


def find_target_layer(model: nn.Module, layer: nn.Module | str | None = None) -> nn.Module:
    """The layer whose activations a CAM explains: by default the backbone's last spatial layer.

    The default is found by one forward pass of a blank image through the backbone (at its
    timm input size) with hooks on every module: the last module to finish with a 4-D
    ``(B, C, H, W)`` output larger than 1 × 1 that does not just pass its input on (e.g.
    ``layer4`` of a ResNet, ``bn2`` of an EfficientNet, ``stages`` of a ConvNeXt). Modules
    called more than once per forward pass are skipped; vision transformers (token
    sequences) and channels-last backbones (Swin) are refused. The result is cached per
    backbone.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`~radiology.models.RadiographClassifier` (its ``backbone`` is searched), or a
        timm model.
    layer : torch.nn.Module or str, optional
        Override: a module of ``model``, or its dotted name relative to ``model`` or to its
        backbone (``"backbone.layer3"`` or ``"layer3"``).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        No such layer, a module that is not part of ``model``, or no final ``(B, C, H, W)``
        feature map (vision transformers, Swin: give ``layer``).

    Examples
    --------
    >>> from radiology.models import RadiographClassifier
    >>> model = RadiographClassifier("resnet10t", 2)
    >>> find_target_layer(model) is model.backbone.layer4
    True
    >>> find_target_layer(model, "layer3") is model.backbone.layer3
    True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    backbone = _backbone(model)
    if isinstance(layer, nn.Module):
        if not any(layer is module for module in model.modules()):
            raise ValueError(f"target layer {type(layer).__name__} is not a module of the model")
        return layer
    if isinstance(layer, str):
        for root in (model, backbone):
            try:
                return root.get_submodule(layer)
            except AttributeError:
                continue
        raise ValueError(f"no layer named {layer!r} in the model or its backbone")
    if layer is not None:
        raise TypeError(f"target_layer must be a module, a dotted name or None, got {type(layer).__name__}")
    if backbone not in _FOUND:
        _FOUND[backbone] = _last_spatial_layer(backbone)
    return backbone.get_submodule(_FOUND[backbone])


class _OneView(nn.Module):
    """A multi-view model seen as a single-view one: ``x`` replaces view ``view`` of ``context``.

    The shared backbone still runs on all views, so the target layer's activations come as
    ``(N * V, ...)``; :meth:`select` (the CAM's ``reshape_transform``) keeps this view's rows.
    """

    def __init__(self, model: nn.Module, context: torch.Tensor, view: int):
        super().__init__()
        self.model, self.view, self.views = model, view, context.shape[1]
        self.context = context.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.context
        if context.shape[0] != x.shape[0]:  # ScoreCAM: many masked copies of one sample's view
            context = context.expand(x.shape[0], *context.shape[1:])
        parts = list(context.unbind(1))
        parts[self.view] = x
        return self.model(torch.stack(parts, 1))

    def select(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor.unflatten(0, (-1, self.views))[:, self.view]


def _as_tensor(x, model: nn.Module) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a numpy array or torch tensor, got {type(x).__name__}")
    parameter = next(model.parameters(), None)
    return x.detach().float().to(parameter.device if parameter is not None else "cpu")


def _probe(model: nn.Module, x: torch.Tensor, layer: nn.Module) -> torch.Tensor:
    """The logits of ``x``, checking on the way that ``layer`` makes a map at this input size."""
    shapes: list[tuple[int, ...]] = []

    def record(_module, _inputs, output):
        if isinstance(output, torch.Tensor):
            shapes.append(tuple(output.shape))

    handle = layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            logits = model(x)
    finally:
        handle.remove()
    size = "x".join(str(side) for side in x.shape[-2:])
    if not shapes:
        raise ValueError("the target layer is not used by the model's forward pass")
    if len(shapes[0]) != 4:
        raise ValueError(f"the target layer's output has shape {list(shapes[0])}; a CAM needs (B, C, H, W)")
    if max(shapes[0][-2:]) < 2:
        raise ValueError(f"at {size} px the target layer's output is {shapes[0][-2]} x {shapes[0][-1]}: no map to "
                         f"draw; give an earlier target_layer or a larger input")
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits (B, n_outputs), got shape {list(logits.shape)}")
    return logits


def _targets(targets, batch: int, n_outputs: int) -> list[int]:
    values = [targets] * batch if isinstance(targets, (int, np.integer)) else list(targets)
    if len(values) != batch or not all(isinstance(t, (int, np.integer)) and not isinstance(t, bool)
                                       for t in values):
        raise ValueError(f"targets must be one class index or {batch} class indices, got {targets!r}")
    if not all(0 <= t < n_outputs for t in values):
        raise ValueError(f"targets must be class indices in [0, {n_outputs}), got {values}")
    return [int(t) for t in values]


def _run(cam_class: type, model: nn.Module, x: torch.Tensor, layer: nn.Module, classes: list[int],
         reshape: Callable | None) -> np.ndarray:
    cam = cam_class(model=model, target_layers=[layer], reshape_transform=reshape)
    try:
        if cam_class is ScoreCAM:
            cam.batch_size = 64
            with contextlib.redirect_stderr(io.StringIO()):  # ScoreCAM draws a progress bar per sample
                return cam(x, [ClassifierOutputTarget(c) for c in classes])
        # A leaf input that needs gradients: activations get gradients even when every weight is frozen.
        x = x.clone().requires_grad_(cam.uses_gradients)
        return cam(x, [ClassifierOutputTarget(c) for c in classes])
    finally:
        # Release the hooks (not `with cam:`, whose __exit__ swallows IndexError).
        cam.activations_and_grads.release()


def compute_cam(model: nn.Module, x, *, method: str = "gradcam", targets: int | Sequence[int] | None = None,
                target_layer: nn.Module | str | None = None) -> np.ndarray:
    """Class activation maps of a batch, at the input resolution, in ``[0, 1]``.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`~radiology.models.RadiographClassifier` returning logits (left in eval mode
        afterwards if it was; no weights change).
    x : numpy.ndarray or torch.Tensor
        float in ``[0, 1]``, ``(B, C, H, W)``, or ``(B, V, C, H, W)`` for a model of ``V`` views.
    method : {"gradcam", "gradcampp", "hirescam", "layercam", "scorecam", "eigencam"}, optional
        See :data:`METHODS`.
    targets : int or sequence of int, optional
        The output (class or label index) explained, one per sample or one for all. Default:
        each sample's highest logit (the predicted class; for multi-label models the most
        probable label; explain other labels by naming them).
    target_layer : torch.nn.Module or str, optional
        See :func:`find_target_layer`.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        ``(B, H, W)``, or ``(B, V, H, W)`` with one map per view. Each map is scaled to
        ``[0, 1]`` on its own (all zero when nothing supports the target).

    Raises
    ------
    ValueError
        Unknown method, a batch that does not fit the model, targets out of range, or a
        target layer whose output is 1 × 1 at this input size (a map needs an earlier layer).

    Examples
    --------
    >>> from radiology.models import RadiographClassifier
    >>> model = RadiographClassifier("resnet10t", 2).eval()
    >>> maps = compute_cam(model, np.random.default_rng(0).random((2, 1, 64, 48), np.float32))
    >>> maps.shape, bool(maps.min() >= 0 and maps.max() <= 1)
    ((2, 64, 48), True)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = _as_tensor(x, model)
    views = int(getattr(model, "views", 1))
    if views == 1 and x.ndim == 5 and x.shape[1] == 1:
        x = x[:, 0]
    if not ((x.ndim == 4 and views == 1) or (x.ndim == 5 and x.shape[1] == views)) or x.shape[0] < 1:
        want = "(B, C, H, W)" if views == 1 else f"(B, {views}, C, H, W)"
        raise ValueError(f"expected a batch of shape {want}, got {tuple(x.shape)}")
    layer = find_target_layer(model, target_layer)
    cam_class = METHODS[method]
    training = model.training
    try:
        model.eval()
        # Given targets need no prediction: one sample checks the layer and the number of outputs.
        logits = _probe(model, x if targets is None else x[:1], layer)
        classes = logits.argmax(1).tolist() if targets is None else _targets(targets, x.shape[0], logits.shape[1])
        if x.ndim == 4:
            return _run(cam_class, model, x, layer, classes, None).astype(np.float32)
        maps = []
        for view in range(views):
            if cam_class is ScoreCAM:  # its masked batches are per sample: one sample at a time
                rows = []
                for i in range(x.shape[0]):
                    wrapper = _OneView(model, x[i:i + 1], view)
                    rows.append(_run(cam_class, wrapper, x[i:i + 1, view], layer, classes[i:i + 1], wrapper.select))
                maps.append(np.concatenate(rows))
            else:
                wrapper = _OneView(model, x, view)
                maps.append(_run(cam_class, wrapper, x[:, view], layer, classes, wrapper.select))
        return np.stack(maps, axis=1).astype(np.float32)
    finally:
        model.zero_grad(set_to_none=True)
        model.train(training)


def cam_to_original(cam: np.ndarray, matrix, shape: tuple[int, ...]) -> np.ndarray:
    """A map at the model's input size brought back onto the original image.

    Parameters
    ----------
    cam : numpy.ndarray, shape (H, W)
        One map from :func:`compute_cam`.
    matrix : array-like, shape (3, 3)
        Original image pixels → model input pixels (``Pipeline.read(..., with_geometry=True)``).
    shape : tuple of int
        The original image's ``(rows, cols)``.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1], shape (rows, cols)
        Zero where the model did not see the original (cropped-away parts).

    Examples
    --------
    >>> from radiology.geometry import resize_matrix
    >>> cam = np.zeros((32, 32), np.float32); cam[8, 24] = 1
    >>> back = cam_to_original(cam, resize_matrix((64, 64), (32, 32)), (64, 64))
    >>> cam_peak(back)
    (48, 16)
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {cam.shape}")
    return np.clip(warp_back(cam, matrix, shape), 0.0, 1.0)


def cam_peak(cam: np.ndarray) -> tuple[int, int] | None:
    """``(x, y)`` of a map's maximum (the first one in row order), or None for an all-zero map.

    Parameters
    ----------
    cam : numpy.ndarray, shape (H, W)
        A class activation map.

    Examples
    --------
    >>> cam_peak(np.array([[0, 0.2, 0], [0, 0, 0.9]]))
    (2, 1)
    """
    cam = np.asarray(cam)
    if cam.ndim != 2:
        raise ValueError(f"expected one (H, W) map, got shape {cam.shape}")
    if not cam.size or not np.nanmax(cam) > 0:
        return None
    y, x = np.unravel_index(int(np.nanargmax(cam)), cam.shape)
    return int(x), int(y)


def overlay(image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, colormap: str | int = "jet") -> np.ndarray:
    """A map drawn in colour over an image: ``(1 - alpha) * image + alpha * colormap(cam)``.

    Unlike pytorch-grad-cam's ``show_cam_on_image``, the blend is not rescaled by its maximum, so
    the image keeps its brightness and overlays of different images compare.

    Parameters
    ----------
    image : numpy.ndarray
        ``(H, W)`` gray or ``(H, W, 3)`` RGB, float in ``[0, 1]`` (or ``uint8``).
    cam : numpy.ndarray, shape (H, W)
        Map in ``[0, 1]`` (e.g. :func:`cam_to_original`).
    alpha : float, optional
        Weight of the colour map, in ``[0, 1]``.
    colormap : str or int, optional
        A name from :data:`COLORMAPS` or an OpenCV ``COLORMAP_*`` code.

    Returns
    -------
    numpy.ndarray of uint8, shape (H, W, 3)
        RGB (write it with :func:`radiology.io.write_image` after ``/ 255``).

    Examples
    --------
    >>> out = overlay(np.zeros((4, 6), np.float32), np.ones((4, 6), np.float32), alpha=1.0)
    >>> out.shape, out.dtype, out[0, 0].tolist()  # jet at 1.0 is dark red
    ((4, 6, 3), dtype('uint8'), [128, 0, 0])
    >>> overlay(np.full((1, 1), 0.5), np.ones((1, 1)), alpha=0.5)[0, 0].tolist()
    [128, 64, 64]
    """
    image = np.asarray(image)
    cam = np.asarray(cam, dtype=np.float32)
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a (H, W) or (H, W, 3) image, got shape {image.shape}")
    if cam.shape != image.shape[:2]:
        raise ValueError(f"map shape {cam.shape} differs from image shape {image.shape[:2]}")
    if not 0 <= float(alpha) <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if isinstance(colormap, str):
        if colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {sorted(COLORMAPS)} or an OpenCV code, got {colormap!r}")
        colormap = COLORMAPS[colormap]
    image = np.clip(np.nan_to_num(image.astype(np.float32)), 0, 1)
    cam = np.clip(np.nan_to_num(cam), 0, 1)
    heat = cv2.applyColorMap(np.round(cam * 255).astype(np.uint8), int(colormap))
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    blend = (1 - float(alpha)) * image + float(alpha) * heat
    return np.round(np.clip(blend, 0, 1) * 255).astype(np.uint8)
