"""One file: a DICOM to a training-ready image (:func:`dicom_to_image`, :func:`render`).

Everything here runs one :class:`~radiology.pipeline.Pipeline`: a
:class:`~radiology.convert.ConvertOptions`' pipeline, a pipeline given directly, or one
built from flat keyword settings by :func:`~radiology.convert.render_pipeline`.
:func:`fit_histogram_bins` fits dataset-wide bins in the space that pipeline normalizes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

import numpy as np

from radiology.convert.options import ConvertOptions, render_pipeline
from radiology.dicom import DicomImage
from radiology.errors import RadiologyError
from radiology.files import is_image_file
from radiology.intensity import histogram_bins
from radiology.pipeline import Pipeline

__all__ = ["render", "dicom_to_image", "pipeline_input", "fit_histogram_bins"]

logger = logging.getLogger(__name__)


def _pipeline(options: ConvertOptions | Pipeline | None) -> Pipeline:
    """The pipeline ``options`` describe (``Pipeline()`` for ``None``)."""
    if options is None:
        return Pipeline()
    if isinstance(options, Pipeline):
        return options
    if isinstance(options, ConvertOptions):
        return options.pipeline
    raise TypeError(f"options must be ConvertOptions or a Pipeline, got {type(options).__name__}")


def render(image: DicomImage, options: ConvertOptions | Pipeline | None = None) -> np.ndarray:
    """Turn a decoded :class:`~radiology.dicom.DicomImage` into a training-ready image.

    Normalization (or VOI) → polarity → pipeline steps → resize → pad, as the pipeline of
    ``options`` says: ``options.to_pipeline().render(image)``.

    Parameters
    ----------
    image : DicomImage
        Decoded DICOM image (:func:`radiology.dicom.read_dicom`).
    options : ConvertOptions or Pipeline, optional
        The pipeline, or the options holding it; default ``Pipeline()``.

    Returns
    -------
    numpy.ndarray of float32 in [0, 1]
        Bone bright when the pipeline's ``decode.polarity``.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from radiology.dicom import read_dicom
    >>> out = render(read_dicom(get_testdata_file("CT_small.dcm")), render_pipeline(width=64))
    >>> out.shape, out.dtype
    ((64, 64), dtype('float32'))
    """
    return _pipeline(options).render(image)


def dicom_to_image(source, options: ConvertOptions | Pipeline | None = None, **settings) -> np.ndarray:
    """Read a DICOM file and return the normalized image (``float32``, ``[0, 1]``, bone bright).

    Parameters
    ----------
    source : path, bytes or binary file-like
        Any DICOM file :func:`radiology.dicom.read_dicom` accepts.
    options : ConvertOptions or Pipeline, optional
        Defaults to percentile normalization with polarity correction, original size.
    **settings
        Flat render settings folded into the pipeline by
        :func:`~radiology.convert.render_pipeline`, e.g. ``width=512``,
        ``normalization="voi"``, ``polarity=False``; ``pipeline=`` replaces the pipeline.

    Raises
    ------
    radiology.dicom.DicomError
        A typed, one-line reason when the file cannot be converted.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> image = dicom_to_image(get_testdata_file("MR_small.dcm"), normalization="histogram")
    >>> image.shape, float(image.min()), float(image.max())
    ((64, 64), 0.0, 1.0)
    """
    pipeline = _pipeline(options)
    if settings:
        pipeline = render_pipeline(settings.pop("pipeline", pipeline), **settings)
    return pipeline.render(pipeline.decode.read(source))  # DICOM only, whatever the file name


def pipeline_input(path: str | os.PathLike, options: ConvertOptions | Pipeline | None = None) -> np.ndarray:
    """The image the pipeline's steps start from, for one file.

    For DICOM: the polarity-corrected raw pixels when the pipeline starts with a normalizing
    step, else the image normalized by the implied ``Percentile()``. For PNG/JPEG/NPY/TIFF:
    the image in ``float32`` ``[0, 1]`` (RGB kept unless ``decode.color == "gray"``, then
    BT.601 luma). ``radiology preview`` shows every stage instead
    (:meth:`~radiology.pipeline.Pipeline.trace`).

    Parameters
    ----------
    path : str or os.PathLike
        DICOM or image file to read.
    options : ConvertOptions or Pipeline, optional
        The pipeline, or the options holding it; default ``Pipeline()``. Only its decoding settings
        and whether it starts with a normalizing step matter.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> pipeline_input(get_testdata_file("CT_small.dcm")).shape
    (128, 128)
    """
    pipeline = _pipeline(options)
    normalizer = Pipeline([], pipeline.decode)
    if is_image_file(path) or pipeline.normalizes:
        return normalizer.raw(path)
    return normalizer.read(path)


def fit_histogram_bins(
    sources: Iterable[str | os.PathLike],
    options: ConvertOptions | Pipeline | None = None,
    *,
    n_bins: int = 100,
    samples_per_image: int = 100_000,
    seed: int = 0,
) -> np.ndarray:
    """Fit equal-frequency histogram bins on a sample of a DICOM dataset.

    Pixels are taken in the same space a normalizing step receives (after the Modality LUT,
    polarity corrected: :meth:`Pipeline.raw <radiology.pipeline.Pipeline.raw>`), so the bins
    can be passed as ``Histogram(bins=...)`` or ``render_pipeline(bins=...)``. Unreadable
    files are skipped with a log message.

    Parameters
    ----------
    sources : iterable of path
        DICOM files to sample pixels from.
    options : ConvertOptions or Pipeline, optional
        Only its decoding settings matter.
    n_bins, samples_per_image, seed
        See :func:`radiology.intensity.histogram_bins`.

    Returns
    -------
    numpy.ndarray of float64
        Strictly increasing edges; save with :func:`radiology.intensity.save_histogram_bins`.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> bins = fit_histogram_bins([get_testdata_file("MR_small.dcm")], n_bins=10)
    >>> bool(np.all(np.diff(bins) > 0))
    True
    """
    pipeline = _pipeline(options)

    def pixels():
        for source in sources:
            try:
                yield pipeline.raw(source)
            except RadiologyError as error:
                logger.warning("skipped while fitting bins: %s", error)

    return histogram_bins(pixels(), n_bins, samples_per_image=samples_per_image, seed=seed)

