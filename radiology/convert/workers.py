"""Work units and where they run: one file's conversion, isolated worker processes, executors.

- :func:`_convert_one`: decode, render and encode one file into its report row and bytes;
  never raises for a bad file (only ``KeyboardInterrupt``/``SystemExit``).
- :func:`_run_isolated`: each file in a worker process of its own at a time, so a codec
  that kills its process fails exactly that file.
- :func:`_run_executor`: batches on any ``concurrent.futures.Executor`` (Dask ...).

Private to :mod:`radiology.convert`; :func:`~radiology.convert.convert_folder` is the way in.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from dataclasses import dataclass

from radiology.convert.options import ConvertOptions
from radiology.convert.report import _header_fields, _meta_fields, _reason, _row
from radiology.convert.stores import _read_source
from radiology.dicom import DicomWarning, InconsistentAttributesError, read_dataset
from radiology.errors import one_line
from radiology.io import encode_image
from radiology.naming import sanitize_component
from radiology.pipeline import Pipeline

__all__: list[str] = []

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Job:
    index: int
    path: str
    label: str  # what the report shows (relative, hashed or not)
    output: str | None  # known up front for path naming; from the UID otherwise
    header_only: bool = False  # resume: the output exists; read the header for the row, do not decode
    force: bool = False  # uid naming: convert even if the output exists (options changed)


@dataclass(frozen=True)
class _Context:
    options: ConvertOptions
    pipeline: Pipeline
    store: object  # _LocalStore or _FsspecStore
    skip_existing: bool


_FATAL = (KeyboardInterrupt, SystemExit, GeneratorExit)


def _uid_output(ds, path: str, options: ConvertOptions) -> str:
    uid = ds.get("SOPInstanceUID")
    if not uid:
        raise InconsistentAttributesError(f"{path}: no SOPInstanceUID to name the output")
    return sanitize_component(str(uid)) + options.extension


def _convert_one(job: _Job, ctx: _Context) -> tuple[dict, bytes | None]:
    """Decode, render and encode one file; returns its report row and the encoded bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DicomWarning)  # recorded in the row's warnings column instead
        return _convert_file(job, ctx)


def _convert_file(job: _Job, ctx: _Context) -> tuple[dict, bytes | None]:
    meta: dict = {}
    options = ctx.options
    try:
        output = job.output  # None with UID naming: the header decides the name
        source = _read_source(job.path)
        if job.header_only or (output is None and ctx.skip_existing and not job.force):
            ds = read_dataset(source, stop_before_pixels=True)
            meta = _header_fields(ds)
            output = output or _uid_output(ds, job.path, options)
            if job.header_only or ctx.store.exists(output):
                return _row(job.label, "skipped", "output exists", output, meta), None
        image = ctx.pipeline.decode.read(source)
        meta = _meta_fields(image.metadata)
        meta["warnings"] = "; ".join(image.warnings)
        output = output or _uid_output(image.dataset, job.path, options)
        data = encode_image(ctx.pipeline.render(image), options.fmt, options.bit_depth,
                            png_compression=options.png_compression, jpeg_quality=options.jpeg_quality)
        return _row(job.label, "ok", "", output, meta), data
    except BaseException as error:  # noqa: BLE001 - a codec may raise a non-Exception (pyo3 PanicException)
        if isinstance(error, _FATAL):
            raise
        return _row(job.label, "failed", _reason(error, job.path), "", meta), None


def _convert_batch(jobs: list[_Job], ctx: _Context) -> list[tuple[dict, bytes | None]]:
    """One executor task: several files, so small files do not pay one task each."""
    return [_convert_one(job, ctx) for job in jobs]


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(0)

    def watch() -> None:  # other systems (and belt and braces): poll the parent
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _quiet_native_stderr() -> None:
    # Codecs written in C (libjpeg, OpenJPEG, GDCM) print to file descriptor 2 and would scatter
    # their messages over the progress bar; each file's failure reason is in the report instead.
    # Debug logging (radiology -v) keeps them.
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)


