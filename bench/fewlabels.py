"""Few labels at the default recipe: do the unlabeled images pay off on patients never seen?

For each task (``--tasks``: pneumonia, body part from DICOM, fracture from DICOM) the TEST split
is ``bench/quality.py``'s: the same fixed, patient-grouped, stratified outer split (seed 0), so
the few-labels numbers sit beside the modeling guide's full-label ones. TEST is used for nothing
but the final scores: not for pretraining, not as unlabeled data, not for choosing anything.

The other patients are the pool. Per labeled fraction (``--fractions``) and seed, that share of
the pool (whole patients, class proportions kept) keeps its labels; the rest of the pool is the
unlabeled folder (links to the files). ``train`` then splits its own validation patients off the
labeled images and removes their copies from the unlabeled set, as it does for any user.

Methods (``--methods``), all with the library's defaults and only the data arguments set
(``--set KEY=VALUE`` overrides every run alike, e.g. ``size=64`` for a small budget):

- ``supervised``: :func:`radiology.train.train` on the labeled images: the anchor;
- ``fixmatch`` / ``mixmatch``: the same with ``unlabeled=<folder>``, ``semi=<method>``;
- ``simclr`` / ``byol`` / ``metadata``: :func:`radiology.ssl.pretrain` on all the pool's images
  (labels unread; ``metadata`` reads the DICOM headers, so it needs a DICOM task) from the
  ImageNet weights, then the supervised recipe from that backbone. One pretraining per task
  serves every fraction and seed; its time is printed on its own;
- ``<pretraining>+fixmatch`` (e.g. ``simclr+fixmatch``): both;
- a semi-supervised method with settings in brackets, ``;``-separated, e.g.
  ``fixmatch[teacher=ema;ema_decay=0.9]`` (``--semi-param`` of ``radiology train``).

The defaults refit a supervised model on all its labeled images once validation has chosen the
epoch, and never a semi-supervised one: ``--set refit=false`` compares the validated models
alike (the few-labels guide's tables were measured before the refit was the default).

Each run's model predicts TEST with the training pipeline (no test-time augmentation). The table
gives each method's TEST metrics (``bench/quality.py``'s per task: AUC, balanced accuracy and
sensitivity at 90 % specificity for two classes; accuracy and balanced accuracy for body part)
as the mean over seeds ± its patient-bootstrap standard error, and the difference to
``supervised`` ± its *paired* standard error (the same resampled patients score both; seed-to-seed
variation is in it too). "beats" means by more than one standard error.

Usage::

    python bench/fewlabels.py                                    # everything: hours on a GPU
    python bench/fewlabels.py --tasks pneumonia --fractions 0.1 --methods supervised,fixmatch
    python bench/fewlabels.py --set size=64 --set batch_size=16  # a small budget, same design
    python bench/fewlabels.py --quick                            # smoke run: tiny images, 1 seed

Cost (2-core CPU): a supervised run on a tenth of pneumonia's labels takes a minute at 64 px;
a FixMatch run three to five times that (μ = 7 unlabeled images per labeled one, two views
each); the whole grid at 224 px is a matter of days on a CPU, hours on a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from quality import SHARED, _fmt, _split, _value, align, paired_standard_errors, score

from radiology.data import ImageCache, ImageDataset, kfold_splits

PRETRAININGS = ("simclr", "byol", "metadata")
METHODS = ("supervised", "fixmatch", "mixmatch", *PRETRAININGS, "simclr+fixmatch")
FEW_LABEL_TASKS = ("pneumonia", "bodypart", "fracture")


def parse_method(method: str) -> tuple[str | None, str | None, dict]:
    """``(pretraining, semi, semi_params)`` of a method name: ``"byol+fixmatch[mu=3]"`` →
    ``("byol", "fixmatch", {"mu": 3})``."""
    from radiology.semisup import validate_semisup_params

    found = re.fullmatch(r"([a-z+]+)(?:\[([^\]]*)\])?", method)
    if found is None:
        raise SystemExit(f"--methods: cannot read {method!r}")
    params = {key: _value(value) for key, value in (item.split("=", 1) for item in (found[2] or "").split(";") if item)}
    pretraining = semi = None
    for part in found[1].split("+"):
        if part in PRETRAININGS and pretraining is None:
            pretraining = part
        elif part in ("fixmatch", "mixmatch") and semi is None:
            semi = part
        elif part != "supervised" or "+" in method:
            raise SystemExit(f"--methods: cannot read {method!r} (a pretraining {PRETRAININGS}, "
                             f"'fixmatch'/'mixmatch', or one of each joined by '+')")
    if params and semi is None:
        raise SystemExit(f"--methods: settings in brackets are for fixmatch/mixmatch: {method!r}")
    try:
        return pretraining, semi, validate_semisup_params(semi, params) if semi else {}
    except ValueError as error:
        raise SystemExit(f"--methods: {error}") from None


def labeled_share(targets: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of about ``fraction`` of the samples: whole patients, class proportions kept."""
    k = max(2, round(1 / fraction))
    return kfold_splits(targets, groups, n_splits=k, seed=seed)[0][1]


