"""DICOM to training-ready images: one file (:func:`dicom_to_image`) or a whole folder
(:func:`convert_folder`, behind ``radiology convert``).

A folder conversion discovers files, converts them in worker processes, writes every output
atomically, never lets two inputs claim the same output, never stops on a bad file, and
records one row per input in ``DST/conversion_report.csv``.

The package's modules, as the data flows (everything public is importable from here):

- :mod:`radiology.convert.options`: :class:`ConvertOptions` (a Pipeline plus output
  settings) and :func:`render_pipeline` (flat settings folded into a Pipeline).
- :mod:`radiology.convert.rendering`: one file: :func:`render`, :func:`dicom_to_image`,
  :func:`pipeline_input`, :func:`fit_histogram_bins`.
- :mod:`radiology.convert.report`: :class:`ConversionReport`, :data:`REPORT_COLUMNS`,
  :func:`merge_reports`.
- :mod:`radiology.convert.workers`: work units, isolated worker processes, executors.
- :mod:`radiology.convert.sources`: which files a conversion reads, and what it passes over.
- :mod:`radiology.convert.stores`: local and fsspec destinations, output claims.
- :mod:`radiology.convert.folder`: :func:`convert_folder`, the orchestrator.

Output names (:func:`output_name`, :func:`sanitize_component`, :func:`display_name`) are
:mod:`radiology.naming`'s, re-exported here.
"""

from radiology.convert.folder import convert_folder
from radiology.convert.options import ConvertOptions, render_pipeline
from radiology.convert.rendering import dicom_to_image, fit_histogram_bins, pipeline_input, render
from radiology.convert.report import REPORT_COLUMNS, REPORT_NAME, ConversionReport, merge_reports
from radiology.naming import display_name, output_name, sanitize_component

__all__ = [
    "ConvertOptions",
    "render_pipeline",
    "render",
    "dicom_to_image",
    "pipeline_input",
    "fit_histogram_bins",
    "output_name",
    "sanitize_component",
    "display_name",
    "convert_folder",
    "merge_reports",
    "ConversionReport",
    "REPORT_COLUMNS",
    "REPORT_NAME",
]
