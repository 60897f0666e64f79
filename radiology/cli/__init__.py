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
import re
import sys
import warnings
from collections.abc import Sequence

from radiology import __version__
from radiology.cli import convert, demo, evaluate, predict, train
from radiology.cli.common import USAGE_ERROR

__all__ = ["main", "build_parser", "USAGE_ERROR"]

# Command name -> handler; each family module adds its parsers and holds its handlers.
_HANDLERS = {
    "convert": convert.run_convert, "report": convert.run_report, "fit-bins": convert.run_fit_bins,
    "preview": convert.run_preview, "metadata": convert.run_metadata, "train": train.run_train,
    "pretrain": train.run_pretrain, "predict": predict.run_predict, "explain": predict.run_explain,
    "evaluate": evaluate.run_evaluate, "demo": demo.run_demo_command,
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``radiology`` command (documented in the CLI guide)."""
    parser = argparse.ArgumentParser(prog="radiology", description="DICOM radiographs to training-ready images.")
    parser.add_argument("--version", action="version", version=f"radiology {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    convert.add_convert_parsers(commands)
    train.add_train_parsers(commands)
    predict.add_predict_parsers(commands)
    evaluate.add_evaluate_parsers(commands)
    demo.add_demo_parsers(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    Parameters
    ----------
    argv : sequence of str, optional
        Command-line arguments without the program name; default ``sys.argv[1:]``.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not args.verbose:  # per-file decode failures go to the report, not to the terminal
        import pydicom  # noqa: F401 - pydicom sets its logger's level on import; set ours after

        logging.getLogger("pydicom").setLevel(logging.CRITICAL)
        # fastai's own layers use torch.jit.script, which torch deprecates: a warning on every
        # model command that no user of this command line can act on.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    from radiology.errors import RadiologyError, one_line

    try:
        return _HANDLERS[args.command](args)
    except (FileNotFoundError, FileExistsError, NotADirectoryError, ValueError, TypeError, RadiologyError) as error:
        if args.verbose:
            raise
        print(f"radiology {args.command}: error: {_in_flags(one_line(error), args)}", file=sys.stderr)
        return USAGE_ERROR


def _in_flags(message: str, args: argparse.Namespace) -> str:
    """A library message in the command's words: ``overwrite=True`` becomes ``--overwrite``,
    ``method='metadata'`` becomes ``--method metadata`` and ``unlabeled=FOLDER`` becomes
    ``--unlabeled FOLDER`` where the command has such a switch.

    Library errors name Python arguments; the command's switches share their names.
    """

    def flag(match: re.Match) -> str:
        name, value = match.groups()
        if name not in vars(args):
            return match.group(0)
        option = "--" + name.replace("_", "-")
        return option if value == "True" else f"{option} {value.strip(chr(39))}"

    return re.sub(r"\b([a-z][a-z_]*)=(True\b|'[^']*'|[A-Z][A-Z_]*\b)", flag, message)
