"""Training and inference throughput of the default model, fastai overhead, and what ImageNet weights buy.

Three measurements, anchors taken in the same run:

1. images/s of one training step (forward, backward, AdamW; fp16 autocast on CUDA, as
   ``train`` does with ``to_fp16``) and of inference, for ``tf_efficientnet_lite0`` at the
   default size (224), on CPU and, when present, CUDA. Synthetic batches: model speed only.
2. One epoch (train + validation pass) through our data path (``ImageDataset`` + ``ImageCache``
   + ``build_dataloaders`` + ``make_learner`` + ``learn.fit``) against a bare PyTorch loop with
   the same model, batch size, loss and optimizer (``torch.optim.AdamW``, what fastai's
   default Adam with decoupled weight decay computes): (a) a ``torch.utils.data.DataLoader`` over
   the same dataset, (b) the images already stacked in memory. Cache warm for both. Ratio =
   fastai / bare, goal <= 1.15. Runs alternate and the best of each is kept. Also shown: fastai
   with torch's AdamW (``OptimWrapper``) and with the training augmentation on.
3. ``train(TrainConfig(...))`` with ``pretrained="imagenet"`` vs ``None`` on a pneumonia subset
   (patient-grouped 25 % TEST, seed 0): balanced accuracy and AUC on TEST.

Usage: ``python bench/train.py [--device cpu|cuda] [--quick] [--images 960] [--subset 480]``.
CPU numbers on a shared machine are contended: compare ratios, not absolute rates.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from radiology.data import ImageCache, ImageDataset, from_csv, train_valid_split
from radiology.evaluate import balanced_accuracy, macro_auc
from radiology.models import create_model
from radiology.pipeline import default_pipeline
from radiology.train import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ARCH = "tf_efficientnet_lite0"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


# ----------------------------------------------------------------------------- 1. model throughput


def model_rates(device: torch.device, size: int, batch: int, infer_batch: int, steps: int) -> tuple[float, float]:
    """(training images/s, inference images/s) on synthetic batches."""
    torch.manual_seed(0)
    model = create_model(ARCH, 2, pretrained=None).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    x = torch.rand(batch, 1, size, size, device=device)
    y = torch.randint(0, 2, (batch,), device=device)

    def step():
        with _autocast(device):
            loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    train_rate = batch * steps / (time.perf_counter() - start)

    model.eval()
    xi = torch.rand(infer_batch, 1, size, size, device=device)
    with torch.no_grad(), _autocast(device):
        for _ in range(3):
            model(xi)
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(xi)
        _sync(device)
    return train_rate, infer_batch * steps / (time.perf_counter() - start)


# ----------------------------------------------------------------------------- 2. fastai vs bare epoch


def _fastai_epoch(train_ds, valid_ds, device, batch, n_classes, epochs, *, torch_adamw=False, augment=False):
    from fastai.callback.progress import ProgressCallback
    from fastai.optimizer import OptimWrapper
    from fastai.torch_core import set_seed

    from radiology.augment import radiograph_augmentation
    from radiology.data import build_dataloaders
    from radiology.train import make_learner

    set_seed(0)
    # The same augmentation train() uses when config.augment is on.
    aug = radiograph_augmentation(degrees=5.0, translate=0.03, scale=(0.95, 1.05)) if augment else None
    dls = build_dataloaders(train_ds, valid_ds, batch_size=batch, num_workers=0, augment=aug, device=device, seed=0)
    model = create_model(ARCH, n_classes, pretrained=None).to(device)
    learn = make_learner(dls, model, nn.CrossEntropyLoss(), path=tempfile.mkdtemp())
    learn.remove_cb(ProgressCallback)
    if torch_adamw:
        learn.opt_func = partial(OptimWrapper, opt=torch.optim.AdamW)
    if device.type == "cuda":
        learn.to_fp16()
    with learn.no_logging():
        learn.fit(1, 1e-3)  # warm-up: kernels, allocator, optimizer state
        _sync(device)
        start = time.perf_counter()
        learn.fit(epochs, 1e-3)
        _sync(device)
    return (time.perf_counter() - start) / epochs


def _bare_epoch(train_ds, valid_ds, device, batch, n_classes, epochs, *, in_memory=False):
    torch.manual_seed(0)
    model = create_model(ARCH, n_classes, pretrained=None).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    loss_func = nn.CrossEntropyLoss()
    pin = device.type == "cuda"
    if in_memory:
        def stacked(ds):
            xs, ys = zip(*(ds[i] for i in range(len(ds))))
            x, y = torch.stack(xs), torch.stack(ys)
            return (x.pin_memory(), y.pin_memory()) if pin else (x, y)

        train_x, train_y = stacked(train_ds)
        valid_x, valid_y = stacked(valid_ds)

        def train_batches():
            order = torch.randperm(len(train_x))
            for i in range(0, len(order) - batch + 1, batch):
                idx = order[i:i + batch]
                yield train_x[idx], train_y[idx]

        def valid_batches():
            for i in range(0, len(valid_x), batch):
                yield valid_x[i:i + batch], valid_y[i:i + batch]
    else:
        train_dl = torch.utils.data.DataLoader(train_ds, batch_size=batch, shuffle=True, drop_last=True,
                                               pin_memory=pin)
        valid_dl = torch.utils.data.DataLoader(valid_ds, batch_size=batch, pin_memory=pin)
        train_batches, valid_batches = (lambda: iter(train_dl)), (lambda: iter(valid_dl))

    def epoch():
        model.train()
        for xb, yb in train_batches():
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            with _autocast(device):
                loss = loss_func(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        model.eval()
        with torch.no_grad(), _autocast(device):
            for xb, yb in valid_batches():
                loss_func(model(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))

    epoch()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(device)
    return (time.perf_counter() - start) / epochs


def epoch_ratio(data: Path, device: torch.device, images: int, batch: int, size: int, epochs: int, rounds: int,
                cache_dir: Path) -> None:
    items = _pneumonia(data, images)
    train_idx, valid_idx = train_valid_split(items.targets, items.groups, valid_fraction=0.2, seed=0)
    pipeline = default_pipeline(size)
    cache = ImageCache(cache_dir)
    train_ds = ImageDataset(items.subset(train_idx), pipeline, cache=cache)
    valid_ds = ImageDataset(items.subset(valid_idx), pipeline, cache=cache)
    start = time.perf_counter()
    for ds in (train_ds, valid_ds):
        for i in range(len(ds)):
            ds[i]  # fill the cache: both paths then read the same .npy files
    print(f"\nepoch: {len(train_ds)} train + {len(valid_ds)} valid pneumonia images, {size} px, batch {batch}, "
          f"{device.type}; cache filled in {time.perf_counter() - start:.1f}s", flush=True)
    n = len(items.classes)
    runs = {
        "fastai (ours)": partial(_fastai_epoch, train_ds, valid_ds, device, batch, n, epochs),
        "bare, same dataset": partial(_bare_epoch, train_ds, valid_ds, device, batch, n, epochs),
        "bare, in memory": partial(_bare_epoch, train_ds, valid_ds, device, batch, n, epochs, in_memory=True),
        "fastai + torch AdamW": partial(_fastai_epoch, train_ds, valid_ds, device, batch, n, epochs,
                                        torch_adamw=True),
        "fastai + augment": partial(_fastai_epoch, train_ds, valid_ds, device, batch, n, epochs, augment=True),
    }
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):  # alternate so that machine noise hits every variant alike
        for name, run in runs.items():
            best[name] = min(best[name], run())
    base = best["fastai (ours)"]
    for name, seconds in best.items():
        rate = (len(train_ds) + len(valid_ds)) / seconds
        print(f"  {name:22s} {seconds:7.2f} s/epoch  {rate:8.1f} images/s   fastai(ours)/this {base / seconds:5.2f}")
    print(f"  RATIO fastai / bare (same dataset) = {base / best['bare, same dataset']:.2f}, "
          f"fastai / bare (in memory) = {base / best['bare, in memory']:.2f}   (goal <= 1.15)")


# ----------------------------------------------------------------------------- 3. pretrained vs random


def _pneumonia(data: Path, images: int | None):
    csv = data / "pneumonia" / "labels.csv"
    table = pd.read_csv(csv, dtype=str, keep_default_na=False)
    if images:
        order = table["patient"].drop_duplicates().sample(frac=1.0, random_state=0)
        keep, count = set(), 0
        counts = table["patient"].value_counts()
        for patient in order:
            if count >= images:
                break
            keep.add(patient)
            count += counts[patient]
        table = table[table["patient"].isin(keep)].reset_index(drop=True)
    items = from_csv(table, csv.parent, "file", "label", group_col="patient", progress=False)
    items.table = table  # the rows, for writing a training CSV
    return items


def pretrained_vs_random(data: Path, images: int, overrides: dict, device: torch.device, work: Path,
                         cache_dir: Path) -> None:
    import radiology.models
    from radiology.train import train

    items = _pneumonia(data, images)
    train_idx, test_idx = train_valid_split(items.targets, items.groups, valid_fraction=0.25, seed=0)
    work.mkdir(parents=True, exist_ok=True)
    csv = work / "train.csv"
    items.table.iloc[train_idx].to_csv(csv, index=False)
    test_items = items.subset(test_idx)
    print(f"\npretrained vs random init: pneumonia {len(train_idx)} train / {len(test_idx)} TEST images "
          f"(patient-grouped), train() defaults{' + ' + str(overrides) if overrides else ''}", flush=True)
    # The bundle export (torch.export + ONNX, ~10-40 s) does not change the weights: skip it here.
    saved = radiology.models.save_bundle
    radiology.models.save_bundle = lambda folder, *args, **kwargs: Path(folder)
    try:
        for pretrained in ("imagenet", None):
            started = time.perf_counter()
            config = TrainConfig(out=work / str(pretrained), csv=csv, root=data / "pneumonia", image_cols="file",
                                 label_cols="label", group_col="patient", pretrained=pretrained, cache=cache_dir,
                                 overwrite=True, **overrides)
            result = train(config, progress=False)
            model = result.learner.model.to(device).eval()
            test_ds = ImageDataset(test_items, default_pipeline(config.size), cache=ImageCache(cache_dir))
            probs = []
            with torch.no_grad():
                for xb, _ in torch.utils.data.DataLoader(test_ds, batch_size=64):
                    probs.append(torch.softmax(model(xb.to(device)).float(), 1).cpu())
            probs = torch.cat(probs).numpy()
            truth = np.asarray(test_items.targets)
            print(f"  pretrained={str(pretrained):9s} TEST balanced acc {balanced_accuracy(truth, probs):.3f}  "
                  f"AUC {macro_auc(truth, probs):.3f}  ({time.perf_counter() - started:.0f}s)", flush=True)
    finally:
        radiology.models.save_bundle = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                        help="device of parts 2 and 3 (part 1 runs on CPU and on CUDA when present)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32, help="training batch (TrainConfig default)")
    parser.add_argument("--images", type=int, default=960, help="pneumonia images in the epoch comparison")
    parser.add_argument("--subset", type=int, default=480, help="pneumonia images for pretrained vs random")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: rates,epoch,pretrained")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU smoke run)")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-bench-train-"))
    cache_dir = work / "cache"
    skip = set(args.skip.split(","))
    overrides: dict = {}
    images, subset, epochs = args.images, args.subset, 2
    if args.quick:
        images, subset, epochs, args.rounds = min(images, 96), min(subset, 96), 1, 1
        overrides = {"epochs": 1, "head_epochs": 3, "size": 96}
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA"
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores (threads {torch.get_num_threads()}), {name}")

    if "rates" not in skip:
        print(f"\nmodel throughput, {ARCH} at {args.size} px, 1 channel, train batch {args.batch}, "
              f"inference batch 64 (synthetic batches)")
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        rates = {}
        for dev in devices:
            steps = 3 if dev == "cpu" else 30
            rates[dev] = model_rates(torch.device(dev), args.size, args.batch, 64, steps)
            print(f"  {dev:5s} train {rates[dev][0]:8.1f} images/s   inference {rates[dev][1]:8.1f} images/s"
                  f"{'   (fp16 autocast)' if dev == 'cuda' else ''}", flush=True)
        if "cuda" in rates:
            print(f"  GPU/CPU: train {rates['cuda'][0] / rates['cpu'][0]:.0f}x, "
                  f"inference {rates['cuda'][1] / rates['cpu'][1]:.0f}x")
    if "epoch" not in skip:
        epoch_ratio(args.data, device, images, args.batch, args.size, epochs, args.rounds, cache_dir)
    if "pretrained" not in skip:
        pretrained_vs_random(args.data, subset, overrides, device, work / "pretrained", cache_dir)


if __name__ == "__main__":
    main()
