"""Shared pieces of the command families: argument types, exit codes, headlines."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

USAGE_ERROR = 2


def workers(text: str) -> int:
    """``--workers``: a count of processes, 0 meaning every core."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0 (0 = all cores)")
    return value or os.cpu_count() or 1


def positive(text: str) -> int:
    """A positive integer argument."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def max_pixels(text: str) -> int:
    """``--max-pixels``: a pixel count (``1e8`` accepted), 0 or ``none`` for no limit."""
    if text.lower() in ("none", "0"):
        return 0  # no limit
    value = int(float(text))  # accepts 1e8
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive number of pixels (or 0/none for no limit)")
    return value


def shard(text: str) -> tuple[int, int]:
    """``--shard I/N``: shard index and count."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("must be I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError("must be I/N with 0 <= I < N")
    return index, count


def exit_code(command: str, done: int, failed: int, strict: bool, table: Path) -> int:
    """0 when every input was handled, 1 when none was (or ``--strict`` and one failed)."""
    if failed and not done:
        print(f"radiology {command}: error: no input could be {command}ed; the reasons are in the error column of "
              f"{table}", file=sys.stderr)
        return 1
    return 1 if strict and failed else 0




def headline(metrics: dict) -> str:
    """The defined headline metrics of a metrics dict, on one line."""
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "quadratic_kappa", "macro_auc", "micro_f1")
    parts = [f"{k} {metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), float)]
    odir = metrics.get("odir")
    if isinstance(odir, dict) and isinstance(odir.get("score"), float):
        parts.append(f"odir_score {odir['score']:.3f}")
    return ", ".join(parts) or "no defined metric"
