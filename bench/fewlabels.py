"""Few labels: supervised-only vs FixMatch vs MixMatch vs SimCLR-pretrained fine-tuning.

What is measured: on the pneumonia set (NORMAL vs PNEUMONIA), with only a small share of the
labels kept, does adding the other images *without* their labels beat training on the labeled
images alone?

1. A TEST set of whole patients (``--test-fraction``, stratified, grouped, seed 0) is split off
   first. It is used for nothing but the final scores: not for pretraining, not as unlabeled
   data, not for model selection or any setting here.
2. The remaining patients form the pool. Per seed, ``--labeled-fraction`` of the pool (whole
   patients, stratified) keeps its labels (``labeled.csv``); the rest of the pool is the
   unlabeled folder (symlinks to the images). ``train`` splits its own validation patients off
   the labeled images (``valid_fraction`` 0.2, used for best-epoch selection) and removes
   them from the unlabeled folder.
3. Four methods, same backbone (``tf_efficientnet_lite0``, offline ImageNet weights), same
   input size, batch size, head epochs and fine-tuning epochs (the same number of optimizer
   steps on the labeled images; the semi-supervised ones do more work per step), library
   defaults otherwise:

   - ``supervised``: ``train(TrainConfig(csv=labeled.csv, ...))`` — the anchor;
   - ``fixmatch`` / ``mixmatch``: the same + ``unlabeled=<folder>``, ``semi=...`` (the papers'
     defaults: FixMatch mu = 7, threshold 0.95, distribution alignment; MixMatch K = 2,
     T = 0.5, alpha = 0.75, lambda_u ramped to 75);
   - ``simclr``: ``pretrain(<pool images>, method="simclr")`` from the ImageNet weights, then
     the supervised recipe with ``pretrained=<checkpoint>``. The pool's images (labeled and
     unlabeled, no labels read) are the same for every seed, so the backbone is pretrained
     once (seed 0) and fine-tuned per seed; its pretraining epochs are extra and its time is
     shown on its own.

4. The model ``train`` returns predicts the TEST images (the bundle's pipeline, no test-time
   augmentation: what ``radiology predict`` computes; the bundle export is skipped, it does not
   change the weights). Balanced accuracy and ROC AUC, mean ± sd over the seeds, and each
   divided by the supervised anchor's mean. Seconds are the mean per run (train + test
   prediction), wall clock and this process's CPU time (one thread: the CPU time is the work,
   the wall clock also counts waiting for a contended core). With ``--reference`` one
   supervised run on *all* the pool's labels (seed 0) shows how much there is to gain.

Nothing is tuned on TEST: every setting is a library default or fixed here before any score
is seen. Usage::

    python bench/fewlabels.py [--seeds 3] [--size 64] [--epochs 6] [--batch-size 16]
        [--labeled-fraction 0.1] [--simclr-epochs 5] [--reference] [--quick] [--work DIR]

CPU numbers on a shared machine are contended: the seconds compare methods within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from radiology.data import ImageCache, ImageDataset, from_csv, kfold_splits, train_valid_split
from radiology.evaluate import balanced_accuracy, macro_auc
from radiology.pipeline import default_pipeline
from radiology.train import TrainConfig

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ARCH = "tf_efficientnet_lite0"
METHODS = ("supervised", "fixmatch", "mixmatch", "simclr")
COLUMNS = ["file", "label", "patient"]


def _grouped_fold(targets: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of about ``fraction`` of the samples: whole patients, class proportions kept."""
    k = max(2, round(1 / fraction))
    return kfold_splits(targets, groups, n_splits=k, seed=seed)[0][1]


