"""Self-supervised pretraining (torch, fastai, lightly): learn from unlabeled radiographs, then fine-tune.

Experts are few and unlabeled DICOMs are plentiful. :func:`pretrain` trains a timm backbone
on a folder of unlabeled DICOMs or images and writes a checkpoint that fine-tuning loads::

    pretrain("archive/", "backbone.pt", method="simclr", epochs=20)
    train(TrainConfig(csv="labels.csv", pretrained="backbone.pt", out="bundle"))
    # or: radiology pretrain --root archive/ --out backbone.pt
    #     radiology train --csv labels.csv --pretrained backbone.pt --out bundle

Methods: SimCLR and BYOL (two augmented views per image, :mod:`radiology.ssl.contrastive`,
losses and heads from ``lightly``) and a DICOM-metadata pretext that predicts header
fields every archive has for free (:mod:`radiology.ssl.metadata`). Each is a model plus
fastai callbacks; fastai runs the loop.
"""

from radiology.ssl.contrastive import (
    BYOLLoss,
    BYOLModel,
    ContrastiveModel,
    MomentumUpdate,
    NTXent,
    TwoViews,
    contrastive_augmentation,
)
from radiology.ssl.metadata import HEADER_FIELDS, HeaderLoss, HeaderTargets, MetadataModel, header_targets
from radiology.ssl.pretrain import METHODS, PretrainResult, pretrain, save_backbone

__all__ = [
    "pretrain", "PretrainResult", "save_backbone", "METHODS",
    "contrastive_augmentation", "ContrastiveModel", "BYOLModel", "TwoViews", "NTXent", "BYOLLoss", "MomentumUpdate",
    "HEADER_FIELDS", "HeaderTargets", "header_targets", "MetadataModel", "HeaderLoss",
]
