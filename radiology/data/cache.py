"""On-disk cache of preprocessed images, keyed by file content and pipeline.

Decoding a compressed DICOM and running the preprocessing pipeline costs far more than
reading a ``.npy`` back, and training reads every image once per epoch. The cache stores
the output of :meth:`radiology.pipeline.Pipeline.read` as ``float32`` ``.npy``.

Location: ``$RADIOLOGY_CACHE`` when set, else ``~/.cache/radiology/images``. Layout::

    <root>/<pipeline key>/pipeline.json         the pipeline these images were made with
    <root>/<pipeline key>/<ab>/<content key>.npy

Keys are SHA-256 digests: the pipeline key covers the pipeline JSON
(``json.dumps(pipeline.to_dict(), sort_keys=True)``), the content of files the pipeline
refers to (e.g. knee-localizer weights) and the package version; the content key covers
the source file's bytes. A changed file, pipeline or library version therefore misses
the cache instead of returning stale pixels; renaming or moving a file still hits.

Clearing: ``ImageCache().clear()`` (removes the cache's own sub-folders only), or delete
the folder (``rm -rf ~/.cache/radiology/images``); one pipeline's images are one sub-folder.
Nothing in the cache identifies a patient except the pixels themselves: treat the folder
like the images it was made from.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np

from radiology.io import atomic_write, file_digest

__all__ = ["ImageCache", "default_cache_dir", "pipeline_key", "open_cache"]

logger = logging.getLogger(__name__)

#: Bumped when the stored format changes, so old entries are never read as new ones.
CACHE_FORMAT = 1
_KEY_LENGTH = 24
_KEY_FOLDER = re.compile(f"[0-9a-f]{{{_KEY_LENGTH}}}")


def default_cache_dir() -> Path:
    """``$RADIOLOGY_CACHE`` when set, else ``~/.cache/radiology/images``."""
    value = os.environ.get("RADIOLOGY_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "radiology" / "images"


def open_cache(setting: str | os.PathLike | None) -> ImageCache | None:
    """The cache a ``cache`` setting names: None → the default folder, ``"none"`` → no cache, else that folder.

    Parameters
    ----------
    setting : str, os.PathLike or None
        The ``cache`` setting of a run (e.g. :attr:`radiology.train.TrainConfig.cache`).

    Examples
    --------
    >>> open_cache(None).root == default_cache_dir(), open_cache("None"), open_cache("/tmp/c").root.name
    (True, None, 'c')
    """
    if setting is not None and str(setting).strip().lower() == "none":
        return None
    return ImageCache(setting)


def pipeline_key(pipeline) -> str:
    """The SHA-256 key of a pipeline: its JSON, the files it refers to, the package version.

    Parameters
    ----------
    pipeline : radiology.pipeline.Pipeline
        The pipeline whose outputs are cached.

    Examples
    --------
    >>> from radiology.pipeline import Pipeline, Percentile
    >>> pipeline_key(Pipeline([Percentile(1, 99)])) == pipeline_key(Pipeline([Percentile(1, 99)]))
    True
    >>> pipeline_key(Pipeline([Percentile(1, 99)])) == pipeline_key(Pipeline([Percentile(2, 99)]))
    False
    """
    from radiology import __version__

    digest = hashlib.sha256()
    digest.update(f"radiology-cache {CACHE_FORMAT} {__version__}\n".encode())
    digest.update(json.dumps(pipeline.to_dict(), sort_keys=True).encode())
    # A pipeline names files (KneeCrop weights) by path: their content must be part of the key.
    for path in getattr(pipeline, "files", lambda: [])():
        digest.update(b"\0" + (file_digest(Path(path)) if Path(path).is_file() else "missing").encode())
    return digest.hexdigest()


def _read(pipeline, path: Path) -> np.ndarray:
    # The one entry point shared with conversion and inference (design: Pipeline.read).
    return pipeline.read(path)


class ImageCache:
    """Preprocessed images on disk, keyed by source-file content and pipeline.

    Safe with DataLoader worker processes and concurrent runs: every entry is written to
    a temporary file and renamed into place, so a reader sees a complete entry or none;
    two processes computing the same entry write identical bytes. A corrupt or unreadable
    entry is recomputed. When the folder cannot be written the image is still returned
    (with one logged warning).

    Parameters
    ----------
    root : path, optional
        Cache folder (default :func:`default_cache_dir`).

    Attributes
    ----------
    hits, misses : int
        Counters of this process (workers count their own).

    Examples
    --------
    >>> import tempfile
    >>> from radiology.pipeline import Pipeline, Resize
    >>> from radiology.synthetic import phantom_radiograph, write_phantom_dicom
    >>> folder = Path(tempfile.mkdtemp())
    >>> source = write_phantom_dicom(folder / "p.dcm", phantom_radiograph((64, 64)))
    >>> cache = ImageCache(folder / "cache")
    >>> pipeline = Pipeline([Resize(longest=32)])
    >>> first, again = cache.load(source, pipeline), cache.load(source, pipeline)
    >>> first.shape, bool((first == again).all()), (cache.misses, cache.hits)
    ((32, 32), True, (1, 1))
    >>> cache.clear() > 0, cache.size_bytes()
    (True, 0)
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()
        self.hits = 0
        self.misses = 0
        self._digests: dict[tuple[str, int, int], str] = {}
        self._pipelines: dict[str, str] = {}
        self._warned = False

    def __repr__(self) -> str:
        return f"ImageCache({str(self.root)!r})"

    def __getstate__(self):
        # Workers get a copy without this process's memo tables.
        state = self.__dict__.copy()
        state["_digests"], state["_pipelines"] = {}, {}
        return state

    def _content_key(self, path: Path) -> str:
        # Hashing is much cheaper than decoding but not free: remember it per (path, size, mtime).
        stat = path.stat()
        memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if memo not in self._digests:
            self._digests[memo] = file_digest(path)
        return self._digests[memo]

    def _pipeline_key(self, pipeline) -> str:
        text = json.dumps(pipeline.to_dict(), sort_keys=True)
        if text not in self._pipelines:
            self._pipelines[text] = pipeline_key(pipeline)
        return self._pipelines[text]

    def entry(self, path: str | os.PathLike, pipeline) -> Path:
        """Where the cached output of ``pipeline`` on ``path`` lives (it may not exist yet).

        Parameters
        ----------
        path : str or os.PathLike
            The input file.
        pipeline : radiology.pipeline.Pipeline
            The pipeline applied to it.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        content = self._content_key(path)
        return self.root / self._pipeline_key(pipeline)[:_KEY_LENGTH] / content[:2] / f"{content}.npy"

    def load(self, path: str | os.PathLike, pipeline) -> np.ndarray:
        """``pipeline.read(path)``, from the cache when present, else computed and stored.

        Parameters
        ----------
        path : str or os.PathLike
            The input file.
        pipeline : radiology.pipeline.Pipeline
            The pipeline applied to it.

        Returns
        -------
        numpy.ndarray of float32
            Identical (bit for bit) whether it came from the cache or was just computed.
        """
        entry = self.entry(path, pipeline)
        try:
            image = np.load(entry, allow_pickle=False)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, EOFError) as error:
            logger.warning("%s: unreadable cache entry, recomputing (%s)", entry, error)
        else:
            self.hits += 1
            return image
        self.misses += 1
        image = np.ascontiguousarray(_read(pipeline, Path(path)), dtype=np.float32)
        self._store(entry, image, pipeline)
        return image

    def _store(self, entry: Path, image: np.ndarray, pipeline) -> None:
        buffer = io.BytesIO()
        np.save(buffer, image, allow_pickle=False)
        try:
            description = entry.parent.parent / "pipeline.json"
            if not description.exists():
                atomic_write(description, json.dumps(pipeline.to_dict(), indent=2, sort_keys=True).encode())
            atomic_write(entry, buffer.getvalue())
        except OSError as error:
            if not self._warned:
                logger.warning("%s: cannot write the image cache, continuing without it (%s)", self.root, error)
                self._warned = True

    def clear(self) -> int:
        """Delete every cached image; returns the number of entries removed.

        Only the cache's own sub-folders (named by pipeline key) are removed, then the root
        folder if that leaves it empty: a mistaken ``$RADIOLOGY_CACHE`` pointing at a folder
        with other files cannot wipe them.
        """
        if not self.root.is_dir():
            return 0
        count = 0
        for folder in self.root.iterdir():
            if folder.is_dir() and _KEY_FOLDER.fullmatch(folder.name):
                count += sum(1 for _ in folder.rglob("*.npy"))
                shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only when empty
        self._digests.clear()
        return count

    def size_bytes(self) -> int:
        """Disk space the cache takes, in bytes."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())
