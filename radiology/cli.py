"""``radiology`` command line: a thin shell over the library.

Exit codes, the same for every command: 0 when every input was handled (a failed input
gets its row in the report or table), 1 when nothing could be converted, predicted or
explained, or with ``--strict`` when any input failed, 2 for usage errors (bad options,
missing paths, damaged bundles, an output that would replace an input or a user's file),
reported on one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
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


def _max_pixels(text: str) -> int:
    if text.lower() in ("none", "0"):
        return 0  # no limit
    value = int(float(text))  # accepts 1e8
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number of pixels (or 0/none for no limit)")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("must be I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError("must be I/N with 0 <= I < N")
    return index, count


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
    group.add_argument("--frame", type=int, help="frame of multi-frame files (default: the pipeline's, else 0)")
    group.add_argument("--color", choices=("gray", "keep"),
                       help="colour images to gray (BT.601) or kept RGB (default: the pipeline's, else gray)")
    group.add_argument("--pipeline", type=Path, metavar="FILE",
                       help="preprocessing pipeline (JSON/YAML): its decode settings and steps; the options above "
                            "override its decoding, and its normalizing first step replaces --normalization")
    group.add_argument("--max-pixels", type=_max_pixels, metavar="N",
                       help="fail files declaring more than N samples before decoding (default 1e8; 0 = no limit)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``radiology`` command (documented in the CLI guide)."""
    parser = argparse.ArgumentParser(prog="radiology", description="DICOM radiographs to training-ready images.")
    parser.add_argument("--version", action="version", version=f"radiology {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    convert = commands.add_parser("convert", help="convert a folder or files of DICOMs to images")
    convert.add_argument("sources", nargs="+", metavar="SRC",
                         help="folders (recursive) or files; or one fsspec URL (memory://, s3:// ...)")
    convert.add_argument("dst", metavar="DST", help="output folder, or an fsspec URL")
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
    output.add_argument("--source-names", choices=("relative", "hashed"), default="relative",
                        help="report sources and name outputs by path relative to SRC (default) or with every path "
                             "component hashed, keeping folder names such as patient names out of every output")
    run = convert.add_argument_group("run")
    run.add_argument("--workers", type=_workers, default=1, help="processes (0 = all cores; default 1)")
    run.add_argument("--skip-existing", action="store_true", help="resume: skip inputs whose output exists")
    run.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    run.add_argument("--glob", default="*", help="file-name pattern inside folders (default: every file)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run on a Dask distributed cluster (pip install 'radiology[scale]'); SRC must be readable "
                          "by its workers")
    run.add_argument("--shard", type=_shard, metavar="I/N",
                     help="convert only shard I of N (0-based, stable by path) for array jobs; join the shard reports "
                          "with `radiology report merge DST`")

    report = commands.add_parser("report", help="conversion report tools")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="ACTION")
    merge = report_commands.add_parser("merge", help="join shard reports into DST/conversion_report.csv")
    merge.add_argument("dst", type=Path, metavar="DST")

    fit = commands.add_parser("fit-bins", help="fit equal-frequency histogram bins on a sample of a dataset")
    fit.add_argument("source", type=Path, metavar="SRC", help="folder of DICOMs")
    fit.add_argument("output", type=Path, metavar="BINS.json")
    fit.add_argument("--n-bins", type=_positive, default=100)
    fit.add_argument("--max-files", type=_positive, default=500, help="evenly spaced sample size (default 500)")
    fit.add_argument("--glob", default="*")
    fit.add_argument("--pipeline", type=Path, metavar="FILE",
                     help="pipeline (JSON/YAML) whose decode settings the bins are fitted with")

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
    metadata.add_argument("--source-names", choices=("relative", "hashed"), default="relative",
                          help="source column: relative path (default) or hashed path components")

    train = commands.add_parser("train", help="train a classifier on DICOMs or images and write a bundle")
    source = train.add_argument_group("data")
    source.add_argument("--csv", type=Path, help="label table (CSV)")
    source.add_argument("--root", type=Path, help="folder the CSV's image column is relative to (default: CSV's)")
    source.add_argument("--folder", type=Path, help="instead of --csv: one subfolder per class")
    source.add_argument("--image-col", dest="image_cols", default=None,
                        help="image column(s), comma-separated for views, e.g. left,right (default: image)")
    source.add_argument("--label-col", dest="label_cols", default=None,
                        help="label column; with --multi-label one 'A|B' column or several 0/1 columns (N,D,G)")
    source.add_argument("--multi-label", action="store_true", default=None, help="several labels per image")
    source.add_argument("--group-col", help="patient column for the grouped split (default: DICOM PatientID)")
    model = train.add_argument_group("model")
    model.add_argument("--arch", help="timm backbone (default tf_efficientnet_lite0)")
    model.add_argument("--pretrained", help="imagenet (default; offline for tf_efficientnet_lite0, the timm hub "
                       "for other archs) | none | PATH | timm hub name")
    model.add_argument("--size", type=_positive, help="input side in pixels (default 224)")
    model.add_argument("--channels", type=int, choices=(1, 3), help="1 gray (default) or 3 for colour photographs")
    fit = train.add_argument_group("training")
    fit.add_argument("--epochs", type=int, help="fine-tuning epochs of the whole network (default 5)")
    fit.add_argument("--head-epochs", type=int, help="head-only epochs on frozen features first (default 20)")
    fit.add_argument("--lr", type=float, help="peak fine-tuning learning rate (default 1e-3)")
    fit.add_argument("--batch-size", type=_positive, help="batch size (default 32)")
    fit.add_argument("--seed", type=int, help="random seed (default 0)")
    fit.add_argument("--loss", choices=("auto", "ce", "focal", "nce_rce", "bce"))
    fit.add_argument("--sampler", choices=("shuffle", "weighted", "min_per_class"))
    fit.add_argument("--valid-fraction", type=float, help="validation share, grouped by patient (default 0.2)")
    fit.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    fit.add_argument("--cache", help="preprocessed-image cache folder, or 'none'")
    fit.add_argument("--lr-find", action="store_true", default=None, help="save fastai's lr_find plot in the bundle")
    fit.add_argument("--resume", action="store_true", default=None, help="continue an interrupted run in --out")
    fit.add_argument("--overwrite", action="store_true", default=None,
                     help="replace a bundle or checkpoint already in --out (refused without it)")
    fit.add_argument("--skip-unreadable", action="store_true", default=None,
                     help="leave out unreadable or empty images (listed in data_report.csv) instead of stopping")
    fit.add_argument("--allow-outside-root", action="store_true", default=None,
                     help="accept CSV image paths outside --root")
    semi = train.add_argument_group("semi-supervised (single-label)")
    semi.add_argument("--unlabeled", type=Path, help="folder of unlabeled DICOMs/images used while fine-tuning")
    semi.add_argument("--semi", choices=("fixmatch", "mixmatch"),
                      help="semi-supervised method (needs --unlabeled); fixmatch holds 15 x --batch-size images per "
                           "step: use --batch-size 8 on a CPU")
    semi.add_argument("--semi-param", action="append", metavar="KEY=VALUE",
                      help="a setting of the method instead of its paper's default, e.g. lambda_u=10 "
                           "(repeat the flag for several; replaces the config file's semi_params)")
    train.add_argument("--config", type=Path, help="YAML/JSON file with the same keys; flags override it")
    train.add_argument("--pipeline", type=Path, help="preprocessing pipeline file (default: percentile, resize, pad)")
    train.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    predict = commands.add_parser("predict", help="predict with a bundle (or several: an ensemble)")
    predict.add_argument("bundles", nargs="+", type=Path, metavar="BUNDLE", help="bundle folder(s)")
    predict.add_argument("input", type=Path, metavar="INPUT", help="folder (recursive), file, or CSV")
    predict.add_argument("--out", type=Path, required=True,
                         help="predictions CSV to write (never an input; an existing one only with --overwrite)")
    predict.add_argument("--root", type=Path, help="folder the CSV's image column is relative to")
    predict.add_argument("--image-col", dest="image_cols", help="image column(s) of a CSV (default: image)")
    predict.add_argument("--format", dest="fmt", choices=("table", "kaggle"), default="table",
                         help="table (default) or kaggle: SOPInstanceUID,Target")
    predict.add_argument("--tta", action="store_true", help="average with horizontally flipped inputs")
    predict.add_argument("--backend", choices=("eager", "export", "onnx"), default="export",
                         help="which saved model runs (default: the torch.export program)")
    predict.add_argument("--batch-size", type=_positive, default=32)
    predict.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out predictions CSV (a file that is not one is never replaced)")
    predict.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    predict.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    evaluate = commands.add_parser("evaluate", help="score a predictions CSV against labels")
    evaluate.add_argument("--predictions", type=Path, required=True)
    evaluate.add_argument("--labels", type=Path, required=True)
    evaluate.add_argument("--image-col", dest="image_cols", default="image")
    evaluate.add_argument("--label-col", dest="label_cols", default="label")
    evaluate.add_argument("--multi-label", action="store_true", default=None,
                          help="the labels are multi-label (checked against the predictions; they tell by themselves)")
    evaluate.add_argument("--bundle", type=Path,
                          help="the bundle that made the predictions (verified against its manifest): its label "
                               "kind, classes and thresholds (multi-label default 0.5)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report and plots")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace the metrics, report and plots of an earlier evaluation in --out")

    pretrain = commands.add_parser("pretrain", help="self-supervised pretraining of a backbone on unlabeled images")
    pretrain.add_argument("--root", type=Path, required=True, help="folder of unlabeled DICOMs and/or images")
    pretrain.add_argument("--out", type=Path, required=True, help="backbone checkpoint to write (e.g. backbone.pt)")
    pretrain.add_argument("--method", choices=("simclr", "byol", "metadata"), default="simclr",
                          help="simclr (default), byol, or metadata: predict DICOM header fields")
    pretrain.add_argument("--fields", help="metadata: comma-separated header fields to predict (default: all that "
                                           "vary): body_part, view_position, modality, manufacturer, photometric")
    pretrain.add_argument("--arch", default="tf_efficientnet_lite0", help="timm backbone (default: the train default)")
    pretrain.add_argument("--pretrained", default="imagenet", help="starting weights: imagenet (default; offline for "
                          "tf_efficientnet_lite0, the timm hub for other archs) | none | PATH")
    pretrain.add_argument("--epochs", type=_positive, default=10, help="default 10")
    pretrain.add_argument("--size", type=_positive, default=224, help="input side in pixels (default 224)")
    pretrain.add_argument("--channels", type=int, choices=(1, 3), default=1)
    pretrain.add_argument("--batch-size", type=_positive, default=64, help="images per step (default 64)")
    pretrain.add_argument("--lr", type=float, help="peak learning rate (default 1e-3)")
    pretrain.add_argument("--temperature", type=float, default=0.2, help="simclr: NT-Xent temperature (default 0.2)")
    pretrain.add_argument("--pipeline", type=Path, help="preprocessing pipeline file (default: percentile, resize, "
                                                        "pad; use the one you will train with)")
    pretrain.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    pretrain.add_argument("--cache", help="preprocessed-image cache folder, or 'none'")
    pretrain.add_argument("--seed", type=int, default=0)
    pretrain.add_argument("--overwrite", action="store_true", help="replace an existing --out checkpoint")
    pretrain.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    explain = commands.add_parser("explain", help="class activation maps (GradCAM & co.) of a bundle, as overlays")
    explain.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle folder")
    explain.add_argument("input", type=Path, metavar="INPUT", help="folder (recursive), file, or CSV")
    explain.add_argument("--out", type=Path, required=True, help="folder for overlay PNGs and explanations.csv")
    explain.add_argument("--method", choices=("gradcam", "gradcampp", "hirescam", "scorecam", "eigencam"),
                         default="gradcam", help="CAM method (default gradcam)")
    explain.add_argument("--label", help="explain this label (default: the prediction, or every positive label)")
    explain.add_argument("--target-layer", help="backbone module name (default: its last spatial layer)")
    explain.add_argument("--root", type=Path, help="folder the CSV's image column is relative to")
    explain.add_argument("--image-col", dest="image_cols", help="image column(s) of a CSV (default: image)")
    explain.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    explain.add_argument("--batch-size", type=_positive, default=8)
    explain.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    explain.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    demo = commands.add_parser("demo", help="offline demo: conversion, then train/predict/evaluate on phantoms")
    demo.add_argument("out", type=Path, metavar="OUT")
    demo.add_argument("--workers", type=_workers, default=1)
    demo.add_argument("--no-model", action="store_true", help="conversion only (no training)")
    return parser


