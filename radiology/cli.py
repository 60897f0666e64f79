"""``radiology`` command line: a thin shell over the library.

Exit codes: 0 when every input was handled, 1 when ``--strict`` and an input failed,
2 for usage errors (bad options, missing paths).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from radiology import __version__

__all__ = ["main", "build_parser"]

USAGE_ERROR = 2


def _workers(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = all cores)")
    return value or os.cpu_count() or 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("intensity")
    group.add_argument("--normalization", choices=("percentile", "histogram", "minmax", "voi"), default="percentile",
                       help="percentile clipping (default), equal-frequency histogram, min-max, or the header's VOI "
                            "window (percentile when absent)")
    group.add_argument("--low", type=float, default=0.5, help="low percentile (default 0.5)")
    group.add_argument("--high", type=float, default=99.5, help="high percentile (default 99.5)")
    group.add_argument("--n-bins", type=_positive, default=100, help="histogram bins per image (default 100)")
    group.add_argument("--histogram-bins", type=Path, metavar="FILE",
                       help="bins fitted with `radiology fit-bins`; implies --normalization histogram")
    group.add_argument("--voi-index", type=int, default=0, help="which header window to use with voi")
    group.add_argument("--no-modality-lut", action="store_true", help="ignore rescale slope/intercept and LUTs")
    group.add_argument("--no-polarity", action="store_true", help="keep MONOCHROME1 as stored (bone dark)")
    group.add_argument("--frame", type=int, default=0, help="frame of multi-frame files (default 0)")
    group.add_argument("--color", choices=("gray", "keep"), default="gray", help="colour images to gray or kept RGB")
    group.add_argument("--pipeline", type=Path, metavar="FILE",
                       help="preprocessing pipeline (JSON/YAML) applied after decoding")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``radiology`` command (documented in the CLI guide)."""
    parser = argparse.ArgumentParser(prog="radiology", description="DICOM radiographs to training-ready images.")
    parser.add_argument("--version", action="version", version=f"radiology {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser("convert", help="convert a folder or files of DICOMs to images")
    convert.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="folder (recursive) or files")
    convert.add_argument("dst", type=Path, metavar="DST", help="output folder")
    _add_render_options(convert)
    output = convert.add_argument_group("output")
    output.add_argument("--format", dest="fmt", choices=("png", "jpeg", "npy"), default="png")
    output.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    size = output.add_mutually_exclusive_group()
    size.add_argument("--width", type=_positive, help="aspect-preserving resize to this width")
    size.add_argument("--longest", type=_positive, help="aspect-preserving resize of the longest side")
    output.add_argument("--pad-square", action="store_true", help="pad to a square after resizing")
    output.add_argument("--naming", choices=("path", "uid"), default="path",
                        help="name outputs by relative path (default) or sanitized SOP Instance UID")
    output.add_argument("--png-compression", type=int, choices=range(10), default=1, metavar="0-9")
    run = convert.add_argument_group("run")
    run.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores; default 1)")
    run.add_argument("--skip-existing", action="store_true", help="resume: skip inputs whose output exists")
    run.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    run.add_argument("--glob", default="*", help="file-name pattern inside folders (default: every file)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    fit = commands.add_parser("fit-bins", help="fit equal-frequency histogram bins on a sample of a dataset")
    fit.add_argument("source", type=Path, metavar="SRC", help="folder of DICOMs")
    fit.add_argument("output", type=Path, metavar="BINS.json")
    fit.add_argument("--n-bins", type=_positive, default=100)
    fit.add_argument("--max-files", type=_positive, default=500, help="evenly spaced sample size (default 500)")
    fit.add_argument("--glob", default="*")

    preview = commands.add_parser("preview", help="contact sheet of each pipeline step on a few images")
    preview.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="folder or files (DICOM, PNG, JPEG)")
    preview.add_argument("output", type=Path, metavar="SHEET.png")
    _add_render_options(preview)
    preview.add_argument("-n", "--count", type=_positive, default=4, help="images shown (default 4)")
    preview.add_argument("--tile", type=_positive, default=192, help="tile size in pixels (default 192)")
    preview.add_argument("--glob", default="*")

    metadata = commands.add_parser("metadata", help="table of non-PHI header fields of a folder of DICOMs")
    metadata.add_argument("source", type=Path, metavar="SRC")
    metadata.add_argument("-o", "--output", type=Path, help="CSV file (default: print)")
    metadata.add_argument("--include-phi", action="store_true",
                          help="also write patient name, ID, birth date and accession number")

    demo = commands.add_parser("demo", help="offline demo: convert pydicom's test images and phantoms")
    demo.add_argument("out", type=Path, metavar="OUT")
    demo.add_argument("--workers", type=_workers, default=1)
    return parser


