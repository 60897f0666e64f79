"""Several processes training one model: GPUs through NCCL, or CPUs through gloo.

Launched by ``torchrun --nproc_per_node N -m radiology.cli train ...`` (or ``accelerate
launch``), every process runs the whole recipe with its ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``. fastai does the work (:class:`fastai.distributed.DistributedTrainer`: the
model in DistributedDataParallel, each batch sharded across the processes by
:class:`fastai.distributed.DistributedDL`, predictions and metrics of the validation set
gathered from all of them); this module only adapts it to machines without CUDA, where
fastai's own path fails:

- ``DistributedDL`` broadcasts the shuffled indices as a CUDA tensor (NCCL needs one):
  :class:`_CPUDistributedDL` keeps it on the CPU for gloo;
- ``DistributedTrainer`` turns batch norm into ``SyncBatchNorm``, which runs on GPUs only,
  and lets accelerate choose the backend, which on CPUs means asking for it
  (``Accelerator(cpu=True)``): on CPUs, plain batch norm (each process normalises its own
  shard) and gloo, the process group started here (:func:`process_group`).

Rank 0 alone fits the head on pre-computed features and scores the final model, with
fastai's gathering turned off (:func:`single_process`); it alone writes into ``out``.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os

import torch
from fastai.distributed import DistributedDL, DistributedTrainer, num_distrib, rank_distrib

logger = logging.getLogger(__name__)
_WAIT_FOR_RANK_0 = datetime.timedelta(hours=12)

__all__ = ["process_group", "distrib_ctx", "single_process", "is_multi_process"]


def is_multi_process() -> bool:
    """Whether this process is one of several training together (``WORLD_SIZE`` > 1, as set by ``torchrun``).

    Returns
    -------
    bool
    """
    return num_distrib() > 1


@contextlib.contextmanager
def process_group():
    """Start the gloo process group of a CPU run of several processes, and end it on leaving.

    A no-op in one process, or where CUDA is available (accelerate then starts NCCL itself).
    The launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``)
    says who is who.

    Yields
    ------
    bool
        Whether a gloo group was started here.
    """
    dist = torch.distributed
    start = is_multi_process() and not torch.cuda.is_available() and dist.is_available() and not dist.is_initialized()
    if start:
        # Rank 0 alone fits the head (features of every image) while the others wait at the first
        # collective: gloo's 30-minute default would end a run on a large set. A failing rank
        # still ends the run at once (torchrun stops the others).
        dist.init_process_group(backend="gloo", init_method="env://", timeout=_WAIT_FOR_RANK_0)
    try:
        yield start
    finally:
        if start and dist.is_initialized():
            dist.destroy_process_group()


@contextlib.contextmanager
def single_process():
    """Rank 0 working alone: fastai gathers nothing from the other processes inside.

    fastai gathers every loss, prediction and metric from all processes whenever
    ``WORLD_SIZE`` > 1, which would wait forever on processes that are not doing the same
    work; inside, ``WORLD_SIZE`` reads 1. A no-op in one process.

    Yields
    ------
    None
    """
    if not is_multi_process():
        yield
        return
    world = os.environ["WORLD_SIZE"]
    os.environ["WORLD_SIZE"] = "1"
    try:
        yield
    finally:
        os.environ["WORLD_SIZE"] = world


class _CPUDistributedDL(DistributedDL):
    """fastai's ``DistributedDL`` whose index broadcast also runs on gloo (a CPU tensor)."""

    def _broadcast(self, t, rank):
        if torch.distributed.get_backend() == "nccl":
            return super()._broadcast(t, rank)
        t = torch.LongTensor(t)
        torch.distributed.broadcast(t, rank)
        return t.tolist()


class _CPUDistributedTrainer(DistributedTrainer):
    """fastai's ``DistributedTrainer`` for CPUs: gloo, DDP without device ids, CPU broadcasts."""

    def before_fit(self):
        batches = len(self.dls.train)
        super().before_fit()
        if not rank_distrib():
            logger.info("on %d processes (%s): %d training batches split into %d per process, validation gathered",
                        torch.distributed.get_world_size(), torch.distributed.get_backend(), batches,
                        len(self.dls.train))

    def _wrap_dl(self, dl):
        return dl if isinstance(dl, DistributedDL) else _CPUDistributedDL(dl, device=torch.device("cpu"))


@contextlib.contextmanager
def distrib_ctx(learn):
    """fastai's ``learn.distrib_ctx()`` on GPUs; on CPUs its gloo equivalent.

    A no-op in one process. With several (``WORLD_SIZE`` > 1), every ``fit`` inside wraps
    the model in DistributedDataParallel, shards the batches across the processes and
    gathers the validation predictions of all of them, so the metrics are those of the whole
    validation set. Without CUDA the process group must be gloo's (:func:`process_group`).

    Parameters
    ----------
    learn : fastai.learner.Learner
        The learner to adapt; restored on leaving.

    Yields
    ------
    fastai.learner.Learner
        ``learn``.
    """
    if not is_multi_process() or torch.cuda.is_available():
        with learn.distrib_ctx():
            yield learn
        return
    from fastai.callback.progress import ProgressCallback

    trainer = _CPUDistributedTrainer(sync_bn=False, cpu=True)  # SyncBatchNorm is GPU-only
    learn.add_cb(trainer)
    if rank_distrib():
        learn.remove_cb(ProgressCallback)
    try:
        yield learn
    finally:
        learn.remove_cb(trainer)