def link_folder(folder: Path, root: Path, files) -> Path:
    """A folder of links to ``root / file`` for each file, named by the file's relative path (one
    level, so that files of the same name in different folders do not collide)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        link = folder / re.sub(r"[^A-Za-z0-9._-]+", "_", str(name))
        if not link.exists():
            link.symlink_to((root / name).resolve())
    return folder


@torch.no_grad()
def predict_test(model, test_items, pipeline, cache: Path, channels: int) -> np.ndarray:
    """Softmax probabilities of ``model`` on TEST, preprocessed as in training."""
    model = model.cpu().eval()
    loader = torch.utils.data.DataLoader(ImageDataset(test_items, pipeline, cache=ImageCache(cache),
                                                      channels=channels), batch_size=64)
    return torch.cat([torch.softmax(model(x).float(), 1) for x, _ in loader]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--tasks", default=",".join(FEW_LABEL_TASKS))
    parser.add_argument("--fractions", default="0.1,0.25", help="shares of the pool that keep their labels")
    parser.add_argument("--seeds", default="0,1,2", help="comma list: labeled subset and training seed")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list; 'supervised' is required")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="TrainConfig override for every run (repeatable)")
    parser.add_argument("--pretrain-epochs", type=int, default=10, help="self-supervised epochs (once per task)")
    parser.add_argument("--pretrain-batch-size", type=int, default=64, help="self-supervised batch size")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of patients held out as TEST")
    parser.add_argument("--quick", action="store_true", help="smoke run: few patients, 32 px, 1 seed, 1 epoch")
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--cache", type=Path, default=None, help="image cache (default: <work>/cache)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (and TEST probabilities, .npz)")
    args = parser.parse_args()

    methods = [m for m in re.split(r",(?![^\[]*\])", args.methods) if m]  # no split inside brackets
    plans = {m: parse_method(m) for m in methods}
    if "supervised" not in methods:
        raise SystemExit("--methods: 'supervised' (the anchor) is required")
    fractions = [float(f) for f in args.fractions.split(",") if f]
    if not all(0 < f <= 0.5 for f in fractions):
        raise SystemExit(f"--fractions must lie in (0, 0.5], got {args.fractions!r}")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    overrides = {key: _value(value) for key, value in (item.split("=", 1) for item in args.set)}
    limit = None
    if args.quick:
        limit, seeds, args.pretrain_epochs, args.pretrain_batch_size = 40, seeds[:1], 1, 16
        overrides = {"size": 32, "epochs": 1, "head_epochs": 1, "batch_size": 8, **overrides}
    size = int(overrides.get("size", 224))
    if torch.cuda.is_available():
        overrides.setdefault("workers", min(8, os.cpu_count() or 1))
    else:
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = args.work or Path(tempfile.mkdtemp(prefix="radiology-fewlabels-"))
    cache = args.cache or work / "cache"

    import radiology.models
    from radiology.pipeline import default_pipeline
    from radiology.ssl import pretrain
    from radiology.train import TrainConfig, train

    # The bundle export does not change the weights; skip it (and keep the class order it gets).
    exported: dict = {}
    saved = radiology.models.save_bundle

    def no_export(folder, model, pipeline, labels, info, **kwargs):
        exported.update(labels)
        return Path(folder)

    radiology.models.save_bundle = no_export
    results: list[dict] = []
    arrays: dict[str, np.ndarray] = {}
    print(f"torch {torch.__version__}, {'cuda' if torch.cuda.is_available() else 'cpu'}; work {work}; "
          f"overrides {overrides or 'none'}", flush=True)
    try:
        for name in [t for t in args.tasks.split(",") if t]:
            task, root, _, _, split = _split(name, argparse.Namespace(data=args.data, test_fraction=args.test_fraction),
                                             limit)
            pool, test_items = split["train_table"], split["test_items"]
            targets, groups = np.asarray(split["train_items"].targets), np.asarray(split["train_items"].groups)
            file_col = task.image_cols[0]
            arrays[f"{name}__targets"] = np.asarray(test_items.targets)
            arrays[f"{name}__groups"] = np.asarray(test_items.groups, dtype=str)
            common = dict(root=root, image_cols=task.image_cols, label_cols=task.label_cols, group_col=task.group_col,
                          channels=task.channels, cache=cache, overwrite=True, **overrides)
            backbones: dict[str, str | None] = {}
            for pretraining in sorted({plan[0] for plan in plans.values() if plan[0]}):
                started = time.perf_counter()
                folder = link_folder(work / name / "pool", root, pool[file_col])
                try:
                    with contextlib.redirect_stdout(io.StringIO()):
                        result = pretrain(folder, work / name / pretraining / "backbone.pt", method=pretraining,
                                          size=size, channels=task.channels, epochs=args.pretrain_epochs,
                                          batch_size=args.pretrain_batch_size,
                                          cache=cache, seed=0, overwrite=True, progress=False)
                except (ValueError, RuntimeError) as error:  # e.g. metadata on PNG files: no header to learn
                    print(f"  {pretraining} pretraining not possible on {name}: {error}", flush=True)
                    backbones[pretraining] = None
                    continue
                backbones[pretraining] = str(result.checkpoint)
                losses = ", ".join(f"{h['train_loss']:.3f}" for h in result.history)
                print(f"  {pretraining} pretraining on {result.images} pool images: "
                      f"{time.perf_counter() - started:.0f}s; training loss per epoch {losses}", flush=True)
            for fraction in fractions:
                for seed in seeds:
                    labeled = labeled_share(targets, groups, fraction, seed)
                    unlabeled = np.setdiff1d(np.arange(len(pool)), labeled)
                    run_dir = work / name / f"f{fraction:g}-s{seed}"
                    run_dir.mkdir(parents=True, exist_ok=True)
                    csv = run_dir / "labeled.csv"
                    pool.iloc[labeled].to_csv(csv, index=False)
                    print(f"\n{name}, {fraction:.0%} labels, seed {seed}: {len(labeled)} labeled images of "
                          f"{len(set(groups[labeled]))} patients, {len(unlabeled)} unlabeled", flush=True)
                    for method, (pretraining, semi, semi_params) in plans.items():
                        if pretraining and backbones.get(pretraining) is None:
                            continue
                        out = run_dir / re.sub(r"[^A-Za-z0-9.+=-]+", "_", method)
                        config = TrainConfig(out=out, csv=csv, seed=seed, **common)
                        if pretraining:
                            config = config.replace(pretrained=backbones[pretraining])
                        if semi:
                            folder = link_folder(run_dir / "unlabeled", root, pool[file_col].iloc[unlabeled])
                            config = config.replace(unlabeled=folder, semi=semi, semi_params=semi_params)
                        started = time.perf_counter()
                        exported.clear()
                        try:
                            with contextlib.redirect_stdout(io.StringIO()):
                                result = train(config, progress=False)
                        except ValueError as error:  # e.g. a labeled share with one class only
                            print(f"  {method:18s} not trained: {error}", flush=True)
                            continue
                        probs = align(predict_test(result.learner.model, test_items, default_pipeline(size), cache,
                                                   task.channels), exported["classes"], list(test_items.classes))
                        metrics = score(task, np.asarray(test_items.targets), probs)
                        seconds = time.perf_counter() - started
                        history = pd.read_csv(config.out / "history.csv") if (config.out / "history.csv").is_file() \
                            else pd.DataFrame()
                        mask = history["mask_rate"].iloc[-1] if "mask_rate" in history and len(history) else None
                        results.append({"task": name, "fraction": fraction, "seed": seed, "method": method,
                                        "test": metrics, "seconds": round(seconds, 1),
                                        "mask_rate": None if mask is None else float(mask)})
                        arrays[f"{name}__{fraction:g}__{method}__{seed}"] = probs
                        shown = "  ".join(f"{k} {_fmt(metrics.get(k))}" for k in task.metrics)
                        extra = f"  (last mask rate {mask:.2f})" if mask is not None else ""
                        print(f"  {method:18s} {shown}   {seconds:5.0f}s{extra}", flush=True)
            table(name, task, arrays, results, fractions, methods)
    finally:
        radiology.models.save_bundle = saved
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(results, indent=1, default=float))
            np.savez_compressed(args.json.with_suffix(".npz"), **arrays)


def table(name: str, task, arrays: dict, results: list[dict], fractions, methods) -> None:
    """Per fraction: each method's TEST metrics (mean over seeds ± bootstrap SE) and its difference
    to ``supervised`` ± the paired SE."""
    targets, groups = arrays[f"{name}__targets"], arrays[f"{name}__groups"]
    for fraction in fractions:
        runs = {m: [arrays[k] for k in sorted(arrays) if k.startswith(f"{name}__{fraction:g}__{m}__")]
                for m in methods}
        if not runs["supervised"]:
            continue
        print(f"\n{name}, {fraction:.0%} labels: TEST ({len(targets)} samples, {len(set(groups))} patients); mean "
              f"over seeds ± patient-bootstrap SE; d = method − supervised ± paired SE")
        for method in methods:
            if not runs[method]:
                continue
            errors = paired_standard_errors(task, targets, groups,
                                            {"ours": runs[method], "supervised": runs["supervised"]})
            seconds = np.mean([r["seconds"] for r in results if r["task"] == name and r["fraction"] == fraction
                               and r["method"] == method])
            cells = []
            for metric in task.metrics:
                mean = np.mean([score(task, targets, p)[metric] for p in runs[method]])
                cell = f"{metric} {mean:.3f}±{errors[('ours', metric)]:.3f}"
                if method != "supervised":
                    d = mean - np.mean([score(task, targets, p)[metric] for p in runs["supervised"]])
                    se = errors[("ours-supervised", metric)]
                    cell += f" (d {d:+.3f}±{se:.3f} {'beats' if d > se else 'loses' if d < -se else 'ties'})"
                cells.append(cell)
            print(f"  {method:18s} {len(runs[method])} seed(s)  " + "  ".join(cells) + f"  {seconds:.0f}s/run")


if __name__ == "__main__":
    main()
