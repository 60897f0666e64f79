"""Throughput of the batch augmentation (radiology.augment) on CPU and, when present, CUDA.

Prints images/s for a (B, 1, 512, 512) batch through :func:`radiograph_augmentation`
(flip, affine, crop, intensity, noise, CLAHE, cutout all on) and through
:class:`MultiView` with two views, the GPU/CPU ratio, and how many host synchronizations
one call makes at batch 8 and at batch 64 (equal counts mean no per-sample sync).

Usage: ``python bench/augment.py [--batch 64] [--size 512] [--repeat 10]``
"""

from __future__ import annotations

import argparse
import time

import torch

from radiology.augment import MultiView, count_host_syncs, radiograph_augmentation


def _rate(module, batch, repeat):
    module(batch)  # warm-up
    if batch.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        module(batch)
    if batch.is_cuda:
        torch.cuda.synchronize()
    images = batch.shape[0] * (batch.shape[1] if batch.ndim == 5 else 1)
    return images * repeat / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    augment = radiograph_augmentation(crop_size=(args.size * 3 // 4,) * 2, clahe_p=0.5, cutout_p=0.5)
    views = MultiView(augment, swap_on_hflip=True)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rates = {}
    for device in devices:
        single = torch.rand(args.batch, 1, args.size, args.size, device=device)
        pair = torch.rand(args.batch // 2, 2, 1, args.size, args.size, device=device)
        repeat = args.repeat if device == "cuda" else max(1, args.repeat // 5)
        rates[device] = (_rate(augment, single, repeat), _rate(views, pair, repeat))
        print(f"{device:5s} single view {rates[device][0]:9.1f} images/s   two views {rates[device][1]:9.1f} images/s")
    if "cuda" in rates:
        print(f"GPU/CPU speed ratio: single {rates['cuda'][0] / rates['cpu'][0]:.1f}x, "
              f"multi-view {rates['cuda'][1] / rates['cpu'][1]:.1f}x ({torch.cuda.get_device_name()})")
        small = torch.rand(8, 1, args.size, args.size, device="cuda")
        large = torch.rand(64, 1, args.size, args.size, device="cuda")
        print(f"host synchronizations per call: batch 8 -> {count_host_syncs(augment, small)}, "
              f"batch 64 -> {count_host_syncs(augment, large)}")


if __name__ == "__main__":
    main()