def _render_options(args: argparse.Namespace, **output):
    from radiology.convert import ConvertOptions
    from radiology.intensity import load_histogram_bins
    from radiology.pipeline import Pipeline

    bins = load_histogram_bins(args.histogram_bins) if args.histogram_bins else None
    return ConvertOptions(
        normalization="histogram" if bins is not None else args.normalization,
        low=args.low, high=args.high, n_bins=args.n_bins, bins=bins, voi_index=args.voi_index,
        modality_lut=not args.no_modality_lut, polarity=not args.no_polarity, frame=args.frame, color=args.color,
        pipeline=Pipeline.load(args.pipeline) if args.pipeline else None, **output,
    )


def _convert(args: argparse.Namespace) -> int:
    from radiology.convert import convert_folder

    options = _render_options(
        args, width=args.width, longest=args.longest, pad_square=args.pad_square, fmt=args.fmt,
        bit_depth=args.bit_depth, naming=args.naming, png_compression=args.png_compression,
    )
    source = args.sources[0] if len(args.sources) == 1 else args.sources
    report = convert_folder(source, args.dst, options, workers=args.workers, skip_existing=args.skip_existing,
                            pattern=args.glob, progress=not args.quiet)
    print(f"{report.summary} (report: {report.path})")
    return 1 if args.strict and report.count("failed") else 0


def _fit_bins(args: argparse.Namespace) -> int:
    from radiology.convert import fit_histogram_bins
    from radiology.dicom import find_files
    from radiology.intensity import save_histogram_bins

    files = find_files(args.source, args.glob)
    if not files:
        raise FileNotFoundError(f"{args.source}: no files")
    step = max(1, len(files) // args.max_files)
    bins = fit_histogram_bins(files[::step][: args.max_files], n_bins=args.n_bins)
    save_histogram_bins(args.output, bins)
    print(f"{len(bins)} bin edges from {min(len(files), args.max_files)} files written to {args.output}")
    return 0


def _preview(args: argparse.Namespace) -> int:
    from radiology.dicom import find_files
    from radiology.io import write_image
    from radiology.pipeline import Pipeline
    from radiology.preview import pipeline_preview

    options = _render_options(args)
    paths = []
    for source in args.sources:
        if source.is_dir():
            paths.extend(find_files(source, args.glob))
        elif source.exists():
            paths.append(source)
        else:
            raise FileNotFoundError(f"{source}: no such file or folder")
    if not paths:
        raise FileNotFoundError("no input files")
    step = max(1, len(paths) // args.count)
    chosen = paths[::step][: args.count]  # spread over the folder, not the first few
    pipeline = options.pipeline or Pipeline()
    write_image(args.output, pipeline_preview(chosen, pipeline, options, tile=args.tile))
    print(f"{len(chosen)} images x {len(pipeline.steps) + 1} columns written to {args.output}")
    return 0


def _metadata(args: argparse.Namespace) -> int:
    from radiology.dicom import metadata_table

    if not args.source.exists():
        raise FileNotFoundError(f"{args.source}: no such file or folder")
    table = metadata_table(args.source, include_phi=args.include_phi, progress=args.output is not None)
    if args.output is None:
        print(table.to_csv(index=False), end="")
    else:
        from radiology.io import atomic_write

        atomic_write(args.output, table.to_csv(index=False).encode())
        print(f"{len(table)} rows written to {args.output}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from radiology.demo import run_demo

    result = run_demo(args.out, workers=args.workers)
    print(f"{result.report.summary}")
    print(f"images: {result.images}\nreport: {result.report.path}\ncontact sheet: {result.contact_sheet}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:  # per-file decode failures go to the report, not to the terminal
        import pydicom  # noqa: F401 - pydicom sets its logger's level on import; set ours after

        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
    handlers = {"convert": _convert, "preview": _preview, "fit-bins": _fit_bins, "metadata": _metadata,
                "demo": _demo}
    try:
        return handlers[args.command](args)
    except (FileNotFoundError, NotADirectoryError, ValueError, TypeError) as error:
        print(f"radiology {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
