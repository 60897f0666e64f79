"""The bundle format and its manifest, without torch: what a bundle folder holds and how its files are vouched for.

A model bundle (:mod:`radiology.models`) ends with ``bundle.json``: its format tag, its
version and the sha256 of every other file. Every reader goes through
:func:`verified_bytes`, which returns the bytes it checked (what is checked is what is
used), so that loading a model (:func:`radiology.models.load_bundle`) and scoring
against a bundle's labels (:func:`radiology.evaluate.evaluate_predictions`, which never
imports torch) follow one rule and say the same thing about a damaged file. An ensemble
bundle (``train --folds K``) holds one-model bundles in sub-folders and lists them, with
their manifests' sha256, in ``ensemble.json``: :func:`bundle_members` reads and checks them.

Examples
--------
>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> _ = (folder / "labels.json").write_text('{"classes": ["a", "b"]}')
>>> files = write_manifest(folder, ["labels.json"])
>>> verified_bytes(folder, read_manifest(folder), "labels.json")
b'{"classes": ["a", "b"]}'
>>> _ = (folder / "labels.json").write_text('{"classes": ["b", "a"]}')
>>> verified_bytes(folder, read_manifest(folder), "labels.json")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
radiology.manifest.BundleError: ...labels.json: sha256 does not match bundle.json (damaged or changed after saving)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from radiology.errors import RadiologyError, one_line
from radiology.io import file_digest, write_json

__all__ = ["BUNDLE_FILES", "BUNDLE_FORMAT", "BUNDLE_VERSION", "ENSEMBLE", "ENSEMBLE_FORMAT", "ENSEMBLE_VERSION",
           "MANIFEST", "MAX_FILE_BYTES", "MAX_MEMBERS", "MAX_SIZE", "MODEL_FORMAT", "BundleError", "bundle_members",
           "is_plain_name", "read_manifest", "verified_bytes", "write_manifest"]

#: The manifest file: format, version and the sha256 of every other file of the bundle.
MANIFEST = "bundle.json"
#: Files :func:`~radiology.models.save_bundle` writes (the manifest last).
BUNDLE_FILES = ("model.pt2", "model.onnx", "weights.safetensors", "model.json", "pipeline.json", "labels.json",
                "train.json", MANIFEST)
#: Largest image side a bundle may declare (a larger one is refused before any memory is taken).
MAX_SIZE = 4096
#: Largest bundle file read (ONNX's own limit): a bigger one is refused before it is read.
MAX_FILE_BYTES = 2 << 30
#: ``format`` of ``model.json``.
MODEL_FORMAT = "radiology.model"
#: ``format`` of the manifest.
BUNDLE_FORMAT = "radiology.bundle"
#: The manifest version this radiology writes and reads.
BUNDLE_VERSION = 1
#: An ensemble bundle's list of member bundles (``radiology train --folds K`` writes one); it
#: stands where ``model.json`` stands in a one-model bundle, beside ``labels.json`` and ``train.json``.
ENSEMBLE = "ensemble.json"
#: ``format`` of :data:`ENSEMBLE`.
ENSEMBLE_FORMAT = "radiology.ensemble"
#: The :data:`ENSEMBLE` version this radiology writes and reads.
ENSEMBLE_VERSION = 1
#: Most members an ensemble bundle may list.
MAX_MEMBERS = 100

_MAX_MANIFEST_BYTES = 1 << 20
# A manifest names files of the bundle folder itself: no folders, no hidden files, no '..'.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,200}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleError(RadiologyError, ValueError):
    """A bundle that is damaged, changed after saving, inconsistent or unsafe: one line naming the file."""


def is_plain_name(name: str) -> bool:
    """Whether ``name`` may name a file of a bundle: no folder, not hidden, no ``..``, at most 201 characters.

    Parameters
    ----------
    name : str
        Candidate file name; anything but a string is refused.

    Examples
    --------
    >>> [is_plain_name(n) for n in ("labels.json", "svm.npz", "../x", ".hidden", "a/b")]
    [True, True, False, False, False]
    """
    return isinstance(name, str) and _PLAIN_NAME.fullmatch(name) is not None


def read_manifest(folder: str | os.PathLike) -> dict[str, str]:
    """The ``files`` of a bundle's manifest (file name → sha256), after checking its format and version.

    Parameters
    ----------
    folder : str or os.PathLike
        Bundle folder holding the manifest.

    Raises
    ------
    BundleError
        No manifest, not JSON, another format or version, or names that are not plain
        file names of the folder itself.
    """
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{path}: missing: not a bundle written by this radiology (re-save it), or damaged")
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise BundleError(f"{path}: larger than 1 MiB; not a manifest")
    try:
        manifest = json.loads(path.read_bytes())
    except (ValueError, RecursionError) as error:
        raise BundleError(f"{path}: not valid JSON ({one_line(error)})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a radiology bundle manifest")
    if manifest.get("version") != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle format version {manifest.get('version')!r} is not one this radiology "
                          f"reads ({BUNDLE_VERSION})")
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(
            is_plain_name(k) and k != MANIFEST and isinstance(v, str)
            and _SHA256.fullmatch(v) for k, v in files.items()):
        raise BundleError(f"{path}: 'files' must map file names of the bundle to sha256 digests")
    return files


def verified_bytes(folder: str | os.PathLike, files: Mapping[str, str], name: str, *,
                   optional: bool = False) -> bytes | None:
    """The bytes of one bundle file, checked against the manifest ``files`` (read once).

    Parameters
    ----------
    folder : path
        The bundle folder.
    files : mapping
        :func:`read_manifest`'s result.
    name : str
        The file.
    optional : bool, optional
        ``None`` for a file neither listed nor present (instead of an error).

    Raises
    ------
    BundleError
        Not listed, missing, larger than :data:`MAX_FILE_BYTES`, or a different sha256.
    """
    path = Path(folder) / name
    if name not in files:
        if optional and not path.exists():
            return None
        raise BundleError(f"{path}: not listed in {MANIFEST}")
    if not path.is_file():
        raise BundleError(f"{path}: missing (listed in {MANIFEST})")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise BundleError(f"{path}: larger than {MAX_FILE_BYTES >> 30} GiB; not read")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != files[name]:
        raise BundleError(f"{path}: sha256 does not match {MANIFEST} (damaged or changed after saving)")
    return data


def write_manifest(folder: str | os.PathLike, names: Iterable[str]) -> dict[str, str]:
    """Write ``bundle.json`` for the named files of ``folder`` (atomically, last); returns their digests.

    Parameters
    ----------
    folder : str or os.PathLike
        Bundle folder; the manifest is written into it.
    names : iterable of str
        File names, relative to ``folder``, of the files to hash and list.
    """
    folder = Path(folder)
    digests = {name: file_digest(folder / name) for name in names}
    write_json(folder / MANIFEST, {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "files": digests})
    return digests


def bundle_members(folder: str | os.PathLike) -> list[Path]:
    """The one-model bundles a bundle folder stands for: itself, or an ensemble's members.

    An ensemble bundle (written by ``radiology train --folds K``) lists its members in
    :data:`ENSEMBLE`: sub-folders of its own, each a complete one-model bundle, with the sha256
    of each member's manifest. So the ensemble's manifest vouches for every file of every
    member: a member replaced or changed after saving is refused, as a changed file is.

    Parameters
    ----------
    folder : str or os.PathLike
        A bundle folder.

    Returns
    -------
    list of pathlib.Path
        ``[folder]`` for a one-model bundle; the member folders, in their saved order, for
        an ensemble bundle.

    Raises
    ------
    FileNotFoundError
        ``folder`` is not a folder.
    BundleError
        A damaged manifest or :data:`ENSEMBLE`; a member that is not a plain sub-folder of the
        ensemble (no ``..``, no link), is missing, is listed twice, is itself an ensemble, or
        whose manifest or labels differ from what the ensemble saved.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_manifest(folder, [])
    >>> bundle_members(folder) == [folder]
    True
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such bundle folder")
    files = read_manifest(folder)
    if ENSEMBLE not in files:
        return [folder]
    path = folder / ENSEMBLE
    record = _json_object(path, verified_bytes(folder, files, ENSEMBLE))
    members = record.get("members")
    if (record.get("format") != ENSEMBLE_FORMAT or not isinstance(members, list)
            or not 1 <= len(members) <= MAX_MEMBERS):
        raise BundleError(f"{path}: not a radiology ensemble (format {ENSEMBLE_FORMAT!r} and 1 to {MAX_MEMBERS} "
                          "members)")
    if record.get("version") != ENSEMBLE_VERSION:
        raise BundleError(f"{path}: ensemble format version {str(record.get('version'))[:20]} is not one this "
                          f"radiology reads ({ENSEMBLE_VERSION})")
    labels = _json_object(folder / _LABELS, verified_bytes(folder, files, _LABELS))
    found = []
    for member in members:
        name = member.get("folder") if isinstance(member, dict) else None
        digest = member.get("manifest") if isinstance(member, dict) else None
        if not is_plain_name(name) or not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(f"{path}: each member must name a folder of the ensemble itself and the sha256 of its "
                              f"manifest, got {str(member)[:80]!r}")
        if name in (f.name for f in found):
            raise BundleError(f"{path}: member {name} is listed twice")
        member_folder = folder / name
        if member_folder.is_symlink() or not member_folder.is_dir():
            raise BundleError(f"{member_folder}: missing or a link (a member of {path} must be a folder inside it)")
        manifest = member_folder / MANIFEST
        if (not manifest.is_file() or manifest.stat().st_size > _MAX_MANIFEST_BYTES
                or file_digest(manifest) != digest):
            raise BundleError(f"{manifest}: does not match {path} (the member was replaced or changed after saving)")
        member_files = read_manifest(member_folder)
        if ENSEMBLE in member_files:
            raise BundleError(f"{member_folder}: an ensemble inside an ensemble is not read")
        own = _json_object(member_folder / _LABELS, verified_bytes(member_folder, member_files, _LABELS))
        if any(own.get(key) != labels.get(key) for key in ("classes", "multi_label", "views")):
            raise BundleError(f"{member_folder / _LABELS}: classes, label kind or views differ from the "
                              f"ensemble's {folder / _LABELS}")
        found.append(member_folder)
    return found


_LABELS = "labels.json"


def _json_object(path: Path, data: bytes) -> dict:
    """A verified bundle file's JSON object; anything else is a :class:`BundleError` naming ``path``."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise BundleError(f"{path}: not valid JSON ({one_line(error)})") from None
    if not isinstance(value, dict):
        raise BundleError(f"{path}: expected a JSON object")
    return value
