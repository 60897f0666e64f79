"""Throughput of `radiology predict` locally against a Dask LocalCluster, measured in the same run.

Data: N phantom radiograph DICOMs (default 64, 512² written, 224 px model input) and an
untrained ``tf_efficientnet_lite0`` bundle (2 classes, 224 px) on the ``onnx`` backend:
what is measured is reading, preprocessing and the model, not what it predicts.

Runs (each the best of ``--repeat``):

- local: :func:`radiology.predict.predict_table` in this process (the reference, 1.00; the
  bundle loaded beforehand, as the CLI does before predicting);
- Dask, 1 and 2 workers: :func:`radiology.predict.predict_distributed` on a
  ``LocalCluster(n_workers=W, threads_per_worker=1, processes=True)`` started beforehand;
  the first (untimed) run loads the bundle on each worker, as a long run does once.

Prints images/s and the ratio of each to the local run. The cluster's workers share the
machine's cores with each other (and onnxruntime's own threads): on a 2-core machine two
workers cannot be twice one local process, which already uses both cores for the model.

Usage: ``python bench/predict_scale.py [--images 64] [--size 224] [--batch-size 16] [--repeat 2]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def _best(function, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    import torch
    from dask.distributed import Client, LocalCluster

    from radiology.models import create_model, load_bundle, save_bundle
    from radiology.pipeline import PadSquare, Percentile, Pipeline, Resize
    from radiology.predict import predict_distributed, predict_table, prediction_inputs
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(args.images):
            write_phantom_dicom(tmp / "images" / f"{i:03d}.dcm", phantom_radiograph((512, 512), seed=i))
        torch.manual_seed(0)
        model = create_model("tf_efficientnet_lite0", 2, pretrained=None)
        pipeline = Pipeline([Percentile(), Resize(longest=args.size), PadSquare()])
        folder = save_bundle(tmp / "bundle", model, pipeline, {"classes": ["normal", "finding"]}, size=args.size)
        inputs = prediction_inputs(tmp / "images", progress=False)
        bundle = load_bundle(folder, backend="onnx")

        n = len(inputs.ids)
        print(f"{n} phantom DICOMs, tf_efficientnet_lite0 at {args.size} px, onnx backend, batch size "
              f"{args.batch_size}, {os.cpu_count()} cores on this machine")
        local = predict_table(bundle, inputs, batch_size=args.batch_size, progress=False)  # warm-up
        seconds = _best(lambda: predict_table(bundle, inputs, batch_size=args.batch_size, progress=False),
                        args.repeat)
        rows = [("local (1 process)", seconds)]
        for workers in args.workers:
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                def run():
                    return predict_distributed([folder], inputs, client, backend="onnx", batch_size=args.batch_size)

                table = run()  # loads the bundle on every worker it reaches
                diff = (table[[c for c in table if c.startswith("prob_")]] - local[[c for c in local
                                                                                   if c.startswith("prob_")]])
                assert table["image"].tolist() == local["image"].tolist() and float(diff.abs().max().max()) < 1e-5
                rows.append((f"Dask LocalCluster, {workers} worker{'s' * (workers > 1)}", _best(run, args.repeat)))
        # Measured again last: how much the machine (shared, other load) drifted during the run.
        rows.append(("local again (drift check)",
                     _best(lambda: predict_table(bundle, inputs, batch_size=args.batch_size, progress=False),
                           args.repeat)))
        for name, spent in rows:
            print(f"{name:34s} {n / spent:7.1f} images/s   {seconds / spent:5.2f} x local")


if __name__ == "__main__":
    main()
