"""Peak host memory of one semi-supervised training step, against a supervised step of the same batch.

Each candidate runs in a fresh process (so peaks do not mix): the default backbone
(``tf_efficientnet_lite0``, random weights: memory does not depend on them) trains for
``--steps`` steps on random ``(B, 1, S, S)`` images through :func:`radiology.train.make_learner`,
on the CPU. Printed: peak resident memory (``ru_maxrss``) per candidate and its ratio to the
supervised anchor measured in the same run, and the training memory per image and input pixel
this implies (compare :data:`radiology.semisup.memory.BYTES_PER_PIXEL`).

Candidates: ``supervised``; ``fixmatch-joint`` (weak and strong views in one pass with
gradients, the paper and the only FixMatch before the memory plan); ``fixmatch-no_grad``
(weak views in a separate no-gradient pass); ``fixmatch`` (the default, ``weak_pass="auto"``:
the plan chosen from this machine's available memory, printed); ``mixmatch``.

Usage: ``python bench/semisup_memory.py [--batch 8] [--size 224] [--steps 2] [--mu 7]``
(224 px at batch 8 needs about 11 GB for ``fixmatch-joint``; ``--size 64`` a tenth of it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CANDIDATES = ("supervised", "fixmatch-joint", "fixmatch-no_grad", "fixmatch", "mixmatch")


def _step(method: str, batch: int, size: int, steps: int, mu: int, available_gb: float | None = None) -> dict:
    import resource

    import torch
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from torch.utils.data import TensorDataset

    from radiology.models import create_model
    from radiology.semisup import semisup_callback
    from radiology.train import make_learner

    if available_gb is not None:  # the plan sees a smaller machine
        from radiology.semisup import memory

        memory.available_memory = lambda device=None: int(available_gb * 1e9)
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x = torch.rand(batch * steps, 1, size, size)
    y = torch.arange(batch * steps) % 2
    items = list(zip(x, y))
    dls = DataLoaders(DataLoader(items, bs=batch, shuffle=True, drop_last=True),
                      DataLoader(items[:batch], bs=batch))
    learn = make_learner(dls, create_model(n_outputs=2, pretrained=None), torch.nn.CrossEntropyLoss())
    learn.logger = lambda *args, **kwargs: None
    cbs = []
    name, _, weak_pass = method.partition("-")
    if method != "supervised":
        per_step = mu * batch if name == "fixmatch" else batch
        unlabeled = TensorDataset(torch.rand(per_step * steps, 1, size, size))
        params = {"mu": mu, "weak_pass": weak_pass or "auto"} if name == "fixmatch" else {}
        cbs = [semisup_callback(name, unlabeled, batch, **params)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with learn.no_bar():
        learn.fit(1, 1e-3, cbs=cbs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    plan = getattr(cbs[0], "plan", None) if cbs else None
    return {"method": method, "before_mb": before / 1024, "peak_mb": peak / 1024,
            "plan": plan.message if plan is not None else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=8, help="labeled images per step")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--mu", type=int, default=7, help="FixMatch's unlabeled images per labeled image")
    parser.add_argument("--methods", default=",".join(CANDIDATES), help="comma-separated candidates")
    parser.add_argument("--available-gb", type=float,
                        help="memory the FixMatch plan is told is available (default: this machine's)")
    parser.add_argument("--one", choices=CANDIDATES, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(_step(args.one, args.batch, args.size, args.steps, args.mu, args.available_gb)))
        return
    results = {}
    for method in args.methods.split(","):
        command = [sys.executable, __file__, "--one", method, "--batch", str(args.batch), "--size", str(args.size),
                   "--steps", str(args.steps), "--mu", str(args.mu)]
        if args.available_gb is not None:
            command += ["--available-gb", str(args.available_gb)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{method:10s} failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
            continue
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    anchor = results.get("supervised")
    told = f", plan told {args.available_gb} GB available" if args.available_gb is not None else ""
    print(f"batch {args.batch}, {args.size} px, FixMatch mu={args.mu}, {args.steps} steps, CPU{told}")
    for method, result in results.items():
        ratio = f"{result['peak_mb'] / anchor['peak_mb']:.2f}x supervised" if anchor else ""
        print(f"{method:16s} peak {result['peak_mb']:8.0f} MB (after set-up {result['before_mb']:6.0f} MB)  {ratio}")
        if result.get("plan"):
            print(f"{'':16s} {result['plan']}")
    joint = results.get("fixmatch-joint")
    if anchor and joint:
        # The joint step holds 2 mu B more images with gradients than the supervised one.
        per_image = (joint["peak_mb"] - anchor["peak_mb"]) * 2**20 / (2 * args.mu * args.batch)
        print(f"training memory per image: {per_image / 2**20:.1f} MB, {per_image / args.size**2:.0f} bytes "
              "per input pixel")


if __name__ == "__main__":
    main()
