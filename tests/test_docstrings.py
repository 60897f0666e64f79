"""Every public function, class, method and dataclass field documents its parameters (numpydoc style).

Rules, for each public module (the lists of :mod:`tests.test_package`) and each function or class in its
``__all__`` that this package defines:

* every parameter of the signature (``self``/``cls`` excepted; ``*args``/``**kwargs`` included, documented as
  ``*args`` or ``args``) appears in a ``Parameters`` (or ``Other Parameters``) section with a non-empty
  description, and no documented parameter is missing from the signature (stale docs);
* a class is checked against its ``__init__`` (documented in the class or the ``__init__`` docstring), and so
  are its public methods defined in the class body;
* a dataclass describes every field (private ``_fields`` excepted), in ``Parameters`` or ``Attributes``;
* callables without parameters need nothing; a one-line docstring of a callable with parameters fails;
* a method without a docstring is checked against the one it inherits (:func:`inspect.getdoc`), which is
  what Sphinx shows; an object re-exported by a package is checked once, in the module that defines it.

``numpydoc`` is not a dependency, so the sections are parsed here (see :func:`parse_sections`).
"""

import dataclasses
import enum
import importlib
import inspect
import re

import pytest

from tests.test_package import PUBLIC_MODULES, TORCH_MODULES

#: Objects (module-qualified, as reported by :func:`problems`) whose parameter docs are knowingly incomplete.
#: Empty: every public object passes. Should one ever have to be listed, the set can only shrink: a name
#: listed here that is complete fails :func:`test_known_gaps_are_not_stale`.
KNOWN_GAPS: set[str] = set()

_HEADER = re.compile(r"^-{3,}\s*$")
_PARAMETER_SECTIONS = ("Parameters", "Other Parameters")


def parse_sections(doc: str) -> dict[str, dict[str, str]]:
    """Parse the numpydoc name/description sections of a cleaned docstring.

    Parameters
    ----------
    doc : str
        Docstring as returned by :func:`inspect.getdoc` (common indentation removed).

    Returns
    -------
    dict
        Section title (``"Parameters"``, ``"Attributes"``, ...) to a mapping of each documented name (stars
        stripped; ``low, high : float`` gives two names) to its description (empty when there is none).
    """
    lines = (doc or "").splitlines()
    sections: dict[str, dict[str, str]] = {}
    current = None
    entry_names: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.strip() and index + 1 < len(lines) and _HEADER.match(lines[index + 1]) and not line[0].isspace():
            current = sections.setdefault(line.strip(), {})
            entry_names = []
            index += 2
            continue
        if current is not None and line.strip():
            if not line[0].isspace():  # `name : type` at the section's indentation
                names = line.split(" : ", 1)[0] if " : " in line else line.rstrip(":").strip()
                entry_names = [name.strip().lstrip("*") for name in names.split(",") if name.strip()]
                for name in entry_names:
                    current.setdefault(name, "")
            else:
                for name in entry_names:
                    current[name] = (current[name] + " " + line.strip()).strip()
        index += 1
    return sections


def _documented(doc: str, sections=_PARAMETER_SECTIONS) -> dict[str, str]:
    parsed = parse_sections(doc)
    return {name: text for title in sections for name, text in parsed.get(title, {}).items()}


def signature_problems(function, doc: str, skip_first: bool = False) -> list[str]:
    """List what a docstring gets wrong about a callable's parameters.

    Parameters
    ----------
    function : callable
        The function (or class) whose signature is compared.
    doc : str
        The cleaned docstring holding its ``Parameters`` section.
    skip_first : bool
        Drop the first parameter (an unbound method's ``self``/``cls``).

    Returns
    -------
    list of str
        One message per undocumented, undescribed or stale parameter; empty when the docs are complete.
    """
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return []
    if skip_first and parameters and parameters[0].name in ("self", "cls"):
        parameters = parameters[1:]
    documented = _documented(doc)
    found = []
    for parameter in parameters:
        if parameter.name not in documented:
            found.append(f"parameter {parameter.name!r} is not documented")
        elif not documented[parameter.name]:
            found.append(f"parameter {parameter.name!r} has no description")
    names = {parameter.name for parameter in parameters}
    found += [f"documented parameter {name!r} is not in the signature" for name in documented if name not in names]
    return found


def _own(obj, prefix: str = "radiology") -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == prefix


def _init_owner(cls):
    for klass in cls.__mro__:
        if "__init__" in vars(klass) or "__new__" in vars(klass) and klass is not object:
            return klass
    return object


