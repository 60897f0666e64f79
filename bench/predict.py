"""CPU prediction throughput from DICOM files against the bare onnxruntime floor, measured in the same run.

Data: N phantom radiograph DICOMs (default 64, 1024² written: a realistic radiograph's
pixel count) and an untrained ``tf_efficientnet_lite0`` bundle (2 classes, 224 px,
``Percentile → Resize → PadSquare``): what is measured is reading, preprocessing and the
model, not what it predicts.

Runs, interleaved round by round (``--repeat`` rounds, the best of each kept, so that the
load of a shared machine hits all of them alike):

- **floor**: a bare ``onnxruntime.InferenceSession`` on the bundle's ``model.onnx`` (default
  session options; and with ``intra_op_num_threads`` = the cores this process may use, the
  better kept) on float32 arrays already preprocessed in memory, at the best of
  ``--floor-batch-sizes``: the most images/s the model itself allows on this machine (the
  anchor, 1.00);
- **ours**: :func:`radiology.predict.predict_table` from the DICOM files, the function that
  ``radiology predict BUNDLE FILES --backend onnx`` runs (bundle loaded beforehand, as the
  CLI does), once with each ``--workers`` value (decoding in that many worker processes,
  overlapped with the model; 0 = a thread of this process) and each ``--threads`` value
  (onnxruntime's intra-op threads; default the library's: the usable cores, less the workers);
- **before**: the path before issue 21, rebuilt here as it was (a default session; each batch
  of 32 decoded, then run: decoding and the model never overlap);
- **decode only**: the bundle's pipeline on every file (``Bundle.load_sample``), no model,
  in this process: the preprocessing cost alone;
- **CLI**: ``radiology predict BUNDLE FOLDER --backend onnx`` as a subprocess, once at the
  end: the whole process (interpreter start, imports, bundle load, prediction, CSV).

Prints images/s of each and its ratio to the floor; the ceiling on a machine whose cores are
all busy is ``model / (model + decode)`` of the CPU time (printed too): with the model
already using every core, decoding in other processes can hide only as much as it frees.

Usage: ``python bench/predict.py [--images 64] [--batch-size 32] [--threads 1 2] [--workers 0 1] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import inspect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--pixels", type=int, default=1024, help="side of the phantom DICOMs written")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=None, help="ours (default: the library's default)")
    parser.add_argument("--floor-batch-sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help="onnxruntime threads of ours, one run each (default: the library's choice)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="decode worker processes of ours, one run each (default: the library's default only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-cli", action="store_true", help="skip the CLI subprocess run")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime
    import torch

    from radiology.models import create_model, load_bundle, save_bundle
    from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize
    from radiology.predict import predict_table, prediction_inputs
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    accepts = inspect.signature(predict_table).parameters
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.images):
            write_phantom_dicom(tmp / "images" / f"{i:03d}.dcm",
                                phantom_radiograph((args.pixels, args.pixels), seed=i))
        torch.manual_seed(0)
        model = create_model("tf_efficientnet_lite0", 2, pretrained=None)
        pipeline = Pipeline([Percentile(), Resize(longest=args.size), PadSquare()])
        folder = save_bundle(tmp / "bundle", model, pipeline, {"classes": ["normal", "finding"]}, size=args.size)
        inputs = prediction_inputs(tmp / "images", progress=False)
        has_threads = "threads" in inspect.signature(load_bundle).parameters
        bundle = load_bundle(folder, backend="onnx")
        files = [paths[0] for paths in inputs.sources]
        arrays = np.stack([bundle.load_sample(p) for p in files]).astype(np.float32)
        n = len(files)

        # The floor: bare sessions on preprocessed arrays.
        data = (folder / "model.onnx").read_bytes()
        sessions = {"default options": onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = _cores()
        sessions[f"intra_op={_cores()}"] = onnxruntime.InferenceSession(data, options,
                                                                          providers=["CPUExecutionProvider"])
        name = sessions["default options"].get_inputs()[0].name

        def floor(session, batch):
            def run():
                for start in range(0, n, batch):
                    session.run(None, {name: arrays[start:start + batch]})
            return run

        floors = {(label, b): floor(s, b) for label, s in sessions.items() for b in args.floor_batch_sizes}
        if has_threads:  # the library's session settings
            tuned = bundle._runner
            floors[("library's session options", args.floor_batch_sizes[-1])] = floor(tuned, args.floor_batch_sizes[-1])

        def before():
            """The path before issue 21: decode a batch, then run it (default session, batch 32)."""
            session = sessions["default options"]
            for start in range(0, n, 32):
                batch = np.stack([bundle.load_sample(p) for p in files[start:start + 32]]).astype(np.float32)
                logits = session.run(None, {name: batch})[0]
                np.exp(logits - logits.max(axis=1, keepdims=True))

        def ours(workers, threads=None):
            kwargs = {"progress": False}
            if args.batch_size is not None:
                kwargs["batch_size"] = args.batch_size
            model = bundle
            if workers is not None and "workers" in accepts:
                kwargs["workers"] = workers
                if workers and threads is None:  # as the CLI does: the model leaves the workers their cores
                    threads = max(1, _cores() - workers)
            if threads is not None and has_threads:
                model = load_bundle(folder, backend="onnx", threads=threads)
            return lambda: predict_table(model, inputs, **kwargs)

        worker_runs = args.workers if args.workers is not None else [None]
        thread_runs = args.threads if args.threads is not None else [None]
        variants = {"ours" + ("" if w is None else f", workers={w}") + ("" if t is None else f", threads={t}"):
                    ours(w, t) for w in worker_runs for t in thread_runs}
        runs = {**{f"floor: {label}, batch {b}": f for (label, b), f in floors.items()},
                "before (decode, then model; batch 32)": before,
                **variants,
                "decode only (in process)": lambda: [bundle.load_sample(p) for p in files]}

        # The same table whatever the workers (and the warm-up of every run).
        reference = ours(0 if "workers" in accepts else None)()
        for run in variants.values():
            table = run()
            probs = [c for c in table if c.startswith("prob_")]
            assert table["image"].tolist() == reference["image"].tolist()
            assert float(np.abs(table[probs].to_numpy() - reference[probs].to_numpy()).max()) <= 1e-6
        for f in floors.values():
            f()

        best = {label: float("inf") for label in runs}
        for _ in range(args.repeat):
            for label, run in runs.items():
                best[label] = min(best[label], _timed(run))

        cli = None
        if not args.no_cli:
            command = [sys.executable, "-m", "radiology", "predict", str(folder), str(tmp / "images"),
                       "--backend", "onnx", "--out", str(tmp / "predictions.csv"), "--overwrite", "-q"]
            if args.batch_size is not None:
                command += ["--batch-size", str(args.batch_size)]
            cli = _timed(lambda: subprocess.run(command, check=True, capture_output=True))

        floor_label = min((k for k in best if k.startswith("floor")), key=best.get)
        anchor = best[floor_label]
        print(f"{n} phantom DICOMs of {args.pixels}², tf_efficientnet_lite0 at {args.size} px, onnxruntime "
              f"{onnxruntime.__version__}, {_cores()} usable cores ({os.cpu_count()} on this machine), "
              f"best of {args.repeat}")
        for label, spent in best.items():
            mark = "  <- floor (anchor)" if label == floor_label else ""
            print(f"{label:40s} {n / spent:7.1f} images/s   {anchor / spent:5.2f} x floor{mark}")
        if cli is not None:
            print(f"{'CLI subprocess (whole process)':40s} {n / cli:7.1f} images/s   {anchor / cli:5.2f} x floor")
        decode = best["decode only (in process)"]
        print(f"ceiling with every core busy: model / (model + decode) CPU time ~ "
              f"{anchor * _cores() / (anchor * _cores() + decode):.2f} x floor "
              f"(decode {1000 * decode / n:.1f} ms/image on one core, model {1000 * anchor / n:.1f} ms/image "
              f"on {_cores()})")


if __name__ == "__main__":
    main()
