"""Reading model bundles: manifest, verification, :class:`Bundle` and :func:`load_bundle`.

A bundle is one folder with everything inference needs, runnable by eager torch,
``torch.export`` or ONNX; :func:`radiology.models.export.save_bundle` writes it. It holds::

    model.pt2            torch.export program (dynamic batch), torch.export.load
    model.onnx           the same graph in ONNX (torch.onnx.export(dynamo=True)), for onnxruntime
    weights.safetensors  state dict of the RadiographClassifier (safetensors: tensors only) ...
    model.json           ... and its config: eager rebuild (fine-tuning, Grad-CAM)
    pipeline.json        the preprocessing (radiology.pipeline), with any files it refers to copied alongside
    labels.json          classes, multi_label, activation, thresholds, views, channels, size
    train.json           what the caller reports about training (data summary, metrics) + library versions
    bundle.json          the manifest: format version and the sha256 of every other file, written last

All three model files take float32 ``(B, C, H, W)`` (or ``(B, V, C, H, W)``) in ``[0, 1]`` and
return logits; :class:`Bundle` applies softmax (single-label) or sigmoid (multi-label).

Loading a bundle runs no code from it: every file is checked against the manifest (damage
or a later change is one line naming the file), the weights are safetensors, ``model.pt2``
is checked by :func:`radiology.models.archive.check_program_archive` before torch reads it,
``model.onnx`` by :func:`~radiology.models.archive.check_onnx`, files a pipeline step refers to
must lie in the bundle and are read as plain data, and labels, model config and model
outputs must agree. Every check fails with :class:`BundleError` (or its subclass
:class:`~radiology.models.archive.UnsafeModelError`) before any image is read.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radiology.data.dataset import model_input
from radiology.errors import one_line
from radiology.manifest import (
    BUNDLE_FILES,
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    ENSEMBLE,
    MANIFEST,
    MAX_FILE_BYTES,
    MAX_SIZE,
    MODEL_FORMAT,
    BundleError,
    bundle_members,
    is_plain_name,
    read_manifest,
    verified_bytes,
)
from radiology.models.archive import UnsafeModelError, check_onnx, check_program_archive
from radiology.models.decisions import _chosen

__all__ = ["BACKENDS", "BUNDLE_FILES", "MANIFEST", "MAX_SIZE", "MAX_FILE_BYTES", "MODEL_FORMAT", "BUNDLE_FORMAT",
           "BUNDLE_VERSION", "Bundle", "BundleError", "bundle_members", "load_bundle", "verify_bundle"]

#: Ways to run a bundle's model.
BACKENDS = ("eager", "export", "onnx")
_MODEL_FILES = {"eager": "weights.safetensors", "export": "model.pt2", "onnx": "model.onnx"}
# timm names: letters, digits, "_", "-" and a "." before a weight tag; no "hf-hub:" or path.
_ARCH_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows.
    out = np.empty_like(logits)
    positive = logits >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-logits[positive]))
    exp = np.exp(logits[~positive])
    out[~positive] = exp / (1.0 + exp)
    return out


def _json_file(folder: Path, files: Mapping[str, str], name: str) -> dict:
    data = verified_bytes(folder, files, name)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise BundleError(f"{folder / name}: not valid JSON ({one_line(error)})") from error
    if not isinstance(value, dict):
        raise BundleError(f"{folder / name}: expected a JSON object")
    return value


def _model_config(folder: Path, record: dict) -> dict:
    """``model.json``'s config, checked before it builds anything.

    The arch must be a plain model name here; that timm knows it (no hub look-up) is checked
    only where a model is built from it (:func:`_eager_model`): the ONNX and exported
    programs never read it, and importing timm costs a predict process seconds.
    """
    path = folder / "model.json"
    config = record.get("config")
    if record.get("format") != MODEL_FORMAT or not isinstance(config, dict):
        raise BundleError(f"{path}: not a radiology model description")
    known = {"arch", "n_outputs", "in_chans", "views", "fusion", "drop_rate", "mean", "std"}
    if set(config) - known:
        raise BundleError(f"{path}: unknown config keys {sorted(set(config) - known)[:5]}")
    arch = config.get("arch")
    if not isinstance(arch, str) or not _ARCH_NAME.fullmatch(arch):
        raise BundleError(f"{path}: arch {str(arch)[:80]!r} is not a model name")
    for key in ("n_outputs", "in_chans", "views"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100_000:
            raise BundleError(f"{path}: {key} must be a positive integer, got {str(value)[:40]}")
    return config


def _labels(folder: Path, labels: dict, config: dict) -> dict:
    """``labels.json`` checked against the model it describes."""
    path = folder / "labels.json"
    classes = labels.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
        raise BundleError(f"{path}: 'classes' must be a non-empty list of names")
    if len(set(classes)) != len(classes):
        raise BundleError(f"{path}: class names repeat")
    if len(classes) != config["n_outputs"]:
        raise BundleError(f"{path}: {len(classes)} classes, the model has {config['n_outputs']} outputs")
    multi_label = labels.get("multi_label")
    if not isinstance(multi_label, bool):
        raise BundleError(f"{path}: 'multi_label' must be true or false")
    thresholds = labels.get("thresholds")
    if thresholds is not None and (not isinstance(thresholds, list) or len(thresholds) != len(classes) or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and 0 <= t <= 1 for t in thresholds)):
        raise BundleError(f"{path}: 'thresholds' must be null or one number in [0, 1] per class")
    if multi_label and thresholds is None:
        raise BundleError(f"{path}: a multi-label bundle needs 'thresholds'")
    views = labels.get("views")
    if not isinstance(views, list) or len(views) != config["views"] or not all(isinstance(v, str) for v in views):
        raise BundleError(f"{path}: 'views' must name the model's {config['views']} view(s)")
    channels = labels.get("channels")
    if channels != config["in_chans"]:
        raise BundleError(f"{path}: channels {str(channels)[:20]}, the model takes {config['in_chans']}")
    size = labels.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIZE for v in size)):
        raise BundleError(f"{path}: 'size' must be [height, width], each 1 to {MAX_SIZE}")
    return {"classes": classes, "multi_label": multi_label, "thresholds": thresholds, "views": tuple(views),
            "channels": channels, "size": tuple(size)}


def _pipeline(folder: Path, files: Mapping[str, str]):
    """``pipeline.json``, and every file a step refers to checked: inside the bundle and in the manifest."""
    from radiology.pipeline import Pipeline

    text = verified_bytes(folder, files, "pipeline.json")
    try:
        pipeline = Pipeline.from_json(text.decode(), root=folder)
    except (ValueError, TypeError, RecursionError) as error:
        raise BundleError(f"{folder / 'pipeline.json'}: {one_line(error)}") from error
    for referenced in pipeline.files():
        if referenced.parent.resolve() != folder.resolve() or not is_plain_name(referenced.name):
            raise BundleError(f"{folder / 'pipeline.json'}: refers to a file outside the bundle "
                              f"({referenced.name[:80]!r})")
        _plain_data(folder / referenced.name, verified_bytes(folder, files, referenced.name))
    return pipeline


def _plain_data(path: Path, data: bytes) -> None:
    """Refuse a NumPy file a step refers to unless it holds plain arrays (a pickle inside could run code)."""
    if path.suffix.lower() not in (".npy", ".npz"):
        return
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                for key in loaded.files:
                    loaded[key]
    except (ValueError, OSError, EOFError) as error:
        raise UnsafeModelError(f"{path}: not plain NumPy arrays ({one_line(error)[:120]})") from error


def _eager_model(folder: Path, files: Mapping[str, str], config: dict) -> torch.nn.Module:
    import timm
    from safetensors import SafetensorError
    from safetensors.torch import load as safetensors_load

    from radiology.models.classifier import RadiographClassifier

    if not timm.is_model(config["arch"]):
        raise BundleError(f"{folder / 'model.json'}: arch {config['arch']!r} is not a timm architecture of this "
                          "installation")
    data = verified_bytes(folder, files, "weights.safetensors")
    try:
        state = safetensors_load(data)
    except (SafetensorError, ValueError, OSError) as error:
        raise BundleError(f"{folder / 'weights.safetensors'}: not readable safetensors ({one_line(error)})") from error
    try:
        model = RadiographClassifier(**config)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, TypeError) as error:
        raise BundleError(f"{folder / 'weights.safetensors'}: does not fit model.json's model "
                          f"({one_line(error)[:200]})") from error
    return model.eval()


def _program_runner(folder: Path, files: Mapping[str, str], n_outputs: int):
    data = verified_bytes(folder, files, "model.pt2")
    check_program_archive(data, str(folder / "model.pt2"))
    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - a checked archive torch still cannot read is damaged
        raise BundleError(f"{folder / 'model.pt2'}: torch.export cannot load it ({one_line(error)[:200]})") from error
    outputs = [node for node in program.graph.nodes if node.op == "output"]
    values = outputs[0].args[0] if outputs else ()
    value = values[0].meta.get("val") if values and hasattr(values[0], "meta") else None
    if value is None or tuple(value.shape)[-1:] != (n_outputs,):
        raise BundleError(f"{folder / 'model.pt2'}: the program does not return {n_outputs} logits")
    return program.module()


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``).

    Returns
    -------
    int
        At least 1.

    Examples
    --------
    >>> usable_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def _session_options(threads: int | None):
    """onnxruntime settings measured fastest on CPU (``bench/predict.py``).

    ``threads`` intra-op threads (default: the cores this process may use, which onnxruntime's
    own default, the machine's physical cores, ignores), one inter-op thread and sequential
    execution (a classifier's graph is a chain: parallel branches gain nothing), every graph
    optimization, and no spin-waiting: idle onnxruntime threads would otherwise keep their
    cores busy while images are decoded beside the model.
    """
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _onnx_runner(folder: Path, files: Mapping[str, str], n_outputs: int, threads: int | None = None):
    import onnxruntime

    data = verified_bytes(folder, files, "model.onnx")
    outputs = check_onnx(data, str(folder / "model.onnx"))
    if outputs != n_outputs:
        raise BundleError(f"{folder / 'model.onnx'}: returns {outputs} values, labels.json has {n_outputs} classes")
    try:  # from the checked bytes: the session never opens another file
        return onnxruntime.InferenceSession(data, _session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own types on a malformed graph
        raise BundleError(f"{folder / 'model.onnx'}: onnxruntime cannot load it ({one_line(error)[:200]})") from error


@dataclass
class Bundle:
    """A loaded model bundle: preprocessing, model and label names, ready to predict.

    Build it with :func:`load_bundle`.

    Attributes
    ----------
    folder : pathlib.Path
        The bundle folder it was loaded from.
    backend : {"eager", "export", "onnx"}
        How the model runs: rebuilt in torch, a ``torch.export`` program, or onnxruntime.
    classes : list of str
        Class (label) names, one per model output.
    multi_label : bool
        Sigmoid per label when True, softmax over classes otherwise.
    thresholds : list of float or None
        Per-class decision thresholds (multi-label; None for single-label).
    views : tuple of str
        View names; a sample is one image per view.
    channels : int
        Input channels the model takes: 1 (gray) or 3 (RGB).
    size : tuple of int
        ``(height, width)`` the model takes.
    pipeline : radiology.pipeline.Pipeline
        Preprocessing that turns a file into the model's input.
    train : dict
        Contents of ``train.json``.
    device : str
        Where eager and exported models run.
    files : dict
        The manifest: file name -> sha256, against which every file is checked when read.
    """

    folder: Path
    backend: str
    classes: list[str]
    multi_label: bool
    thresholds: list[float] | None
    views: tuple[str, ...]
    channels: int
    size: tuple[int, int]
    pipeline: Any
    train: dict = field(default_factory=dict)
    device: str = "cpu"
    files: dict = field(default_factory=dict, repr=False)
    _config: dict = field(default_factory=dict, repr=False)
    _runner: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        """The eager :class:`~radiology.models.RadiographClassifier` (rebuilt and verified on first use, eval mode).

        Raises
        ------
        BundleError
            ``weights.safetensors`` missing, changed since saving or not fitting ``model.json``.
        """
        if self._model is None:
            self._model = _eager_model(self.folder, self.files, self._config).to(self.device)
        return self._model

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            name = self._runner.get_inputs()[0].name
            return self._runner.run(None, {name: x})[0]
        runner = self.model if self._runner is None else self._runner  # a Bundle built in memory: its eager model
        with torch.no_grad():
            return runner(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def predict_batch(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for a preprocessed batch.

        Parameters
        ----------
        x : numpy.ndarray
            float in ``[0, 1]``, ``(B, C, H, W)`` for one view or ``(B, V, C, H, W)``.

        Returns
        -------
        numpy.ndarray of float32, shape (B, n_classes)
            Softmax (rows sum to 1) or sigmoid (multi-label) probabilities.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        views, expected = len(self.views), (self.channels, *self.size)
        shape_ok = (x.ndim == 4 and views == 1 and x.shape[1:] == expected) or (
            x.ndim == 5 and x.shape[1:] == (views, *expected))
        if not shape_ok or x.shape[0] < 1:
            want = f"(B, {', '.join(map(str, expected))})" if views == 1 else \
                f"(B, {views}, {', '.join(map(str, expected))})"
            raise ValueError(f"expected a batch of shape {want}, got {x.shape}")
        if views == 1 and x.ndim == 5:
            x = np.ascontiguousarray(x[:, 0])  # the exported programs were traced on (B, C, H, W)
        logits = self._logits(x).astype(np.float32, copy=False)
        return _sigmoid(logits) if self.multi_label else _softmax(logits)

    def load_sample(self, source, *, decoded=None) -> np.ndarray:
        """One sample as the model takes it: ``(C, H, W)`` or ``(V, C, H, W)`` float32.

        Parameters
        ----------
        source : path or tuple of paths
            One file per view, each read with ``pipeline.read``.
        decoded : sequence, optional
            The views already decoded, one per path (``pipeline.decode.read``'s
            :class:`~radiology.dicom.DicomImage`, or an image file's path): the pipeline runs on
            them instead of reading the files again; errors still name the paths.
        """
        paths = (source,) if isinstance(source, (str, os.PathLike)) else tuple(source)
        if len(paths) != len(self.views):
            raise ValueError(f"{source!r}: {len(paths)} images, the model takes {len(self.views)} views "
                             f"{list(self.views)}")
        views = paths if decoded is None else tuple(decoded)
        if len(views) != len(paths):
            raise ValueError(f"{len(views)} decoded views for {len(paths)} paths")
        images = [self.model_input(self.pipeline.read(view), str(path)) for view, path in zip(views, paths)]
        return images[0] if len(images) == 1 else np.stack(images)

    def model_input(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """One view of the pipeline's output as the model takes it: ``(C, H, W)`` float32.

        Gray images are repeated to the model's channels, colour images made gray for a
        1-channel model (:func:`radiology.data.model_input`, as training reads them); the
        size must be the model's.

        Parameters
        ----------
        image : numpy.ndarray
            ``(H, W)`` or ``(H, W, 3)``, what ``pipeline.read`` returns.
        name : str, optional
            Names the input in errors.

        Raises
        ------
        ValueError
            Another shape or size than the model's.
        """
        sample = model_input(image, self.channels, name)
        if sample.shape[1:] != tuple(self.size):
            raise ValueError(f"{name}: pipeline produced {sample.shape[1:]} images, the model takes {tuple(self.size)}")
        return sample

    def predict(self, sources, batch_size: int = 16) -> np.ndarray:
        """Probabilities for files: preprocess with the bundle's pipeline, then :meth:`predict_batch`.

        Parameters
        ----------
        sources : path, tuple of paths, or a sequence of those
            One path (one view) or one tuple of view paths per sample; a single path or a
            single tuple (for a multi-view model) is one sample.
        batch_size : int, optional
            Samples per model call.

        Returns
        -------
        numpy.ndarray of float32, shape (N, n_classes)
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if isinstance(sources, (str, os.PathLike)) or (
                isinstance(sources, tuple) and len(self.views) > 1 and all(
                    isinstance(s, (str, os.PathLike)) for s in sources)):
            sources = [sources]
        sources = list(sources)
        out = [np.zeros((0, len(self.classes)), np.float32)]
        for start in range(0, len(sources), batch_size):
            batch = np.stack([self.load_sample(s) for s in sources[start:start + batch_size]])
            out.append(self.predict_batch(batch))
        return np.concatenate(out)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """Decisions from probabilities: class indices ``(N,)`` (argmax), or multi-label 0/1 ``(N, L)``
        (probability > the class threshold, as the ODIR evaluation decides).

        The rule of :func:`radiology.models.decide`, which names the decisions instead.

        Parameters
        ----------
        probs : numpy.ndarray, shape (N, n_classes)
            Probabilities, e.g. from :meth:`predict`.
        """
        chosen = _chosen(probs, multi_label=self.multi_label, thresholds=self.thresholds)
        return chosen.astype(np.int64) if self.multi_label else chosen.argmax(axis=1)


def load_bundle(folder: str | os.PathLike, backend: str = "eager", *, device: str = "cpu",
                threads: int | None = None) -> Bundle:
    """Load a bundle written by :func:`~radiology.models.export.save_bundle`.

    Parameters
    ----------
    folder : path
        The bundle folder.
    backend : {"eager", "export", "onnx"}, optional
        ``eager`` rebuilds the :class:`~radiology.models.RadiographClassifier` (timm needed);
        ``export`` runs ``model.pt2`` (torch only); ``onnx`` runs ``model.onnx`` on onnxruntime (CPU).
    device : str, optional
        torch device for ``eager`` and ``export``.
    threads : int, optional
        onnxruntime's intra-op threads (``onnx`` backend; ignored by the others). Default: the
        cores this process may use (its CPU affinity). Give fewer when other work shares the
        cores: decode workers (:func:`~radiology.predict.predict_table`'s ``workers``) or
        other model processes on the same machine.

    Returns
    -------
    Bundle

    Raises
    ------
    ValueError
        Unknown backend, or a device that is not a torch device or not on this machine.
    FileNotFoundError
        ``folder`` is not a folder.
    BundleError
        A damaged, changed, inconsistent or unsafe bundle (see :func:`verify_bundle` and the
        module docstring), or an ensemble bundle (``train --folds``: load it with
        :meth:`radiology.predict.Ensemble.load`); nothing from the bundle has run.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from error
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such bundle folder")
    files = read_manifest(folder)  # each file is checked against it as it is read, once
    if ENSEMBLE in files:
        raise BundleError(f"{folder}: an ensemble of models ({ENSEMBLE}), not one: give one of its members "
                          f"(e.g. {bundle_members(folder)[0]}), or predict with all of them (radiology predict, "
                          "radiology.predict.Ensemble.load)")
    config = _model_config(folder, _json_file(folder, files, "model.json"))
    labels = _labels(folder, _json_file(folder, files, "labels.json"), config)
    pipeline = _pipeline(folder, files)
    train = _json_file(folder, files, "train.json") if "train.json" in files else {}
    bundle = Bundle(folder=folder, backend=backend, pipeline=pipeline, train=train, device=device, files=files,
                    _config=config, **labels)
    n_outputs = len(labels["classes"])
    if backend == "onnx":
        bundle._runner = _onnx_runner(folder, files, n_outputs, threads)
    elif backend == "export":
        bundle._runner = _program_runner(folder, files, n_outputs).to(device)
    else:
        bundle._runner = bundle.model
    return bundle


def verify_bundle(folder: str | os.PathLike, backend: str | None = None) -> dict[str, str]:
    """Check a bundle's files against its manifest without loading any model.

    Parameters
    ----------
    folder : path
        The bundle folder; an ensemble bundle's members (:func:`bundle_members`) are checked too.
    backend : {"eager", "export", "onnx"}, optional
        Only the files this backend needs (the JSON files and its model file) must be
        present; default: every file the manifest lists.

    Returns
    -------
    dict
        The manifest's ``{file name: sha256}`` (an ensemble's own files, not its members').

    Raises
    ------
    BundleError
        No or unreadable manifest, an unknown format version, a needed file missing or
        not listed, a file whose sha256 differs (one line naming the file).

    Examples
    --------
    >>> import tempfile
    >>> verify_bundle(tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    radiology.manifest.BundleError: .../bundle.json: missing: not a bundle written by this radiology ...
    """
    folder = Path(folder)
    files = read_manifest(folder)
    if ENSEMBLE in files:
        for name in files:
            verified_bytes(folder, files, name)
        for member in bundle_members(folder):
            verify_bundle(member, backend)
        return dict(files)
    if backend is None:
        needed = list(files)
    else:
        needed = ["model.json", "labels.json", "pipeline.json", _MODEL_FILES[backend]]
        needed += [name for name in files if name not in BUNDLE_FILES]  # files the pipeline refers to
    for name in needed:
        verified_bytes(folder, files, name)
    if "train.json" in files and (folder / "train.json").exists():
        verified_bytes(folder, files, "train.json")
    return dict(files)


_MOVED = {"save_bundle", "export_program", "export_onnx"}


def __getattr__(name):
    # Writing bundles moved to radiology.models.export; the old names work for one release.
    if name in _MOVED:
        warnings.warn(f"radiology.models.bundle.{name} moved: use radiology.models.{name} "
                      f"(radiology.models.export.{name})", DeprecationWarning, stacklevel=2)
        from radiology.models import export

        return getattr(export, name)
    raise AttributeError(f"module 'radiology.models.bundle' has no attribute {name!r}")
