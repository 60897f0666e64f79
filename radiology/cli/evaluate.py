"""``radiology evaluate``: score a predictions table against labels."""

from __future__ import annotations

import argparse
from pathlib import Path

from radiology.cli.common import headline


def _replicates(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0 (0: no intervals)")
    return value


def add_evaluate_parsers(commands) -> None:
    """Add the evaluate commands to the ``radiology`` subparsers."""
    evaluate = commands.add_parser("evaluate", help="score a predictions CSV against labels")
    evaluate.add_argument("--predictions", type=Path, required=True,
                          help="predictions CSV written by `radiology predict` (one row per image), or its "
                               "--format kaggle submission (SOPInstanceUID,Target: decisions only, no AUC)")
    evaluate.add_argument("--labels", type=Path, required=True,
                          help="CSV of the true labels, one row per image")
    evaluate.add_argument("--image-col", dest="image_cols",
                          help="label-table column(s) of the image reference: SOPInstanceUID is matched to the "
                               "predictions' SOPInstanceUID column, any other to their image column; several "
                               "comma-separated columns are the views of a row (default: image or SOPInstanceUID, "
                               "whichever both tables have, image first)")
    evaluate.add_argument("--label-col", dest="label_cols",
                          help="label-table column of class names (multi-label: A|B strings), or several "
                               "comma-separated 0/1 columns, one per label (default: label; Target for a "
                               "--format kaggle submission, space-separated class indices)")
    evaluate.add_argument("--multi-label", action="store_true", default=None,
                          help="the labels are multi-label (checked against the predictions; they tell by themselves)")
    evaluate.add_argument("--bundle", type=Path,
                          help="the bundle that made the predictions (verified against its manifest): its label "
                               "kind, classes and thresholds (multi-label default 0.5)")
    evaluate.add_argument("--ordinal", action="store_true",
                          help="the classes are ordered grades (e.g. KL 0-4) in class order: report quadratic kappa")
    evaluate.add_argument("--group-col", dest="group_col",
                          help="label-table column of patient ids: confidence intervals resample patients, with "
                               "all their images (default: each image on its own)")
    evaluate.add_argument("--bootstrap", type=_replicates, default=1000, metavar="N",
                          help="bootstrap replicates of the 95%% confidence intervals (default 1000; 0: none)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.json, report and plots")
    evaluate.add_argument("--overwrite", action="store_true",
                          help="replace the metrics, report and plots of an earlier evaluation in --out")


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``radiology evaluate`` with parsed arguments; returns the exit code."""
    # radiology.evaluate imports neither torch nor fastai: scoring starts fast and runs where they are not installed.
    from radiology.evaluate import evaluate_predictions
    from radiology.evaluate.reports import DECISIONS_ONLY

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
    try:
        metrics = evaluate_predictions(args.predictions, args.labels, image_cols=args.image_cols,
                                       label_cols=args.label_cols, multi_label=args.multi_label, out=args.out,
                                       bundle=args.bundle, ordinal=args.ordinal, groups=args.group_col,
                                       n_boot=args.bootstrap)
    except ValueError as error:  # the library names its argument; the command names its switch
        text = str(error)
        for argument, switch in (("(image_cols)", "(--image-col)"), ("with image_cols", "with --image-col"),
                                 ("(check image_cols)", "(check --image-col)")):
            text = text.replace(argument, switch)
        if args.group_col is not None:
            text = text.replace(f"groups={args.group_col!r}", f"--group-col {args.group_col}")
        if text == str(error):
            raise
        raise ValueError(text) from None
    print(f"{metrics['n']} scored ({metrics['missing']} without prediction): {headline(metrics)}")
    kind = "multi-label" if metrics["multi_label"] else "single-label"
    # Rows matched on the image reference, as always, go without saying; on the DICOM UID, the line says so.
    matched = "" if metrics["matched_on"] == "image" else f", matched on {metrics['matched_on']}"
    print(f"scored as {kind}{matched}; {metrics['unlabeled']} unlabeled label rows skipped")
    if metrics.get("probabilities") is False:
        print(f"scores: {DECISIONS_ONLY}")
    for line in interval_lines(metrics):
        print(line)
    print(f"metrics, report and plots: {args.out}")
    return 0


def interval_lines(metrics: dict) -> list[str]:
    """The confidence intervals of a metrics dict as lines ``macro_auc 0.953 [0.931, 0.972]``, after a title."""
    boot = metrics.get("bootstrap")
    key = next((k for k in metrics if k.startswith("ci") and isinstance(metrics[k], dict)), None)
    if boot is None or key is None:
        return []
    lines = [f"{key[2:]}% bootstrap intervals ({boot['replicates']} replicates over {boot['groups']} "
             f"{boot['unit']}s):"]
    for name, interval in metrics[key].items():
        value = metrics["odir"].get(name[5:]) if name.startswith("odir_") else metrics.get(name)
        if isinstance(value, float):
            shown = "n/a" if interval is None else f"[{interval[0]:.3f}, {interval[1]:.3f}]"
            lines.append(f"  {name} {value:.3f} {shown}")
    return lines


_EVALUATION_FILES = ("metrics.json", "report.txt", "confusion_matrix.png", "roc.png", "calibration.png")
