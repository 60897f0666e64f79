"""What the safety of a bundle costs: manifest checksums and archive checks against the load itself.

Saves a bundle of the default model (``tf_efficientnet_lite0``, 1 channel, 224²) and times, in
the same run: reading the bundle's files (the anchor every load pays), :func:`verify_bundle`
(sha256 of every file), :func:`check_program_archive` on ``model.pt2``, :func:`check_onnx` on
``model.onnx``, and the whole :func:`load_bundle` per backend. Prints milliseconds and the
ratio of each check to the anchor and to the load it is part of.

Usage: ``python bench/bundle_verify.py [--arch tf_efficientnet_lite0] [--size 224] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from radiology.models import (
    RadiographClassifier,
    check_onnx,
    check_program_archive,
    load_bundle,
    save_bundle,
    verify_bundle,
)
from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize


def _ms(function, repeat: int) -> float:
    function()  # warm-up: file cache, imports
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        model = RadiographClassifier(args.arch, 2, in_chans=1)
        pipeline = Pipeline([Percentile(), Resize(longest=args.size), PadSquare()])
        folder = save_bundle(Path(scratch) / "bundle", model, pipeline, {"classes": ["a", "b"]}, size=args.size)
        files = sorted(p for p in folder.iterdir() if p.is_file())
        megabytes = sum(p.stat().st_size for p in files) / 1e6
        read = _ms(lambda: [p.read_bytes() for p in files], args.repeat)
        verify = _ms(lambda: verify_bundle(folder), args.repeat)
        pt2, onnx = (folder / "model.pt2").read_bytes(), (folder / "model.onnx").read_bytes()
        program = _ms(lambda: check_program_archive(pt2), args.repeat)
        graph = _ms(lambda: check_onnx(onnx), args.repeat)
        print(f"bundle: {args.arch} at {args.size}², {len(files)} files, {megabytes:.1f} MB")
        print(f"read every file (anchor)      {read:8.1f} ms")
        print(f"verify_bundle (sha256 of all) {verify:8.1f} ms   {verify / read:5.2f}x the read")
        print(f"check_program_archive         {program:8.1f} ms")
        print(f"check_onnx                    {graph:8.1f} ms")
        model_files = {"eager": "weights.safetensors", "export": "model.pt2", "onnx": "model.onnx"}
        for backend, model_file in model_files.items():
            read_here = [folder / name for name in ("model.json", "labels.json", "pipeline.json", "train.json",
                                                    model_file)]
            hashing = _ms(lambda paths=read_here: [hashlib.sha256(p.read_bytes()).digest() for p in paths],
                          args.repeat)
            checks = hashing + (program if backend == "export" else graph if backend == "onnx" else 0)
            load = _ms(lambda backend=backend: load_bundle(folder, backend), args.repeat)
            print(f"load_bundle {backend:6s}            {load:8.1f} ms   its reads + sha256 {hashing:6.1f} ms, "
                  f"all checks {checks / load:5.1%} of the load")


if __name__ == "__main__":
    main()
