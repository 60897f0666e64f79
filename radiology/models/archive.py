"""Checks that a bundle's model files are data, before anything loads them.

``torch.export.load`` is not safe on a file from a stranger: a ``.pt2`` archive may hold
pickled tensors, pickled "opaque" constants and sample inputs (unpickled without
restriction when the restricted loader fails), Python source (the ``guards_code`` that
``ExportedProgram.module()`` executes), symbolic-shape expressions that are parsed with
``eval`` (``sympy.sympify``), and graph nodes that call any attribute of ``torch``.
:func:`check_program_archive` accepts only what :func:`torch.export.save` writes for a
plain classifier: an allow-list of archive entries, tensors stored as raw bytes, sample
inputs that load with ``weights_only=True``, ``aten`` operators, no guard code, and
shape expressions made of shape symbols, integers and arithmetic. Everything else is
refused with one line naming the entry, before torch reads the archive.

ONNX files are protobuf data run by onnxruntime; :func:`check_onnx` refuses external
data (a reference to another file, which could point anywhere on disk) and custom
operator domains, and reads the output size.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

from radiology.manifest import BundleError  # re-exported: the one error of damaged bundles

__all__ = ["BundleError", "UnsafeModelError", "check_program_archive", "check_onnx"]

# Entries of a torch.export archive, relative to its one top folder.
_ENTRIES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/model\.json"
    r"|data/sample_inputs/model\.pt|data/weights/model_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/model_constants_config\.json|data/constants/tensor_\d+)")
# aten operators, minus the one that reads a file named by the graph.
_TARGET = re.compile(r"torch\.ops\.aten\.[A-Za-z0-9_]+\.[A-Za-z0-9_]+|_operator\.getitem")
_DENIED_TARGETS = ("torch.ops.aten.from_file.",)
# Shape expressions (sympy's srepr form, parsed with eval): shape symbols declared as
# Symbol('s77', positive=True, integer=True), integers, and sympy's arithmetic.
_DECLARED_SYMBOL = re.compile(r"Symbol\('[a-z]\d+'(, (positive|integer|nonnegative|real|finite)=(True|False))*\)")
_SYMBOL = re.compile(r"[a-z]\d+")
# No powers (10**10**10 is an expression sympy would try to compute), short numbers, short text.
_SYMPY_NAMES = frozenset({"Integer", "Rational", "Add", "Mul", "Max", "Min", "FloorDiv", "CeilDiv", "Mod",
                          "PythonMod", "Abs", "Eq", "Ne", "Lt", "Le", "Gt", "Ge", "And", "Or", "Not", "CleanDiv",
                          "IntTrueDiv", "FloatTrueDiv", "TruncToInt", "FloorToInt", "CeilToInt", "ToFloat", "true",
                          "false", "oo", "True", "False"})
_EXPRESSION_CHARACTERS = re.compile(r"[A-Za-z0-9 +\-*/%(),<>=!]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LONG_NUMBER = re.compile(r"\d{13}")
_MAX_EXPRESSION = 1000
# Declared (uncompressed) sizes: zipfile never inflates past them, so checking them bounds memory.
MAX_ENTRY_BYTES = 2 << 30
MAX_ARCHIVE_BYTES = 4 << 30


class UnsafeModelError(BundleError):
    """A model file that could run code or read other files when loaded (one line naming the file and entry)."""


def _safe_expression(text) -> bool:
    """True for a shape expression sympy can parse without running anything but arithmetic."""
    if not isinstance(text, str) or len(text) > _MAX_EXPRESSION or "**" in text or _LONG_NUMBER.search(text):
        return False
    text = _DECLARED_SYMBOL.sub("s0", text)  # the only place a quote may appear
    if not _EXPRESSION_CHARACTERS.fullmatch(text):
        return False
    return all(_SYMBOL.fullmatch(name) or name in _SYMPY_NAMES for name in _IDENTIFIER.findall(text))


def _walk(value, key=None):
    """(key, value) of every mapping entry in a JSON document, depth first."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k, v
            yield from _walk(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item, key)


def _check_program(name: str, program: dict) -> None:
    if program.get("guards_code"):
        raise UnsafeModelError(f"{name}: the program carries guard code, which torch would execute")
    for key, value in _walk(program):
        if key == "target":
            if not isinstance(value, str) or not _TARGET.fullmatch(value) or value.startswith(_DENIED_TARGETS):
                raise UnsafeModelError(f"{name}: graph node calls {str(value)[:80]!r}, not an aten operator")
        elif key == "expr_str" and not _safe_expression(value):
            raise UnsafeModelError(f"{name}: shape expression {str(value)[:80]!r} is not plain arithmetic")
        elif key == "custom_obj_values" and value:
            raise UnsafeModelError(f"{name}: the program holds custom (pickled) objects")
    constraints = program.get("range_constraints") or {}
    if not isinstance(constraints, dict) or not all(_safe_expression(k) for k in constraints):
        raise UnsafeModelError(f"{name}: range constraints are not plain shape symbols")


def _check_payload_config(name: str, entry: str, data: bytes, prefix: str) -> None:
    try:
        config = json.loads(data)["config"]
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        raise UnsafeModelError(f"{name}: {entry} is not a tensor table") from error
    if not isinstance(config, dict):
        raise UnsafeModelError(f"{name}: {entry} is not a tensor table")
    for fqn, meta in config.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
            raise UnsafeModelError(f"{name}: {entry} stores {str(fqn)[:80]!r} as a pickle")
        if not re.fullmatch(prefix + r"\d+", str(meta.get("path_name", ""))):
            raise UnsafeModelError(f"{name}: {entry} points {str(fqn)[:80]!r} at an unexpected entry")


