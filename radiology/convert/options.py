"""How a conversion renders and writes: :class:`ConvertOptions` and :func:`render_pipeline`.

One description of how to render a DICOM, one validation: the render description is a
:class:`~radiology.pipeline.Pipeline` (its :class:`~radiology.pipeline.Decode` and its
steps), validated by the steps themselves. :class:`ConvertOptions` adds only the output
settings (format, bit depth, naming, encoder settings, source names).

:func:`render_pipeline` folds flat settings (a normalization name and its parameters, a
resize, a pad, decoding overrides) into a pipeline: the command line combines its flags
with a ``--pipeline`` file through it. The flat render fields ``ConvertOptions`` had
(``normalization=``, ``width=``, ``polarity=`` ...) are deprecated and folded by it too.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

from radiology.io import FORMATS
from radiology.pipeline import VOI, Decode, Histogram, MinMax, PadSquare, Percentile, Pipeline, Resize, Step

__all__ = ["ConvertOptions", "render_pipeline"]

# Names of the normalizing steps render_pipeline builds from ``normalization=``.
_NORMALIZATIONS = ("percentile", "histogram", "minmax", "voi")

_NORMALIZING = ("normalization", "low", "high", "n_bins", "bins", "voi_index")
_GEOMETRY = ("width", "longest", "pad_square")
_DECODE = tuple(f.name for f in fields(Decode))
_FLAT = _NORMALIZING + _GEOMETRY + _DECODE  # the render fields of ConvertOptions in 0.1 (deprecated)


def _normalization_step(normalization, low, high, n_bins, bins, voi_index) -> Step:
    """The normalizing step ``normalization`` names; parameters left ``None`` take the step's defaults."""
    name = normalization if normalization is not None else ("histogram" if bins is not None else "percentile")
    if name not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {name!r}")
    given = {key: value for key, value in (("low", low), ("high", high)) if value is not None}
    if name == "histogram":
        return Histogram(bins=bins, **({} if n_bins is None else {"n_bins": n_bins}))
    if name == "minmax":
        return MinMax()
    if name == "voi":
        return VOI(**given, **({} if voi_index is None else {"index": voi_index}))
    return Percentile(**given)


def render_pipeline(
    pipeline: Pipeline | None = None,
    *,
    normalization: str | None = None,
    low: float | None = None,
    high: float | None = None,
    n_bins: int | None = None,
    bins=None,
    voi_index: int | None = None,
    width: int | None = None,
    longest: int | None = None,
    pad_square: bool = False,
    **decode,
) -> Pipeline:
    """``pipeline`` with flat render settings folded in: the command line's flags, as one Pipeline.

    Decoding overrides replace fields of ``pipeline.decode``; the normalization is put first
    unless ``pipeline`` starts with its own normalizing step (which then wins, and the
    normalization arguments are not used); ``Resize`` and ``PadSquare`` are appended. Each
    value is validated by the step or :class:`~radiology.pipeline.Decode` it builds, so a bad
    value fails with that step's one-line message naming the parameter.

    Parameters
    ----------
    pipeline : radiology.pipeline.Pipeline, optional
        The steps and decoding to start from (default: ``Pipeline()``).
    normalization : {"percentile", "histogram", "minmax", "voi"}, optional
        The normalizing first step (:class:`~radiology.pipeline.Percentile`,
        :class:`~radiology.pipeline.Histogram`, :class:`~radiology.pipeline.MinMax`,
        :class:`~radiology.pipeline.VOI`). Default: ``"histogram"`` when ``bins`` is given,
        else ``"percentile"``, which a pipeline reading a DICOM implies and is not written.
    low, high : float, optional
        Percentiles of ``Percentile`` and of ``VOI``'s fallback.
    n_bins : int, optional
        ``Histogram(n_bins=...)``: equal-frequency bins per image when ``bins`` is not given.
    bins : sequence of float, optional
        ``Histogram(bins=...)``: bins fitted on the dataset
        (:func:`~radiology.convert.fit_histogram_bins`).
    voi_index : int, optional
        ``VOI(index=...)``: which header window.
    width, longest : int, optional
        Append ``Resize(width=...)`` or ``Resize(longest=...)``.
    pad_square : bool, optional
        Append ``PadSquare()``.
    **decode
        Fields of :class:`~radiology.pipeline.Decode` to override: ``frame``, ``bits``,
        ``modality_lut``, ``polarity``, ``color``, ``max_pixels`` (``None``: no limit).

    Returns
    -------
    radiology.pipeline.Pipeline

    Raises
    ------
    ValueError
        A value a step or ``Decode`` rejects, or an unknown ``normalization``.
    TypeError
        An argument that is no setting.

    Examples
    --------
    >>> render_pipeline(normalization="voi", width=256, pad_square=True)
    Pipeline([VOI(index=0, low=0.5, high=99.5), Resize(width=256, height=None, longest=None), \
PadSquare(value=0.0)])
    >>> from radiology.pipeline import CLAHE
    >>> render_pipeline(Pipeline([CLAHE()]), longest=64, color="keep").decode.color
    'keep'
    >>> render_pipeline() == Pipeline()
    True
    >>> render_pipeline(low=60, high=50)
    Traceback (most recent call last):
    ...
    ValueError: percentile: low must be < high, got low=60, high=50
    """
    if pipeline is None:
        pipeline = Pipeline()
    if not isinstance(pipeline, Pipeline):
        raise TypeError(f"pipeline must be a radiology.pipeline.Pipeline, got {type(pipeline).__name__}")
    unknown = sorted(set(decode) - set(_DECODE))
    if unknown:
        raise TypeError(f"render_pipeline() got an unexpected keyword argument {unknown[0]!r}")
    steps = list(pipeline.steps)
    if not pipeline.normalizes:
        first = _normalization_step(normalization, low, high, n_bins, bins, voi_index)
        if first != Percentile():  # the implied default: writing it would only change image files
            steps.insert(0, first)
    if width is not None or longest is not None:
        steps.append(Resize(width=width, longest=longest))
    if pad_square:
        steps.append(PadSquare())
    decoding = Decode(**{**{f: getattr(pipeline.decode, f) for f in _DECODE}, **decode})
    return Pipeline(steps, decoding)


