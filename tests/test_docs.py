"""The documentation: every public name is in the API reference, and the site builds.

The build test runs ``python -m sphinx -W -b html -D plot_gallery=0`` on a copy of
``docs/`` (offline, warnings are errors, gallery examples not executed) so that broken
docs do not land; it is skipped when the ``docs`` extra is not installed. Running the
gallery examples themselves is the slow test at the end (``pytest -m slow``).
"""

import importlib
import importlib.util
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sklearn_xnn

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("plot_*.py"))

#: Modules that are public but not a Python API (documented in the user guide).
NOT_API = {"sklearn_xnn.cli"}

DOCS_PACKAGES = ("sphinx", "numpydoc", "sphinx_gallery", "pydata_sphinx_theme")
BUILD_TIMEOUT_S = 600


def _public_modules():
    names = ["sklearn_xnn"]
    for info in pkgutil.walk_packages(sklearn_xnn.__path__, "sklearn_xnn."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or info.name in NOT_API:
            continue
        names.append(info.name)
    return names


def _public_names(module):
    """``__all__``, or the classes and functions the module defines."""
    if hasattr(module, "__all__"):
        return [n for n in module.__all__ if not n.startswith("_")]
    return [
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and callable(obj)
        and getattr(obj, "__module__", None) == module.__name__
    ]


def _documented_objects():
    """``{id(obj): dotted name}`` for every autosummary entry of docs/api.rst."""
    current, documented = None, {}
    in_autosummary = False
    for line in (DOCS / "api.rst").read_text().splitlines():
        m = re.match(r"\.\. (?:current)?module:: (\S+)", line)
        if m:
            current = m.group(1)
            continue
        if line.startswith(".. autosummary::"):
            in_autosummary = True
            continue
        if in_autosummary:
            entry = line.strip()
            if not line.startswith("   ") and entry:
                in_autosummary = False
            elif entry and not entry.startswith(":"):
                obj = importlib.import_module(current)
                for attr in entry.lstrip("~").split("."):
                    obj = getattr(obj, attr)
                documented[id(obj)] = f"{current}.{entry}"
    return documented


def test_api_reference_lists_every_public_name():
    documented = _documented_objects()
    missing = []
    for modname in _public_modules():
        module = importlib.import_module(modname)
        for name in _public_names(module):
            if id(getattr(module, name)) not in documented:
                missing.append(f"{modname}.{name}")
    assert not missing, f"public names missing from docs/api.rst: {missing}"


def test_gallery_examples_are_named_for_sphinx_gallery():
    sources = sorted(p.name for p in (DOCS / "examples").glob("*.py"))
    assert sources, "docs/examples holds no example"
    assert all(name.startswith("plot_") for name in sources), (
        f"only plot_*.py files are run by sphinx-gallery; got {sources}"
    )
    for path in EXAMPLES:
        text = path.read_text()
        assert text.startswith('"""'), f"{path.name} must start with its docstring (title)"
        assert "http://" not in text and "https://" not in text, (
            f"{path.name} must not fetch anything: examples run offline"
        )


def _require_docs_extra():
    missing = [p for p in DOCS_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(
            f"the docs extra is not installed (missing {', '.join(missing)}); "
            'pip install -e ".[docs]" to build the documentation'
        )


def _build(tmp_path, *extra):
    """Build a copy of docs/ into tmp_path (so that concurrent runs do not collide)."""
    src = tmp_path / "docs"
    shutil.copytree(
        DOCS, src, ignore=shutil.ignore_patterns("_build", "generated", "auto_examples")
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("SKLEARN_XNN_DOCS_THREADS", "1")
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    cmd += [*extra, str(src), str(tmp_path / "html")]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    )
    return tmp_path / "html"


def test_docs_build_without_warnings(tmp_path):
    _require_docs_extra()
    html = _build(tmp_path, "-D", "plot_gallery=0")
    for page in ("index.html", "api.html", "user_guide/srae.html", "auto_examples/index.html"):
        assert (html / page).is_file(), f"{page} was not written"
    assert (html / "generated" / "sklearn_xnn.SRAEExplainer.html").is_file()


@pytest.mark.slow
def test_docs_build_with_gallery(tmp_path):
    _require_docs_extra()
    html = _build(tmp_path)
    for path in EXAMPLES:
        assert (html / "auto_examples" / f"{path.stem}.html").is_file()
