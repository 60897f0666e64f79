"""``radiology convert``, ``report merge``, ``fit-bins``, ``preview`` and ``metadata``: DICOM to images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from radiology.cli.common import max_pixels, positive, shard, workers


def _add_render_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("intensity")
    group.add_argument("--normalization", choices=("percentile", "histogram", "minmax", "voi"), default="percentile",
                       help="percentile clipping (default), equal-frequency histogram, min-max, or the header's VOI "
                            "window (percentile when absent)")
    group.add_argument("--low", type=float, default=0.5, help="low percentile (default 0.5)")
    group.add_argument("--high", type=float, default=99.5, help="high percentile (default 99.5)")
    group.add_argument("--n-bins", type=positive, default=100, help="histogram bins per image (default 100)")
    group.add_argument("--histogram-bins", type=Path, metavar="FILE",
                       help="bins fitted with `radiology fit-bins`; implies --normalization histogram")
    group.add_argument("--voi-index", type=int, default=0, help="which header window to use with voi")
    group.add_argument("--no-modality-lut", action="store_true", help="ignore rescale slope/intercept and LUTs")
    group.add_argument("--no-polarity", action="store_true", help="keep MONOCHROME1 as stored (bone dark)")
    group.add_argument("--frame", type=int, help="frame of multi-frame files (default: the pipeline's, else 0)")
    group.add_argument("--color", choices=("gray", "keep"),
                       help="colour images to gray (BT.601) or kept RGB (default: the pipeline's, else gray)")
    group.add_argument("--pipeline", type=Path, metavar="FILE",
                       help="preprocessing pipeline (JSON/YAML): its decode settings and steps; the options above "
                            "override its decoding, and its normalizing first step replaces --normalization")
    group.add_argument("--max-pixels", type=max_pixels, metavar="N",
                       help="fail files declaring more than N samples before decoding (default 1e8; 0 = no limit)")


def add_convert_parsers(commands) -> None:
    """Add the convert commands to the ``radiology`` subparsers."""
    convert = commands.add_parser("convert", help="convert a folder or files of DICOMs to images")
    convert.add_argument("sources", nargs="+", metavar="SRC",
                         help="folders (recursive) or files; or one fsspec URL (memory://, s3:// ...)")
    convert.add_argument("dst", metavar="DST", help="output folder, or an fsspec URL")
    _add_render_options(convert)
    output = convert.add_argument_group("output")
    output.add_argument("--format", dest="fmt", choices=("png", "jpeg", "npy"), default="png")
    output.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    size = output.add_mutually_exclusive_group()
    size.add_argument("--width", type=positive, help="aspect-preserving resize to this width")
    size.add_argument("--longest", type=positive, help="aspect-preserving resize of the longest side")
    output.add_argument("--pad-square", action="store_true", help="pad to a square after resizing")
    output.add_argument("--naming", choices=("path", "uid"), default="path",
                        help="name outputs by relative path (default) or sanitized SOP Instance UID")
    output.add_argument("--png-compression", type=int, choices=range(10), default=1, metavar="0-9")
    output.add_argument("--source-names", choices=("relative", "hashed"), default="relative",
                        help="report sources and name outputs by path relative to SRC (default) or with every path "
                             "component hashed, keeping folder names such as patient names out of every output")
    run = convert.add_argument_group("run")
    run.add_argument("--workers", type=workers, default=1, help="processes (0 = all cores; default 1)")
    run.add_argument("--skip-existing", action="store_true", help="resume: skip inputs whose output exists")
    run.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    run.add_argument("--glob", default="*", help="file-name pattern inside folders (default: every file)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run on a Dask distributed cluster (pip install 'radiology[scale]'); SRC must be readable "
                          "by its workers")
    run.add_argument("--shard", type=shard, metavar="I/N",
                     help="convert only shard I of N (0-based, stable by path) for array jobs; join the shard reports "
                          "with `radiology report merge DST`")

    report = commands.add_parser("report", help="conversion report tools")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    merge = report_commands.add_parser("merge", help="join shard reports into DST/conversion_report.csv")
    merge.add_argument("dst", type=Path, metavar="DST")

    fit = commands.add_parser("fit-bins", help="fit equal-frequency histogram bins on a sample of a dataset")
    fit.add_argument("source", type=Path, metavar="SRC", help="folder of DICOMs")
    fit.add_argument("output", type=Path, metavar="BINS.json")
    fit.add_argument("--n-bins", type=positive, default=100)
    fit.add_argument("--max-files", type=positive, default=500, help="evenly spaced sample size (default 500)")
    fit.add_argument("--glob", default="*")
    fit.add_argument("--pipeline", type=Path, metavar="FILE",
                     help="pipeline (JSON/YAML) whose decode settings the bins are fitted with")

    preview = commands.add_parser("preview", help="contact sheet of each pipeline step on a few images")
    preview.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="folder or files (DICOM, PNG, JPEG)")
    preview.add_argument("output", type=Path, metavar="SHEET.png")
    _add_render_options(preview)
    preview.add_argument("-n", "--count", type=positive, default=4, help="images shown (default 4)")
    preview.add_argument("--tile", type=positive, default=192, help="tile size in pixels (default 192)")
    preview.add_argument("--glob", default="*")

    metadata = commands.add_parser("metadata", help="table of non-PHI header fields of a folder of DICOMs")
    metadata.add_argument("source", type=Path, metavar="SRC")
    metadata.add_argument("-o", "--output", type=Path, help="CSV file (default: print)")
    metadata.add_argument("--include-phi", action="store_true",
                          help="also write patient name, ID, birth date and accession number")
    metadata.add_argument("--source-names", choices=("relative", "hashed"), default="relative",
                          help="source column: relative path (default) or hashed path components")


def _load_pipeline(path: Path | None):
    from radiology.pipeline import Pipeline

    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pipeline file")
    return Pipeline.load(path)  # a bad file raises PipelineError (a ValueError): one line, exit 2


def _render_pipeline(args: argparse.Namespace):
    """The Pipeline a command runs: the ``--pipeline`` file (or ``Pipeline()``) with the flags folded in.

    Decoding flags override the file's decoding; the file's normalizing first step, when it has
    one, replaces ``--normalization``; ``--width``/``--longest``/``--pad-square`` come last.
    """
    from radiology.convert import render_pipeline
    from radiology.intensity import load_histogram_bins

    bins = load_histogram_bins(args.histogram_bins) if args.histogram_bins else None
    decode: dict = {}
    if args.no_modality_lut:
        decode["modality_lut"] = False
    if args.no_polarity:
        decode["polarity"] = False
    if args.frame is not None:
        decode["frame"] = args.frame
    if args.color is not None:
        decode["color"] = args.color
    given = getattr(args, "max_pixels", None)  # None: the pipeline's (or library) default; 0: no limit
    if given is not None:
        decode["max_pixels"] = given or None
    return render_pipeline(
        _load_pipeline(args.pipeline),
        normalization="histogram" if bins is not None else args.normalization,
        low=args.low, high=args.high, n_bins=args.n_bins, bins=bins, voi_index=args.voi_index,
        width=getattr(args, "width", None), longest=getattr(args, "longest", None),
        pad_square=getattr(args, "pad_square", False), **decode,
    )


def _render_options(args: argparse.Namespace, **output):
    """ConvertOptions from the command line: :func:`_render_pipeline` plus the output settings."""
    from radiology.convert import ConvertOptions

    return ConvertOptions(_render_pipeline(args), **output)


def run_convert(args: argparse.Namespace) -> int:
    """Run ``radiology convert`` with parsed arguments; returns the exit code."""
    from radiology.convert import convert_folder

    options = _render_options(args, fmt=args.fmt, bit_depth=args.bit_depth, naming=args.naming,
                              png_compression=args.png_compression, source_names=args.source_names)
    if "://" not in args.dst and Path(args.dst).exists() and not Path(args.dst).is_dir():
        raise NotADirectoryError(f"{args.dst}: DST exists and is not a folder")
    source = args.sources[0] if len(args.sources) == 1 else args.sources
    run = dict(workers=args.workers, skip_existing=args.skip_existing, pattern=args.glob, progress=not args.quiet,
               shard=args.shard)
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError as error:
            raise ValueError("--scheduler needs dask.distributed: pip install 'radiology[scale]'") from error
        with Client(args.scheduler) as client:
            report = convert_folder(source, args.dst, options, executor=client.get_executor(), **run)
    else:
        report = convert_folder(source, args.dst, options, **run)
    print(f"{report.summary} (report: {report.path})")
    if not report.images:  # rows for link loops or files left inside DST are not images found
        where = ", ".join(str(s) for s in args.sources)
        print(f"radiology convert: no DICOM image found in {where} ({len(report)} files looked at; "
              f"see {report.path})", file=sys.stderr)
        return 1
    return 1 if args.strict and report.count("failed") else 0


def run_report(args: argparse.Namespace) -> int:
    """Run ``radiology report merge`` with parsed arguments; returns the exit code."""
    from radiology.convert import merge_reports

    report = merge_reports(args.dst)
    print(f"{report.summary} (report: {report.path})")
    return 0


def run_fit_bins(args: argparse.Namespace) -> int:
    """Run ``radiology fit-bins`` with parsed arguments; returns the exit code."""
    from radiology.convert import fit_histogram_bins
    from radiology.files import find_files
    from radiology.intensity import save_histogram_bins

    pipeline = _load_pipeline(args.pipeline)
    files = find_files(args.source, args.glob)
    if not files:
        raise FileNotFoundError(f"{args.source}: no files")
    step = max(1, len(files) // args.max_files)
    bins = fit_histogram_bins(files[::step][: args.max_files], pipeline, n_bins=args.n_bins)
    save_histogram_bins(args.output, bins)
    print(f"{len(bins)} bin edges from {min(len(files), args.max_files)} files written to {args.output}")
    return 0


def run_preview(args: argparse.Namespace) -> int:
    """Run ``radiology preview`` with parsed arguments; returns the exit code."""
    from radiology.files import find_files
    from radiology.io import write_image
    from radiology.preview import pipeline_preview

    full = _render_pipeline(args)  # the sheet shows every stage of this one object
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
    columns = 1 + (0 if full.normalizes else 1) + len(full.steps)
    write_image(args.output, pipeline_preview(chosen, full, tile=args.tile))
    print(f"{len(chosen)} images x {columns} columns written to {args.output}")
    return 0


def run_metadata(args: argparse.Namespace) -> int:
    """Run ``radiology metadata`` with parsed arguments; returns the exit code."""
    from radiology.dicom import metadata_table

    if not args.source.exists():
        raise FileNotFoundError(f"{args.source}: no such file or folder")
    table = metadata_table(args.source, include_phi=args.include_phi, progress=args.output is not None,
                           source_names=args.source_names)
    if args.output is None:
        print(table.to_csv(index=False), end="")
    else:
        from radiology.io import atomic_write

        atomic_write(args.output, table.to_csv(index=False).encode())
        print(f"{len(table)} rows written to {args.output}")
    return 0
