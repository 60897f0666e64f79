"""Code shared by the example scripts in this folder (not an example itself).

The scripts are run as ``python examples/NAME.py``, so this folder is on ``sys.path`` and they
import from here with ``from _common import ...``. Each helper keeps the behaviour the scripts
had when this code was repeated in every one of them.

The way in is the public data set as its publisher ships it: ``--data PATH``
(:func:`add_data_arguments`, :func:`data_root`). ``--quick`` without ``--data`` writes a miniature
of that layout from synthetic phantoms under ``OUT/miniature`` (``_miniature.py``) and runs the
same code on it, so it needs nothing but a clone of the repository; ``--quick --data PATH`` is a
small subset of the real data. A ``--data`` folder is only read, never written to.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

# fastai's layers use torch.jit.script, which torch deprecates: a warning on import that no reader
# of these examples can act on (the command line hides it the same way).
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from radiology.data import from_csv, kfold_splits, train_valid_split  # noqa: E402 - after the filter
from radiology.evaluate import evaluate_predictions  # noqa: E402
from radiology.predict import Ensemble, predict_table, prediction_inputs  # noqa: E402
from radiology.train import TrainConfig, train  # noqa: E402


def new_parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser that shows the example's docstring as it is written.

    Parameters
    ----------
    description : str or None
        The example's module docstring.

    Returns
    -------
    argparse.ArgumentParser
        A parser with ``RawDescriptionHelpFormatter``; the caller adds its arguments.
    """
    return argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_training_arguments(parser: argparse.ArgumentParser, *, epochs_help: str, size_help: str,
                           test_fraction_help: str = "share of patients held out for testing") -> None:
    """Add ``--test-fraction``, ``--epochs`` and ``--size``, in that order.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser to extend.
    epochs_help, size_help : str
        Help texts of ``--epochs`` and ``--size`` (they name the example's defaults).
    test_fraction_help : str, optional
        Help text of ``--test-fraction`` (default 0.2).
    """
    parser.add_argument("--test-fraction", type=float, default=0.2, help=test_fraction_help)
    parser.add_argument("--epochs", type=int, help=epochs_help)
    parser.add_argument("--size", type=int, help=size_help)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--workers``, ``--threads``, ``--seed`` and ``-q/--quiet``, in that order.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser to extend.
    """
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, help="torch CPU threads (quick default: 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def shown(path: Path) -> str:
    """A path as the user would type it from the current folder.

    Parameters
    ----------
    path : Path
        Any path.

    Returns
    -------
    str
        ``path`` relative to the current folder.
    """
    return os.path.relpath(path)


def anonymous_groups(patients) -> np.ndarray:
    """Patient ids replaced by opaque group numbers: the split files never hold an id.

    Parameters
    ----------
    patients : array-like
        One patient id per sample.

    Returns
    -------
    numpy.ndarray
        ``"g0"``, ``"g1"``, ... in order of first appearance; equal ids get equal groups.
    """
    codes, _ = pd.factorize(pd.Series(patients, dtype=str))
    return np.array([f"g{code}" for code in codes])


def patient_subset(targets, groups, count: int, seed: int = 0) -> np.ndarray:
    """About ``count`` samples of whole patients, class (or label) proportions kept.

    With k folds of the data, one fold holds about 1/k of it: keep one stratified, grouped fold
    when ``count`` is under half the data, else drop one.

    Parameters
    ----------
    targets : numpy.ndarray
        The samples' targets (class indices, or a multi-label matrix).
    groups : numpy.ndarray
        The samples' patient groups.
    count : int
        The wanted number of samples.
    seed : int, optional
        Seed of the fold split.

    Returns
    -------
    numpy.ndarray
        Indices of the kept samples (all of them when ``count`` is not below their number).
    """
    n = len(targets)
    if count >= n:
        return np.arange(n)
    keep_fold = count <= n / 2
    k = max(2, round(n / count) if keep_fold else round(n / (n - count)))
    rest, fold = kfold_splits(targets, groups, n_splits=k, seed=seed)[0]
    return fold if keep_fold else rest


def fmt(value, *, nan_as_na: bool = False) -> str:
    """A metric for printing, ``n/a`` when undefined (e.g. an AUC with one class present).

    Parameters
    ----------
    value : float or None
        The metric; ``None`` when undefined.
    nan_as_na : bool, optional
        Also print a non-finite value (NaN) as ``n/a``.

    Returns
    -------
    str
        The value with three decimals, or ``n/a``.
    """
    if value is None or (nan_as_na and not np.isfinite(value)):
        return "n/a"
    return f"{value:.3f}"


SYNTHETIC_NOTE = ("quick mode: a miniature of the publisher's layout made of SYNTHETIC phantoms "
                  "(radiology.synthetic), not patients: the numbers below mean nothing")


def add_data_arguments(parser: argparse.ArgumentParser, *, layout: str, out: str,
                       quick_help: str | None = None) -> None:
    """Add ``--data``, ``--out`` and ``--quick``, in that order.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser to extend.
    layout : str
        What ``--data`` is, for its help, e.g. ``"the chest_xray folder of Kermany et al."``.
    out : str
        The default output folder.
    quick_help : str, optional
        Help of ``--quick`` (default: small, fast run; synthetic miniature without ``--data``).
    """
    parser.add_argument("--data", type=Path, metavar="PATH", help=f"{layout} (only read, never written to)")
    parser.add_argument("--out", type=Path, default=Path(out), help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help=quick_help or "small, fast run (CI): a subset of --data, or without --data a "
                                           "miniature of the layout made of SYNTHETIC phantoms")


def is_synthetic(args: argparse.Namespace) -> bool:
    """Whether the run is on a synthetic miniature (``--quick`` without ``--data``).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``quick`` and ``data``).

    Returns
    -------
    bool
        ``True`` for ``--quick`` without ``--data``.
    """
    return bool(args.quick and args.data is None)


def data_root(args: argparse.Namespace, write_miniature, *, what: str) -> Path:
    """The data folder of a run: ``--data``, or with ``--quick`` alone a synthetic miniature.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``data``, ``quick``, ``out`` and ``seed``; see
        :func:`add_data_arguments`).
    write_miniature : callable
        ``write_miniature(folder, seed=...) -> Path``: writes a miniature of the publisher's
        layout into ``folder`` (created) and returns the folder ``--data`` would name.
    what : str
        The data set, for the messages, e.g. ``"the Kermany et al. chest_xray folder"``.

    Returns
    -------
    Path
        ``--data`` as given (checked to be a folder; its layout is the caller's to check), or
        the miniature written under ``OUT/miniature`` (a note that its numbers mean nothing is
        printed).

    Raises
    ------
    SystemExit
        Without ``--data`` and ``--quick``, when ``--data`` is not a folder, or when ``--out``
        lies inside it.
    """
    if args.data is not None:
        if not args.data.is_dir():
            raise SystemExit(f"--data {args.data}: not a folder (expected {what})")
        if args.out.resolve().is_relative_to(args.data.resolve()):
            raise SystemExit(f"--out {args.out} lies inside --data {args.data}: the data is only read, "
                             "give an --out elsewhere")
        return args.data
    if not args.quick:
        raise SystemExit(f"give --data PATH ({what}), or --quick for a run on a synthetic miniature")
    print(SYNTHETIC_NOTE)
    return Path(write_miniature(args.out / "miniature", seed=args.seed))


def held_out_table(args: argparse.Namespace, table: pd.DataFrame, root: Path, *, image: str, label: str,
                   patient: str, quick: dict, quick_images: int) -> tuple[Path, dict]:
    """One label per image from a table: split test patients off, train, predict and score them.

    Writes to ``args.out``: ``train.csv``, ``test.csv`` (no patient groups), ``bundle/``,
    ``predictions.csv`` and ``test_evaluation/``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``out``, ``quick``, ``quiet``, ``seed``, ``test_fraction``,
        ``workers`` and the options of :func:`train_settings`).
    table : pandas.DataFrame
        One row per image: ``image`` (relative to ``root``), ``label`` and ``patient`` (any ids:
        they are replaced by opaque groups before anything is written).
    root : Path
        The folder the image paths are relative to (only read).
    image, label, patient : str
        The columns of ``table``.
    quick : dict
        The ``TrainConfig`` settings of ``--quick``.
    quick_images : int
        About how many images ``--quick`` keeps (whole patients).

    Returns
    -------
    tuple
        ``(out, metrics)``: the output folder and the test metrics.
    """
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    table = table[[image, label, patient]].reset_index(drop=True)
    table[patient] = anonymous_groups(table[patient])
    items = from_csv(table, root, image, label, group_col=patient, progress=not args.quiet)
    if args.quick:
        table, items = quick_subset(table, items, quick_images, args.seed, "images (whole patients)", quick)

    # The test patients are split off BEFORE training: the model never sees them.
    rest, test, train_csv, test_csv = write_test_split(table, items.targets, items.groups, out, [image, label],
                                                       test_fraction=args.test_fraction, seed=args.seed)
    print(f"{len(rest)} images for training (patients grouped), {len(test)} held-out test images "
          f"from {len(set(items.groups[test]))} other patients")

    config = TrainConfig(csv=train_csv, root=root, image_cols=image, label_cols=label, group_col=patient,
                         out=out / "bundle", overwrite=True, seed=args.seed,
                         **train_settings(args, quick))
    _, _, metrics = train_predict_evaluate(config, test_csv, root, out, image_cols=image, label_cols=label,
                                           quiet=args.quiet)
    return out, metrics


def set_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads: ``--threads``, else 2 with ``--quick``, else unchanged.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``threads`` and ``quick``).
    """
    torch.set_num_threads(args.threads or (2 if args.quick else torch.get_num_threads()))


