"""Training and inference throughput of the default model, fastai overhead, and what ImageNet weights buy.

Three measurements, anchors taken in the same run:

1. images/s of one training step (forward, backward, AdamW; fp16 autocast on CUDA, as
   ``train`` does with ``to_fp16``) and of inference, for ``tf_efficientnet_lite0`` at the
   default size (224), on CPU and, when present, CUDA. Synthetic batches: model speed only.
2. One epoch (train + validation pass) through our data path (``ImageDataset`` + ``ImageCache``
   + ``build_dataloaders`` + ``make_learner`` + ``learn.fit``) against a bare PyTorch loop with
   the same model, batch size, loss and optimizer (``torch.optim.AdamW``, what fastai's
   default Adam with decoupled weight decay computes): (a) a ``torch.utils.data.DataLoader`` over
   the same dataset, (b) the images already stacked in memory. WARM: the cache is filled first,
   best of ``--rounds`` x 2 epochs after a warm-up epoch. COLD: after a warm-up epoch each path
   gets new datasets on a fresh empty cache folder, and its next (timed) epoch decodes every
   pneumonia JPEG through the default pipeline and writes the ``.npy``. Printed: ``RATIO warm``
   and ``RATIO cold`` = fastai / bare, goal <= 1.05. Runs alternate and the best of each is kept.
   Also shown: fastai with torch's fused AdamW (``OptimWrapper``) and, unless ``--quick`` or
   ``--no-extras``, with torch's AdamW, with the recipe's metrics, with the training augmentation.
   ``--profile``: ``torch.profiler`` (CPU, no shapes) over one fastai and one bare epoch, the top
   ops by self CPU time of each, then per-stage wall times per training batch (data, forward,
   loss, backward, step, after = zero_grad/recorder/metrics/callbacks, validation) and a summary
   of what the fastai epoch spends beyond the bare one.
3. ``train(TrainConfig(...))`` with ``pretrained="imagenet"`` vs ``None`` on a pneumonia subset
   (patient-grouped 25 % TEST, seed 0): balanced accuracy and AUC on TEST.

Usage: ``python bench/train.py [--device cpu|cuda] [--quick] [--images 960] [--subset 480] [--profile]
[--skip rates,epoch,pretrained] [--no-cold] [--no-extras]``; ``--quick`` (96 px, 64 images, one
round, core variants) is a CPU smoke run of a few minutes.
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


def _fused_adamw(params, **kwargs):
    """torch's fused AdamW behind fastai's ``OptimWrapper`` (fastai's default ``Adam`` steps in Python)."""
    from fastai.optimizer import OptimWrapper

    return OptimWrapper(params, opt=partial(torch.optim.AdamW, fused=True), **kwargs)


class _StageTimer:
    """Wall time per training-batch stage (perf_counter; CUDA synchronised): what a fit spends where.

    ``mark(stage)`` closes the stage running since the previous mark. Stages: ``data`` (loader
    next + collate + to(device) + loop glue), ``forward``, ``loss``, ``backward``, ``step``,
    ``after`` (zero_grad, metrics, recorder, callbacks), ``valid`` (whole validation pass).
    """

    def __init__(self, device):
        self.device, self.totals, self.batches, self.last = device, {}, 0, None

    def mark(self, stage):
        _sync(self.device)
        now = time.perf_counter()
        if self.last is not None and stage is not None:
            self.totals[stage] = self.totals.get(stage, 0.0) + now - self.last
        self.last = now

    def report(self, label):
        n = max(1, self.batches)
        total = sum(self.totals.values())
        parts = "  ".join(f"{k} {v / n * 1e3:6.1f}" for k, v in self.totals.items())
        print(f"  {label:16s} ms per train batch ({n}): {parts}   | sum {total:.2f}s")


def _timer_callback(timer):
    from fastai.callback.core import Callback

    class StageTimes(Callback):
        order = 1000  # after Recorder and metrics: ``after`` includes them

        def before_train(self):
            timer.mark(None)

        def before_batch(self):
            if self.training:
                timer.mark("data")

        def after_pred(self):
            if self.training:
                timer.mark("forward")

        def after_loss(self):
            if self.training:
                timer.mark("loss")

        def after_backward(self):
            timer.mark("backward")

        def after_step(self):
            timer.mark("step")

        def after_batch(self):
            if self.training:
                timer.mark("after")
                timer.batches += 1

        def before_validate(self):
            timer.mark(None)

        def after_validate(self):
            timer.mark("valid")

    return StageTimes()


def _fastai_epoch(train_ds, valid_ds, device, batch, n_classes, epochs, *, opt=None, augment=False, metrics=False,
                  cold=None, profile=None, timer=None):
    """Seconds per epoch of ``learn.fit`` after one warm-up epoch.

    ``opt``: None (fastai's Adam), ``"torch"`` (torch AdamW through OptimWrapper) or ``"fused"``.
    ``metrics``: the recipe's metrics (accuracy, balanced accuracy, macro AUC). ``cold``: a
    callable returning fresh (train_ds, valid_ds) on an empty cache; the timed epoch (one) then
    reads them, the warm-up used the warm datasets. ``profile``: a torch profiler entered around
    the timed epoch. ``timer``: a :class:`_StageTimer` fed during the timed epoch.
    """
    from fastai.callback.progress import ProgressCallback
    from fastai.optimizer import OptimWrapper
    from fastai.torch_core import set_seed

    from radiology.augment import radiograph_augmentation
    from radiology.data import build_dataloaders
    from radiology.train import make_learner
    from radiology.train.metrics import fastai_metrics

    set_seed(0)
    # The same augmentation train() uses when config.augment is on.
    aug = radiograph_augmentation(degrees=5.0, translate=0.03, scale=(0.95, 1.05)) if augment else None
    dls = build_dataloaders(train_ds, valid_ds, batch_size=batch, num_workers=0, augment=aug, device=device, seed=0)
    model = create_model(ARCH, n_classes, pretrained=None).to(device)
    learn = make_learner(dls, model, nn.CrossEntropyLoss(), path=tempfile.mkdtemp(),
                         metrics=fastai_metrics(n_classes, False) if metrics else ())
    learn.remove_cb(ProgressCallback)
    if opt == "torch":
        learn.opt_func = partial(OptimWrapper, opt=torch.optim.AdamW)
    elif opt == "fused":
        learn.opt_func = _fused_adamw
    if device.type == "cuda":
        learn.to_fp16()
    with learn.no_logging():
        learn.fit(1, 1e-3)  # warm-up: kernels, allocator, optimizer state
        if cold is not None:
            learn.dls = build_dataloaders(*cold(), batch_size=batch, num_workers=0, augment=aug, device=device,
                                          seed=0)
            epochs = 1  # only the first epoch over an empty cache is cold
        cbs = [_timer_callback(timer)] if timer is not None else []
        _sync(device)
        with profile if profile is not None else nullcontext():
            start = time.perf_counter()
            learn.fit(epochs, 1e-3, cbs=cbs)
            _sync(device)
            seconds = time.perf_counter() - start
    return seconds / epochs


def _bare_epoch(train_ds, valid_ds, device, batch, n_classes, epochs, *, in_memory=False, cold=None,
                profile=None, timer=None):
    """Seconds per epoch of a plain PyTorch loop (same model, loss, batch, AdamW) after one warm-up epoch.

    ``cold``, ``profile``, ``timer``: as in :func:`_fastai_epoch`.
    """
    torch.manual_seed(0)
    model = create_model(ARCH, n_classes, pretrained=None).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    loss_func = nn.CrossEntropyLoss()
    pin = device.type == "cuda"
    mark = timer.mark if timer is not None else (lambda stage: None)
    datasets = {"train": train_ds, "valid": valid_ds}
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
        def train_batches():
            return iter(torch.utils.data.DataLoader(datasets["train"], batch_size=batch, shuffle=True,
                                                    drop_last=True, pin_memory=pin))

        def valid_batches():
            return iter(torch.utils.data.DataLoader(datasets["valid"], batch_size=batch, pin_memory=pin))

    def epoch(timed=False):
        model.train()
        if timed:
            mark(None)
        for xb, yb in train_batches():
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            if timed:
                mark("data")
            with _autocast(device):
                out = model(xb)
                if timed:
                    mark("forward")
                loss = loss_func(out, yb)
            if timed:
                mark("loss")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if timed:
                mark("backward")
            scaler.step(opt)
            scaler.update()
            if timed:
                mark("step")
                timer.batches += 1
        model.eval()
        with torch.no_grad(), _autocast(device):
            for xb, yb in valid_batches():
                loss_func(model(xb.to(device, non_blocking=True)), yb.to(device, non_blocking=True))
        if timed:
            mark("valid")

    epoch()  # warm-up
    if cold is not None:
        datasets["train"], datasets["valid"] = cold()
        epochs = 1
    _sync(device)
    with profile if profile is not None else nullcontext():
        start = time.perf_counter()
        for _ in range(epochs):
            epoch(timed=timer is not None)
        _sync(device)
        seconds = time.perf_counter() - start
    return seconds / epochs


def _epoch_data(data: Path, images: int, size: int, cache_dir: Path, work: Path):
    """(train_ds, valid_ds) on the warm cache (filled here), a factory of fresh cold ones, classes."""
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
    filled = time.perf_counter() - start

    def cold():
        # A new empty cache folder: every image is decoded (JPEG -> default pipeline) and written once.
        fresh = ImageCache(tempfile.mkdtemp(prefix="cold-cache-", dir=work))
        return (ImageDataset(items.subset(train_idx), pipeline, cache=fresh),
                ImageDataset(items.subset(valid_idx), pipeline, cache=fresh))

    return train_ds, valid_ds, cold, len(items.classes), filled


def epoch_ratio(data: Path, device: torch.device, images: int, batch: int, size: int, epochs: int, rounds: int,
                cache_dir: Path, work: Path, cold_cache: bool = True, extras: bool = True) -> None:
    train_ds, valid_ds, cold, n, filled = _epoch_data(data, images, size, cache_dir, work)
    print(f"\nepoch: {len(train_ds)} train + {len(valid_ds)} valid pneumonia images, {size} px, batch {batch}, "
          f"{device.type}; cache filled in {filled:.1f}s. Warm: best of {rounds} x {epochs} epoch(s) after a "
          f"warm-up epoch; cold: the first epoch over a fresh empty cache (after a warm-up epoch)", flush=True)
    fastai = partial(_fastai_epoch, train_ds, valid_ds, device, batch, n, epochs)
    bare = partial(_bare_epoch, train_ds, valid_ds, device, batch, n, epochs)
    runs = {"fastai (ours)": fastai, "bare, same dataset": bare, "bare, in memory": partial(bare, in_memory=True),
            "fastai + fused AdamW": partial(fastai, opt="fused")}
    if extras:  # left out by --quick
        runs.update({"fastai + torch AdamW": partial(fastai, opt="torch"),
                     "fastai + recipe metrics": partial(fastai, metrics=True),
                     "fastai + augment": partial(fastai, augment=True)})
    if cold_cache:
        runs["COLD fastai (ours)"] = partial(fastai, cold=cold)
        runs["COLD bare"] = partial(bare, cold=cold)
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):  # alternate so that machine noise hits every variant alike
        for name, run in runs.items():
            best[name] = min(best[name], run())
            print(f"    .. {name}: {best[name]:.2f}s", flush=True)
    base = best["fastai (ours)"]
    for name, seconds in best.items():
        rate = (len(train_ds) + len(valid_ds)) / seconds
        print(f"  {name:24s} {seconds:7.2f} s/epoch  {rate:8.1f} images/s   fastai(ours)/this {base / seconds:5.2f}")
    print(f"  RATIO warm: fastai / bare (same dataset) = {base / best['bare, same dataset']:.3f}, "
          f"fastai / bare (in memory) = {base / best['bare, in memory']:.3f}   (goal <= 1.05)")
    if cold_cache:
        print(f"  RATIO cold: fastai / bare (same dataset, empty cache) = "
              f"{best['COLD fastai (ours)'] / best['COLD bare']:.3f}   (goal <= 1.05)")
    extra = {k: best[k] / best["bare, same dataset"] for k in runs if k.startswith("fastai +")}
    print("  warm ratios of the variants to bare (same dataset): "
          + ", ".join(f"{k[len('fastai + '):]} {v:.3f}" for k, v in extra.items()))