def _load_pipeline(path: Path | None):
    from radiology.pipeline import Pipeline

    if path is None:
        return None
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such pipeline file")
    return Pipeline.load(path)  # a bad file raises PipelineError (a ValueError): one line, exit 2


def _render_options(args: argparse.Namespace, **output):
    """ConvertOptions from the command line; ``options.to_pipeline()`` is what the command runs."""
    from radiology.convert import ConvertOptions
    from radiology.intensity import load_histogram_bins
    from radiology.pipeline import Decode

    bins = load_histogram_bins(args.histogram_bins) if args.histogram_bins else None
    pipeline = _load_pipeline(args.pipeline)
    # Decoding: the pipeline file's settings unless a flag overrides them.
    decode = pipeline.decode if pipeline is not None else Decode()
    given = getattr(args, "max_pixels", None)  # None: the pipeline's (or library) default; 0: no limit
    return ConvertOptions(
        max_pixels=decode.max_pixels if given is None else (given or None),
        normalization="histogram" if bins is not None else args.normalization,
        low=args.low, high=args.high, n_bins=args.n_bins, bins=bins, voi_index=args.voi_index,
        bits=decode.bits,
        modality_lut=decode.modality_lut and not args.no_modality_lut,
        polarity=decode.polarity and not args.no_polarity,
        frame=decode.frame if args.frame is None else args.frame,
        color=decode.color if args.color is None else args.color,
        pipeline=pipeline, **output,
    )