def _link_folder(folder: Path, root: Path, files) -> Path:
    """A folder of symlinks to ``root / file`` for each file (the unlabeled sets ``train`` reads)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        source = (root / name).resolve()
        link = folder / source.name
        if not link.exists():
            link.symlink_to(source)
    return folder


@torch.no_grad()
def _score(model, test_ds, truth: np.ndarray) -> tuple[float, float]:
    model = model.cpu().eval()
    probs = [torch.softmax(model(xb).float(), 1) for xb, _ in torch.utils.data.DataLoader(test_ds, batch_size=64)]
    probs = torch.cat(probs).numpy()
    return balanced_accuracy(truth, probs), macro_auc(truth, probs)


def _last(history: Path, column: str) -> float | None:
    """A column of the last epoch of a run's ``history.csv`` (FixMatch's mask rate), if logged."""
    if not history.is_file():
        return None
    table = pd.read_csv(history)
    return float(table[column].iloc[-1]) if column in table.columns and len(table) else None


def _mean_sd(values) -> str:
    values = np.asarray(values, dtype=float)
    sd = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.3f} ± {sd:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "pneumonia", help="folder with labels.csv")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (labeled subset and training)")
    parser.add_argument("--size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--epochs", type=int, default=6, help="fine-tuning epochs, every method")
    parser.add_argument("--head-epochs", type=int, default=20, help="head-only epochs, every method")
    parser.add_argument("--batch-size", type=int, default=16, help="labeled batch size, every method")
    parser.add_argument("--labeled-fraction", type=float, default=0.1, help="share of the pool that keeps labels")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of patients held out as TEST")
    parser.add_argument("--simclr-epochs", type=int, default=5, help="SimCLR pretraining epochs (extra)")
    parser.add_argument("--simclr-batch-size", type=int, default=64)
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of " + ",".join(METHODS))
    parser.add_argument("--reference", action="store_true",
                        help="also one supervised run with all the pool's labels (seed 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: ~240 images, 1 seed, 32 px, 1 epoch")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = parser.parse_args()

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or "supervised" not in methods:
        raise SystemExit(f"--methods: need 'supervised' (the anchor) and only {METHODS}; got {args.methods!r}")
    if not 0 < args.labeled_fraction <= 0.5:
        raise SystemExit(f"--labeled-fraction must be in (0, 0.5], got {args.labeled_fraction}")
    labels_csv = args.data / "labels.csv"
    if not labels_csv.is_file():
        print(f"skipped: {labels_csv} not found")
        return
    images = None
    if args.quick:
        images, args.seeds, args.size, args.epochs, args.head_epochs = 240, 1, 32, 1, 2
        args.simclr_epochs, args.batch_size = 1, 8
    torch.set_num_threads(args.threads)

    import radiology.models
    from radiology.ssl import pretrain
    from radiology.train import train

    started = time.perf_counter()
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-bench-fewlabels-"))
    work.mkdir(parents=True, exist_ok=True)
    cache_dir = work / "cache"  # one cache: every run preprocesses the same files the same way
    table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)[COLUMNS]
    items = from_csv(table, args.data, "file", "label", group_col="patient", progress=False)
    if images and images < len(table):
        keep = _grouped_fold(items.targets, items.groups, images / len(table), seed=0)
        table, items = table.iloc[keep].reset_index(drop=True), items.subset(keep)

    # TEST first: these patients are never seen again until scoring.
    pool, test = train_valid_split(items.targets, items.groups, valid_fraction=args.test_fraction, seed=0)
    test_items = items.subset(test)
    truth = np.asarray(test_items.targets)
    pool_table = table.iloc[pool].reset_index(drop=True)
    pool_targets, pool_groups = np.asarray(items.targets)[pool], np.asarray(items.groups)[pool]
    assert not set(pool_groups) & set(np.asarray(items.groups)[test]), "TEST patients leaked into the pool"
    test_ds = ImageDataset(test_items, default_pipeline(args.size), cache=ImageCache(cache_dir))

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch thread(s)")
    print(f"data: {labels_csv} — {len(table)} images, classes {items.classes}")
    print(f"TEST: {len(test)} images of {len(set(np.asarray(items.groups)[test]))} patients "
          f"(patient-grouped, stratified, seed 0); pool: {len(pool)} images of {len(set(pool_groups))} patients")
    print(f"settings: {ARCH} (ImageNet), {args.size} px, batch {args.batch_size}, head epochs {args.head_epochs}, "
          f"fine-tune epochs {args.epochs}, labeled fraction {args.labeled_fraction}, seeds {args.seeds}, "
          f"SimCLR {args.simclr_epochs} epochs batch {args.simclr_batch_size}", flush=True)

    common = dict(root=args.data, image_cols="file", label_cols="label", group_col="patient", arch=ARCH,
                  size=args.size, epochs=args.epochs, head_epochs=args.head_epochs, batch_size=args.batch_size,
                  cache=cache_dir, workers=0)

    # The bundle export (torch.export + ONNX) does not change the weights: skip it, as bench/train.py does.
    saved = radiology.models.save_bundle
    radiology.models.save_bundle = lambda folder, *a, **k: Path(folder)
    rows: list[dict] = []
    simclr_seconds = simclr_cpu = None
    try:
        checkpoint = None
        if "simclr" in methods:
            # The pool's images, labels unread: the same set for every seed, so one pretraining serves all.
            folder = _link_folder(work / "pool_images", args.data, pool_table["file"])
            t0, c0 = time.perf_counter(), time.process_time()
            result = pretrain(folder, work / "simclr" / "backbone.pt", method="simclr", arch=ARCH,
                              pretrained="imagenet", size=args.size, epochs=args.simclr_epochs,
                              batch_size=args.simclr_batch_size, cache=cache_dir, seed=0, overwrite=True,
                              progress=False)
            simclr_seconds, simclr_cpu = time.perf_counter() - t0, time.process_time() - c0
            checkpoint = result.checkpoint
            losses = ", ".join(f"{h['train_loss']:.3f}/{h['valid_loss']:.3f}" for h in result.history)
            print(f"\nSimCLR pretraining on {result.images} pool images: {simclr_seconds:.0f}s "
                  f"(CPU {simclr_cpu:.0f}s); train/valid NT-Xent per epoch: {losses}", flush=True)

        def run(method: str, seed: int, config: TrainConfig) -> None:
            t0, c0 = time.perf_counter(), time.process_time()
            with contextlib.redirect_stdout(io.StringIO()):  # fastai's "Better model found ..." lines
                result = train(config, progress=False)
            bal, auc = _score(result.learner.model, test_ds, truth)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            mask = _last(Path(config.out) / "history.csv", "mask_rate")
            note = f"  last-epoch mask rate {mask:.2f}" if mask is not None else ""
            valid = result.metrics.get("balanced_accuracy")
            valid_note = f"  (valid bal. acc {valid:.3f})" if isinstance(valid, float) else ""
            print(f"  {method:22s} seed {seed}: TEST balanced acc {bal:.3f}  AUC {auc:.3f}  {seconds:5.0f}s "
                  f"(CPU {cpu:.0f}s){valid_note}{note}", flush=True)
            rows.append({"method": method, "seed": seed, "bal_acc": bal, "auc": auc, "seconds": seconds, "cpu": cpu})

        for seed in range(args.seeds):
            labeled = _grouped_fold(pool_targets, pool_groups, args.labeled_fraction, seed=seed)
            unlabeled = np.setdiff1d(np.arange(len(pool)), labeled)
            seed_dir = work / f"seed{seed}"
            seed_dir.mkdir(parents=True, exist_ok=True)
            csv = seed_dir / "labeled.csv"
            pool_table.iloc[labeled].to_csv(csv, index=False)
            counts = pool_table.iloc[labeled]["label"].value_counts().to_dict()
            print(f"\nseed {seed}: {len(labeled)} labeled images ({counts}) of "
                  f"{len(set(pool_groups[labeled]))} patients, {len(unlabeled)} unlabeled", flush=True)
            base = TrainConfig(out=seed_dir / "supervised", csv=csv, seed=seed, overwrite=True, **common)
            for method in methods:
                if method == "supervised":
                    config = base
                elif method in ("fixmatch", "mixmatch"):
                    folder = _link_folder(seed_dir / "unlabeled", args.data, pool_table["file"].iloc[unlabeled])
                    config = base.replace(out=seed_dir / method, unlabeled=folder, semi=method)
                else:
                    config = base.replace(out=seed_dir / method, pretrained=str(checkpoint))
                run(method, seed, config)

        if args.reference:
            csv = work / "all_pool.csv"
            pool_table.to_csv(csv, index=False)
            print(f"\nreference: supervised on all {len(pool)} pool labels", flush=True)
            reference = TrainConfig(out=work / "reference", csv=csv, seed=0, overwrite=True, **common)
            run("supervised, all labels", 0, reference)
    finally:
        radiology.models.save_bundle = saved

    results = pd.DataFrame(rows)
    anchor = results[results.method == "supervised"][["bal_acc", "auc"]].mean()
    lines = [f"\nTEST ({len(test)} images, patients never seen), mean ± sd over {args.seeds} seed(s); "
             f"ratio = mean / supervised mean",
             f"{'method':24s} {'balanced acc':>15s} {'ratio':>6s} {'AUC':>15s} {'ratio':>6s} {'s/run':>7s} "
             f"{'CPU s':>6s}"]
    for method in [*methods, *(["supervised, all labels"] if args.reference else [])]:
        part = results[results.method == method]
        lines.append(f"{method:24s} {_mean_sd(part.bal_acc):>15s} {part.bal_acc.mean() / anchor.bal_acc:6.3f} "
                     f"{_mean_sd(part.auc):>15s} {part.auc.mean() / anchor.auc:6.3f} {part.seconds.mean():7.0f} "
                     f"{part.cpu.mean():6.0f}")
    if simclr_seconds is not None:
        lines.append(f"simclr pretraining (once, extra): {simclr_seconds:.0f}s (CPU {simclr_cpu:.0f}s), "
                     f"{args.simclr_epochs} epochs")
    print("\n".join(lines))
    for method in methods[1:]:
        part = results[results.method == method]
        ref = results[results.method == "supervised"]
        wins = sum(int(a > b) for a, b in zip(part.sort_values("seed").auc, ref.sort_values("seed").auc))
        delta = part.auc.mean() - anchor.auc
        verdict = "beats" if delta > 0 else "does NOT beat"
        print(f"{method}: {verdict} supervised on mean TEST AUC (Δ {delta:+.3f}; higher AUC in {wins} of "
              f"{len(part)} seeds; Δ balanced acc {part.bal_acc.mean() - anchor.bal_acc:+.3f})")
    print(f"total {time.perf_counter() - started:.0f}s wall, {time.process_time():.0f}s CPU (this process); "
          f"work folder {work}")


if __name__ == "__main__":
    main()
