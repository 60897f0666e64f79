"""Sphinx configuration for radiology."""

import os
import subprocess
import sys
from pathlib import Path

import radiology

DOCS = Path(__file__).parent

project = "radiology"
author = "radiology developers"
copyright = "2026, radiology developers"
release = version = radiology.__version__

extensions = [
    "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx.ext.intersphinx",
    "sphinx_gallery.gen_gallery",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True
intersphinx_mapping = {}  # offline builds: no inventories fetched
exclude_patterns = ["_build", "_generated/*.py", "gallery/*.rst", "sg_execution_times.rst"]
html_theme = "furo"
html_title = f"radiology {release}"
nitpicky = False

# The gallery (docs/gallery/plot_*.py) is executed at every build, on data a fresh clone has
# (pydicom's test files, synthetic phantoms); its output goes to auto_gallery/ (not in git).
# The long training scripts of examples/ are shown without running them (examples.rst).
sphinx_gallery_conf = {
    "examples_dirs": "gallery",
    "gallery_dirs": "auto_gallery",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "abort_on_example_error": True,
    "download_all_examples": False,
    "write_computation_times": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "matplotlib_animations": False,
    "reset_modules": ("matplotlib",),
    "image_scrapers": ("matplotlib",),
    "min_reported_time": 1,
    "show_memory": False,
    "show_signature": False,
}

# Figures are generated from code at build time, so they never drift from the library.
if not os.environ.get("RADIOLOGY_DOCS_SKIP_FIGURES"):
    subprocess.run([sys.executable, str(DOCS / "make_figures.py")], check=True)