def train_settings(args: argparse.Namespace, quick: dict, keys=("epochs", "size")) -> dict:
    """The ``TrainConfig`` settings of a run: the quick ones or ``workers``, then the given options.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``quick``, ``workers`` and each of ``keys``).
    quick : dict
        The settings of ``--quick``.
    keys : sequence of str, optional
        Options that, when given, override a setting of the same name.

    Returns
    -------
    dict
        Keyword arguments for ``TrainConfig``.
    """
    settings = dict(quick) if args.quick else {"workers": args.workers}
    settings.update({key: getattr(args, key) for key in keys if getattr(args, key) is not None})
    return settings


def quick_subset(table: pd.DataFrame, items, count: int, seed: int, what: str, quick: dict):
    """With ``--quick``, the table and items cut to about ``count`` samples of whole patients.

    Parameters
    ----------
    table : pandas.DataFrame
        The labels table, one row per item.
    items
        The items read from it (``radiology.data.from_csv``).
    count : int
        The wanted number of samples; nothing is cut when there are not more.
    seed : int
        Seed of the subset.
    what : str
        What the samples are, for the message, e.g. ``"images (whole patients)"``.
    quick : dict
        The quick settings (``size`` and ``epochs`` are printed).

    Returns
    -------
    tuple
        ``(table, items)``, the subset or the inputs unchanged.
    """
    if len(table) <= count:
        return table, items
    keep = patient_subset(items.targets, items.groups, count, seed=seed)
    print(f"quick mode: a subset of {len(keep)} of {len(table)} {what}, "
          f"{quick['size']} px, {quick['epochs']} fine-tuning epoch")
    return table.iloc[keep].reset_index(drop=True), items.subset(keep)


