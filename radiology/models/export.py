"""Writing model bundles: ``torch.export`` and ONNX programs, safetensors weights and the records beside them.

:func:`save_bundle` writes the folder :mod:`radiology.models.bundle` describes and reads
back: the model exported twice (:func:`export_program`, :func:`export_onnx`), its weights
and config, the pipeline, ``labels.json`` (classes, label kind, thresholds, views, channels,
size), ``train.json`` (what the caller reports, plus library versions from
:func:`radiology.io.versions`), and last the manifest ``bundle.json`` with the sha256 of every
other file. Every file is written whole (:func:`radiology.io.atomic_write`); until the
manifest is there, the folder does not load.
"""

from __future__ import annotations

import copy
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radiology.io import atomic_write, file_digest, versions, write_json
from radiology.manifest import (
    BUNDLE_FILES,
    ENSEMBLE,
    ENSEMBLE_FORMAT,
    ENSEMBLE_VERSION,
    MANIFEST,
    MAX_MEMBERS,
    MODEL_FORMAT,
    BundleError,
    bundle_members,
    is_plain_name,
    read_manifest,
    verified_bytes,
    write_manifest,
)

__all__ = ["export_program", "export_onnx", "save_bundle", "save_ensemble"]

# Export traces with this batch: a batch of 1 would let the tracer specialize the batch dimension to 1.
_EXAMPLE_BATCH = 2


