"""Output-name rules (sanitize, NFC, 255-byte fit, collisions) shared by convert and explain.

Input names come from archives: any script, any byte, ``..``, slashes, names longer than a
file system allows. Output names written by this package follow one set of rules:

- :func:`display_name`: a file name as valid UTF-8 text (NFC, undecodable bytes escaped), for
  reports and tables.
- :func:`sanitize_component`: one safe path component (no separators, no ``..``, no hidden name).
- :func:`fit_name`: a name within :data:`NAME_BYTES` UTF-8 bytes, shortened with a hash of
  the whole when too long, so that two long names stay distinct.
- :func:`output_name`: the output path of an input (DICOM suffixes replaced). Two inputs that
  map to one output (``a.dcm`` and ``a``) are told apart by the caller (``_2`` suffixes in
  :func:`radiology.convert.convert_folder`).

No numpy, no torch: this is a bottom-level module.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

from radiology.files import DICOM_SUFFIXES

__all__ = ["NAME_BYTES", "display_name", "fit_name", "nfc", "output_name", "sanitize_component"]

#: Longest file name of common file systems (ext4, APFS, NTFS in UTF-16 units aside), in UTF-8 bytes.
NAME_BYTES = 255

_UNSAFE = re.compile(r"[^\w.\-+=@,()]")  # \w: letters and digits of any script, not surrogates


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C (composed), the form names are compared and written in.

    macOS hands over decomposed names (``e`` + combining accent); Linux keeps what it is given.
    Normalizing makes one name of the two.

    Parameters
    ----------
    text : str
        Text to normalize.

    Examples
    --------
    >>> nfc("cafe\\u0301") == "caf\\u00e9"
    True
    """
    return unicodedata.normalize("NFC", text)


def display_name(text: str | os.PathLike) -> str:
    """A file name as valid UTF-8 text: NFC-normalized, undecodable bytes as ``\\xNN`` escapes.

    File names are bytes on POSIX; Python hands undecodable ones over as surrogate escapes,
    which cannot be written to a UTF-8 report. This is how reports show them.

    Parameters
    ----------
    text : str or os.PathLike
        A file name or path, as :func:`os.fsdecode` gives it.

    Returns
    -------
    str
        Encodable UTF-8 text.

    Examples
    --------
    >>> display_name("caf\\u0065\\u0301/b\\udcff.dcm")
    'café/b\\\\xff.dcm'
    """
    raw = os.fspath(text).encode("utf-8", "surrogateescape")
    return nfc(raw.decode("utf-8", "backslashreplace"))


def fit_name(name: str, limit: int = NAME_BYTES, keep: str = "") -> str:
    """``name + keep`` within ``limit`` UTF-8 bytes; too long names keep a prefix and a hash of the whole.

    The prefix is cut on a character boundary (never inside a multi-byte character); the
    12-hex-digit hash of the full name keeps two long names that share a prefix apart.

    Parameters
    ----------
    name : str
        The part that may be shortened.
    limit : int, optional
        Most UTF-8 bytes of the result; :data:`NAME_BYTES` by default.
    keep : str, optional
        A tail kept whole (a suffix such as ``".png"``).

    Returns
    -------
    str
        ``name + keep`` when it fits, else ``prefix + "-" + hash + keep``.

    Examples
    --------
    >>> fit_name("short", keep=".png")
    'short.png'
    >>> fitted = fit_name("ü" * 200, keep=".png")
    >>> len(fitted.encode()), fitted.endswith(".png"), fitted.startswith("ü" * 100)
    (255, True, True)
    >>> fit_name("a" * 20, limit=16)
    'aaa-42492da06234'
    """
    if limit < 1:
        raise ValueError(f"limit must be a positive number of bytes, got {limit!r}")
    whole = (name + keep).encode("utf-8", "surrogatepass")
    if len(whole) <= limit:
        return name + keep
    digest = hashlib.sha256(whole).hexdigest()[:12]
    room = limit - len(keep.encode("utf-8", "surrogatepass")) - len(digest) - 1
    if room < 0:
        raise ValueError(f"keep={keep!r} leaves no room for a name within limit={limit} bytes")
    prefix = name.encode("utf-8", "surrogatepass")[:room].decode("utf-8", "ignore")
    return f"{prefix}-{digest}{keep}"


def sanitize_component(text: str) -> str:
    """Make one path component safe: no separators, no ``..``, no hidden or empty names.

    Letters and digits of any script are kept (NFC-normalized); other characters outside
    ``._-+=@,()`` (separators, spaces, control characters) become ``_``; a leading dot becomes
    ``_``; names over :data:`NAME_BYTES` bytes are shortened by :func:`fit_name`.

    Parameters
    ----------
    text : str
        One path component, or any text to use as one.

    Returns
    -------
    str
        A non-empty name that is safe to join below an output folder.

    Examples
    --------
    >>> sanitize_component("../../etc/passwd")
    '_._.._etc_passwd'
    >>> sanitize_component("1.2.840.10008")
    '1.2.840.10008'
    >>> sanitize_component("Müller Röntgen")
    'Müller_Röntgen'
    >>> sanitize_component(".."), sanitize_component("")
    ('__', '_')
    """
    cleaned = _UNSAFE.sub("_", nfc(text.strip()))
    if not cleaned or set(cleaned) == {"."}:
        return "_" * max(1, len(cleaned))
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return fit_name(cleaned)


def output_name(relative: str | os.PathLike, extension: str) -> str:
    """Output path (POSIX, relative to DST) for an input at ``relative`` (relative to SRC).

    Known DICOM extensions (:data:`radiology.files.DICOM_SUFFIXES`) are replaced; any other
    suffix is kept (files named by UID contain dots), so ``a.dcm`` and ``a`` both map to
    ``a.png`` — the converter then gives the later one a ``_2`` suffix and says so in the
    report. Every component is sanitized and fits in :data:`NAME_BYTES` bytes.

    Parameters
    ----------
    relative : str or os.PathLike
        The input's path below the source folder.
    extension : str
        The output suffix, with its dot (``".png"``).

    Returns
    -------
    str
        A relative POSIX path.

    Examples
    --------
    >>> output_name("study/1.2.3.4", ".png")
    'study/1.2.3.4.png'
    >>> output_name("study/IM0001.DCM", ".png")
    'study/IM0001.png'
    >>> output_name("a.dcm", ".png") == output_name("a", ".png")
    True
    >>> len(output_name("x" * 300 + ".dcm", ".png").encode())
    255
    """
    parts = [sanitize_component(p) for p in Path(relative).parts if p not in ("", "/")]
    if not parts:
        raise ValueError(f"empty input path {relative!r}")
    stem = parts[-1]
    suffix = Path(stem).suffix
    if suffix.lower() in DICOM_SUFFIXES and len(stem) > len(suffix):
        stem = stem[: -len(suffix)]
    parts[-1] = fit_name(stem, keep=extension)
    return "/".join(parts)