def _flat_value(pipeline: Pipeline, name: str):
    """What the deprecated flat field ``name`` of :class:`ConvertOptions` reads from a pipeline."""
    if name in _DECODE:
        return getattr(pipeline.decode, name)
    if name in _GEOMETRY:
        resize = [step for step in pipeline.steps if isinstance(step, Resize)]
        if name == "pad_square":
            return bool(pipeline.steps) and isinstance(pipeline.steps[-1], PadSquare)
        return getattr(resize[-1], name) if resize else None
    first = pipeline.steps[0] if pipeline.normalizes else Percentile()
    defaults = {"normalization": first.name, "low": 0.5, "high": 99.5, "n_bins": 100, "bins": None, "voi_index": 0}
    own = {"voi_index": getattr(first, "index", 0)} if isinstance(first, VOI) else {}
    return own.get(name, getattr(first, name, defaults[name]))


@dataclass(frozen=True, init=False)
class ConvertOptions:
    """How a conversion renders (a Pipeline) and writes (output settings) each image.

    Parameters
    ----------
    pipeline : radiology.pipeline.Pipeline, optional
        THE render description: decoding (:class:`~radiology.pipeline.Decode`: frame,
        polarity, colour, ``max_pixels`` ...) and steps (normalization first, then any
        steps, resize, pad). Default ``Pipeline()``: percentile normalization, bone bright,
        original size. Build one from flat settings with :func:`render_pipeline`.
    fmt : {"png", "jpeg", "npy"}
        Output format (``"jpg"`` is read as ``"jpeg"``).
    bit_depth : {8, 16}
        PNG bit depth.
    naming : {"path", "uid"}
        Output named after the input's relative path, or its sanitized SOP Instance UID.
    png_compression, jpeg_quality : int
        Encoder settings (see :func:`radiology.io.encode_image`).
    source_names : {"relative", "hashed"}
        How inputs are named in the report's ``source`` column and in output paths:
        relative to SRC, or every path component replaced by its SHA-256 digest
        (:func:`radiology.dicom.metadata.hashed_name`), so folder names such as patient
        names reach no output.
    **render
        Deprecated: the flat render fields ``normalization``, ``low``, ``high``,
        ``n_bins``, ``bins``, ``voi_index``, ``width``, ``longest``, ``pad_square``,
        ``frame``, ``bits``, ``modality_lut``, ``polarity``, ``color``, ``max_pixels``.
        They still work for one release (a ``DeprecationWarning``), folded into
        ``pipeline`` by :func:`render_pipeline`; reading them as attributes works too.

    Examples
    --------
    >>> from radiology.pipeline import CLAHE
    >>> options = ConvertOptions(render_pipeline(Pipeline([CLAHE()]), width=256), fmt="jpg")
    >>> options.extension, [step.name for step in options.to_pipeline().steps]
    ('.jpg', ['clahe', 'resize'])
    >>> ConvertOptions(fmt="jpeg", bit_depth=16)
    Traceback (most recent call last):
    ...
    ValueError: JPEG output is 8-bit only; use PNG for 16-bit (bit_depth=8)
    """

    pipeline: Pipeline
    fmt: str = "png"
    bit_depth: int = 8
    naming: str = "path"
    png_compression: int = 1
    jpeg_quality: int = 95
    source_names: str = "relative"

    def __init__(self, pipeline: Pipeline | None = None, *, fmt: str = "png", bit_depth: int = 8,
                 naming: str = "path", png_compression: int = 1, jpeg_quality: int = 95,
                 source_names: str = "relative", **render) -> None:
        if isinstance(pipeline, str):  # the old first positional field
            render = {"normalization": pipeline, **render}
            pipeline = None
        unknown = sorted(set(render) - set(_FLAT))
        if unknown:
            raise TypeError(f"ConvertOptions() got an unexpected keyword argument {unknown[0]!r}")
        if render:
            given = ", ".join(f"{name}=..." for name in render)
            warnings.warn(
                f"ConvertOptions({given}) is deprecated and will be removed in the next release: the render "
                f"description is a Pipeline; pass ConvertOptions(render_pipeline(pipeline, {given}))",
                DeprecationWarning, stacklevel=2)
            pipeline = render_pipeline(pipeline, **render)
        elif pipeline is None:
            pipeline = Pipeline()
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"pipeline must be a radiology.pipeline.Pipeline, got {type(pipeline).__name__}")
        fmt = {"jpg": "jpeg"}.get(str(fmt).lower(), str(fmt).lower())
        if fmt not in FORMATS:
            raise ValueError(f"fmt must be one of {sorted(FORMATS)}, got {fmt!r}")
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        if fmt == "jpeg" and bit_depth == 16:
            raise ValueError("JPEG output is 8-bit only; use PNG for 16-bit (bit_depth=8)")
        if naming not in ("path", "uid"):
            raise ValueError(f"naming must be 'path' or 'uid', got {naming!r}")
        if source_names not in ("relative", "hashed"):
            raise ValueError(f"source_names must be 'relative' or 'hashed', got {source_names!r}")
        for name, value in (("pipeline", pipeline), ("fmt", fmt), ("bit_depth", bit_depth), ("naming", naming),
                            ("png_compression", png_compression), ("jpeg_quality", jpeg_quality),
                            ("source_names", source_names)):
            object.__setattr__(self, name, value)

    def __hash__(self) -> int:  # a Pipeline is not hashable; its JSON is
        return hash((self.pipeline.to_json(), self.fmt, self.bit_depth, self.naming, self.png_compression,
                     self.jpeg_quality, self.source_names))

    def __getattr__(self, name: str):
        # Only reached for names that are no field: the deprecated flat render fields.
        if name not in _FLAT:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(f"ConvertOptions.{name} is deprecated and will be removed in the next release: read it "
                      f"from ConvertOptions.pipeline (its decode and steps)", DeprecationWarning, stacklevel=2)
        return _flat_value(self.__dict__["pipeline"], name)

    @property
    def extension(self) -> str:
        """File extension of the outputs (``.png``, ``.jpg`` or ``.npy``)."""
        return FORMATS[self.fmt]

    @property
    def decode(self) -> Decode:
        """The pipeline's :class:`~radiology.pipeline.Decode`."""
        return self.pipeline.decode

    def normalization_step(self) -> Step:
        """Deprecated: the pipeline's normalizing first step (``Percentile()`` when implied)."""
        warnings.warn("ConvertOptions.normalization_step() is deprecated and will be removed in the next release: "
                      "read ConvertOptions.pipeline.steps[0]", DeprecationWarning, stacklevel=2)
        return self.pipeline.steps[0] if self.pipeline.normalizes else Percentile()

    def to_pipeline(self) -> Pipeline:
        """The :class:`~radiology.pipeline.Pipeline` every file is rendered with (``self.pipeline``).

        What :func:`~radiology.convert.render`, :func:`~radiology.convert.dicom_to_image`,
        :func:`~radiology.convert.convert_folder` and the command line run.

        Examples
        --------
        >>> ConvertOptions().to_pipeline() == Pipeline()
        True
        """
        return self.pipeline