def check_program_archive(data: bytes, name: str = "model.pt2") -> None:
    """Refuse a ``torch.export`` archive that could execute code when loaded.

    Parameters
    ----------
    data : bytes
        The whole ``.pt2`` file (check and then load the same bytes, so the file cannot
        change in between).
    name : str, optional
        Names the file in errors.

    Raises
    ------
    UnsafeModelError
        One line naming the file and the entry that is refused: not a zip archive, an
        entry :func:`torch.export.save` does not write for a plain model (pickled or
        compiled objects, legacy pickled weights), a pickled tensor, sample inputs that
        need unrestricted unpickling, guard code, a non-``aten`` call, a shape expression
        that is more than arithmetic.

    Examples
    --------
    >>> check_program_archive(b"not a zip")
    Traceback (most recent call last):
    ...
    radiology.models.archive.UnsafeModelError: model.pt2: not a torch.export archive (damaged or another format)
    """
    import torch

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise UnsafeModelError(f"{name}: not a torch.export archive (damaged or another format)") from error
    tops = {entry.split("/", 1)[0] for entry in names}
    if len(tops) != 1 or not names:
        raise UnsafeModelError(f"{name}: not a torch.export archive (expected one top folder)")
    top = tops.pop() + "/"
    sizes = [info.file_size for info in archive.infolist()]
    if max(sizes) > MAX_ENTRY_BYTES or sum(sizes) > MAX_ARCHIVE_BYTES:
        raise UnsafeModelError(f"{name}: archive entries declare more than {MAX_ENTRY_BYTES >> 30} GiB each or "
                               f"{MAX_ARCHIVE_BYTES >> 30} GiB in all")
    entries = {}
    for entry in names:
        relative = entry[len(top):]
        if entry.endswith("/") and not relative:
            continue
        if not _ENTRIES.fullmatch(relative):
            raise UnsafeModelError(f"{name}: archive entry {relative[:80]!r} is not allowed "
                                   "(only raw tensors and the graph are)")
        entries[relative] = entry
    for required in ("archive_format", "models/model.json", "data/sample_inputs/model.pt",
                     "data/weights/model_weights_config.json", "data/constants/model_constants_config.json"):
        if required not in entries:
            raise UnsafeModelError(f"{name}: archive has no {required} (damaged or another format)")
    try:
        if archive.read(entries["archive_format"]).strip() != b"pt2":
            raise UnsafeModelError(f"{name}: archive_format is not pt2")
        _check_payload_config(name, "weights config", archive.read(entries["data/weights/model_weights_config.json"]),
                              "weight_")
        _check_payload_config(name, "constants config",
                              archive.read(entries["data/constants/model_constants_config.json"]), "tensor_")
        try:
            program = json.loads(archive.read(entries["models/model.json"]))
            if not isinstance(program, dict):
                raise UnsafeModelError(f"{name}: models/model.json is not a program")
            _check_program(name, program)
        except (ValueError, RecursionError) as error:
            if isinstance(error, UnsafeModelError):
                raise
            raise UnsafeModelError(f"{name}: models/model.json is not a readable program") from error
        sample = archive.read(entries["data/sample_inputs/model.pt"])
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as error:  # a truncated or corrupt member
        raise UnsafeModelError(f"{name}: damaged archive ({type(error).__name__})") from error
    try:
        # torch.export falls back to unrestricted unpickling when this fails: refuse instead.
        torch.load(io.BytesIO(sample), weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure of the restricted loader means "refuse"
        raise UnsafeModelError(f"{name}: sample inputs are not plain tensors") from error


def check_onnx(data: bytes, name: str = "model.onnx") -> int:
    """Refuse an ONNX model that refers to other files or to custom operators; return its output size.

    Parameters
    ----------
    data : bytes
        The whole ``.onnx`` file.
    name : str, optional
        Names the file in errors.

    Returns
    -------
    int or None
        The last dimension of the first output (the number of classes), None when symbolic.

    Raises
    ------
    UnsafeModelError
        Not an ONNX model, external tensor data, an operator outside the standard domains.

    Examples
    --------
    >>> check_onnx(b"\\x00garbage")
    Traceback (most recent call last):
    ...
    radiology.models.archive.UnsafeModelError: model.onnx: not an ONNX model (damaged or another format)
    """
    import onnx

    try:
        model = onnx.load_from_string(data)
    except Exception as error:  # noqa: BLE001 - protobuf raises several types on garbage
        raise UnsafeModelError(f"{name}: not an ONNX model (damaged or another format)") from error
    if not model.graph.output:
        raise UnsafeModelError(f"{name}: not an ONNX model (no graph output)")
    graphs = [model.graph, *(f for f in model.functions)]
    for graph in graphs:
        tensors = list(getattr(graph, "initializer", []))
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
                raise UnsafeModelError(f"{name}: tensor {tensor.name[:80]!r} refers to an external file")
        for node in graph.node:
            if node.domain not in ("", "ai.onnx", "ai.onnx.ml", "pkg.onnxscript.torch_lib.common",
                                   "pkg.onnxscript.torch_lib", *(f.domain for f in model.functions)):
                raise UnsafeModelError(f"{name}: operator {node.op_type[:40]!r} of domain {node.domain[:40]!r} "
                                       "is not a standard ONNX operator")
    dims = model.graph.output[0].type.tensor_type.shape.dim
    return int(dims[-1].dim_value) if dims and dims[-1].HasField("dim_value") else None
