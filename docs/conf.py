"""Sphinx configuration of the sklearn_xnn documentation.

Build (offline, warnings are errors)::

    python -m sphinx -W -b html docs docs/_build/html

Skip running the gallery examples (the pages are still written, without outputs)::

    python -m sphinx -W -b html -D plot_gallery=0 docs docs/_build/html

Nothing here fetches anything from the network: no intersphinx, no remote images; the
examples use embedded or synthetic data only. Equations are typeset in the browser by
the copy of MathJax 3 that the ``sphinx-mathjax-offline`` package (in the ``docs``
extra) ships and copies to ``_static/mathjax``, so they render without a network too.
"""

import os
import re
import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # build from a source checkout without installing

import sklearn_xnn  # noqa: E402

# The examples run in this process. On a small shared machine torch's default of one
# thread per core oversubscribes it (we measured 20-50x slower fits on 2 busy cores);
# one thread is the fastest setting for the gallery's small networks.
try:
    import torch

    torch.set_num_threads(int(os.environ.get("SKLEARN_XNN_DOCS_THREADS", "1")))
except ImportError:  # pragma: no cover - torch is a hard dependency of the package
    pass

project = "sklearn_xnn"
author = "the sklearn_xnn developers"
copyright = "the sklearn_xnn developers, BSD-3-Clause"
release = sklearn_xnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 served from _static/mathjax (no CDN)
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

# MathJax from _static/mathjax (set by sphinx-mathjax-offline too; stated here so that the
# pages never point at a CDN).
mathjax_path = "mathjax/tex-chtml.js"

templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
root_doc = "index"
default_role = "literal"

# -- autodoc / autosummary / numpydoc -------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"
numpydoc_show_class_members = False  # autosummary tables come from our class template
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- sphinx-gallery -------------------------------------------------------------------
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "ignore_pattern": r"__init__\.py",
    "within_subsection_order": "FileNameSortKey",
    "doc_module": ("sklearn_xnn",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"sklearn_xnn": None},
    "download_all_examples": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "write_computation_times": False,
}

# -- HTML -----------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"sklearn_xnn {release}"
html_theme_options = {
    "navbar_align": "left",
    "show_prev_next": True,
    "navigation_with_keys": False,
    # The page's contents go under the section navigation (html_sidebars) rather than
    # into a third column, so that the text column is wide enough for 100-character
    # code lines at 1280 px (with _static/custom.css).
    "secondary_sidebar_items": [],
    "footer_start": ["copyright"],
    "footer_end": [],
}
html_sidebars = {"index": [], "**": ["sidebar-nav-bs", "page-toc"]}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False

# Examples print ConvergenceWarnings for their deliberately short trainings; keep the
# build log readable (the warnings still appear in each example's rendered output).
warnings.filterwarnings("ignore", message=".*reached max_iter.*")


# -- documenting inherited members ----------------------------------------------------
# Classes derived from torch.nn.Module would otherwise list torch's ~50 Module methods,
# whose docstrings cross-reference torch's own documentation. We list only the methods
# that sklearn_xnn and scikit-learn define (get_params, set_output, ... stay visible).
def _skip_foreign_members(app, what, name, obj, skip, options):
    module = getattr(obj, "__module__", None) or ""
    if module == "torch" or module.startswith("torch."):
        return True
    return None


# Docstrings inherited from scikit-learn (``set_output``, ``set_score_request``, ...) point
# at labels and glossary terms of scikit-learn's own documentation, which do not exist
# here and cannot be fetched offline (no intersphinx). Render them as plain text.
_REF = re.compile(r":(?:ref|term):`([^`<]*?)\s*<[^>`]+>`|:(?:ref|term):`([^`]+)`")


def _unlink_foreign_refs(app, what, name, obj, options, lines):
    module = getattr(obj, "__module__", None) or ""
    if module.startswith("sklearn_xnn"):
        return
    for i, line in enumerate(lines):
        lines[i] = _REF.sub(lambda m: m.group(1) or m.group(2), line)


# numpydoc type specs are plain text, but reST reads a word with a trailing underscore as
# a hyperlink reference, so ``ndarray of shape (n_features_in_,)`` would fail the -W
# build ("Unknown target name"). scikit-learn writes ``(`n_features_in_`,)``; we escape
# the underscore in the type part of "name : type" lines instead.
_TYPE_LINE = re.compile(r"^(\s*[\w*][\w, *]* : )(.+)$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![`\w\\])([A-Za-z]\w*)_(?=[\s,)\]]|$)")


def _escape_type_underscores(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        m = _TYPE_LINE.match(line)
        if m:
            lines[i] = m.group(1) + _TRAILING_UNDERSCORE.sub(r"\1\\_", m.group(2))


# Each public object is documented once, under the shortest path it is importable from
# (``sklearn_xnn.make_headed`` rather than ``sklearn_xnn.baselines.make_headed``).
# References to another path of the same object are redirected to the documented one;
# a reference to a ``sklearn_xnn.*`` name that is documented nowhere fails the build
# (a typo in the guide or a name missing from api.rst), like ``nitpicky`` but without
# requiring every numpy/torch/scikit-learn type to resolve offline.
def _resolve_object(dotted):
    import importlib

    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def _documented_path(env, target):
    """The documented Python name of the object ``target`` names, or None."""
    obj = _resolve_object(target)
    if obj is None:
        return None
    objects = env.get_domain("py").objects
    tail = target.split(".")
    for depth in range(1, len(tail)):
        for prefix in ("sklearn_xnn", *sorted({k.rsplit(".", depth)[0] for k in objects})):
            candidate = ".".join([prefix, *tail[-depth:]])
            if candidate in objects and _resolve_object(candidate) is obj:
                return candidate
    return None


def _resolve_aliases(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    if not target.startswith("sklearn_xnn."):
        return None
    documented = _documented_path(env, target)
    if documented is not None and documented != target:
        domain = env.get_domain("py")
        return domain.resolve_xref(
            env, node["refdoc"], app.builder, node["reftype"], documented, node, contnode
        )
    if documented is None:
        from sphinx.util import logging as sphinx_logging

        sphinx_logging.getLogger(__name__).warning(
            "reference to %s, which is not documented (add it to docs/api.rst?)",
            target,
            location=node,
            type="ref",
            subtype="sklearn_xnn",
        )
    return None


def setup(app):
    # sphinx-mathjax-offline only copies files when the build ends; it does not say so, and
    # ``sphinx -j N`` would warn (an error under -W) that it may not be parallel safe.
    mathjax_offline = app.extensions.get("sphinx-mathjax-offline")
    if mathjax_offline is not None:
        mathjax_offline.parallel_read_safe = mathjax_offline.parallel_write_safe = True
    app.connect("missing-reference", _resolve_aliases)
    app.connect("autodoc-skip-member", _skip_foreign_members)
    app.connect("autodoc-process-docstring", _unlink_foreign_refs)
    app.connect("autodoc-process-docstring", _escape_type_underscores, priority=100)
