"""Model bundles: one folder with everything inference needs, runnable by eager torch, torch.export or ONNX.

A bundle folder holds::

    model.pt2      torch.export program (dynamic batch), torch.export.load
    model.onnx     the same graph in ONNX (torch.onnx.export(dynamo=True)), for onnxruntime
    weights.pt     state dict of the RadiographClassifier ...
    model.json     ... and its config: eager rebuild (fine-tuning, Grad-CAM)
    pipeline.json  the preprocessing (radiology.pipeline), with any files it refers to copied alongside
    labels.json    classes, multi_label, activation, thresholds, views, channels, size
    train.json     what the caller reports about training (data summary, metrics) + library versions

All three model files take float32 ``(B, C, H, W)`` (or ``(B, V, C, H, W)``) in ``[0, 1]`` and
return logits; :class:`Bundle` applies softmax (single-label) or sigmoid (multi-label).
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["BACKENDS", "BUNDLE_FILES", "Bundle", "save_bundle", "load_bundle", "export_program", "export_onnx"]

#: Ways to run a bundle's model.
BACKENDS = ("eager", "export", "onnx")
#: Files :func:`save_bundle` writes.
BUNDLE_FILES = ("model.pt2", "model.onnx", "weights.pt", "model.json", "pipeline.json", "labels.json", "train.json")
MODEL_FORMAT = "radiology.model"
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
    if path is not None:
        torch.export.save(program, path)
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
    # Write next to the target and rename, so a reader never sees half a file.
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        onnx_program.save(temporary, external_data=False)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def _jsonable(value):
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def _write_json(path: Path, data) -> None:
    from radiology.io import atomic_write

    atomic_write(path, (json.dumps(_jsonable(data), indent=2) + "\n").encode())


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


def _versions() -> dict[str, str]:
    import timm

    import radiology

    return {"radiology": getattr(radiology, "__version__", "unknown"), "torch": torch.__version__,
            "timm": timm.__version__, "numpy": np.__version__}


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
    from radiology.models.classifier import RadiographClassifier

    if not isinstance(model, RadiographClassifier):
        raise ValueError(f"model must be a RadiographClassifier, got {type(model).__name__}")
    size = _size_pair(size)
    record = _labels_record(labels, model, size)
    info = dict(train_info or {})
    info.setdefault("versions", _versions())
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    cpu = copy.deepcopy(model).cpu().eval()
    program = export_program(cpu, size)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".model.", suffix=".tmp.pt2", delete=False) as tmp:
        pass
    try:
        torch.export.save(program, tmp.name)
        os.replace(tmp.name, folder / "model.pt2")
    finally:
        Path(tmp.name).unlink(missing_ok=True)
    export_onnx(program, size, folder / "model.onnx")
    from radiology.io import atomic_write

    buffer = io.BytesIO()
    torch.save(cpu.state_dict(), buffer)
    atomic_write(folder / "weights.pt", buffer.getvalue())
    _write_json(folder / "model.json", {"format": MODEL_FORMAT, "version": 1, "config": cpu.config})
    pipeline.save(folder / "pipeline.json", copy_files=True)
    _write_json(folder / "labels.json", record)
    _write_json(folder / "train.json", info)
    return folder


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


def _to_channels(image: np.ndarray, channels: int, name: str) -> np.ndarray:
    """``(H, W)`` or ``(H, W, 3)`` -> ``(C, H, W)`` float32 (gray repeated, colour made gray for C=1)."""
    from radiology.intensity import to_gray

    if image.ndim == 3 and image.shape[2] == 3:
        if channels == 3:
            return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        image = to_gray(image)
    if image.ndim != 2:
        raise ValueError(f"{name}: pipeline produced shape {image.shape}, expected (H, W) or (H, W, 3)")
    return np.repeat(image[None].astype(np.float32, copy=False), channels, axis=0)


def _load_eager(folder: Path) -> torch.nn.Module:
    from radiology.models.classifier import RadiographClassifier

    record = json.loads((folder / "model.json").read_text())
    if record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{folder / 'model.json'}: not a radiology model description")
    model = RadiographClassifier(**record["config"])
    model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval()


@dataclass
class Bundle:
    """A loaded model bundle: preprocessing, model and label names, ready to predict.

    Build it with :func:`load_bundle`.

    Attributes
    ----------
    folder : pathlib.Path
    backend : {"eager", "export", "onnx"}
    classes : list of str
    multi_label : bool
        Sigmoid per label when True, softmax over classes otherwise.
    thresholds : list of float or None
        Per-class decision thresholds (multi-label; None for single-label).
    views : tuple of str
        View names; a sample is one image per view.
    channels : int
    size : tuple of int
        ``(height, width)`` the model takes.
    pipeline : radiology.pipeline.Pipeline
    train : dict
        Contents of ``train.json``.
    device : str
        Where eager and exported models run.
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
    _runner: Any = field(default=None, repr=False)
    _model: Any = field(default=None, repr=False)

    @property
    def model(self) -> torch.nn.Module:
        """The eager :class:`~radiology.models.RadiographClassifier` (rebuilt on first use, eval mode)."""
        if self._model is None:
            self._model = _load_eager(self.folder).to(self.device)
        return self._model

    def _logits(self, x: np.ndarray) -> np.ndarray:
        if self.backend == "onnx":
            if self._runner is None:
                import onnxruntime

                self._runner = onnxruntime.InferenceSession(str(self.folder / "model.onnx"),
                                                            providers=["CPUExecutionProvider"])
            name = self._runner.get_inputs()[0].name
            return self._runner.run(None, {name: x})[0]
        if self._runner is None:
            if self.backend == "eager":
                self._runner = self.model
            else:
                self._runner = torch.export.load(self.folder / "model.pt2").module().to(self.device)
        with torch.no_grad():
            return self._runner(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

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

    def load_sample(self, source) -> np.ndarray:
        """One sample as the model takes it: ``(C, H, W)`` or ``(V, C, H, W)`` float32.

        Parameters
        ----------
        source : path or tuple of paths
            One file per view, each read with ``pipeline.read``.
        """
        paths = (source,) if isinstance(source, (str, os.PathLike)) else tuple(source)
        if len(paths) != len(self.views):
            raise ValueError(f"{source!r}: {len(paths)} images, the model takes {len(self.views)} views "
                             f"{list(self.views)}")
        images = [self.model_input(self.pipeline.read(path), str(path)) for path in paths]
        return images[0] if len(images) == 1 else np.stack(images)

    def model_input(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """One view of the pipeline's output as the model takes it: ``(C, H, W)`` float32.

        Gray images are repeated to the model's channels, colour images made gray for a
        1-channel model; the size must be the model's.

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
        sample = _to_channels(np.asarray(image), self.channels, name)
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
        (probability > the class threshold, as the ODIR evaluation decides)."""
        probs = np.asarray(probs)
        if self.multi_label:
            return (probs > np.asarray(self.thresholds, dtype=probs.dtype)).astype(np.int64)
        return probs.argmax(axis=1)


def load_bundle(folder: str | os.PathLike, backend: str = "eager", *, device: str = "cpu") -> Bundle:
    """Load a bundle written by :func:`save_bundle`.

    Parameters
    ----------
    folder : path
    backend : {"eager", "export", "onnx"}, optional
        ``eager`` rebuilds the :class:`~radiology.models.RadiographClassifier` (timm needed);
        ``export`` runs ``model.pt2`` (torch only); ``onnx`` runs ``model.onnx`` on onnxruntime (CPU).
    device : str, optional
        torch device for ``eager`` and ``export``.

    Returns
    -------
    Bundle

    Raises
    ------
    ValueError
        Unknown backend, or a device that is not a torch device or not on this machine.
    FileNotFoundError
        A bundle file the backend needs is missing.
    """
    from radiology.pipeline import Pipeline

    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device (e.g. cpu, cuda, cuda:1)") from error
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    folder = Path(folder)
    needed = {"eager": ("weights.pt", "model.json"), "export": ("model.pt2",), "onnx": ("model.onnx",)}[backend]
    missing = [name for name in ("labels.json", "pipeline.json", *needed) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: not a model bundle for backend {backend!r}, missing {missing}")
    labels = json.loads((folder / "labels.json").read_text())
    train_path = folder / "train.json"
    return Bundle(folder=folder, backend=backend, classes=list(labels["classes"]),
                  multi_label=bool(labels["multi_label"]), thresholds=labels.get("thresholds"),
                  views=tuple(labels["views"]), channels=int(labels["channels"]), size=tuple(labels["size"]),
                  pipeline=Pipeline.load(folder / "pipeline.json"),
                  train=json.loads(train_path.read_text()) if train_path.is_file() else {}, device=device)
