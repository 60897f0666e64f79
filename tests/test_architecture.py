"""The house rules of the package layout, read from the source (no import of the package needed).

- Dependencies point down the layer order of ``../shared/ARCHITECTURE.md``: no import runs back up.
- No circle of imports between modules.
- No module imports another package's private (``_name``) definition.
- Torch-free and fastai-free floors stay so, lazy imports included.

A package is a subpackage (``radiology.train``) or a top-level module (``radiology.files``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "radiology"

# Bottom to top. A package may import its own modules and any package of a lower rank.
LAYERS = [
    ("errors",), ("files",), ("naming", "classes"), ("io",), ("manifest",), ("intensity",), ("dicom",),
    ("geometry", "synthetic"), ("pipeline",), ("convert", "preview"), ("augment",), ("data",), ("models",),
    ("predict",), ("evaluate",),
    # semisup's callbacks are parts the training recipe composes (train(..., semi=...)): below train.
    ("semisup",), ("train",), ("ssl",), ("explain",), ("demo",), ("cli",), ("__main__",),
]
RANK = {package: rank for rank, packages in enumerate(LAYERS) for package in packages}

NO_TORCH = ("errors", "files", "naming", "classes", "io", "manifest", "intensity", "dicom", "geometry", "synthetic",
            "pipeline", "convert", "preview", "evaluate")
NO_FASTAI = ("augment", "models", "predict", "evaluate", "explain")
HEAVY = {"torch": ("torch", "timm", "kornia", "fastai", "lightly", "onnxruntime", "pytorch_grad_cam"),
         "fastai": ("fastai", "lightly")}
# Packages above these that load fastai: importing them loads it too.
FASTAI_MODULES = ("radiology.train", "radiology.ssl", "radiology.semisup", "radiology.data.loaders")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path, this: str | None = None) -> list[tuple[str, list[str], int]]:
    """``(module, names, line)`` for every import in a file, nested ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    this = this or _module_name(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, [], node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = this.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names], node.lineno))
    return found


def _targets(module: str, names: list[str]) -> list[str]:
    """The radiology modules an import loads (``from radiology.x import y`` may name a submodule)."""
    if not module.startswith("radiology"):
        return []
    loaded = [module] if module in MODULES else []
    loaded += [f"{module}.{name}" for name in names if f"{module}.{name}" in MODULES]
    return loaded or [module]


EDGES = {
    module: sorted({target for imported, names, _ in _imports(path) for target in _targets(imported, names)} - {module})
    for module, path in MODULES.items()
}


def test_every_package_has_a_layer():
    assert {_package(m) for m in MODULES} - {""} <= set(RANK), "add new packages to LAYERS (and to the map)"


def test_no_import_runs_back_up():
    upward = []
    for module, path in MODULES.items():
        here = _package(module)
        for imported, names, line in _imports(path):
            for target in _targets(imported, names):
                there = _package(target)
                if there and here and there != here and RANK[there] >= RANK[here]:
                    upward.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def test_no_circle_of_imports():
    # Depth-first search for a back edge in the module graph (lazy imports count: they are dependencies too).
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in EDGES.get(module, []):
            # Importing a package runs its __init__; a module importing its own package's __init__ is not a circle.
            if module.startswith(target + "."):
                continue
            if state.get(target) == 1:
                cycles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target in MODULES and not state.get(target):
                visit(target, trail + [target])
        state[module] = 2

    for module in MODULES:
        if not state.get(module):
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def _private_uses(path: Path) -> list[str]:
    here = _package(_module_name(path))
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound: dict[str, str] = {}  # local name -> radiology module of another package
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("radiology") and not node.level:
            there = _package(node.module)
            for alias in node.names:
                if there != here and alias.name.startswith("_") and not alias.name.startswith("__"):
                    uses.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} imports {node.module}.{alias.name}")
                if f"{node.module}.{alias.name}" in MODULES and _package(f"{node.module}.{alias.name}") != here:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("radiology.") and _package(alias.name) != here and alias.asname:
                    bound[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            uses.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} uses {bound[node.value.id]}.{node.attr}")
    return uses


def test_no_import_of_another_packages_private_names():
    uses = [use for path in MODULES.values() for use in _private_uses(path)]
    assert not uses, "\n".join(uses)


@pytest.mark.parametrize("kind, packages", [("torch", NO_TORCH), ("fastai", NO_FASTAI)])
def test_light_floors_stay_light(kind, packages):
    heavy = []
    for module, path in MODULES.items():
        if _package(module) not in packages:
            continue
        for imported, names, line in _imports(path):
            loaded = _targets(imported, names)
            if imported.split(".")[0] in HEAVY[kind] or (
                    kind == "fastai" and any(t == m or t.startswith(m + ".") for t in loaded for m in FASTAI_MODULES)):
                heavy.append(f"{path.relative_to(ROOT.parent)}:{line} imports {imported}")
            elif kind == "torch":
                # A torch-free package may not lean on a package that needs torch.
                heavy.extend(f"{path.relative_to(ROOT.parent)}:{line} imports {t}" for t in loaded
                             if _package(t) not in NO_TORCH and _package(t))
    assert not heavy, "\n".join(heavy)


def test_the_checks_see_a_violation(tmp_path):
    """The readers above find what they look for (a rule that cannot fail proves nothing)."""
    fake = tmp_path / "files.py"
    fake.write_text("from radiology.train.learner import _x\nfrom . import naming\n\ndef f():\n    import torch\n",
                    encoding="utf-8")
    found = _imports(fake, "radiology.files")
    assert [(m, names) for m, names, _ in found] == [("radiology.train.learner", ["_x"]), ("radiology", ["naming"]),
                                                     ("torch", [])]
    assert _targets("radiology", ["naming"]) == ["radiology", "radiology.naming"]
    assert _package("radiology.train.learner") == "train" and RANK["train"] > RANK["files"]


def _flag_messages(path: Path) -> list[str]:
    """Strings naming a command-line switch (``--overwrite``) in the errors a module raises."""
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and node.exc is not None:
            found.extend(f"{path.name}:{node.lineno}: {sub.value[:80]!r}" for sub in ast.walk(node.exc)
                         if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and flag.search(sub.value))
    return found


def test_library_errors_speak_python(tmp_path):
    """Errors name the Python argument (``overwrite=True``); only radiology.cli maps them to its switches."""
    found = [m for module, path in MODULES.items() if _package(module) != "cli" for m in _flag_messages(path)]
    assert not found, "\n".join(found)
    fake = tmp_path / "fake.py"
    fake.write_text("def f():\n    raise FileExistsError(f'{1}: exists; pass --overwrite')\n", encoding="utf-8")
    assert len(_flag_messages(fake)) == 1
