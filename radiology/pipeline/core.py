"""The :class:`Pipeline`: decoding plus steps, applied to files and serialized as JSON or YAML (no torch).

:meth:`Pipeline.read` is THE entry point of conversion, training and inference: a DICOM or
image file in, the model's input out (optionally with the matrix mapping its pixels back
to the original). :meth:`Pipeline.trace` shows every stage, :meth:`Pipeline.raw` what the
first step receives. :meth:`Pipeline.save` / :meth:`Pipeline.load` write and read the
versioned file format (:data:`FORMAT`, :data:`VERSION`), resolving the files steps refer to.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from radiology.dicom import DicomError, DicomImage
from radiology.errors import one_line
from radiology.files import is_image_file
from radiology.intensity import to_gray
from radiology.io import atomic_write, read_image
from radiology.pipeline.decode import Decode
from radiology.pipeline.geometry_steps import (
    CircleCrop,
    CleanBackground,
    FOVCrop,
    FundusCrop,
    KneeCrop,
    PadSquare,
    Resize,
)
from radiology.pipeline.steps import (
    CLAHE,
    VOI,
    Enhance,
    Histogram,
    MinMax,
    Percentile,
    Step,
    _display_ordered,
)
from radiology.pipeline.validation import PipelineError

__all__ = ["Pipeline", "STEPS", "FORMAT", "VERSION"]

#: The ``format`` every pipeline file declares.
FORMAT = "radiology.pipeline"
#: Version written by :meth:`Pipeline.to_dict`; :meth:`Pipeline.from_dict` also reads version 1.
VERSION = 2

#: Step classes by name.
STEPS: dict[str, type[Step]] = {
    cls.name: cls
    for cls in (Percentile, Histogram, MinMax, VOI, CLAHE, Enhance, Resize, PadSquare, FOVCrop, CircleCrop,
                FundusCrop, CleanBackground, KneeCrop)
}


def _is_image_file(source) -> bool:
    # A path whose suffix marks an image file (radiology.files' one rule); anything else is a DICOM.
    return isinstance(source, (str, os.PathLike)) and is_image_file(source)


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, DicomImage):
        return source.source
    return str(getattr(source, "name", "<bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else "<stream>"))


def _compose(step: np.ndarray | None, before: np.ndarray | None) -> np.ndarray | None:
    # Matrix from the input to after `step`; unknown once any step's geometry is unknown.
    return None if step is None or before is None else step @ before


class Pipeline:
    """Decoding plus an ordered, serializable sequence of :class:`Step`.

    Parameters
    ----------
    steps : sequence of Step
        A normalizing step (``percentile``, ``histogram``, ``minmax``, ``voi``) may only come first.
    decode : Decode, optional
        How DICOMs are decoded (default ``Decode()``).

    Examples
    --------
    >>> pipe = Pipeline([Percentile(1, 99), CLAHE(clip_limit=3.0), Resize(width=32)])
    >>> out = pipe(np.random.default_rng(0).integers(0, 4096, (64, 48)).astype(np.uint16))
    >>> out.shape, out.dtype
    ((43, 32), dtype('float32'))
    >>> Pipeline.from_json(pipe.to_json()) == pipe
    True

    Reading a file (DICOM or image) is :meth:`read`:

    >>> from pydicom.data import get_testdata_file
    >>> Pipeline([Resize(width=32)]).read(get_testdata_file("CT_small.dcm")).shape
    (32, 32)
    """

    def __init__(self, steps: Sequence[Step] = (), decode: Decode | None = None):
        steps = tuple(steps)
        for index, step in enumerate(steps):
            if not isinstance(step, Step):
                raise TypeError(f"step {index} is not a pipeline Step: {step!r}")
            if step.normalizes and index > 0:
                raise ValueError(f"normalizing step {step.name!r} must come first (it is step {index})")
        decode = Decode() if decode is None else decode
        if not isinstance(decode, Decode):
            raise TypeError(f"decode must be a Decode, got {decode!r}")
        self.steps = steps
        self.decode = decode

    @property
    def normalizes(self) -> bool:
        """True when the first step maps raw pixel values into ``[0, 1]``."""
        return bool(self.steps) and self.steps[0].normalizes

    # ----------------------------------------------------------------- applying

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Apply every step in order to an array (no decoding, no implied normalization)."""
        for step in self.steps:
            image = step(image)
        return image

    def read(self, source, *, with_geometry: bool = False):
        """Read one file into the model's input: THE entry point of conversion, training and inference.

        Parameters
        ----------
        source : path, bytes or binary file-like
            A DICOM file, or an image file (:data:`radiology.files.IMAGE_SUFFIXES`: PNG, JPEG,
            NPY, TIFF, BMP; recognized by a path's extension).
        with_geometry : bool, optional
            Also return the 3×3 matrix mapping pixel ``(x, y, 1)`` of the original image
            (the decoded file) to the same point of the returned image: the composition of
            what every resize, pad and crop step did to *this* input (data-dependent crops
            report their actual box). See :mod:`radiology.geometry.affine`.

        Returns
        -------
        numpy.ndarray of float32 in [0, 1]
            ``(H, W)``, or ``(H, W, 3)`` with ``decode.color == "keep"`` and colour input.
        numpy.ndarray of float64, shape (3, 3)
            With ``with_geometry=True`` only: ``(image, matrix)``.

        Notes
        -----
        A DICOM is decoded with :attr:`decode`, polarity-ordered (bone = high values), then
        normalized by the first step if it normalizes, else by an implied ``Percentile()``,
        then the other steps run. An image file is read into ``[0, 1]``, turned gray with
        :func:`radiology.intensity.to_gray` unless ``decode.color == "keep"``, and then
        *all* steps run (a normalizing first step applies to it too).

        Raises
        ------
        radiology.dicom.DicomError
            The DICOM cannot be decoded (one line naming the file).
        PipelineError
            An image file cannot be read, or a step fails on this file (names the file and step),
            or (``with_geometry``) a step changes the image size without reporting how.

        Examples
        --------
        >>> from pydicom.data import get_testdata_file
        >>> from radiology.geometry import map_points
        >>> pipe = Pipeline([Resize(longest=32), PadSquare()])
        >>> image, matrix = pipe.read(get_testdata_file("JPEG2000.dcm"), with_geometry=True)  # 1024 x 256
        >>> image.shape, map_points(matrix, [(-0.5, -0.5), (255.5, 1023.5)]).tolist()
        ((32, 32), [[11.5, -0.5], [19.5, 31.5]])
        """
        stages = self._run(source)
        if not with_geometry:
            return stages[-1][1]
        return stages[-1][1], self._known(stages, source)

    def render(self, image: DicomImage) -> np.ndarray:
        """The DICOM half of :meth:`read`, on an already decoded image (decode settings other than
        ``polarity`` were applied when it was decoded).

        Parameters
        ----------
        image : DicomImage
            A DICOM decoded by :meth:`Decode.read <radiology.pipeline.Decode.read>` (or
            :func:`radiology.dicom.read_dicom`).
        """
        if not isinstance(image, DicomImage):
            raise TypeError(f"render takes a radiology.dicom.DicomImage, got {type(image).__name__}")
        return self._run(image)[-1][1]

    @staticmethod
    def _known(stages, source) -> np.ndarray:
        # Name the step that lost the geometry, not the last one.
        for name, _, matrix in stages:
            if matrix is None:
                raise PipelineError(f"{_source_name(source)}: step {name!r} changes the image size without "
                                    f"reporting its geometry (define apply_with_geometry)")
        return stages[-1][2]

    def raw(self, source) -> np.ndarray:
        """What the first step receives for a file: polarity-ordered decoded DICOM pixels (native
        dtype, not normalized), or an image file in ``[0, 1]`` (gray unless ``decode.color == "keep"``).

        Use it to fit :class:`Histogram` bins in the space the step will see.

        Parameters
        ----------
        source : path, bytes or binary file-like
            A DICOM file or an image file, as for :meth:`read`.
        """
        if isinstance(source, DicomImage):
            return _display_ordered(source, self.decode.polarity)
        if _is_image_file(source):
            return self._image_file(source)
        return _display_ordered(self.decode.read(source), self.decode.polarity)

    def trace(self, source, *, with_geometry: bool = False) -> list[tuple]:
        """Every stage of processing one input, as ``(name, image)`` pairs, ``("input", ...)`` first.

        ``source`` is an array (the steps are applied to it as is), a decoded
        :class:`~radiology.dicom.DicomImage`, or a file as in :meth:`read` (then ``input``
        is :meth:`raw` and an implied ``percentile`` stage appears for DICOMs when the
        pipeline does not normalize). The last image is what :meth:`read` returns.

        With ``with_geometry=True`` the stages are ``(name, image, matrix)`` triples: ``matrix``
        maps pixels of the input to that stage's image (the identity until a step resizes,
        pads or crops; ``None`` from a step whose geometry is unknown on).

        Parameters
        ----------
        source : numpy.ndarray, DicomImage, path, bytes or binary file-like
            The input to process, as described above.
        with_geometry : bool
            Return ``(name, image, matrix)`` triples instead of pairs.

        Examples
        --------
        >>> stages = Pipeline([MinMax(), Resize(width=4)]).trace(np.zeros((4, 8)), with_geometry=True)
        >>> [(name, image.shape, matrix[0, 0]) for name, image, matrix in stages]
        [('input', (4, 8), np.float64(1.0)), ('minmax', (4, 8), np.float64(1.0)), ('resize', (2, 4), np.float64(0.5))]
        """
        if isinstance(source, np.ndarray):
            stages = [("input", source, np.eye(3))]
            for step in self.steps:
                source, matrix = step.apply_with_geometry(source)
                stages.append((step.name, source, _compose(matrix, stages[-1][2])))
        else:
            stages = self._run(source)
        return stages if with_geometry else [(name, image) for name, image, _ in stages]

    def _image_file(self, path) -> np.ndarray:
        try:
            image = read_image(path)
        except FileNotFoundError:
            raise
        except (ValueError, OSError) as error:
            text = one_line(error)
            raise PipelineError(text if text.startswith(os.fspath(path)) else f"{path}: {text}") from error
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise PipelineError(f"{path}: expected a gray or RGB image, got shape {image.shape}")
        if image.ndim == 3 and self.decode.color == "gray":
            image = to_gray(image)
        return image

    def _run(self, source) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        # (name, image, matrix from the input's pixels to this image's) per stage.
        name = _source_name(source)
        steps: list[Step] = list(self.steps)
        if _is_image_file(source):
            out = self._image_file(source)
            stages = [("input", out, np.eye(3))]
        else:
            image = source if isinstance(source, DicomImage) else self.decode.read(source)
            pixels = image.pixels
            if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
                raise PipelineError(f"{name}: expected one gray or RGB frame, got pixels of shape {pixels.shape}")
            first = steps.pop(0) if self.normalizes else Percentile()  # raw values never leak
            raw = _display_ordered(image, self.decode.polarity)
            try:
                out = first.render(image, self.decode.polarity) if isinstance(first, VOI) else first(raw)
            except (DicomError, PipelineError):
                raise
            except (ValueError, TypeError) as error:
                raise PipelineError(f"{name}: {first.name}: {one_line(error)}") from error
            geometry = np.eye(3) if out.shape[:2] == raw.shape[:2] else None
            stages = [("input", raw, np.eye(3)), (first.name, out, geometry)]
        for step in steps:
            try:
                out, matrix = step.apply_with_geometry(out)
            except (ValueError, TypeError) as error:
                raise PipelineError(f"{name}: {step.name}: {one_line(error)}") from error
            stages.append((step.name, out, _compose(matrix, stages[-1][2])))
        return stages

    # ----------------------------------------------------------------- comparing

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.steps == other.steps and self.decode == other.decode

    __hash__ = None  # mutable attributes; compare, do not hash

    def __repr__(self) -> str:
        decode = "" if self.decode == Decode() else f", decode={self.decode!r}"
        return f"Pipeline({list(self.steps)!r}{decode})"

    # ----------------------------------------------------------------- files

    def files(self) -> list[Path]:
        """Files the steps refer to (e.g. :class:`KneeCrop` weights), in step order, without repeats."""
        found: list[Path] = []
        for step in self.steps:
            for param in step.file_params:
                value = getattr(step, param)
                if value and Path(value) not in found:
                    found.append(Path(value))
        return found

    def _with_files(self, mapping) -> Pipeline:
        steps = []
        for step in self.steps:
            changes = {p: mapping(getattr(step, p)) for p in step.file_params if getattr(step, p)}
            steps.append(replace(step, **changes) if changes else step)
        return Pipeline(steps, self.decode)

    # ----------------------------------------------------------------- serialization

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (what JSON/YAML files hold), format version 2."""
        return {"format": FORMAT, "version": VERSION, "decode": self.decode.params(),
                "steps": [{"name": step.name, **step.params()} for step in self.steps]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: str | os.PathLike | None = None) -> Pipeline:
        """Rebuild from :meth:`to_dict` output (version 1 or 2); unknown steps or parameters are errors.

        Parameters
        ----------
        data : dict
            The pipeline as a mapping: ``format``, ``version``, ``decode`` and the list of ``steps``.
        root : path, optional
            Folder that relative file references (e.g. ``knee_crop.weights``) are relative to;
            :meth:`load` passes the pipeline file's folder.

        Raises
        ------
        ValueError
            One line naming the step (``step 2 (clahe): clip_limit must be > 0, got 0``).

        Examples
        --------
        >>> Pipeline.from_dict({"format": "radiology.pipeline", "version": 1, "steps": [{"name": "minmax"}]})
        Pipeline([MinMax()])
        >>> Pipeline.from_dict({"format": "radiology.pipeline", "version": 2,
        ...                     "steps": [{"name": "clahe", "clip_limit": 0}]})
        Traceback (most recent call last):
        ...
        ValueError: step 0 (clahe): clip_limit must be > 0, got 0
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a radiology pipeline (expected format {FORMAT!r})")
        version = data.get("version")
        if version not in (1, VERSION):
            raise ValueError(f"unsupported pipeline version {version!r} (this radiology reads 1 and {VERSION})")
        allowed = {"format", "version", "steps"} | ({"decode"} if version >= 2 else set())
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)} in a version {version} pipeline")
        decode_spec = data.get("decode") or {}
        if not isinstance(decode_spec, dict):
            raise ValueError(f"decode must be a mapping, got {decode_spec!r}")
        known = {f.name for f in fields(Decode)}
        if set(decode_spec) - known:
            raise ValueError(f"decode: unknown parameters {sorted(set(decode_spec) - known)}")
        decode = Decode(**decode_spec)
        specs = data.get("steps", [])
        if not isinstance(specs, list):
            raise ValueError(f"steps must be a list, got {type(specs).__name__}")
        steps = []
        for index, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise ValueError(f"step {index}: expected a mapping with a name, got {spec!r}")
            spec = dict(spec)
            name = spec.pop("name", None)
            if name not in STEPS:
                raise ValueError(f"step {index}: unknown step {name!r}; known: {sorted(STEPS)}")
            step_cls = STEPS[name]
            unknown = set(spec) - {f.name for f in fields(step_cls)}
            if unknown:
                raise ValueError(f"step {index} ({name}): unknown parameters {sorted(unknown)}")
            if root is not None:
                for param in step_cls.file_params:
                    value = spec.get(param)
                    if isinstance(value, str) and value and not os.path.isabs(value):
                        spec[param] = os.fspath(Path(root) / value)
            try:
                steps.append(step_cls(**spec))
            except (ValueError, TypeError) as error:
                text = one_line(error)
                text = text[len(name) + 2:] if text.startswith(f"{name}: ") else text
                raise ValueError(f"step {index} ({name}): {text}") from error
        try:
            return cls(steps, decode)
        except (ValueError, TypeError) as error:
            raise ValueError(one_line(error)) from error

    def to_json(self) -> str:
        """JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str, root: str | os.PathLike | None = None) -> Pipeline:
        """Parse JSON text (``root`` as in :meth:`from_dict`).

        Parameters
        ----------
        text : str
            JSON text of :meth:`to_dict` output.
        root : path, optional
            Folder that relative file references are relative to.
        """
        return cls.from_dict(json.loads(text), root)

    def save(self, path: str | os.PathLike, copy_files: bool = False) -> Path:
        """Write JSON, or YAML when the extension is ``.yaml``/``.yml``.

        Parameters
        ----------
        path : path
            Pipeline file to write; its extension picks the format.
        copy_files : bool, optional
            Copy the files the steps refer to (:meth:`files`) next to the pipeline file and
            refer to them by name, so the folder can be moved or shipped as a whole (a model
            bundle does this). Otherwise references are written relative to the pipeline's
            folder when the file lies inside it, else as absolute paths.

        Returns
        -------
        pathlib.Path
            ``path``.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> pipe = Pipeline([VOI(), CLAHE()], Decode(color="keep"))
        >>> Pipeline.load(pipe.save(folder / "pipeline.yaml")) == pipe
        True
        """
        path = Path(path)
        folder = path.parent.absolute()
        if copy_files:
            names: dict[Path, str] = {}

            def mapping(value: str) -> str:
                source = Path(value)
                if not source.is_file():
                    raise FileNotFoundError(f"{source}: file referenced by the pipeline not found")
                key = source.resolve()
                if key not in names:
                    name, n = source.name, 1
                    while name in names.values():  # two different files with one name
                        name, n = f"{source.stem}-{n}{source.suffix}", n + 1
                    names[key] = name
                    target = folder / name
                    if not target.exists() or target.resolve() != key:
                        folder.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(source, target)
                return names[key]
        else:

            def mapping(value: str) -> str:
                absolute = Path(value).absolute()
                try:
                    return absolute.relative_to(folder).as_posix()
                except ValueError:
                    return os.fspath(absolute)

        data = self._with_files(mapping).to_dict()
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(data, sort_keys=False)
        else:
            text = json.dumps(data, indent=2)
        return atomic_write(path, text.encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Pipeline:
        """Read a JSON or YAML pipeline file; relative file references resolve against its folder.

        Parameters
        ----------
        path : str or os.PathLike
            JSON or YAML (``.yaml``/``.yml``) pipeline file.

        Raises
        ------
        FileNotFoundError
            No such file.
        PipelineError
            One line naming the file and what is wrong (``p.json: step 1 (clahe): clip_limit must be > 0, got 0``).
        """
        path = Path(path)
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                try:
                    data = yaml.safe_load(text)
                except yaml.YAMLError as error:
                    raise ValueError(f"not valid YAML: {one_line(error)}") from error
            else:
                try:
                    data = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(f"not valid JSON: {error}") from error
            return cls.from_dict(data, root=path.parent)
        except (ValueError, TypeError) as error:
            raise PipelineError(f"{path}: {one_line(error)}") from error
