"""Source discovery: the input files of a conversion, and what the walk passed over and why.

Local folders are walked with :func:`radiology.files.find_files` (hidden files included,
linked folders followed once, DST left out); an fsspec URL is listed with fsspec. Private to
:mod:`radiology.convert`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from radiology.convert.stores import _SCRATCH, _is_url, _local
from radiology.files import find_files, is_input
from radiology.io import FORMATS

__all__: list[str] = []


def _url_sources(url: str, pattern: str) -> tuple[list[str], str]:
    import fnmatch

    import fsspec

    fs, root = fsspec.core.url_to_fs(url)
    if fs.isfile(root):
        return [url], url.rsplit("/", 1)[0]
    if not fs.isdir(root):
        raise FileNotFoundError(f"{url}: no such file or folder")
    found = sorted(f for f in fs.find(root) if fnmatch.fnmatch(f.rsplit("/", 1)[-1], pattern))
    return [fs.unstrip_protocol(f) for f in found], fs.unstrip_protocol(root)


def _sources(src, dst, pattern: str) -> tuple[list[str], str, list[tuple[str, str]]]:
    """Input files (paths or URLs), the root their report names are relative to, and the paths the
    walk passed over with the reason of each (:func:`_passed_over`)."""

    if isinstance(src, (str, os.PathLike)):
        src = [src]
    items = [_local(os.fspath(p) if isinstance(p, os.PathLike) else p) for p in src]
    if not items:
        return [], ".", []
    if any(_is_url(item) for item in items):
        if len(items) > 1:
            raise ValueError("give one URL source at a time")
        found, root = _url_sources(items[0], pattern)
        if len(found) == 1 and found[0] == items[0]:  # a single file named by the caller is always read
            return found, root, []
        # The same input rule as for local folders: tables and notes get skipped rows.
        return [f for f in found if is_input(f)], root, [(f, _NOT_INPUT) for f in found if not is_input(f)]
    items = [Path(item) for item in items]
    real_dst = None if _is_url(dst) else os.path.realpath(dst)
    for item in items:
        if not item.exists() and not item.is_symlink():
            raise FileNotFoundError(f"{item}: no such file or folder")
        if item.is_dir() and os.path.realpath(item) == real_dst:
            raise ValueError("dst must be a different folder from src")
    roots = [item if item.is_dir() else item.parent for item in items]
    root = roots[0] if len(items) == 1 else Path(os.path.commonpath([os.path.abspath(r) for r in roots]))
    paths: list[Path] = []
    passed: dict[Path, str] = {}
    for item in items:
        if item.is_dir():
            found = find_files(item, pattern, exclude=None if real_dst is None else dst, hidden=True,
                               follow_links=True)
            # The package's one rule (radiology.files): tables, notes and archives beside the images are
            # reported as skipped, not converted and failed; a file named on the command line is always read.
            for path in found:
                if not is_input(path):
                    passed.setdefault(path if len(items) == 1 else Path(os.path.abspath(path)), _NOT_INPUT)
            found = [path for path in found if is_input(path)]
            paths.extend(found if len(items) == 1 else [Path(os.path.abspath(p)) for p in found])
            for path, reason in _passed_over(item, real_dst, pattern):
                passed.setdefault(path if len(items) == 1 else Path(os.path.abspath(path)), reason)
        else:
            paths.append(item if len(items) == 1 else Path(os.path.abspath(item)))
    return [str(p) for p in dict.fromkeys(paths)], str(root), [(str(p), r) for p, r in passed.items()]


_NOT_INPUT = "a table, text, document or archive file, not an image input (radiology.files.NOT_INPUT_SUFFIXES)"


_LOOP = "linked folder loops back to a folder it is in; not followed again"


_DUPLICATE = "same folder as one reached earlier through another path (a symbolic link); not read twice"


_INSIDE_DST = "inside dst, the output folder, which lies inside src; not converted"


def _passed_over(folder: Path, real_dst: str | None, pattern: str) -> Iterator[tuple[Path, str]]:
    """What the walk of :func:`radiology.dicom.find_files` leaves out of ``folder``, and why.

    It enters each real folder once and never enters DST, so a link loop, a second link to one
    folder and the files inside DST (when DST lies inside SRC) would leave no trace in the
    report. This walk takes the same path (top-down, sorted, the same real folders seen), so the
    folder it names is the one find_files skipped, not the one it converted.
    """
    seen = {os.path.realpath(folder)}
    for here, subfolders, _ in os.walk(folder, followlinks=True):
        real_here = os.path.realpath(here)
        keep = []
        for name in sorted(subfolders):
            path = Path(here) / name
            real = os.path.realpath(path)
            if real == real_dst and real not in seen:
                seen.add(real)  # a second path to DST is reported as one, not its files twice
                yield from ((file, _INSIDE_DST) for file in _user_files(path, pattern))
            elif real in seen:
                looped = real_here == real or real_here.startswith(real.rstrip(os.sep) + os.sep)
                yield path, _LOOP if looped else _DUPLICATE
            else:
                seen.add(real)
                keep.append(name)
        subfolders[:] = keep


def _user_files(dst: Path, pattern: str) -> Iterator[Path]:
    """Files in DST that no conversion wrote: not an image, a report, or a scratch file of a run."""

    own = re.compile(rf"\.?conversion_report.*\.(csv|tmp)|{re.escape(_SCRATCH)}.*")
    for path in find_files(dst, pattern, hidden=True, follow_links=True):
        relative = path.relative_to(dst)
        if path.suffix.lower() not in FORMATS.values() and not own.fullmatch(relative.parts[0]):
            yield path
