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

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode", "sphinx.ext.intersphinx"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_ivar = True
intersphinx_mapping = {}  # offline builds: no inventories fetched
exclude_patterns = ["_build", "_generated/*.py"]
html_theme = "furo"
html_title = f"radiology {release}"
nitpicky = False

# Figures are generated from code at build time, so they never drift from the library.
if not os.environ.get("RADIOLOGY_DOCS_SKIP_FIGURES"):
    subprocess.run([sys.executable, str(DOCS / "make_figures.py")], check=True)
