"""Do a model's explanations point at the finding? The pointing game over CAM methods and layers.

For every ``--config`` (``method@layer``; ``layer`` empty = the default, the backbone's last
spatial layer) the bundle explains the given images for ``--label`` with
:func:`radiology.explain.explain_inputs` (``boxes=``) and prints the hit rate beside the two
baselines measured on the same images in the same run: the image centre and a uniformly
random point (:func:`radiology.explain.pointing_game`). Only images that have boxes count.

Choose a configuration on images the reported numbers do not come from (e.g. the training
run's own validation split), then report it once on held-out images.

Usage::

    python bench/pointing.py BUNDLE LABELS.csv --root DIR --image-col file --label fracture \\
        [--config gradcam@ --config gradcam@blocks.4 --config hirescam@blocks.5] [--work DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_CONFIGS = ("gradcam@", "gradcam@blocks.5", "gradcam@blocks.4", "hirescam@blocks.4", "gradcampp@blocks.4",
                   "eigencam@blocks.4")


def main() -> None:
    from radiology.explain import explain_inputs, read_boxes
    from radiology.models import load_bundle

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("labels", type=Path, help="CSV with an image column and a boxes column ('x y w h;...')")
    parser.add_argument("--root", type=Path, required=True, help="folder the image column is relative to")
    parser.add_argument("--image-col", default="file")
    parser.add_argument("--boxes-col", default="boxes")
    parser.add_argument("--label", required=True, help="the class whose map is scored (the finding)")
    parser.add_argument("--config", action="append", default=None, metavar="METHOD@LAYER",
                        help=f"repeatable; default {', '.join(DEFAULT_CONFIGS)}")
    parser.add_argument("--grow", type=float, default=0.05)
    parser.add_argument("--work", type=Path, default=None, help="where the figures go (default: a temporary folder)")
    args = parser.parse_args()

    table = pd.read_csv(args.labels, dtype=str, keep_default_na=False)
    table = table[table[args.boxes_col].str.strip() != ""].reset_index(drop=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-pointing-"))
    csv = work / "boxed.csv"
    work.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    boxes = read_boxes(table, image_col=args.image_col, boxes_col=args.boxes_col)
    bundle = load_bundle(args.bundle, backend="eager")
    print(f"{len(table)} boxed images of {args.labels.name}; label {args.label!r}; boxes grown by {args.grow:.0%}")
    print(f"{'method':10s} {'layer':18s} {'hit rate':>9s} {'centre':>7s} {'random':>7s}   seconds")
    for config in args.config or DEFAULT_CONFIGS:
        method, _, layer = config.partition("@")
        started = time.time()
        out = work / config.replace("@", "_").replace(".", "-")
        result = explain_inputs(bundle, csv, out, method=method, label=args.label, target_layer=layer or None,
                                root=args.root, image_cols=args.image_col, boxes=boxes, grow=args.grow,
                                progress=False, figure_size=None)
        game = result.attrs["pointing"]
        if not game["n"]:
            print(f"{method:10s} {layer or '(last)':18s} nothing scored (no explained image has boxes)", flush=True)
            continue
        print(f"{method:10s} {layer or '(last)':18s} {game['hit_rate']:9.3f} {game['centre_rate']:7.3f} "
              f"{game['random_rate']:7.3f}   {time.time() - started:5.0f}   ({game['hits']}/{game['n']})", flush=True)


if __name__ == "__main__":
    main()
