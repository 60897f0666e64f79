"""Convert a folder: :func:`convert_folder`, the orchestrator.

Discover the sources (:mod:`~radiology.convert.sources`), plan one output per input
(names from :mod:`radiology.naming`, claims from :mod:`~radiology.convert.stores`), run the
work (:mod:`~radiology.convert.workers`), settle each result into the store and the report
(:mod:`~radiology.convert.report`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import replace

from radiology.convert.options import ConvertOptions
from radiology.convert.report import REPORT_NAME, ConversionReport, _csv, _previous_rows, _report_name, _row
from radiology.convert.sources import _sources
from radiology.convert.stores import _Claims, _FsspecStore, _is_url, _local, _LocalStore, _renamed
from radiology.convert.workers import _Context, _Job, _run_executor, _run_isolated
from radiology.dicom.metadata import hashed_name
from radiology.files import shard_of
from radiology.naming import display_name, output_name

__all__ = ["convert_folder"]

logger = logging.getLogger(__name__)


def convert_folder(
    src: str | os.PathLike | Sequence[str | os.PathLike],
    dst: str | os.PathLike,
    options: ConvertOptions | None = None,
    *,
    workers: int = 1,
    skip_existing: bool = False,
    pattern: str = "*",
    progress: bool = True,
    executor: Executor | None = None,
    batch_size: int = 8,
    shard: tuple[int, int] | None = None,
    checkpoint_seconds: float = 30.0,
) -> ConversionReport:
    """Convert folders (recursively) or DICOM files to images, one report row per input.

    Parameters
    ----------
    src : path or sequence of paths
        A folder searched recursively (hidden files included, linked folders followed
        once, ``dst`` excluded when it is inside), a single file, or several folders
        and files (report paths are then relative to their common parent). What the
        search leaves out gets a ``skipped`` row saying why: a link loop, a second path
        to a folder already read, and each file inside ``dst`` that no conversion wrote.
    dst : path
        Output folder, created if needed. Outputs mirror the input tree (``naming="path"``)
        or are flat, named by SOP Instance UID (``naming="uid"``); names are sanitized so
        nothing can be written outside ``dst``, and never through a symbolic link in it.
    options : ConvertOptions, optional
        How each image is rendered and written; default ``ConvertOptions()``.
    workers : int, optional
        Worker processes. Decoding always runs in worker processes (one file each at a
        time), so a codec that crashes its process fails only that file.
    skip_existing : bool, optional
        Resume: an input whose output exists *and* was written with the same options
        (per the earlier report in ``dst``) is reported ``skipped`` with its header
        fields and not decoded; an output written with other options is converted again.
    pattern : str, optional
        Glob on file names when ``src`` is a folder.
    progress : bool, optional
        Show a progress bar.
    executor : concurrent.futures.Executor, optional
        Run the work on this executor instead (e.g. ``dask.distributed.Client(address)
        .get_executor()``), ``batch_size`` files per task. Sources must be readable where
        the tasks run; encoded images come back and are written here. No crash isolation
        beyond what the executor gives (a failed batch is retried one file per task).
    batch_size : int, optional
        Files per executor task.
    shard : (int, int), optional
        ``(i, n)``: convert only the inputs of shard ``i`` of ``n`` (stable by output path,
        0-based) and write ``conversion_report.shard-i-of-n.csv``; join them with
        :func:`merge_reports`.
    checkpoint_seconds : float, optional
        Rewrite the report this often during the run, so a killed run can resume.

    Returns
    -------
    ConversionReport
        Also written to ``dst/conversion_report.csv`` (columns :data:`REPORT_COLUMNS`;
        ``output`` relative to ``dst``).

    Raises
    ------
    FileNotFoundError, ValueError
        A source is missing, ``dst`` is a file or the same folder as ``src``. Nothing is
        touched then.

    Notes
    -----
    Guarantees: every input gets exactly one row (``ok``, ``failed`` with a one-line
    reason, or ``skipped``); no exception raised while converting a file — including a
    codec's ``BaseException`` or a crashed worker — stops the batch (only
    ``KeyboardInterrupt``/``SystemExit`` do); outputs are written atomically by this
    process into ``dst`` only; no output overwrites an input or another output (a name
    taken by an earlier input gets a ``_2`` suffix, noted in ``reason``); memory is
    bounded by about ``workers`` × 16 bytes × ``options.max_pixels``. Scratch folders of
    killed runs are removed at the next run.

    Examples
    --------
    >>> import pathlib, tempfile, pydicom.data
    >>> files = [pydicom.data.get_testdata_file(n) for n in ("CT_small.dcm", "MR_truncated.dcm")]
    >>> report = convert_folder(files, tempfile.mkdtemp(), progress=False)
    >>> report.summary
    '1 converted, 1 failed, 0 skipped'
    """
    options = options or ConvertOptions()
    pipeline = options.to_pipeline()  # built once: every file runs this same object
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if shard is not None:
        index, count = (int(v) for v in shard)
        if not 0 <= index < count:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
        shard = (index, count)
    dst = _local(os.fspath(dst) if isinstance(dst, os.PathLike) else dst)
    if not _is_url(dst) and os.path.exists(dst) and not os.path.isdir(dst):
        raise NotADirectoryError(f"{dst}: dst exists and is not a folder")
    paths, root, passed = _sources(src, dst, pattern)
    store = _FsspecStore(dst) if _is_url(dst) else _LocalStore(dst)
    store.open()
    try:
        return _convert_all(paths, root, passed, store, options, pipeline, workers=workers,
                            skip_existing=skip_existing, progress=progress, executor=executor,
                            batch_size=batch_size, shard=shard, checkpoint_seconds=checkpoint_seconds)
    finally:
        store.close()


def _named(relative: str, options: ConvertOptions) -> str:
    """How the report and the output tree name an input: its relative path, or that path hashed."""
    return hashed_name(relative) if options.source_names == "hashed" else relative


def _options_fingerprint(options: ConvertOptions) -> str:
    data = options.to_pipeline().to_dict()
    data["decode"].pop("max_pixels", None)  # a resource limit: outputs do not depend on it
    data.update(fmt=options.fmt, bit_depth=options.bit_depth, png_compression=options.png_compression,
                jpeg_quality=options.jpeg_quality, naming=options.naming, source_names=options.source_names)
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _convert_all(paths, root, passed, store, options, pipeline, *, workers, skip_existing, progress, executor,
                 batch_size, shard, checkpoint_seconds) -> ConversionReport:
    """Plan outputs, run the jobs, settle each result, write the report (the body of :func:`convert_folder`)."""
    from tqdm.auto import tqdm

    fingerprint = _options_fingerprint(options)
    report_name = _report_name(shard)
    # The shard's own report and the merged one; without shards they are the same file, read once.
    previous = _previous_rows(store, dict.fromkeys([REPORT_NAME, report_name])) if skip_existing else {}
    real_sources = set(paths) if _is_url(root) else {os.path.realpath(p) for p in paths}
    rows: dict[int, dict] = {}
    claims = _Claims()
    jobs: list[_Job] = []

    def resumed(output: str) -> bool:
        earlier = previous.get(output)
        return earlier is not None and earlier.get("options") == fingerprint and store.exists(output)

    for index, path in enumerate(paths):
        relative = posixpath.relpath(path, root) if _is_url(root) else os.path.relpath(path, root)
        named = _named(relative, options)
        label = display_name(named)
        output = None
        note = ""
        if options.naming == "path":
            output = output_name(named, options.extension)
            if shard is not None and shard_of(output, shard[1]) != shard[0]:
                continue
            reason = claims.clash(output)
            if reason is not None:
                renamed = _renamed(output, claims)
                if renamed is None:
                    rows[index] = _row(label, "failed", reason)
                    continue
                note = f"renamed: {reason}"
                output = renamed
            if store.overwrites(output, real_sources):
                rows[index] = _row(label, "failed", f"output {output} would overwrite an input file")
                continue
            claims.take(output, label)
            if skip_existing and resumed(output):
                jobs.append(_Job(index, path, label, output, header_only=True))
                continue
        elif shard is not None and shard_of(relative, shard[1]) != shard[0]:
            continue
        jobs.append(_Job(index, path, label, output))
        if note:
            rows[index] = {"note": note}  # completed when the job settles
    for index, (path, reason) in enumerate(passed, start=len(paths)):
        relative = posixpath.relpath(path, root) if _is_url(root) else os.path.relpath(path, root)
        if shard is None or shard_of(relative, shard[1]) == shard[0]:
            rows[index] = _row(display_name(_named(relative, options)), "skipped", reason)

    uid_claims: dict[str, str] = {}
    redo: list[_Job] = []
    last_checkpoint = time.monotonic()

    def write_report():
        return store.put(report_name, _csv([rows[i] for i in sorted(rows) if "status" in rows[i]]))

    def settle(job: _Job, row: dict, data: bytes | None) -> None:
        nonlocal last_checkpoint
        note = rows.get(job.index, {}).get("note", "")
        output = row["output"]
        if row["status"] == "skipped" and job.output is None and not resumed(output):
            redo.append(replace(job, force=True))  # uid naming: the existing output has other options
            return
        if row["status"] == "ok":
            if options.naming == "uid":
                owner = uid_claims.get(output)
                if owner is not None:
                    row.update(status="failed", reason=f"output {output} collides with {owner}", output="")
                elif store.overwrites(output, real_sources):
                    row.update(status="failed", reason=f"output {output} would overwrite an input file", output="")
            if row["status"] == "ok":
                try:
                    store.write(output, data, f"{job.index}{options.extension}")
                    uid_claims[output] = job.label
                    if note:
                        row["reason"] = note
                except OSError as error:
                    text = display_name(error.strerror or str(error)) if error.filename else display_name(str(error))
                    row.update(status="failed", reason=f"cannot write {output}: {text}", output="")
        elif row["status"] == "skipped" and options.naming == "uid":
            uid_claims[output] = job.label
        if row["status"] in ("ok", "skipped"):
            row["options"] = fingerprint
        rows[job.index] = row
        bar.update()
        if time.monotonic() - last_checkpoint > checkpoint_seconds:
            write_report()
            last_checkpoint = time.monotonic()

    def run(batch: list[_Job]) -> None:
        ctx = _Context(options, pipeline, store, skip_existing)
        results = (_run_executor(batch, ctx, executor, batch_size) if executor is not None
                   else _run_isolated(batch, ctx, workers))
        for job, row, data in results:
            settle(job, row, data)

    bar = tqdm(total=len(jobs) + sum("status" in r for r in rows.values()),
               initial=sum("status" in r for r in rows.values()), disable=not progress, unit="file", desc="convert")
    try:
        run(jobs)
        if redo:
            run(redo)
    finally:
        bar.close()
        report_path = write_report()
    report = ConversionReport([rows[i] for i in sorted(rows) if "status" in rows[i]], report_path)
    logger.info("%s", report.summary)
    return report