def write_test_split(table: pd.DataFrame, targets, groups, out: Path, test_cols, *, test_fraction: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray, Path, Path]:
    """Split test patients off (stratified, grouped) and write ``train.csv`` and ``test.csv``.

    The split is made BEFORE training: the model never sees the test patients.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per sample, with the group column training needs.
    targets, groups : numpy.ndarray
        The samples' targets and patient groups.
    out : Path
        The output folder (it must exist).
    test_cols : list of str
        The columns written to ``test.csv`` (no patient group).
    test_fraction : float
        Share of the patients held out.
    seed : int
        Seed of the split.

    Returns
    -------
    tuple
        ``(rest, test, train_csv, test_csv)``: the training and test indices, and the two files.
    """
    rest, test = train_valid_split(targets, groups, valid_fraction=test_fraction, seed=seed)
    train_csv, test_csv = out / "train.csv", out / "test.csv"
    table.iloc[rest].to_csv(train_csv, index=False)
    table.iloc[test][list(test_cols)].to_csv(test_csv, index=False)
    return rest, test, train_csv, test_csv


def train_predict_evaluate(config: TrainConfig, test_csv: Path, root: Path, out: Path, *, image_cols, label_cols,
                           quiet: bool, multi_label: bool | None = None, tuned_thresholds: bool = False):
    """Train, predict the test table with the bundle, and score it.

    Parameters
    ----------
    config : TrainConfig
        The training run.
    test_csv : Path
        The held-out table.
    root : Path
        The folder its image paths are relative to.
    out : Path
        Where ``predictions.csv`` and ``test_evaluation/`` are written.
    image_cols, label_cols : str or sequence of str
        The image and label columns of ``test_csv``.
    quiet : bool
        No progress bars.
    multi_label : bool or None, optional
        Passed to ``evaluate_predictions`` (``None``: from the table).
    tuned_thresholds : bool, optional
        Score at the bundle's tuned decision thresholds.

    Returns
    -------
    tuple
        ``(model, predictions, metrics)``; ``model`` is a :class:`radiology.predict.Ensemble` (of
        one model, or of the ``K`` of a ``folds`` run).
    """
    result = train(config, progress=not quiet)
    bundle = Ensemble.load(result.bundle)  # one model, or the K of a folds run
    predictions = predict_table(bundle, prediction_inputs(test_csv, root=root, image_cols=image_cols,
                                                          progress=not quiet),
                                progress=not quiet)
    predictions.to_csv(out / "predictions.csv", index=False)
    metrics = evaluate_predictions(predictions, test_csv, image_cols=image_cols, label_cols=label_cols,
                                   multi_label=multi_label,
                                   thresholds=bundle.thresholds if tuned_thresholds else None,
                                   out=out / "test_evaluation")
    return bundle, predictions, metrics


def elapsed(started: float) -> str:
    """``[N s]``: the seconds since ``started`` (a ``time.time()``).

    Parameters
    ----------
    started : float
        The start time.

    Returns
    -------
    str
        The elapsed time, for the final line.
    """
    return f"[{time.time() - started:.0f} s]"


