"""Sphinx configuration for neural_ot and otpr_sb3."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "neural_ot & otpr_sb3"
author = "The OTPR developers"
copyright = "2026, The OTPR developers"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax bundled into _static: the built docs render math without a network
    "sphinx.ext.viewcode",
    "sphinx_gallery.gen_gallery",
]

autosummary_generate = True
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
nitpicky = False

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials"],
    "gallery_dirs": ["auto_tutorials"],
    "filename_pattern": r"/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "furo"
html_title = "neural_ot & otpr_sb3"
html_static_path = ["_static"]
# results/: otpr report output, included where used
exclude_patterns = ["_build", "tutorials/README.rst", "*.inc", "results/*.rst", "results/*/*.rst"]
suppress_warnings = ["config.cache"]
