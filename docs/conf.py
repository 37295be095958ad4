"""Sphinx configuration for the fmtl documentation (offline, warning-free with ``-W``).

Build::

    python -m sphinx -W -b html docs docs/_build/html
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # import the working tree's fmtl, installed or not
# ... and so do the processes the gallery starts (the Flower example's SuperNodes)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("MPLBACKEND", "Agg")  # gallery scripts plot without a display

import fmtl  # noqa: E402

project = "fmtl"
author = "fmtl developers"
copyright = "fmtl developers"  # noqa: A001
release = fmtl.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax bundled: pages render math with no network
    "numpydoc",
    "sphinx_gallery.gen_gallery",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = [
    "_build",
    "Thumbs.db",
    ".DS_Store",
    # wrapped by benchmarks.md with {include}, not pages of their own
    "speed.md",
    "benchmarks_regression.md",
    # gallery scripts' by-products that are not pages
    "auto_examples/*.ipynb",
    "auto_examples/*.py",
    "auto_examples/*.zip",
    "auto_examples/*.codeobj.json",
    "auto_examples/*.md5",
]
# no _static/_templates: git does not keep empty directories, and a missing
# html_static_path entry is a warning

# ----------------------------------------------------------------------------- HTML
# the theme the scientific-Python projects share (NumPy, SciPy, pandas, scikit-learn);
# its assets ship in the package, so the pages need no network
html_theme = "pydata_sphinx_theme"
html_title = f"fmtl {release}"
html_theme_options = {
    "logo": {"text": f"fmtl {release}"},
    "navbar_align": "left",
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],  # no "edit this page" / "show source" links
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version", "theme-version"],
}
html_show_sourcelink = False  # sources of generated pages would be stubs

# ----------------------------------------------------------------------------- MyST
# the hand-written pages are Markdown: dollar math, and headings as link anchors
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# ----------------------------------------------------------------------------- API
autosummary_generate = True
autosummary_imported_members = True
# class pages document the class's own public methods (fit, predict, save, ...), not
# what it inherits from scikit-learn (whose docstrings are not numpydoc-clean here)
autodoc_default_options = {
    "members": True,
    "inherited-members": "BaseEstimator, ClassifierMixin, RegressorMixin, object",
    "undoc-members": False,
    # scikit-learn's metadata-routing methods on every estimator class (documented there)
    "exclude-members": "get_metadata_routing, set_fit_request, set_predict_request, "
    "set_score_request, set_decision_function_request, set_predict_proba_request, "
    "set_partial_fit_request",
}
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
numpydoc_show_class_members = False  # autodoc lists the members (options above)
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_use_plots = False
numpydoc_validation_checks: set[str] = set()  # sections checked by tests/test_docstrings.py
nitpicky = False

# ----------------------------------------------------------------------------- gallery
# Every example runs at build time (each under 60 s); its printed output and figures are
# part of the page.  Data: `small` via fmtl.datasets.find_mocha (FMTL_DATA or
# ../shared/data/mocha), else a synthetic stand-in with a printed note.
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples" / "gallery"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",  # every plot_*.py is executed
    "ignore_pattern": r"__init__\.py|/_",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "plot_gallery": "True",
    "min_reported_time": 0,
    "write_computation_times": False,  # no docs/sg_execution_times.rst
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "first_notebook_cell": None,
    "reference_url": {},
}


# ----------------------------------------------------------------------------- hooks
# docs/compare_personalization.md is written separately: list it in the index's toctree
# once it exists, and never point the toctree at a missing page (a warning under -W).
_OPTIONAL_PAGES = {"@COMPARE_PERSONALIZATION@": "compare_personalization"}


def _optional_toctree_entries(app, docname, source):
    if docname != root_doc:
        return
    text = source[0]
    for token, page in _OPTIONAL_PAGES.items():
        present = any((DOCS / f"{page}{ext}").exists() for ext in source_suffix)
        text = text.replace(token, page if present else "")
    source[0] = text


def setup(app):
    app.connect("source-read", _optional_toctree_entries)