def class_problems(cls, prefix: str = "radiology") -> dict[str, list[str]]:
    """Check a class: its constructor, its dataclass fields and its public methods.

    Parameters
    ----------
    cls : type
        The class to check.
    prefix : str
        Top-level package whose code is checked; inherited constructors from elsewhere are skipped.

    Returns
    -------
    dict
        Qualified name (``Class`` or ``Class.method``) to its list of problems, for the failing ones only.
    """
    found: dict[str, list[str]] = {}
    doc = inspect.getdoc(cls) or ""
    if dataclasses.is_dataclass(cls):
        described = _documented(doc, _PARAMETER_SECTIONS + ("Attributes",))
        found[cls.__name__] = [
            f"field {field.name!r} is not described" for field in dataclasses.fields(cls)
            if not described.get(field.name) and not field.name.startswith("_")]  # private fields excepted
        field_names = {field.name for field in dataclasses.fields(cls)}
        # the constructor too (a dataclass may define its own): stale names, and parameters that are not fields
        found[cls.__name__] += [message for message in signature_problems(cls, doc)
                                if message.startswith("documented") or message.split("'")[1] not in field_names]
    elif not issubclass(cls, enum.Enum) and _own(_init_owner(cls), prefix):
        init_doc = inspect.getdoc(vars(_init_owner(cls)).get("__init__")) or ""
        if "Parameters" not in doc and "Parameters" in init_doc:
            doc = init_doc
        found[cls.__name__] = signature_problems(cls, doc)
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        function = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
        if not inspect.isfunction(function):
            continue
        skip_first = not isinstance(member, staticmethod)
        found[f"{cls.__name__}.{name}"] = signature_problems(function, inspect.getdoc(function) or "", skip_first)
    return {name: messages for name, messages in found.items() if messages}


def problems(module_name: str) -> dict[str, list[str]]:
    """Check every public function and class of a module.

    Parameters
    ----------
    module_name : str
        Dotted name of the module to import and check.

    Returns
    -------
    dict
        Module-qualified name to its problems, for the failing objects only. Objects re-exported from another
        public module are checked where they are defined.
    """
    module = importlib.import_module(module_name)
    found: dict[str, list[str]] = {}
    for attribute in getattr(module, "__all__", []):
        obj = getattr(module, attribute)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or not _own(obj):
            continue
        home = obj.__module__
        if home != module_name and home in PUBLIC_MODULES + TORCH_MODULES:
            continue  # checked in its own module
        if inspect.isclass(obj):
            found.update({f"{module_name}.{name}": messages for name, messages in class_problems(obj).items()})
        else:
            messages = signature_problems(obj, inspect.getdoc(obj) or "")
            if messages:
                found[f"{module_name}.{attribute}"] = messages
    return found


def _import_guard(name: str) -> None:
    if name in TORCH_MODULES:
        pytest.importorskip("torch")
        pytest.importorskip("fastai")
    if name.startswith("radiology.evaluate"):
        pytest.importorskip("sklearn")  # the `evaluate` extra


@pytest.mark.parametrize("name", PUBLIC_MODULES + TORCH_MODULES)
def test_parameters_are_documented(name):
    _import_guard(name)
    found = {key: messages for key, messages in problems(name).items() if key not in KNOWN_GAPS}
    assert not found, "\n".join(f"{key}: {'; '.join(messages)}" for key, messages in found.items())


def test_known_gaps_are_not_stale():
    stale = []
    for key in sorted(KNOWN_GAPS):
        module_name = next(name for name in sorted(PUBLIC_MODULES + TORCH_MODULES, key=len, reverse=True)
                           if key.startswith(name + "."))
        _import_guard(module_name)
        if key not in problems(module_name):
            stale.append(key)
    assert not stale, f"documented now, remove from KNOWN_GAPS: {stale}"


def _fake(path, low, high=1.0, *values, strict=False, **decode):
    """Fake with an undocumented ``strict``, an empty ``high`` and a stale ``gone``.

    Parameters
    ----------
    path : str
        Where to read.
    low, high : float
    *values : float
        Extra values.
    **decode
        Decoder options.
    gone : int
        Removed long ago.
    """


def test_the_checker_can_fail():
    messages = signature_problems(_fake, inspect.getdoc(_fake))
    assert messages == ["parameter 'low' has no description", "parameter 'high' has no description",
                        "parameter 'strict' is not documented",
                        "documented parameter 'gone' is not in the signature"]
    assert signature_problems(lambda a: a, "One-liner.") == ["parameter 'a' is not documented"]

    @dataclasses.dataclass
    class Fake:
        """Fake.

        Parameters
        ----------
        size : int
            Size.
        """

        size: int = 1
        seed: int = 0

        def method(self, value):
            """Method without a Parameters section."""

    assert class_problems(Fake, prefix="tests") == {"Fake": ["field 'seed' is not described"],
                                                   "Fake.method":
                                                   ["parameter 'value' is not documented"]}
