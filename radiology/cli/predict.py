"""``radiology predict`` and ``explain``: a bundle's predictions and class activation maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from radiology.cli.common import exit_code, positive, shard


def _figure_size(text: str) -> int | None:
    """``--figure-size``: pixels of the figure's longest side, 0 for the original size."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = the original size)")
    return value or None


def _decode_workers(text: str) -> int:
    """``--decode-workers``: 0 (a thread of this process) or a number of processes."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = a thread of this process)")
    return value


def add_predict_parsers(commands) -> None:
    """Add the predict commands to the ``radiology`` subparsers."""
    predict = commands.add_parser(
        "predict", help="predict with a bundle (or several: an ensemble)",
        epilog="radiology predict merge SHARD.csv... --out OUT joins the tables of --shard runs (0/N ... N-1/N) "
               "into the one table of all inputs, in the input order (a bundle folder named merge: ./merge)")
    predict.add_argument("bundles", nargs="+", metavar="BUNDLE",
                         help="bundle folder(s); several, or one of train --folds, predict with the models' mean")
    predict.add_argument("input", type=Path, metavar="INPUT", help="folder (recursive), file, or CSV")
    predict.add_argument("--out", type=Path, required=True,
                         help="predictions CSV to write (never an input; an existing one only with --overwrite)")
    predict.add_argument("--root", type=Path, help="folder the CSV's image column is relative to")
    predict.add_argument("--image-col", dest="image_cols", help="image column(s) of a CSV (default: image)")
    predict.add_argument("--format", dest="fmt", choices=("table", "kaggle"), default="table",
                         help="table (default: image, SOPInstanceUID of DICOM inputs, prediction, prob_<class>..., "
                              "error) or kaggle: SOPInstanceUID,Target (radiology evaluate scores either)")
    predict.add_argument("--tta", action="store_true", help="average with horizontally flipped inputs")
    predict.add_argument("--backend", choices=("eager", "export", "onnx"), default="export",
                         help="which saved model runs (default: the torch.export program)")
    predict.add_argument("--batch-size", type=positive, default=32)
    predict.add_argument("--threads", type=positive,
                         help="onnxruntime threads of --backend onnx (default: the cores this process may use, "
                              "less --decode-workers; with --scheduler, each Dask worker's own threads)")
    predict.add_argument("--decode-workers", type=_decode_workers, default=0, metavar="N",
                         help="processes that decode images while the model runs (default 0: a thread of this "
                              "process, the fastest measured on 2 cores; worker processes pay off with more cores; "
                              "not used with --scheduler, where the Dask workers decode)")
    predict.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out predictions CSV (a file that is not one is never replaced)")
    predict.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    predict.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--shard", type=shard, metavar="I/N",
                         help="predict only shard I of N of the inputs (0-based, stable by input id) for array "
                              "jobs; --out is this shard's table (e.g. preds.shard-I-of-N.csv): join them with "
                              "`radiology predict merge SHARD.csv... --out OUT`")
    predict.add_argument("--scheduler", metavar="ADDRESS",
                         help="predict on a Dask distributed cluster (pip install 'radiology[scale]'), --batch-size "
                              "inputs per task; its workers must read the BUNDLE folders and the inputs at the same "
                              "paths")


    explain = commands.add_parser("explain", help="class activation maps (GradCAM & co.) of a bundle, as overlays")
    explain.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle folder")
    explain.add_argument("input", type=Path, metavar="INPUT", help="folder (recursive), file, or CSV")
    explain.add_argument("--out", type=Path, required=True, help="folder for overlay PNGs and explanations.csv")
    explain.add_argument("--method", choices=("gradcam", "gradcampp", "hirescam", "layercam", "scorecam", "eigencam"),
                         default="gradcam", help="CAM method (default gradcam)")
    explain.add_argument("--label", help="explain this label (default: the prediction, or every positive label)")
    explain.add_argument("--target-layer", help="backbone module name (default: its last spatial layer)")
    explain.add_argument("--root", type=Path, help="folder the CSV's image column is relative to")
    explain.add_argument("--image-col", dest="image_cols", help="image column(s) of a CSV (default: image)")
    explain.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    explain.add_argument("--batch-size", type=positive, default=8)
    explain.add_argument("--figure-size", type=_figure_size, default=768, metavar="PIXELS",
                         help="longest side of each overlay figure, with its caption and colour bar (default 768; "
                              "0 = the original image's size)")
    explain.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    explain.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    explain.add_argument("--boxes", type=Path, metavar="CSV",
                         help="play the pointing game: a CSV of finding boxes per image ('x y w h;x y w h' in pixels "
                              "of the stored image, empty: none); writes pointing.csv and pointing.json to --out and "
                              "prints the hit rate beside the image-centre and random-point baselines (give --label: "
                              "the finding's class)")
    explain.add_argument("--boxes-image-col", metavar="COLUMN",
                         help="--boxes column naming the image as the explained input does (default: --image-col "
                              "when the CSV has it, else image, else SOPInstanceUID: joined on each DICOM's UID)")
    explain.add_argument("--boxes-col", default="boxes", metavar="COLUMN",
                         help="--boxes column of boxes (default boxes)")
    explain.add_argument("--boxes-grow", type=float, default=0.05, metavar="SHARE",
                         help="grow every box by this share of the image's longer side (default 0.05)")



_PREDICTIONS_HEADERS = ("image,SOPInstanceUID,prediction,", "image,prediction,",  # tables (earlier: no UID)
                       "SOPInstanceUID,Target")  # the kaggle format
_MERGE = "merge"


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


def run_predict(args: argparse.Namespace) -> int:
    """Run ``radiology predict`` with parsed arguments; returns the exit code."""
    # BUNDLEs are kept as typed (str) so that `merge` (the action) and `./merge` (a folder) differ.
    merging = str(args.bundles[0]) == _MERGE
    args.bundles = [Path(b) for b in args.bundles]
    if merging:
        return run_predict_merge(args)
    from radiology.io import atomic_write
    from radiology.naming import display_name
    from radiology.predict import Ensemble, kaggle_submission, predict_table, prediction_inputs

    if args.shard is not None and args.fmt == "kaggle":
        raise ValueError("--format kaggle: not with --shard; merge the shard tables, then convert the merged table")
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
    if args.scheduler:
        try:
            from dask.distributed import Client
        except ImportError as error:
            raise ValueError("--scheduler needs dask.distributed: pip install 'radiology[scale]'") from error
        from radiology.predict import predict_distributed

        try:
            client = Client(args.scheduler)
        except (OSError, ValueError) as error:  # no scheduler there (TimeoutError is an OSError), a bad address
            raise ValueError(f"--scheduler {args.scheduler}: cannot connect ({type(error).__name__})") from None
        with client:
            table = predict_distributed(args.bundles, inputs, client, backend=args.backend, tta=args.tta,
                                        batch_size=args.batch_size, progress=not args.quiet, shard=args.shard)
    else:
        from radiology.models.bundle import usable_cores

        # Decode workers get their cores: the model's threads take the rest (never fewer than one).
        threads = args.threads or max(1, usable_cores() - args.decode_workers)
        model = Ensemble.load(args.bundles, backend=args.backend, threads=threads, tta=args.tta)
        table = predict_table(model, inputs, batch_size=args.batch_size, progress=not args.quiet, shard=args.shard,
                              workers=args.decode_workers)
    written = kaggle_submission(table, inputs) if args.fmt == "kaggle" else table
    # File names are bytes: undecodable ones are written escaped, as convert's report writes them.
    atomic_write(args.out, display_name(written.to_csv(index=False)).encode())
    failed = int((table["error"] != "").sum())
    where = f" (shard {args.shard[0]}/{args.shard[1]})" if args.shard is not None else ""
    print(f"{len(table)} predictions{where}, {failed} failed, written to {args.out}")
    if args.shard is not None and not len(table):
        return 0  # an empty shard is a shard done
    return exit_code("predict", len(table) - failed, failed, args.strict, args.out)


def run_predict_merge(args: argparse.Namespace) -> int:
    """Run ``radiology predict merge SHARD.csv... --out OUT``: join ``--shard`` tables; returns the exit code."""
    import pandas as pd

    from radiology.io import atomic_write, check_output_folders
    from radiology.predict import merge_tables

    shards = [*args.bundles[1:], args.input]
    if args.shard is not None or args.scheduler or args.fmt != "table":
        raise ValueError("--shard, --scheduler and --format kaggle: not with predict merge")
    out = args.out
    if out.is_dir():
        raise ValueError(f"--out {out}: is a folder; give the predictions CSV file to write")
    check_output_folders(out)
    if any(_same_file(out, s) for s in shards):
        raise ValueError(f"--out {out}: is a SHARD table of this command; merge never replaces its inputs")
    tables = []
    for path in shards:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such SHARD table")
        try:
            tables.append(pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
            raise ValueError(f"{path}: not a CSV table ({type(error).__name__})") from None
    try:
        merged = merge_tables(tables, names=[str(s) for s in shards])
    except ValueError as error:
        raise ValueError(f"SHARD: {str(error).removeprefix('tables: ')}") from None
    _refuse_existing_out(args)
    atomic_write(out, merged.to_csv(index=False).encode())
    failed = int((merged["error"] != "").sum())
    print(f"{len(merged)} predictions from {len(shards)} shards, {failed} failed, written to {out}")
    return exit_code("predict", len(merged) - failed, failed, args.strict, out)




def run_explain(args: argparse.Namespace) -> int:
    """Run ``radiology explain`` with parsed arguments; returns the exit code."""
    from radiology.explain import explain_inputs

    if not args.bundle.is_dir():
        raise FileNotFoundError(f"{args.bundle}: not a bundle folder")
    boxes, boxes_by = _explain_boxes(args) if args.boxes is not None else (None, "image")
    table = explain_inputs(args.bundle, args.input, args.out, method=args.method, label=args.label,
                           target_layer=args.target_layer, batch_size=args.batch_size, progress=not args.quiet,
                           root=args.root, image_cols=args.image_cols, device=args.device,
                           allow_outside_root=args.allow_outside_root, figure_size=args.figure_size,
                           boxes=boxes, boxes_by=boxes_by, grow=args.boxes_grow)
    written, failed = int((table["overlay"] != "").sum()), int((table["error"] != "").sum())
    print(f"{written} overlays, {failed} failed: {args.out / 'explanations.csv'}")
    if boxes is not None:
        _print_pointing(table.attrs["pointing"], args.out / "pointing.csv")
    explained = int(table.loc[table["error"] == "", "image"].nunique())
    return exit_code("explain", explained, failed, args.strict, args.out / "explanations.csv")


def _explain_boxes(args: argparse.Namespace):
    """``--boxes``: the boxes by image and what they are keyed by (read before any work)."""
    import pandas as pd

    from radiology.explain import read_boxes

    if not args.boxes.is_file():
        raise FileNotFoundError(f"--boxes {args.boxes}: no such CSV file")
    if not 0 <= args.boxes_grow < 1:
        raise ValueError(f"--boxes-grow {args.boxes_grow}: must be a share in [0, 1)")
    try:
        frame = pd.read_csv(args.boxes, dtype=str, keep_default_na=False, encoding="utf-8")
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise ValueError(f"--boxes {args.boxes}: not a CSV table ({type(error).__name__})") from None
    column = args.boxes_image_col
    if column is None:
        wanted = [args.image_cols] if args.image_cols and "," not in args.image_cols else []
        candidates = (*wanted, "image", "SOPInstanceUID")
        column = next((c for c in candidates if c in frame.columns), None)
        if column is None:
            raise ValueError(f"--boxes {args.boxes}: no image column ({' or '.join(candidates)}); name it with "
                             f"--boxes-image-col")
    try:
        boxes = read_boxes(frame, image_col=column, boxes_col=args.boxes_col)
    except ValueError as error:
        raise ValueError(f"--boxes {args.boxes}: {str(error).removeprefix('the table: ')}") from None
    return boxes, "SOPInstanceUID" if column == "SOPInstanceUID" else "image"


def _print_pointing(summary: dict, path: Path) -> None:
    """One line: hit rate vs the image-centre and random-point baselines."""
    def rate(value) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    skipped = f"; {summary['unscored']} explained without boxes, not scored" if summary["unscored"] else ""
    if summary["missing"]:
        skipped += f" ({summary['missing']} not in --boxes)"
    if summary["errors"]:
        skipped += f"; {summary['errors']} with boxes outside the image"
    print(f"pointing game on {summary['n']} maps with boxes (grown by {summary['grow']:.0%} of the longer side): "
          f"hit rate {rate(summary['hit_rate'])} ({summary['hits']}/{summary['n']}), image centre "
          f"{rate(summary['centre_rate'])}, random point {rate(summary['random_rate'])}{skipped}: {path}")
