"""Where outputs go: local and fsspec stores, output claims, safe targets, scratch clean-up.

- :class:`_LocalStore`: DST on a local file system; each output is written to a scratch
  folder and renamed into place (atomic), never through a symbolic link (:func:`_target`).
- :class:`_FsspecStore`: DST as an fsspec URL; each object is written whole, in one put.
- :class:`_Claims`, :func:`_renamed`: no two inputs claim one output, no output lands on a
  folder another output needs (a later claimant gets ``_2``).

Private to :mod:`radiology.convert`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from radiology.io import atomic_write
from radiology.naming import fit_name

__all__: list[str] = []

_SCRATCH = ".radiology-tmp-"


def _is_url(value) -> bool:
    return isinstance(value, str) and "://" in value


def _local(value):
    """``file://`` URLs are plain paths (with every local guarantee)."""
    return value[len("file://"):] if isinstance(value, str) and value.startswith("file://") else value


def _read_source(path: str):
    """What the readers get: the path, or the bytes of a URL source."""
    if not _is_url(path):
        return path
    import fsspec

    with fsspec.open(path, "rb") as file:
        return file.read()


class _LocalStore:
    """DST on a local file system: atomic renames from a scratch folder, no writes through links."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.scratch: Path | None = None

    @property
    def name(self) -> str:
        return str(self.root)

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _clean_stale(self.root)
        self.scratch = Path(tempfile.mkdtemp(prefix=f"{_SCRATCH}{socket.gethostname()}-{os.getpid()}-",
                                             dir=self.root))

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def exists(self, relative: str) -> bool:
        return (self.root / relative).exists()

    def read(self, name: str) -> bytes | None:
        path = self.root / name
        return path.read_bytes() if path.is_file() else None

    def put(self, name: str, data: bytes):
        return atomic_write(self.root / name, data)

    def write(self, relative: str, data: bytes, key: str) -> None:
        # Not io.atomic_write (a temporary beside the target): the temporaries of a killed run must lie in one
        # scratch folder of this host and process, which the next run removes (_clean_stale), not among outputs.
        target = _target(self.root, relative)
        temporary = self.scratch / key
        try:
            temporary.write_bytes(data)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)

    def overwrites(self, relative: str, sources: set[str]) -> bool:
        return os.path.realpath(os.path.join(self.root, relative)) in sources


class _FsspecStore:
    """DST as an fsspec URL (``memory://``, ``s3://`` ...): each object is written whole, in one put."""

    def __init__(self, url: str):
        import fsspec

        self.url = url.rstrip("/")
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.root = self.root.rstrip("/")

    @property
    def name(self) -> str:
        return self.url

    def open(self) -> None:
        if self.fs.isfile(self.root):
            raise NotADirectoryError(f"{self.url}: dst exists and is not a folder")
        self.fs.makedirs(self.root, exist_ok=True)

    def close(self) -> None:
        pass

    def exists(self, relative: str) -> bool:
        return self.fs.exists(f"{self.root}/{relative}")

    def read(self, name: str) -> bytes | None:
        path = f"{self.root}/{name}"
        return self.fs.cat_file(path) if self.fs.isfile(path) else None

    def put(self, name: str, data: bytes):
        self.fs.pipe_file(f"{self.root}/{name}", data)
        return f"{self.url}/{name}"

    def write(self, relative: str, data: bytes, key: str) -> None:
        path = f"{self.root}/{relative}"
        if self.fs.isdir(path):
            raise OSError(f"{relative} exists as a folder")
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def overwrites(self, relative: str, sources: set[str]) -> bool:
        return self.fs.unstrip_protocol(f"{self.root}/{relative}") in sources


def _clean_stale(dst: Path) -> None:
    """Remove scratch folders of killed runs (this host, process gone; or any host, older than a day)."""
    host = socket.gethostname()
    now = time.time()
    for entry in dst.glob(_SCRATCH + "*"):
        parts = entry.name[len(_SCRATCH):].split("-")
        try:
            pid = int(parts[-2])
            same_host = "-".join(parts[:-2]) == host
            alive = True
            if same_host:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    alive = False
                except PermissionError:
                    pass
            if not alive or now - entry.lstat().st_mtime > 86400:
                shutil.rmtree(entry, ignore_errors=True)
        except (ValueError, IndexError, OSError):
            continue
    for entry in dst.glob(".conversion_report*.tmp"):  # atomic_write's temporary of a killed run
        with contextlib.suppress(OSError):
            if now - entry.lstat().st_mtime > 600:
                entry.unlink()


def _target(dst: Path, output: str) -> Path:
    """The output path, with its folders created one by one, never through a symbolic link."""
    here = dst
    parts = output.split("/")
    for part in parts[:-1]:
        here = here / part
        if here.is_symlink():
            raise OSError(f"{here.relative_to(dst)} is a symbolic link; not writing through it")
        if not here.is_dir():
            if here.exists():
                raise OSError(f"{here.relative_to(dst)} exists and is not a folder")
            here.mkdir(exist_ok=True)  # another shard may create it at the same moment
    target = here / parts[-1]
    if target.is_symlink():
        raise OSError(f"{output} is a symbolic link; not writing through it")
    if target.is_dir():
        raise OSError(f"{output} exists as a folder")
    return target


class _Claims:
    """Outputs and the folders they need, so no file lands on a folder or inside a file."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.folders: dict[str, str] = {}

    def clash(self, output: str) -> str | None:
        if output in self.files:
            return f"output {output} collides with {self.files[output]}"
        if output in self.folders:
            return f"output {output} is a folder needed by {self.folders[output]}"
        parts = output.split("/")
        for i in range(1, len(parts)):
            folder = "/".join(parts[:i])
            if folder in self.files:
                return f"output folder {folder} is the output of {self.files[folder]}"
        return None

    def take(self, output: str, label: str) -> None:
        self.files[output] = label
        parts = output.split("/")
        for i in range(1, len(parts)):
            self.folders.setdefault("/".join(parts[:i]), label)


def _renamed(output: str, claims: _Claims) -> str | None:
    """``a.png`` → ``a_2.png`` (``_3`` ...) until free; None when the folder itself clashes."""
    folder, _, name = output.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, dot + ext) if stem else (name, "")
    for n in range(2, 10_000):
        candidate = fit_name(f"{stem}_{n}", keep=ext)
        candidate = f"{folder}/{candidate}" if folder else candidate
        if claims.clash(candidate) is None:
            return candidate
        if candidate not in claims.files:  # a folder clash, which no further suffix avoids
            return None
    return None