def _worker_main(conn, ctx: _Context, parent: int) -> None:
    _die_with_parent(parent)
    _quiet_native_stderr()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the coordinator's to handle
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        conn.send(_convert_one(job, ctx))


class _Worker:
    def __init__(self, mp, ctx: _Context):
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_worker_main, args=(child, ctx, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.job: _Job | None = None

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(None)
        self.process.join(timeout=2)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=2)
        self.conn.close()


def _death(process) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _run_isolated(jobs: list[_Job], ctx: _Context, workers: int) -> Iterator[tuple[_Job, dict, bytes | None]]:
    """Each file is decoded in a worker process that handles one file at a time, so a codec that
    kills its process (SIGABRT, SIGSEGV, out of memory) fails exactly that file; the worker is replaced."""
    from multiprocessing.connection import wait as wait_for

    methods = multiprocessing.get_all_start_methods()
    mp = multiprocessing.get_context("fork" if "fork" in methods and sys.platform != "darwin" else "spawn")
    pending = list(reversed(jobs))
    pool = [_Worker(mp, ctx) for _ in range(min(workers, max(1, len(jobs))))]

    def feed(index: int) -> None:
        worker = pool[index]
        if worker.job is not None or not pending:
            return
        job = pending.pop()
        try:
            worker.conn.send(job)
        except OSError:  # the idle worker died (killed from outside): replace it, try once more
            worker.stop()
            worker = pool[index] = _Worker(mp, ctx)
            worker.conn.send(job)
        worker.job = job

    try:
        while pending or any(w.job is not None for w in pool):
            for index in range(len(pool)):
                feed(index)
            busy = [w for w in pool if w.job is not None]
            ready = set(wait_for([w.conn for w in busy] + [w.process.sentinel for w in busy]))
            for index, worker in enumerate(pool):
                job = worker.job
                if job is None or (worker.conn not in ready and worker.process.sentinel not in ready):
                    continue
                result = None
                try:
                    if worker.conn.poll():
                        result = worker.conn.recv()
                except (EOFError, OSError):
                    result = None
                if result is not None:
                    worker.job = None
                    feed(index)  # the worker decodes the next file while this one is written
                    yield job, result[0], result[1]
                    continue
                worker.process.join(timeout=5)
                reason = f"the decoder crashed its worker process ({_death(worker.process)})"
                logger.warning("%s: %s; starting a new worker", job.label, reason)
                worker.job = None
                worker.stop()
                pool[index] = _Worker(mp, ctx)
                yield job, _row(job.label, "failed", reason), None
    finally:
        for worker in pool:
            worker.stop()


def _run_executor(jobs: list[_Job], ctx: _Context, executor: Executor,
                  batch_size: int) -> Iterator[tuple[_Job, dict, bytes | None]]:
    """Batches of files as tasks of any ``concurrent.futures.Executor``; a batch whose task fails
    (a worker died) is retried one file per task, and a file whose own task fails is reported."""
    batches = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    window = max(2, 2 * (getattr(executor, "_max_workers", 0) or 32))
    pending = list(reversed(batches))
    running: dict = {}
    while pending or running:
        while pending and len(running) < window:
            batch = pending.pop()
            try:
                running[executor.submit(_convert_batch, batch, ctx)] = batch
            except Exception as error:  # noqa: BLE001 - e.g. a broken pool refuses new work
                for job in batch:
                    yield job, _row(job.label, "failed", f"executor refused the task: {one_line(error)}"), None
        if not running:
            continue
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            batch = running.pop(future)
            try:
                results = future.result()
            except BaseException as error:  # noqa: BLE001 - the task itself died (worker lost, pickling ...)
                if isinstance(error, _FATAL):
                    raise
                if len(batch) > 1:
                    pending.extend([job] for job in reversed(batch))  # alone, to find the culprit
                    continue
                results = [(_row(batch[0].label, "failed", f"worker task failed: {_reason(error, '')}"), None)]
            for job, (row, data) in zip(batch, results):
                yield job, row, data
