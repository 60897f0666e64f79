"""Throughput of `radiology convert` against the anchors, measured in the same run.

Data: the 60 real chest radiographs wrapped as DICOM in ../shared/data (about 1k², varied
encodings). Anchors, one file at a time in one process:

- bare decode: ``pydicom.dcmread(f).pixel_array``
- bare decode + PNG: the above, min-max to 8 bits, PIL's default PNG write (the reference, 1.00)
- fastai: ``Path(f).dcmread().hist_scaled()`` then PNG (needs the ``models`` extra)
- DCMTK: ``dcmj2pnm +on`` as a process per file (when installed; skips files it cannot decode)

Ours: ``convert_folder`` with 1 worker and with all cores (8-bit PNG, percentile
normalization), the ``radiology convert`` command itself with 1 worker (a new process,
start-up included), and with ``--dask`` the same conversion on a ``dask.distributed``
``LocalCluster`` (one single-threaded worker process per core) through ``executor=``.
Prints images/s and each time per image as a ratio of the reference.

Usage: ``python bench/convert.py [--repeat N] [--data DIR | --synthetic N] [--workers 1 2 4 ...] [--dask]``
(``--synthetic N`` writes N 1024² phantom radiographs in mixed encodings instead of using
the shared data; ``--workers`` lists the pool sizes to measure, default 1 and all cores.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from radiology.convert import ConvertOptions, convert_folder

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chest_xray_views" / "dicom"


def _timed(function, files, repeat):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        count = function(files)
        best = min(best, time.perf_counter() - start)
    return best / max(count, 1), count


def bare_decode(files):
    for f in files:
        _ = pydicom.dcmread(f).pixel_array
    return len(files)


def bare_decode_png(files):
    out = Path(tempfile.mkdtemp())
    for i, f in enumerate(files):
        pixels = pydicom.dcmread(f).pixel_array.astype(np.float32)
        span = max(float(pixels.max() - pixels.min()), 1.0)
        Image.fromarray(((pixels - pixels.min()) / span * 255).astype(np.uint8)).save(out / f"{i}.png")
    shutil.rmtree(out)
    return len(files)


def fastai_path(files):
    from fastai.medical.imaging import Path as FastaiPath  # noqa: F401 - patches Path.dcmread

    out = Path(tempfile.mkdtemp())
    for i, f in enumerate(files):
        scaled = Path(f).dcmread().hist_scaled()
        Image.fromarray((scaled.numpy() * 255).astype(np.uint8)).save(out / f"{i}.png")
    shutil.rmtree(out)
    return len(files)


def dcmtk(files):
    out = Path(tempfile.mkdtemp())
    done = 0
    for i, f in enumerate(files):
        result = subprocess.run(["dcmj2pnm", "+on", str(f), str(out / f"{i}.png")], capture_output=True, check=False)
        done += result.returncode == 0
    shutil.rmtree(out)
    return done


def ours(workers):
    def run(files):
        out = tempfile.mkdtemp()
        report = convert_folder(files, out, ConvertOptions(), workers=workers, progress=False)
        shutil.rmtree(out)
        return report.count("ok")
    return run


def cli(workers):
    def run(files):
        out = tempfile.mkdtemp()
        command = [sys.executable, "-m", "radiology", "convert", *map(str, files), out, "-q", "--workers", str(workers)]
        subprocess.run(command, check=True, capture_output=True)
        shutil.rmtree(out)
        return len(files)
    return run


def dask_cluster(workers):
    def run(files):
        from dask.distributed import Client, LocalCluster

        out = tempfile.mkdtemp()
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                report = convert_folder(files, out, ConvertOptions(), executor=client.get_executor(), progress=False)
        shutil.rmtree(out)
        return report.count("ok")
    return run


def synthetic_data(count: int) -> Path:
    """Write ``count`` 1024² phantom radiographs in mixed encodings and polarities."""
    from radiology.synthetic import phantom_radiograph, write_phantom_dicom

    folder = Path(tempfile.mkdtemp(prefix="radiology-bench-"))
    encodings = ("explicit", "rle", "jpeg2000", "deflated")
    for i in range(count):
        write_phantom_dicom(folder / f"{i:04d}.dcm", phantom_radiograph((1024, 896), seed=i),
                            encoding=encodings[i % 4], bits_stored=12 + i % 5,
                            photometric="MONOCHROME1" if i % 3 == 0 else "MONOCHROME2")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--synthetic", type=int, metavar="N", help="benchmark on N generated phantoms instead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", help="pool sizes (default: 1 and all cores)")
    parser.add_argument("--dask", action="store_true", help="also a dask.distributed LocalCluster of each pool size")
    args = parser.parse_args()
    if args.synthetic:
        args.data = synthetic_data(args.synthetic)
    files = sorted(args.data.glob("*.dcm"))
    if not files:
        raise SystemExit(f"no DICOM files in {args.data} (needs ../shared/data, or use --synthetic N)")
    cores = os.cpu_count() or 1
    pools = args.workers or sorted({1, cores})
    candidates = {
        "bare decode (pydicom .pixel_array)": bare_decode,
        "bare decode + PIL PNG (reference)": bare_decode_png,
        "fastai hist_scaled + PNG": fastai_path,
        "DCMTK dcmj2pnm (process per file)": dcmtk if shutil.which("dcmj2pnm") else None,
    }
    skipped: set[str] = set()
    candidates["radiology convert CLI, 1 worker, start-up"] = cli(1)
    for n in pools:
        candidates[f"radiology convert, {n} worker{'s' if n > 1 else ''}"] = ours(n)
    if args.dask:
        for n in pools:
            candidates[f"Dask LocalCluster, {n} worker{'s' if n > 1 else ''}"] = dask_cluster(n)
    results: dict = {}
    # Round robin over the candidates, best of `repeat` each: load drift on a shared machine
    # then hits every candidate alike instead of whichever ran during a busy minute.
    for _ in range(args.repeat):
        for name, function in candidates.items():
            if function is None or name in skipped:
                continue
            try:
                seconds, count = _timed(function, files, 1)
            except ImportError as error:
                print(f"{name:42s} skipped ({error.name} not installed)")
                skipped.add(name)
                continue
            best = results.get(name, (float("inf"), count))[0]
            results[name] = (min(best, seconds), count)
    for name, function in candidates.items():
        if function is None:
            print(f"{name:42s} skipped (not installed)")
    reference = results["bare decode + PIL PNG (reference)"][0]
    print(f"{len(files)} radiographs, best of {args.repeat}, {cores} cores")
    print(f"{'':42s} {'ms/image':>9s} {'images/s':>9s} {'time ratio':>11s}")
    for name, (seconds, count) in results.items():
        note = "" if count == len(files) else f"  ({count}/{len(files)} files decoded)"
        print(f"{name:42s} {seconds * 1e3:9.1f} {1 / seconds:9.1f} {seconds / reference:11.2f}{note}")
    one, fastai = results["radiology convert, 1 worker"][0], results.get("fastai hist_scaled + PNG", (None,))[0]
    if fastai:
        print(f"radiology (1 worker) is {fastai / one:.2f}x faster than the fastai path")
    for n in pools[1:]:
        speedup = one / results[f"radiology convert, {n} workers"][0]
        print(f"scaling with {n} workers: {speedup:.2f}x ({speedup / n:.0%} of linear)")


if __name__ == "__main__":
    main()
