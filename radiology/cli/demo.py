"""``radiology demo``: the offline demo on synthetic phantoms."""

from __future__ import annotations

import argparse
from pathlib import Path

from radiology.cli.common import headline, workers


def add_demo_parsers(commands) -> None:
    """Add the demo commands to the ``radiology`` subparsers."""
    demo = commands.add_parser("demo", help="offline demo: conversion, then train/predict/evaluate on phantoms")
    demo.add_argument("out", type=Path, metavar="OUT")
    demo.add_argument("--workers", type=workers, default=1)
    demo.add_argument("--no-model", action="store_true", help="conversion only (no training)")


def run_demo_command(args: argparse.Namespace) -> int:
    """Run ``radiology demo`` with parsed arguments; returns the exit code."""
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
    print(f"model demo on SYNTHETIC phantoms (not patients): test {headline(model.metrics)}")
    print(f"bundle: {model.bundle}\npredictions: {model.predictions}\nevaluation: {model.evaluation}")
    print(f"explanations (GradCAM): {model.explanations}")
    return 0