def _convert(args: argparse.Namespace) -> int:
    from radiology.convert import convert_folder

    options = _render_options(
        args, width=args.width, longest=args.longest, pad_square=args.pad_square, fmt=args.fmt,
        bit_depth=args.bit_depth, naming=args.naming, png_compression=args.png_compression,
        source_names=args.source_names,
    )
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


def _report(args: argparse.Namespace) -> int:
    from radiology.convert import merge_reports

    report = merge_reports(args.dst)
    print(f"{report.summary} (report: {report.path})")
    return 0


def _fit_bins(args: argparse.Namespace) -> int:
    from radiology.convert import fit_histogram_bins
    from radiology.dicom import find_files
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


def _preview(args: argparse.Namespace) -> int:
    from radiology.dicom import find_files
    from radiology.io import write_image
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
    full = options.to_pipeline()  # the sheet shows every stage of this one object
    columns = 1 + (0 if full.normalizes else 1) + len(full.steps)
    write_image(args.output, pipeline_preview(chosen, full, tile=args.tile))
    print(f"{len(chosen)} images x {columns} columns written to {args.output}")
    return 0


def _metadata(args: argparse.Namespace) -> int:
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


_TRAIN_FLAGS = (
    "csv", "root", "folder", "image_cols", "label_cols", "multi_label", "group_col", "arch", "pretrained", "size",
    "channels", "epochs", "head_epochs", "lr", "batch_size", "seed", "loss", "sampler", "valid_fraction", "workers",
    "cache", "lr_find", "resume", "overwrite", "pipeline", "out", "unlabeled", "semi", "skip_unreadable",
    "allow_outside_root",
)


