"""``radiology predict`` and ``explain``: a bundle's predictions and class activation maps."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from radiology.cli.common import exit_code, positive


def add_predict_parsers(commands) -> None:
    """Add the predict commands to the ``radiology`` subparsers."""
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
    predict.add_argument("--batch-size", type=positive, default=32)
    predict.add_argument("--overwrite", action="store_true",
                         help="replace an existing --out predictions CSV (a file that is not one is never replaced)")
    predict.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    predict.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    predict.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


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
    explain.add_argument("--batch-size", type=positive, default=8)
    explain.add_argument("--strict", action="store_true", help="exit 1 if any input failed")
    explain.add_argument("--allow-outside-root", action="store_true",
                         help="read CSV image paths outside --root (by default such rows fail)")
    explain.add_argument("-q", "--quiet", action="store_true", help="no progress bar")



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


def run_predict(args: argparse.Namespace) -> int:
    """Run ``radiology predict`` with parsed arguments; returns the exit code."""
    from radiology.io import atomic_write
    from radiology.models import load_bundle
    from radiology.naming import display_name
    from radiology.predict import Ensemble, kaggle_submission, predict_table, prediction_inputs

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
    return exit_code("predict", len(table) - failed, failed, args.strict, args.out)




def run_explain(args: argparse.Namespace) -> int:
    """Run ``radiology explain`` with parsed arguments; returns the exit code."""
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
    return exit_code("explain", explained, failed, args.strict, args.out / "explanations.csv")
