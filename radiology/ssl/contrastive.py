"""Two-view self-supervised methods (SimCLR, BYOL) as fastai callbacks over lightly's losses and heads.

The recipe of both: every training batch of unlabeled images becomes two randomly
augmented views on the GPU (:func:`contrastive_augmentation`, kornia); the network maps
both to embeddings and a loss pulls the two views of an image together. Only the
backbone is kept afterwards (:func:`radiology.ssl.save_backbone`).

- **SimCLR** (Chen et al. 2020): projection head + NT-Xent, the other images of the batch
  are the negatives. ``lightly.loss.NTXentLoss`` and ``SimCLRProjectionHead``.
- **BYOL** (Grill et al. 2020): no negatives; an online network with a predictor chases a
  momentum (EMA) copy of itself. ``lightly``'s BYOL heads, ``NegativeCosineSimilarity`` and
  ``update_momentum``; the momentum rises from ``momentum`` to 1 on a cosine schedule.

fastai runs the loop: :class:`TwoViews` is the callback that makes the views; the loss
modules take the model's output and ignore the (dummy) targets.
"""

from __future__ import annotations

import copy
import math

import torch
from fastai.callback.core import Callback
from torch import nn

from radiology.augment import radiograph_augmentation

__all__ = ["contrastive_augmentation", "ContrastiveModel", "BYOLModel", "TwoViews", "NTXent", "BYOLLoss",
           "MomentumUpdate"]


def contrastive_augmentation(size: int | tuple[int, int], *, crop_scale: tuple[float, float] = (0.3, 1.0),
                             degrees: float = 10.0, strength: float = 0.4, blur_p: float = 0.5,
                             noise_p: float = 0.5) -> nn.Module:
    """The view generator of contrastive pretraining for grayscale radiographs (kornia).

    Random resized crop (the main source of difficulty), horizontal flip, small rotation,
    brightness/contrast/gamma jitter, gaussian blur and noise. No hue or saturation: a
    radiograph has none, and colour jitter is what makes SimCLR's natural-image views hard.

    Parameters
    ----------
    size : int or (int, int)
        Output side(s) of the crop (usually the input size).
    crop_scale : (float, float)
        Area fraction of the random crops.
    degrees : float
        Largest rotation.
    strength : float
        Brightness and contrast jitter (±), gamma in ``[1 / (1 + 2 strength), 1 + 2 strength]``.
    blur_p, noise_p : float
        Probabilities of blur (sigma 0.1–2 px) and gaussian noise (sd 0.03).

    Returns
    -------
    kornia.augmentation.AugmentationSequential
        ``(B, C, H, W)`` in ``[0, 1]`` → ``(B, C, *size)``.

    Examples
    --------
    >>> views = contrastive_augmentation(32)(torch.rand(4, 1, 40, 40))
    >>> tuple(views.shape)
    (4, 1, 32, 32)
    """
    if not 0 < strength < 1:
        raise ValueError(f"strength must be in (0, 1), got {strength}")
    side = (int(size), int(size)) if isinstance(size, int) else tuple(int(s) for s in size)
    gamma = (1 / (1 + 2 * strength), 1 + 2 * strength)
    return radiograph_augmentation(hflip=0.5, degrees=degrees, translate=0.0, scale=(1.0, 1.0), affine_p=0.5,
                                   crop_size=side, crop_scale=crop_scale, brightness=strength, contrast=strength,
                                   gamma=gamma, intensity_p=0.8, blur_p=blur_p, noise_std=0.03, noise_p=noise_p)


def _feature_dim(encoder: nn.Module) -> int:
    """Size of the encoder's pooled features, which the self-supervised heads take; checks the encoder type."""
    from radiology.models.classifier import RadiographClassifier

    if not isinstance(encoder, RadiographClassifier):
        raise TypeError("encoder must be a radiology.models.RadiographClassifier (create_model), "
                        f"got {type(encoder).__name__}")
    return int(encoder.head.in_features)