def _headline(metrics: dict) -> str:
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "quadratic_kappa", "macro_auc", "micro_f1")
    parts = [f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float)]
    odir = metrics.get("odir")
    if isinstance(odir, dict) and isinstance(odir.get("score"), float):
        parts.append(f"odir_score {odir['score']:.3f}")
    return ", ".join(parts) or "no defined metric"


def _key_values(items: list[str], flag: str) -> dict:
    """``KEY=VALUE`` strings as a dict; values read as JSON (numbers, true/false), else kept as text."""
    import json

    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{flag} takes KEY=VALUE, got {item!r}")
        try:
            values[key.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[key.strip()] = text
    return values


def _train(args: argparse.Namespace) -> int:
    from radiology.train import TrainConfig, train

    flags = {name: getattr(args, name) for name in _TRAIN_FLAGS if getattr(args, name) is not None}
    if args.semi_param:
        flags["semi_params"] = _key_values(args.semi_param, "--semi-param")
    config = TrainConfig.load(args.config, **flags) if args.config else TrainConfig.from_dict(flags)
    result = train(config, progress=not args.quiet)
    if not result.metrics:  # another process of a multi-GPU run; rank 0 reports
        return 0
    print(f"validation: {_headline(result.metrics)}")
    print(f"bundle: {result.bundle}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from radiology.pipeline import Pipeline
    from radiology.ssl import pretrain

    fields = tuple(f.strip() for f in args.fields.split(",") if f.strip()) if args.fields else None
    pipeline = Pipeline.load(args.pipeline) if args.pipeline else None
    result = pretrain(args.root, args.out, method=args.method, arch=args.arch,
                      pretrained=None if args.pretrained.lower() == "none" else args.pretrained,
                      channels=args.channels, size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                      lr=args.lr, temperature=args.temperature, fields=fields, pipeline=pipeline,
                      workers=args.workers, cache=args.cache, seed=args.seed, overwrite=args.overwrite,
                      progress=not args.quiet)
    last = result.history[-1]
    print(f"{result.images} images ({len(result.skipped)} unreadable, left out), {len(result.history)} epochs: "
          f"train loss {last['train_loss']:.4f}, valid loss {last['valid_loss']:.4f}")
    if args.method == "metadata":
        accuracy = ", ".join(f"{k} {v:.3f}" for k, v in result.info["valid_accuracy"].items() if v is not None)
        print(f"header fields {', '.join(result.info['fields'])}; validation accuracy: {accuracy or 'n/a'}")
    print(f"backbone: {result.checkpoint} (train with --pretrained {result.checkpoint} --arch {args.arch})")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from radiology.explain import explain_inputs

    if not args.bundle.is_dir():
        raise FileNotFoundError(f"{args.bundle}: not a bundle folder")
    table = explain_inputs(args.bundle, args.input, args.out, method=args.method, label=args.label,
                           target_layer=args.target_layer, batch_size=args.batch_size, progress=not args.quiet,
                           root=args.root, image_cols=args.image_cols, device=args.device,
                           allow_outside_root=args.allow_outside_root)
    written, failed = int((table["overlay"] != "").sum()), int((table["error"] != "").sum())
    print(f"{written} overlays, {failed} failed: {args.out / 'explanations.csv'}")
    explained = int(table.loc[table["error"] == "", "image"].nunique())
    return _exit_code("explain", explained, failed, args.strict, args.out / "explanations.csv")


def _exit_code(command: str, done: int, failed: int, strict: bool, table: Path) -> int:
    """0 when every input was handled, 1 when none was (or ``--strict`` and one failed)."""
    if failed and not done:
        print(f"radiology {command}: error: no input could be {command}ed; the reasons are in the error column of "
              f"{table}", file=sys.stderr)
        return 1
    return 1 if strict and failed else 0


_PREDICTIONS_HEADERS = ("image,prediction,", "SOPInstanceUID,Target")  # table and kaggle formats


def _same_file(path: Path, other: Path) -> bool:
    try:
        return os.path.samefile(path, other)
    except OSError:  # one of them does not exist
        return False


def _refuse_input_as_out(args: argparse.Namespace, inputs=None) -> None:
    """Refuse an ``--out`` that is a folder or an input, ``--overwrite`` or not.

    Without ``inputs`` (before they are resolved) INPUT itself is checked; with them, every
    image they resolve to (each input file of a folder, each file a CSV refers to under ``--root``).
    """
    from radiology.io import check_output_folders

    out = args.out
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give the predictions CSV file to write")
    check_output_folders(out)
    sources = () if inputs is None or not out.exists() else (p for paths in inputs.sources if paths for p in paths)
    if _same_file(out, args.input) or any(_same_file(out, p) for p in sources):
        raise ValueError(f"--out {out}: is an input of this command; predict never replaces its inputs")


def _refuse_existing_out(args: argparse.Namespace) -> None:
    """Refuse an existing ``--out`` unless ``--overwrite``, and then unless it is a predictions CSV (by its header)."""
    out = args.out
    if not (out.exists() or out.is_symlink()):
        return
    if not args.overwrite:
        raise FileExistsError(f"--out {out}: exists; add --overwrite to replace it")
    try:
        with open(out, encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError as error:
        raise FileExistsError(f"--out {out}: exists and cannot be read ({error.strerror})") from None
    if not header.startswith(_PREDICTIONS_HEADERS):
        raise FileExistsError(f"--out {out}: exists and is not a predictions CSV of radiology predict; "
                              "--overwrite replaces only those")


def _predict(args: argparse.Namespace) -> int:
    from radiology.convert import display_name
    from radiology.io import atomic_write
    from radiology.models import load_bundle
    from radiology.train import Ensemble, kaggle_submission, predict_table, prediction_inputs

    # --out is checked before any bundle is loaded or image read: an input is never
    # replaced, another existing file only when it is an earlier predictions CSV.
    _refuse_input_as_out(args)
    for bundle in args.bundles:
        if not bundle.is_dir():
            raise FileNotFoundError(f"{bundle}: no such bundle folder")
    inputs = prediction_inputs(args.input, root=args.root, image_cols=args.image_cols, progress=not args.quiet,
                               allow_outside_root=args.allow_outside_root)
    _refuse_input_as_out(args, inputs)
    _refuse_existing_out(args)
    model = Ensemble([load_bundle(b, backend=args.backend) for b in args.bundles], tta=args.tta)
    table = predict_table(model, inputs, batch_size=args.batch_size, progress=not args.quiet)
    written = kaggle_submission(table, inputs) if args.fmt == "kaggle" else table
    # File names are bytes: undecodable ones are written escaped, as convert's report writes them.
    atomic_write(args.out, display_name(written.to_csv(index=False)).encode())
    failed = int((table["error"] != "").sum())
    print(f"{len(table)} predictions, {failed} failed, written to {args.out}")
    return _exit_code("predict", len(table) - failed, failed, args.strict, args.out)


def _evaluate(args: argparse.Namespace) -> int:
    from radiology.train import evaluate_predictions

    for path in (args.predictions, args.labels):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
    if args.bundle is not None and not args.bundle.is_dir():
        raise FileNotFoundError(f"--bundle {args.bundle}: no such bundle folder")
    if args.out.exists() and not args.out.is_dir():
        raise FileExistsError(f"--out {args.out}: is a file; give a folder for the metrics, report and plots")
    # Checked before any work: an earlier evaluation's files (or a user's of the same names) are replaced
    # only when asked, and nothing else in --out ever is.
    earlier = [name for name in _EVALUATION_FILES if (args.out / name).exists() or (args.out / name).is_symlink()]
    if earlier and not args.overwrite:
        raise FileExistsError(f"--out {args.out}: already holds {', '.join(earlier)}; add --overwrite to replace them")
    metrics = evaluate_predictions(args.predictions, args.labels, image_cols=args.image_cols,
                                   label_cols=args.label_cols, multi_label=args.multi_label, out=args.out,
                                   bundle=args.bundle)
    print(f"{metrics['n']} scored ({metrics['missing']} without prediction): {_headline(metrics)}")
    kind = "multi-label" if metrics["multi_label"] else "single-label"
    print(f"scored as {kind}; {metrics['unlabeled']} unlabeled label rows skipped")
    print(f"metrics, report and plots: {args.out}")
    return 0


_EVALUATION_FILES = ("metrics.json", "report.txt", "confusion_matrix.png", "roc.png")


def _demo(args: argparse.Namespace) -> int:
    from radiology.demo import run_demo

    result = run_demo(args.out, workers=args.workers)
    print(f"{result.report.summary}")
    print(f"images: {result.images}\nreport: {result.report.path}\ncontact sheet: {result.contact_sheet}")
    if args.no_model:
        return 0
    try:
        from radiology.demo import run_model_demo
        model = run_model_demo(args.out / "model")
    except ImportError as error:
        print(f"model demo skipped: {error.name or error} is not installed (pip install 'radiology[models]')")
        return 0
    print(f"model demo on SYNTHETIC phantoms (not patients): test {_headline(model.metrics)}")
    print(f"bundle: {model.bundle}\npredictions: {model.predictions}\nevaluation: {model.evaluation}")
    print(f"explanations (GradCAM): {model.explanations}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:  # per-file decode failures go to the report, not to the terminal
        import pydicom  # noqa: F401 - pydicom sets its logger's level on import; set ours after

        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
        # fastai's own layers use torch.jit.script, which torch deprecates: a warning on every
        # model command that no user of this command line can act on.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    handlers = {"convert": _convert, "preview": _preview, "fit-bins": _fit_bins, "metadata": _metadata,
                "demo": _demo, "train": _train, "predict": _predict, "evaluate": _evaluate,
                "pretrain": _pretrain, "explain": _explain, "report": _report}
    from radiology.errors import RadiologyError, one_line

    try:
        return handlers[args.command](args)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, TypeError, RadiologyError) as error:
        if args.verbose:
            raise
        print(f"radiology {args.command}: error: {_in_flags(one_line(error), args)}", file=sys.stderr)
        return USAGE_ERROR


def _in_flags(message: str, args: argparse.Namespace) -> str:
    """A library message in the command's words: ``overwrite=True`` becomes ``--overwrite`` where the command has it.

    Library errors name Python arguments; the command's switches share their names.
    """

    def flag(match: re.Match) -> str:
        name = match.group(1)
        return "--" + name.replace("_", "-") if name in vars(args) else match.group(0)

    return re.sub(r"\b([a-z][a-z_]*)=True\b", flag, message)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