def _size_pair(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    if not isinstance(size, Sequence) or len(size) != 2 or not all(isinstance(s, (int, np.integer)) for s in size):
        raise ValueError(f"size must be an int or (height, width), got {size!r}")
    if min(size) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(size[0]), int(size[1])


def _example_input(model: torch.nn.Module, size: tuple[int, int]) -> torch.Tensor:
    views, chans = model.config["views"], model.config["in_chans"]
    shape = (_EXAMPLE_BATCH, chans, *size) if views == 1 else (_EXAMPLE_BATCH, views, chans, *size)
    return torch.rand(shape, generator=torch.Generator().manual_seed(0))


def _dynamic_batch() -> dict[str, dict[int, Any]]:
    # Keyed by the name of RadiographClassifier.forward's argument.
    return {"x": {0: torch.export.Dim("batch", min=1)}}


def export_program(model: torch.nn.Module, size, path: str | os.PathLike | None = None):
    """``torch.export`` a model (in eval mode, on CPU) with a dynamic batch dimension.

    Parameters
    ----------
    model : RadiographClassifier
        Not modified (a CPU copy in eval mode is exported).
    size : int or (int, int)
        Image height and width the program is specialized to.
    path : path, optional
        When given, the program is also written there (``torch.export.save``, ``.pt2``).

    Returns
    -------
    torch.export.ExportedProgram
        ``program.module()(x)`` returns the logits for any batch size.
    """
    size = _size_pair(size)
    model = copy.deepcopy(model).cpu().eval()
    with torch.no_grad():
        program = torch.export.export(model, (_example_input(model, size),), dynamic_shapes=_dynamic_batch())
    for node in program.graph.nodes:  # stack traces name the exporting machine's absolute source paths
        node.meta.pop("stack_trace", None)
    if path is not None:
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        atomic_write(path, buffer.getvalue())
    return program


def export_onnx(model_or_program, size, path: str | os.PathLike) -> Path:
    """Write an ONNX file (``torch.onnx.export(..., dynamo=True)``) with a dynamic batch dimension.

    Parameters
    ----------
    model_or_program : RadiographClassifier or torch.export.ExportedProgram
        An already exported program (from :func:`export_program`) is converted without tracing again.
    size : int or (int, int)
        Image height and width.
    path : path
        Output file; the input is named ``"image"``, the output ``"logits"``.

    Returns
    -------
    pathlib.Path
    """
    if not isinstance(model_or_program, torch.export.ExportedProgram):
        model_or_program = export_program(model_or_program, size)
    onnx_program = torch.onnx.export(model_or_program, dynamo=True, input_names=["image"], output_names=["logits"],
                                     external_data=False, verbose=False)
    # Weights inside the file (no external data); written whole through a temporary file.
    return atomic_write(path, onnx_program.model_proto.SerializeToString())


def _labels_record(labels: Mapping, model: torch.nn.Module, size: tuple[int, int]) -> dict[str, Any]:
    if not isinstance(labels, Mapping) or "classes" not in labels:
        raise ValueError("labels must be a mapping with at least 'classes'")
    classes = [str(c) for c in labels["classes"]]
    n_outputs, views = model.config["n_outputs"], model.config["views"]
    if len(classes) != n_outputs:
        raise ValueError(f"labels has {len(classes)} classes, the model has {n_outputs} outputs")
    multi_label = bool(labels.get("multi_label", False))
    thresholds = labels.get("thresholds")
    if thresholds is None and multi_label:
        thresholds = [0.5] * n_outputs
    if thresholds is not None:
        thresholds = [float(t) for t in np.broadcast_to(np.asarray(thresholds, dtype=float), (n_outputs,))]
    names = labels.get("views")
    if names is None:
        names = ["image"] if views == 1 else [f"view{i}" for i in range(views)]
    names = [str(n) for n in names]
    if len(names) != views:
        raise ValueError(f"labels names {len(names)} views {names}, the model takes {views}")
    return {"classes": classes, "multi_label": multi_label, "activation": "sigmoid" if multi_label else "softmax",
            "thresholds": thresholds, "views": names, "channels": model.config["in_chans"], "size": list(size)}


def save_bundle(folder: str | os.PathLike, model: torch.nn.Module, pipeline, labels: Mapping,
                train_info: Mapping | None = None, *, size) -> Path:
    """Write a model bundle folder (see the module docstring for its files).

    Parameters
    ----------
    folder : path
        Created if needed; bundle files already there are replaced.
    model : RadiographClassifier
        Exported from a CPU copy in eval mode; the caller's model is not modified.
    pipeline : radiology.pipeline.Pipeline
        The preprocessing the model was trained with; it must produce ``size`` images.
    labels : mapping
        ``classes`` (one per model output), optional ``multi_label`` (default False),
        ``thresholds`` (one per class or a scalar; multi-label default 0.5), ``views``
        (view names, default ``["image"]`` / ``["view0", ...]``).
    train_info : mapping, optional
        Anything JSON-serializable about training (data summary, metrics, epochs...). Library
        versions are added under ``"versions"`` unless present. Must hold no PHI.
    size : int or (int, int)
        Input height and width.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    ValueError
        Labels that do not fit the model, bad size.
    """
    from safetensors.torch import save as safetensors_bytes

    from radiology.models.classifier import RadiographClassifier
    from radiology.pipeline import Pipeline

    if not isinstance(model, RadiographClassifier):
        raise ValueError(f"model must be a RadiographClassifier, got {type(model).__name__}")
    size = _size_pair(size)
    record = _labels_record(labels, model, size)
    info = dict(train_info or {})
    info.setdefault("versions", versions("torch", "timm", "numpy", "onnx", "onnxruntime"))
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # Without its manifest a bundle does not load: a save interrupted half-way leaves no loadable mix.
    (folder / MANIFEST).unlink(missing_ok=True)

    cpu = copy.deepcopy(model).cpu().eval()
    program = export_program(cpu, size, folder / "model.pt2")
    export_onnx(program, size, folder / "model.onnx")
    state = {k: v.detach().contiguous() for k, v in cpu.state_dict().items()}
    atomic_write(folder / "weights.safetensors", safetensors_bytes(state))
    write_json(folder / "model.json", {"format": MODEL_FORMAT, "version": 1, "config": cpu.config})
    pipeline.save(folder / "pipeline.json", copy_files=True)
    write_json(folder / "labels.json", record)
    write_json(folder / "train.json", info)
    names = [name for name in BUNDLE_FILES if name != MANIFEST]
    names += [path.name for path in Pipeline.load(folder / "pipeline.json").files()]
    write_manifest(folder, names)
    return folder


def save_ensemble(folder: str | os.PathLike, members: Sequence[str], train_info: Mapping | None = None) -> Path:
    """Make ``folder`` an ensemble bundle of the one-model bundles saved in its sub-folders ``members``.

    Writes ``labels.json`` (the members' classes, label kind and views; multi-label thresholds
    their mean, the rule :class:`radiology.predict.Ensemble` decides by), ``train.json``,
    ``ensemble.json`` (each member folder with the sha256 of its manifest) and the manifest,
    last. :func:`radiology.models.bundle_members` reads it back; ``radiology predict`` and
    :meth:`radiology.predict.Ensemble.load` predict with the members' mean probability.

    Parameters
    ----------
    folder : path
        The ensemble's folder, holding the members.
    members : sequence of str
        Names of member folders inside ``folder`` (plain names), each a complete bundle of
        :func:`save_bundle`, all with the same classes, label kind and views.
    train_info : mapping, optional
        Anything JSON-serializable about training (out-of-fold metrics, folds); must hold no PHI.

    Returns
    -------
    pathlib.Path
        The folder.

    Raises
    ------
    ValueError
        No member, too many, a name that is not a plain folder name or is repeated.
    radiology.manifest.BundleError
        A member that is not a complete bundle, is itself an ensemble, or whose labels differ
        from the first member's.
    """
    import json

    folder, members = Path(folder), list(members)
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise ValueError(f"an ensemble takes 1 to {MAX_MEMBERS} members, got {len(members)}")
    bad = [name for name in members if not is_plain_name(name)]
    if bad or len(set(members)) != len(members):
        raise ValueError(f"members must be distinct plain folder names inside {folder}, got {(bad or members)[:3]}")
    records = []
    for name in members:
        files = read_manifest(folder / name)
        if ENSEMBLE in files:
            raise BundleError(f"{folder / name}: an ensemble cannot be a member of another")
        records.append(json.loads(verified_bytes(folder / name, files, "labels.json")))
    labels = dict(records[0])
    if labels.get("thresholds") is not None:
        labels["thresholds"] = [float(t) for t in np.mean([r["thresholds"] for r in records], axis=0)]
    info = dict(train_info or {})
    info.setdefault("versions", versions("torch", "timm", "numpy", "onnx", "onnxruntime"))
    # Without its manifest the folder does not load: an interrupted save leaves no loadable mix.
    (folder / MANIFEST).unlink(missing_ok=True)
    write_json(folder / "labels.json", labels)
    write_json(folder / "train.json", info)
    digests = [{"folder": name, "manifest": file_digest(folder / name / MANIFEST)} for name in members]
    write_json(folder / ENSEMBLE, {"format": ENSEMBLE_FORMAT, "version": ENSEMBLE_VERSION, "members": digests})
    write_manifest(folder, [ENSEMBLE, "labels.json", "train.json"])
    bundle_members(folder)  # what was written reads back: every member's labels agree with the first
    return folder