class ContrastiveModel(nn.Module):
    """An encoder's pooled features followed by a SimCLR projection head.

    Parameters
    ----------
    encoder : RadiographClassifier
        From :func:`radiology.models.create_model`; its ``forward_features`` (normalization
        included) gives the representation, its ``.backbone`` is what pretraining keeps.
    hidden_dim, output_dim : int
        Projection head sizes (the paper's 2-layer MLP).

    Examples
    --------
    >>> from radiology.models import create_model
    >>> model = ContrastiveModel(create_model("resnet18", 2, pretrained=None), output_dim=16)
    >>> tuple(model(torch.rand(4, 1, 32, 32)).shape)
    (4, 16)
    """

    def __init__(self, encoder: nn.Module, *, hidden_dim: int = 512, output_dim: int = 128):
        super().__init__()
        from lightly.models.modules import SimCLRProjectionHead

        self.encoder = encoder
        self.projection = SimCLRProjectionHead(_feature_dim(encoder), hidden_dim, output_dim)

    @property
    def backbone(self) -> nn.Module:
        """The timm backbone (what :func:`radiology.ssl.save_backbone` writes)."""
        return self.encoder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Projections ``(N, output_dim)`` of a batch.

        Parameters
        ----------
        x : torch.Tensor
            Two views of ``B`` images stacked, ``(2B, C, H, W)``, float in ``[0, 1]``.
        """
        return self.projection(self.encoder.forward_features(x))


class BYOLModel(nn.Module):
    """Online encoder + projector + predictor, and a momentum copy of encoder + projector.

    ``forward`` on a batch of ``2B`` images (two views of ``B`` images, stacked) returns
    ``(online predictions, target projections)``, both ``(2B, output_dim)``; the target
    part carries no gradient. :class:`MomentumUpdate` moves the target after every step.

    Parameters
    ----------
    encoder : RadiographClassifier
        From :func:`radiology.models.create_model`; its ``forward_features`` gives the
        representation, and a copy of it becomes the target encoder.
    hidden_dim, output_dim : int
        Sizes of the projection and prediction heads (hidden layer, output).

    Examples
    --------
    >>> from radiology.models import create_model
    >>> model = BYOLModel(create_model("resnet18", 2, pretrained=None), hidden_dim=32, output_dim=16)
    >>> online, target = model(torch.rand(4, 1, 32, 32))
    >>> tuple(online.shape), target.requires_grad
    ((4, 16), False)
    """

    def __init__(self, encoder: nn.Module, *, hidden_dim: int = 1024, output_dim: int = 256):
        super().__init__()
        from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead
        from lightly.models.utils import deactivate_requires_grad

        self.encoder = encoder
        self.projection = BYOLProjectionHead(_feature_dim(encoder), hidden_dim, output_dim)
        self.prediction = BYOLPredictionHead(output_dim, hidden_dim, output_dim)
        self.target_encoder = copy.deepcopy(encoder)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_encoder)
        deactivate_requires_grad(self.target_projection)

    @property
    def backbone(self) -> nn.Module:
        """The online timm backbone (what :func:`radiology.ssl.save_backbone` writes)."""
        return self.encoder.backbone

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Online predictions and target projections, as described above.

        Parameters
        ----------
        x : torch.Tensor
            Two views of ``B`` images stacked, ``(2B, C, H, W)``, float in ``[0, 1]``.
        """
        online = self.prediction(self.projection(self.encoder.forward_features(x)))
        with torch.no_grad():
            target = self.target_projection(self.target_encoder.forward_features(x))
        return online, target.detach()


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.shape[0] % 2:
        raise ValueError(f"expected two stacked views (an even batch), got {x.shape[0]} rows")
    return x.chunk(2)


class NTXent(nn.Module):
    """SimCLR's NT-Xent loss on two stacked views, as a fastai ``loss_func`` (targets ignored).

    Parameters
    ----------
    temperature : float
        Softmax temperature of the similarities, > 0.

    Examples
    --------
    >>> z = torch.randn(8, 16)
    >>> same = NTXent(0.5)(torch.cat([z, z]))   # identical views: the lowest loss
    >>> other = NTXent(0.5)(torch.randn(16, 16))
    >>> bool(same < other)
    True
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        from lightly.loss import NTXentLoss

        self.temperature = float(temperature)
        self.loss = NTXentLoss(temperature=self.temperature)

    def forward(self, projections: torch.Tensor, *targets) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        projections : torch.Tensor, shape (2B, D)
            Projections of two views of ``B`` images, stacked (first views, then second views).
        *targets
            fastai's targets; ignored.
        """
        first, second = _halves(projections.float())
        return self.loss(first, second)


class BYOLLoss(nn.Module):
    """BYOL's symmetric negative cosine similarity between each view's prediction and the other's target.

    Examples
    --------
    >>> p = torch.randn(8, 16)
    >>> float(BYOLLoss()((p, p.roll(4, 0))))  # each prediction equals the other view's target
    -1.0
    """

    def __init__(self):
        super().__init__()
        from lightly.loss import NegativeCosineSimilarity

        self.similarity = NegativeCosineSimilarity()

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], *targets) -> torch.Tensor:
        """The loss of a batch.

        Parameters
        ----------
        outputs : (torch.Tensor, torch.Tensor)
            ``(online predictions, target projections)`` of :class:`BYOLModel`, each ``(2B, D)``.
        *targets
            fastai's targets; ignored.
        """
        online, target = outputs
        p1, p2 = _halves(online.float())
        z1, z2 = _halves(target.float())
        return 0.5 * (self.similarity(p1, z2) + self.similarity(p2, z1))


class TwoViews(Callback):
    """fastai callback: replace each training batch ``x`` by two augmented views stacked, ``(2B, ...)``.

    Views are clipped to ``[0, 1]`` (the input range the model normalizes). Validation
    batches get two deterministic views (the image and its mirror), so the validation loss
    is comparable across epochs. Targets are left as they are (the two-view losses ignore
    them).

    Parameters
    ----------
    augment : torch.nn.Module
        Draws fresh random parameters at each call (:func:`contrastive_augmentation`).
    """

    order = 5  # before MixedPrecision's casting (order 10)

    def __init__(self, augment: nn.Module):
        self.augment = augment

    def before_batch(self):
        (x,) = self.learn.xb
        if self.training:
            with torch.no_grad():
                augment = self.augment.to(x.device)
                views = torch.cat([augment(x), augment(x)]).clamp_(0, 1)  # noise may leave [0, 1]
        else:
            views = torch.cat([x, x.flip(-1)])
        self.learn.xb = (views,)


class MomentumUpdate(Callback):
    """fastai callback: after each optimizer step, move BYOL's target network towards the online one.

    The momentum follows a cosine schedule from ``momentum`` at the first step to 1 at the
    last, as in the BYOL paper.

    Parameters
    ----------
    momentum : float
        Momentum of the target network at the first step, in ``[0, 1)``.
    """

    order = 60

    def __init__(self, momentum: float = 0.99):
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum = float(momentum)

    def after_step(self):
        from lightly.models.utils import update_momentum

        model = self.learn.model
        m = 1 - (1 - self.momentum) * (math.cos(math.pi * min(1.0, self.learn.pct_train)) + 1) / 2
        update_momentum(model.encoder, model.target_encoder, m)
        update_momentum(model.projection, model.target_projection, m)
