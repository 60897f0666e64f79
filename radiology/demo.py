"""The offline demo: the whole path from DICOM to a trained, evaluated model, no download.

1. Conversion: the image files shipped inside the pydicom wheel (CR MONOCHROME1, CT, MR,
   US, JPEG, JPEG-LS, JPEG 2000, RLE, big endian, colour, palette, multi-frame, and broken
   files) plus synthetic chest phantoms written in several encodings, bit depths and
   polarities → images, the conversion report and a before/after contact sheet.
2. Model (needs the ``models`` extra): *synthetic* chest phantoms with and without a
   nodule, as DICOMs in mixed encodings and polarities → preprocessing → a small model
   trained for a few minutes on the CPU → predictions on phantoms it never saw → metrics,
   report, confusion matrix and ROC curve → Grad-CAM overlays of the nodule evidence on test
   phantoms (:mod:`radiology.explain`). The data are synthetic, and every output says so.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radiology.convert import ConversionReport, ConvertOptions, convert_folder
from radiology.dicom import DicomError, read_dataset, read_dicom
from radiology.dicom.read import PIXEL_DATA_KEYWORDS
from radiology.intensity import minmax_scale
from radiology.io import read_image, write_image
from radiology.preview import contact_sheet
from radiology.synthetic import phantom_radiograph, write_phantom_dicom

__all__ = ["DemoResult", "ModelDemoResult", "run_demo", "run_model_demo", "explain_demo", "pydicom_test_files",
           "PHANTOMS", "DEMO_TRAIN", "DEMO_TEST", "DEMO_EXPLAINED", "DEMO_ARCH", "DEMO_LAYER"]

logger = logging.getLogger(__name__)

#: The phantom files of the demo: name → keyword arguments of :func:`radiology.synthetic.phantom_dicom`.
PHANTOMS = {
    "chest_mono1_12bit_explicit": dict(photometric="MONOCHROME1", bits_stored=12, encoding="explicit"),
    "chest_mono2_16bit_rle": dict(photometric="MONOCHROME2", bits_stored=16, encoding="rle"),
    "chest_mono1_14bit_j2k_rescaled": dict(photometric="MONOCHROME1", bits_stored=14, encoding="jpeg2000",
                                           rescale=(0.5, -1024.0)),
    "chest_mono2_10bit_jpegls_window": dict(photometric="MONOCHROME2", bits_stored=10, encoding="jpegls",
                                            window=(300.0, 200.0)),
    "chest_mono1_12bit_deflated": dict(photometric="MONOCHROME1", bits_stored=12, encoding="deflated"),
    "chest_mono2_8bit_implicit": dict(photometric="MONOCHROME2", bits_stored=8, encoding="implicit"),
}
_SHOWCASE = ("CT_small.dcm", "MR_small.dcm", "examples_palette.dcm", "JPEG2000.dcm")


@dataclass
class DemoResult:
    """Paths and report of :func:`run_demo`.

    Parameters
    ----------
    report : ConversionReport
        The conversion report of the phantom DICOMs.
    images : pathlib.Path
        Folder of the converted images.
    contact_sheet : pathlib.Path
        PNG with one row per shown phantom: its stored values beside the converted image.
    """

    report: ConversionReport
    images: Path
    contact_sheet: Path


def pydicom_test_files() -> list[Path]:
    """Every file in the ``test_files`` folder shipped inside the pydicom wheel, sorted.

    Walks the installed folder directly: pydicom's own lookup helpers may try to
    download its extended test data, which fails offline.

    Examples
    --------
    >>> any(p.name == "CT_small.dcm" for p in pydicom_test_files())
    True
    """
    return sorted(p for p in _pydicom_test_root().rglob("*") if p.is_file())


def _pydicom_test_root() -> Path:
    import pydicom.data

    return Path(pydicom.data.__file__).parent / "test_files"


def _copy_pydicom_images(target: Path) -> list[Path]:
    copied = []
    root = _pydicom_test_root()
    for source in pydicom_test_files():
        try:
            has_pixels = any(k in read_dataset(source) for k in PIXEL_DATA_KEYWORDS)
        except DicomError:
            continue
        if has_pixels:
            destination = target / source.relative_to(root)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
            copied.append(destination)
    return copied


def run_demo(
    out: str | os.PathLike, *, workers: int = 1, options: ConvertOptions | None = None, progress: bool = True
) -> DemoResult:
    """Build the demo inputs in ``out/inputs``, convert them to ``out/images``, draw the sheet.

    Parameters
    ----------
    out : path
        Output folder (created; existing demo files are replaced).
    workers : int, optional
        Conversion processes.
    options : ConvertOptions, optional
        Conversion settings (defaults: percentile normalization, 8-bit PNG).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    DemoResult
        ``out/images/conversion_report.csv`` and ``out/contact_sheet.png`` (raw stored
        values vs converted output, MONOCHROME1 files included).

    Examples
    --------
    >>> import tempfile
    >>> result = run_demo(tempfile.mkdtemp(), progress=False)  # doctest: +SKIP
    >>> result.report.summary  # doctest: +SKIP
    '102 converted, 5 failed, 0 skipped'
    """
    out = Path(out)
    inputs, images = out / "inputs", out / "images"
    shutil.rmtree(inputs, ignore_errors=True)
    pydicom_files = _copy_pydicom_images(inputs / "pydicom")
    phantom = phantom_radiograph((512, 448), seed=7)
    phantom_files = [
        write_phantom_dicom(inputs / "phantoms" / f"{name}.dcm", phantom, **kwargs)
        for name, kwargs in PHANTOMS.items()
    ]
    logger.info("demo inputs: %d pydicom files, %d phantoms", len(pydicom_files), len(phantom_files))
    report = convert_folder(inputs, images, options, workers=workers, progress=progress)

    shown = phantom_files + [p for p in pydicom_files if _is_monochrome1(p) or p.name in _SHOWCASE]
    rows = []
    converted = report.table.set_index("source")
    for path in shown:
        label = os.path.relpath(path, inputs)
        if label not in converted.index or converted.loc[label, "status"] != "ok":
            continue
        raw = read_dicom(path, modality_lut=False).pixels
        after = read_image(images / converted.loc[label, "output"])
        title = f"{label} ({converted.loc[label, 'photometric']}, {converted.loc[label, 'transfer_syntax']})"
        rows.append((title, [minmax_scale(raw.astype(np.float32)), after]))
    sheet = write_image(out / "contact_sheet.png",
                        contact_sheet(rows, ("stored values (min-max)", "radiology convert"), tile=224))
    return DemoResult(report=report, images=images, contact_sheet=sheet)


def _is_monochrome1(path: Path) -> bool:
    try:
        return read_dataset(path, stop_before_pixels=True).get("PhotometricInterpretation") == "MONOCHROME1"
    except DicomError:
        return False



#: Size of the demo's synthetic lesion task: training (with validation) and test phantoms.
DEMO_TRAIN, DEMO_TEST = 240, 80
#: Test phantoms the demo explains with Grad-CAM (the first ones of the test table).
DEMO_EXPLAINED = 12
#: The demo model's backbone and the layer its maps come from: ``blocks.4`` of an EfficientNet has a
#: stride of 16, 8 × 8 cells at the demo's 128 px (the last layer, stride 32, gives 4 × 4: too coarse
#: for a nodule a few pixels wide).
DEMO_ARCH, DEMO_LAYER = "tf_efficientnet_lite0", "blocks.4"


@dataclass
class ModelDemoResult:
    """Paths and numbers of :func:`run_model_demo`.

    Parameters
    ----------
    bundle : pathlib.Path
        The trained model bundle (``out/bundle``).
    predictions : pathlib.Path
        Predictions of the test phantoms (``out/predictions.csv``).
    evaluation : pathlib.Path
        Folder of the evaluation outputs (``out/evaluation``).
    metrics : dict
        Metrics of the test phantoms, as returned by
        :func:`radiology.evaluate.evaluate_predictions`.
    explanations : pathlib.Path, optional
        The Grad-CAM table ``explanations.csv``.
    """

    bundle: Path
    predictions: Path
    evaluation: Path
    metrics: dict
    explanations: Path | None = None


def run_model_demo(out: str | os.PathLike, *, progress: bool = True, epochs: int = 2,
                   train_count: int = DEMO_TRAIN, test_count: int = DEMO_TEST) -> ModelDemoResult:
    """Train, predict, evaluate and explain a nodule-vs-normal model on synthetic DICOM phantoms.

    Writes ``out/data`` (phantom DICOMs + ``labels.csv``; every row is synthetic),
    ``out/bundle`` (:func:`radiology.train.train` with a 128-px input, CPU-sized),
    ``out/predictions.csv`` for the unseen test phantoms, ``out/evaluation``
    (metrics, report, confusion matrix, ROC curve) and ``out/explanations``: Grad-CAM
    overlays of the ``nodule`` output (layer :data:`DEMO_LAYER`) on the first
    :data:`DEMO_EXPLAINED` test phantoms, in their original pixels, with ``explanations.csv``
    (:func:`radiology.explain.explain_inputs`). Needs the ``models`` extra.

    Parameters
    ----------
    out : str or os.PathLike
        Output folder; its ``data`` and ``explanations`` subfolders are replaced.
    progress : bool
        Show progress bars while training, predicting and explaining.
    epochs : int
        Fine-tuning epochs of the demo model (after 10 head-only epochs).
    train_count : int
        Number of training phantoms.
    test_count : int
        Number of test phantoms.

    Returns
    -------
    ModelDemoResult
        ``metrics`` are those of the *test* phantoms.
    """
    from radiology.evaluate import evaluate_predictions
    from radiology.models import load_bundle
    from radiology.predict import predict_table, prediction_inputs
    from radiology.synthetic import write_findings_dataset
    from radiology.train import TrainConfig, train

    out = Path(out)
    data = out / "data"
    shutil.rmtree(data, ignore_errors=True)
    train_csv = write_findings_dataset(data / "train", train_count, findings=("nodule",), seed=1)
    test_csv = write_findings_dataset(data / "test", test_count, findings=("nodule",), seed=2)
    config = TrainConfig(csv=train_csv, image_cols="file", label_cols="label", group_col="patient",
                         out=out / "bundle", arch=DEMO_ARCH, size=128, epochs=epochs, head_epochs=10, batch_size=32,
                         cache=out / "cache", overwrite=True)
    result = train(config, progress=progress)
    bundle = load_bundle(result.bundle)
    table = predict_table(bundle, prediction_inputs(test_csv, image_cols="file"), progress=progress)
    predictions = out / "predictions.csv"
    table.to_csv(predictions, index=False)
    evaluation = out / "evaluation"
    metrics = evaluate_predictions(table, test_csv, image_cols="file", label_cols="label", out=evaluation)
    shutil.rmtree(out / "explanations", ignore_errors=True)  # no overlays left from an earlier run
    explanations = explain_demo(bundle, test_csv, out / "explanations", count=min(DEMO_EXPLAINED, test_count),
                                target_layer=DEMO_LAYER, progress=progress)
    (out / "README.txt").write_text(
        "radiology demo: every image under data/ is a SYNTHETIC phantom (radiology.synthetic),\n"
        "not a patient. The model in bundle/ detects a drawn nodule; its numbers say nothing\n"
        "about real radiographs. explanations/ shows where its nodule evidence lies (Grad-CAM).\n")
    return ModelDemoResult(bundle=result.bundle, predictions=predictions, evaluation=evaluation, metrics=metrics,
                           explanations=explanations)


def explain_demo(bundle, test_csv: str | os.PathLike, out: str | os.PathLike, *, count: int = DEMO_EXPLAINED,
                 method: str = "gradcam", target_layer: str | None = None, progress: bool = True) -> Path:
    """Grad-CAM overlays of the demo model's ``nodule`` output on the first test phantoms.

    Parameters
    ----------
    bundle : radiology.models.Bundle or path
        The demo's bundle (a single-label model with a ``nodule`` class).
    test_csv : path
        The test ``labels.csv`` of :func:`radiology.synthetic.write_findings_dataset` (column ``file``).
    out : path
        Output folder: one overlay PNG per phantom and ``explanations.csv``.
    count : int, optional
        Phantoms explained, from the top of the table.
    method : str, optional
        See :data:`radiology.explain.METHODS`.
    target_layer : str, optional
        See :func:`radiology.explain.find_target_layer` (:func:`run_model_demo` passes
        :data:`DEMO_LAYER`).
    progress : bool, optional
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        ``out/explanations.csv``.
    """
    from radiology.explain import explain_inputs
    from radiology.predict import PredictionInputs, prediction_inputs

    if int(count) < 1:
        raise ValueError(f"count must be positive, got {count}")
    inputs = prediction_inputs(test_csv, image_cols="file", progress=False)
    first = PredictionInputs(inputs.ids[:count], inputs.sources[:count], inputs.errors[:count])
    explain_inputs(bundle, first, out, method=method, label="nodule", target_layer=target_layer, progress=progress)
    return Path(out) / "explanations.csv"
