"""Which files are inputs: one rule for convert, data, predict and explain (no torch, no numpy).

A radiology archive names files any way it likes: ``image.dcm``, ``IM0001``, or the SOP
Instance UID ``1.2.840.113619.2.55.3.321`` (whose "suffix" is ``.321``). So a file is an
input unless its suffix marks it as something else: a table, text, a script, an archive
(:data:`NOT_INPUT_SUFFIXES`). Image files are recognised by :data:`IMAGE_SUFFIXES`; every
other input is read as DICOM and reports itself when it is not one.

- :func:`find_files`: every regular file below a folder (hidden names and link loops handled).
- :func:`is_input`, :func:`find_inputs`: the files among them that commands read.
- :func:`is_image_file`: image (PNG, JPEG, NPY, TIFF, BMP) rather than DICOM.
- :func:`shard_of`: which of N array jobs takes an input (``convert`` and ``predict --shard``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["DICOM_SUFFIXES", "IMAGE_SUFFIXES", "NOT_INPUT_SUFFIXES", "find_files", "find_inputs", "is_input",
           "is_image_file",
           "shard_of"]

#: File-name suffixes that mark DICOM files (kept or replaced in output names; a DICOM needs none).
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ".ima"})

#: Suffixes of image files read as images rather than DICOM (:func:`radiology.io.read_image`).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy", ".tif", ".tiff", ".bmp")

#: Suffixes of files that sit beside radiographs but are never inputs: tables, reports, notes,
#: scripts, archives, documents.
NOT_INPUT_SUFFIXES = frozenset({
    ".csv", ".tsv", ".json", ".txt", ".md", ".rst", ".yaml", ".yml", ".xml", ".html", ".htm", ".log", ".ini",
    ".py", ".sh", ".bat", ".ipynb", ".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".pdf",
    ".doc", ".docx", ".xls", ".xlsx", ".db", ".sqlite",
})


def is_input(path: str | os.PathLike) -> bool:
    """Whether a file is a radiograph to read: any suffix but :data:`NOT_INPUT_SUFFIXES`.

    Parameters
    ----------
    path : str or os.PathLike
        File name or path; only its suffix is looked at.

    Examples
    --------
    >>> [is_input(name) for name in ("a.png", "IM0001", "1.2.840.113619.2.55.321", "labels.csv", "README.TXT")]
    [True, True, True, False, False]
    """
    return Path(path).suffix.lower() not in NOT_INPUT_SUFFIXES


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether an input is an image file (:data:`IMAGE_SUFFIXES`) rather than a DICOM.

    Parameters
    ----------
    path : str or os.PathLike
        File name or path; only its suffix is looked at.

    Examples
    --------
    >>> [is_image_file(name) for name in ("a.PNG", "b.npy", "c.dcm", "1.2.840.321")]
    [True, True, False, False]
    """
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def find_inputs(root: str | os.PathLike, *, exclude: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
                follow_links: bool = False) -> list[Path]:
    """Every input file below a folder, sorted: :func:`find_files` filtered by :func:`is_input`.

    What ``train`` (folder layouts, unlabeled folders), ``predict``, ``explain`` and the UID
    index read: training and prediction see the same files.

    Parameters
    ----------
    root : path
        Folder searched recursively; hidden files and folders are skipped.
    exclude : path or paths, optional
        Folders inside ``root`` to leave out (an output folder written next to the inputs).
    follow_links : bool, optional
        Descend into symbolically linked folders (each real folder once).

    Returns
    -------
    list of pathlib.Path

    Examples
    --------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("a/1.2.840.321", "a/x.png", "labels.csv", ".hidden.dcm"):
    ...     _ = (root / name).parent.mkdir(exist_ok=True), (root / name).write_bytes(b"")
    >>> [p.relative_to(root).as_posix() for p in find_inputs(root)]
    ['a/1.2.840.321', 'a/x.png']
    """
    return [p for p in find_files(root, exclude=exclude, follow_links=follow_links) if is_input(p)]


def find_files(
    root: str | os.PathLike,
    pattern: str = "*",
    exclude: str | os.PathLike | Iterable[str | os.PathLike] | None = None,
    *,
    hidden: bool = False,
    follow_links: bool = False,
) -> list[Path]:
    """List candidate DICOM files below a folder, sorted.

    Every regular file matching ``pattern`` is a candidate, whatever its extension:
    archives hold DICOM files named by UID with no extension. Non-DICOM files among them
    are reported as such by the readers rather than silently dropped.

    Parameters
    ----------
    root : path
        Folder searched recursively.
    pattern : str, optional
        Glob on file names (e.g. ``"*.dcm"``).
    exclude : path or paths, optional
        Folders inside ``root`` to leave out (e.g. the output folder of a conversion),
        compared after resolving symbolic links.
    hidden : bool, optional
        Include files and folders whose name starts with a dot (skipped by default).
    follow_links : bool, optional
        Descend into symbolically linked folders; each real folder is visited once, so
        link loops terminate. Linked files are always listed.

    Returns
    -------
    list of pathlib.Path

    Examples
    --------
    >>> import pydicom.data, pathlib
    >>> folder = pathlib.Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
    >>> len(find_files(folder, "CT_small*"))
    1
    """
    root = Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"{root}: not a folder")
    if exclude is None:
        excluded: set[str] = set()
    elif isinstance(exclude, (str, os.PathLike)):
        excluded = {os.path.realpath(exclude)}
    else:
        excluded = {os.path.realpath(p) for p in exclude}
    return sorted(_walk(root, pattern, excluded, hidden, follow_links))


def _walk(root: Path, pattern: str, excluded: set[str], hidden: bool, follow_links: bool) -> Iterator[Path]:
    seen = {os.path.realpath(root)}
    for folder, subfolders, files in os.walk(root, followlinks=follow_links):
        here = Path(folder)
        keep = []
        for name in sorted(subfolders):
            if name.startswith(".") and not hidden:
                continue
            real = os.path.realpath(here / name)
            if real in excluded or (follow_links and real in seen):
                continue  # the output folder, or a folder already visited through another link
            seen.add(real)
            keep.append(name)
        subfolders[:] = keep
        for name in files:
            if (hidden or not name.startswith(".")) and Path(name).match(pattern):
                yield here / name


def shard_of(text: str, count: int) -> int:
    """The shard (``0 <= shard < count``) of an input id: stable by the id alone.

    The same id lands in the same shard on every machine and run (SHA-256 of the id in
    lower case), so shard jobs need not talk to each other: ``convert --shard`` shards
    output paths with it, ``predict --shard`` input ids.

    Parameters
    ----------
    text : str
        An input id (:attr:`radiology.predict.PredictionInputs.ids`) or a conversion's output path.
    count : int
        Number of shards.

    Returns
    -------
    int

    Raises
    ------
    ValueError
        ``count`` is not a positive integer.

    Examples
    --------
    >>> shard_of("a.dcm", 4), shard_of("A.DCM", 4), shard_of("a.dcm", 1)
    (3, 3, 0)
    """
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    import hashlib

    digest = hashlib.sha256(str(text).lower().encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count