def profile_epochs(data: Path, device: torch.device, images: int, batch: int, size: int, cache_dir: Path,
                   work: Path, rows: int = 12) -> None:
    """torch.profiler over one fastai epoch and one bare epoch (warm cache), plus per-stage wall times."""
    from torch.profiler import ProfilerActivity, profile

    train_ds, valid_ds, _, n, _ = _epoch_data(data, images, size, cache_dir, work)
    print(f"\nprofile: one epoch, {len(train_ds)} train + {len(valid_ds)} valid images, warm cache, {device.type}",
          flush=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    results = {}
    for name, run in (("fastai (ours)", _fastai_epoch), ("bare, same dataset", _bare_epoch)):
        prof = profile(activities=activities, record_shapes=False)
        seconds = run(train_ds, valid_ds, device, batch, n, 1, profile=prof)
        averages = prof.key_averages()
        results[name] = (seconds, averages)
        print(f"\n  --- {name}: {seconds:.2f}s under the profiler; top {rows} by self CPU time")
        print(averages.table(sort_by="self_cpu_time_total", row_limit=rows))
    # Per-stage wall times (no profiler), the same two loops.
    print("\n  stage wall times (no profiler; data = loader next/collate/to(device) + loop glue, "
          "after = zero_grad + recorder + metrics + callbacks; bare puts zero_grad under backward):")
    timers = {}
    for name, run, kwargs in (("fastai (ours)", _fastai_epoch, {}), ("bare", _bare_epoch, {}),
                              ("fastai + metrics", _fastai_epoch, {"metrics": True}),
                              ("fastai + fused", _fastai_epoch, {"opt": "fused"})):
        timers[name] = _StageTimer(device)
        run(train_ds, valid_ds, device, batch, n, 1, timer=timers[name], **kwargs)
        timers[name].report(name)
    # What the fastai epoch spends beyond the bare one, by op family.
    def by_key(averages):
        return {e.key: e.self_cpu_time_total for e in averages}

    fa, ba = by_key(results["fastai (ours)"][1]), by_key(results["bare, same dataset"][1])
    total_fa, total_ba = sum(fa.values()) / 1e6, sum(ba.values()) / 1e6
    wall_fa, wall_ba = results["fastai (ours)"][0], results["bare, same dataset"][0]
    print(f"\n  summary: wall under profiler fastai {wall_fa:.2f}s vs bare {wall_ba:.2f}s; time inside torch ops "
          f"(sum of self CPU) fastai {total_fa:.2f}s vs bare {total_ba:.2f}s; outside any op (Python: loop, "
          f"callbacks, collate glue, .npy reads) fastai {wall_fa - total_fa:.2f}s vs bare {wall_ba - total_ba:.2f}s")
    diff = sorted(((fa.get(k, 0) - ba.get(k, 0)) / 1e3, k) for k in set(fa) | set(ba))
    print("  ops with the largest extra self CPU in fastai (ms, fastai - bare): "
          + ", ".join(f"{k} {v:+.0f}" for v, k in reversed(diff[-8:])))
    print("  ops with the largest saving in fastai (ms): " + ", ".join(f"{k} {v:+.0f}" for v, k in diff[:4]))
    tf, tb = timers["fastai (ours)"], timers["bare"]
    nf, nb = max(1, tf.batches), max(1, tb.batches)
    print("  stage difference fastai - bare (ms per train batch): " + ", ".join(
        f"{k} {(tf.totals.get(k, 0) / nf - tb.totals.get(k, 0) / nb) * 1e3:+.1f}"
        for k in ("data", "forward", "loss", "backward", "step", "after")))


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
    parser.add_argument("--threads", type=int, default=2,
                        help="torch CPU threads (1 is steadier on a contended machine: no OpenMP barrier waits)")
    parser.add_argument("--quick", action="store_true", help="small sizes (CPU smoke run)")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--profile", action="store_true",
                        help="torch.profiler over one fastai and one bare epoch (top ops, stage times)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold-cache epochs")
    parser.add_argument("--no-extras", action="store_true",
                        help="epoch part: only fastai, bare, fused AdamW and cold (as --quick does)")
    args = parser.parse_args()

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(max(1, min(args.threads, os.cpu_count() or 1)))
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-bench-train-"))
    cache_dir = work / "cache"
    skip = set(args.skip.split(","))
    overrides: dict = {}
    images, subset, epochs, size = args.images, args.subset, 2, args.size
    if args.quick:  # a CPU smoke run: small images, one round, the core variants only
        images, subset, epochs, args.rounds, size = min(images, 64), min(subset, 96), 1, 1, min(size, 96)
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
        epoch_ratio(args.data, device, images, args.batch, size, epochs, args.rounds, cache_dir, work,
                    cold_cache=not args.no_cold, extras=not (args.quick or args.no_extras))
    if args.profile:
        profile_epochs(args.data, device, images, args.batch, size, cache_dir, work)
    if "pretrained" not in skip:
        pretrained_vs_random(args.data, subset, overrides, device, work / "pretrained", cache_dir)


if __name__ == "__main__":
    main()
