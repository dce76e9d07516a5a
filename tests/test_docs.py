"""The documentation: every public name is in the API reference, and the site builds.

The build test runs ``python -m sphinx -W -b html -D plot_gallery=0`` on a copy of
``docs/`` (offline, warnings are errors, gallery examples not executed) so that broken
docs do not land; it is skipped when the ``docs`` extra is not installed. Running the
gallery examples themselves is the slow test at the end (``pytest -m slow``).

The built site is then read as a person would, offline: no page loads a script or a
stylesheet from another host, and in a real headless Chromium (Debian's ``chromium``;
``.ci/run`` installs it) every equation is typeset by the MathJax copy in ``_static``
and a 100-character code line fits the text column at 1280 x 900. Those tests are
skipped, saying so, when no chromium is on PATH.
"""

import html as html_lib
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sklearn_xnn
from tests._browser import CHROMIUM, HEIGHT, WIDTH, needs_chromium, run_chromium

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EXAMPLES = sorted((DOCS / "examples").glob("plot_*.py"))

#: Modules that are public but not a Python API (documented in the user guide).
NOT_API = {"sklearn_xnn.cli"}

DOCS_PACKAGES = (
    "sphinx",
    "numpydoc",
    "sphinx_gallery",
    "pydata_sphinx_theme",
    "sphinx-mathjax-offline",
)
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


def _sphinx(tmp_path, *extra):
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
    return proc, " ".join(cmd), tmp_path / "html"


def _build(tmp_path, *extra):
    proc, cmd, html = _sphinx(tmp_path, *extra)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    return html


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One build of the site without running the gallery: (process, command, html folder).

    With ``--keep-going`` every page is written even when a warning fails the build, so
    the pages' own tests below still say what they find.
    """
    _require_docs_extra()
    return _sphinx(tmp_path_factory.mktemp("docs-build"), "-D", "plot_gallery=0")


def test_docs_build_without_warnings(site):
    proc, cmd, html = site
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-6000:]}"
    for page in ("index.html", "api.html", "user_guide/srae.html", "auto_examples/index.html"):
        assert (html / page).is_file(), f"{page} was not written"
    assert (html / "generated" / "sklearn_xnn.SRAEExplainer.html").is_file()


@pytest.mark.slow
def test_docs_build_with_gallery(tmp_path):
    _require_docs_extra()
    html = _build(tmp_path)
    for path in EXAMPLES:
        assert (html / "auto_examples" / f"{path.stem}.html").is_file()


# ---------------------------------------------------------------- the site, offline
#: The user-guide page with the most equations (inline and display).
MATH_PAGE = "user_guide/srae.html"
_EXTERNAL = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I
)


def _pages(html):
    return sorted(p for p in html.rglob("*.html") if "_static" not in p.parts)


def test_no_page_loads_anything_from_another_host(site):
    _, _, html = site
    pages = _pages(html)
    assert len(pages) > 20, f"only {len(pages)} pages were written"
    loading = [str(p.relative_to(html)) for p in pages if _EXTERNAL.search(p.read_text("utf-8"))]
    assert not loading, f"pages that load a script, stylesheet or image from outside: {loading}"
    for css in (html / "_static").rglob("*.css"):
        text = css.read_text("utf-8", errors="replace")
        assert not re.search(r"""(url\(|@import)\s*["']?(https?:)?//""", text), css.name
    page = (html / MATH_PAGE).read_text("utf-8")
    assert re.search(r'<script[^>]*src="\.\./_static/mathjax/tex-chtml\.js"', page)
    assert (html / "_static" / "mathjax" / "tex-chtml.js").stat().st_size > 500_000
    fonts = list((html / "_static" / "mathjax" / "output" / "chtml" / "fonts").rglob("*.woff"))
    assert len(fonts) >= 20, "MathJax's fonts were not copied"


def _chromium(*args, profile):
    # let MathJax finish typesetting before the dump
    return run_chromium("--virtual-time-budget=20000", *args, profile=profile, timeout=180)


# Runs once MathJax has typeset the page and the fonts are in, then writes what it sees
# into the DOM (which --dump-dom prints): the typeset equations, any TeX left as text,
# every script and stylesheet of the page, the fonts in use, and the width of a
# 100-character code line in the text column.
PROBE = """<script>
const typeset = () => MathJax.startup.promise.then(() => document.fonts.ready);
window.addEventListener("load", () => typeset().then(() => {
  const article = document.querySelector("article.bd-article");
  const code = document.createElement("div");
  code.className = "highlight-python notranslate";
  code.innerHTML = '<div class="highlight"><pre id="probe"></pre></div>';
  article.querySelector("div.highlight").parentElement.before(code);
  const pre = document.getElementById("probe");
  pre.textContent = "x".repeat(100);
  document.body.dataset.probe = JSON.stringify({
    sources: article.querySelectorAll(".math").length,
    typeset: article.querySelectorAll("mjx-container").length,
    errors: article.querySelectorAll("mjx-merror").length,
    text: article.innerText,
    loaded: [...document.scripts].map(e => e.src).filter(Boolean)
      .concat([...document.styleSheets].map(e => e.href).filter(Boolean)),
    fonts: [...document.fonts].filter(f => f.status === "loaded").map(f => f.family),
    preClient: pre.clientWidth, preScroll: pre.scrollWidth,
    pageScroll: document.documentElement.scrollWidth, viewport: innerWidth,
  });
}));
</script>"""


@pytest.fixture(scope="module")
def math_page(site, tmp_path_factory):
    """What Chromium shows of the page with equations, measured after MathJax has run."""
    if CHROMIUM is None:
        pytest.skip("no chromium found on PATH; install Debian's with `apt-get install chromium`")
    _, _, html = site
    page = html / MATH_PAGE
    probe = page.with_name("probe.html")  # beside it, so that relative URLs still resolve
    probe.write_text(page.read_text("utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    profile = tmp_path_factory.mktemp("chromium-profile")
    done = _chromium("--dump-dom", probe.as_uri(), profile=profile)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, (
        f"chromium printed no measured DOM (MathJax did not finish?): {done.stderr[-2000:]}"
    )
    return json.loads(html_lib.unescape(found.group(1))), done.stdout


@needs_chromium
def test_equations_are_typeset_offline(math_page):
    probe, dom = math_page
    assert probe["sources"] >= 20, "the math page lost its equations"
    # MathJax replaces each \(...\) / \[...\] with an mjx-container; none is left as TeX
    assert probe["typeset"] >= probe["sources"]
    assert probe["errors"] == 0
    for raw in ("\\(", "\\)", "\\[", "\\]", "\\frac", "\\sum", "\\mathbb"):
        assert raw not in probe["text"], f"raw TeX {raw!r} left in the page text"
    assert dom.count("<mjx-container") >= probe["sources"]
    outside = [u for u in probe["loaded"] if not u.startswith("file://")]
    assert not outside, f"the page loads from outside: {outside}"
    assert any(u.endswith("/_static/mathjax/tex-chtml.js") for u in probe["loaded"])
    # MathJax's own fonts (from _static/mathjax/output/chtml/fonts) are in use
    assert any(f.startswith("MJXTEX") or f.startswith("MJXZERO") for f in probe["fonts"]), probe[
        "fonts"
    ]


@needs_chromium
def test_a_100_character_code_line_fits_at_1280_px(math_page):
    probe, _ = math_page
    assert probe["viewport"] == WIDTH
    assert probe["preScroll"] <= probe["preClient"], (
        f"a 100-character line needs {probe['preScroll']} px, the column gives "
        f"{probe['preClient']} px"
    )
    assert probe["pageScroll"] <= WIDTH


@needs_chromium
def test_screenshot_of_the_math_page(site, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "srae_1280x900.png"
    page = site[2] / MATH_PAGE
    _chromium(f"--screenshot={shot}", page.as_uri(), profile=tmp_path / "profile")
    assert shot.exists(), "chromium wrote no screenshot"
    img = imread(shot)[..., :3]
    assert img.shape[:2] == (HEIGHT, WIDTH)
    # mostly background, with dark glyphs (text and typeset equations) in the text column
    dark = img.max(2) < 0.3
    assert img.min(2).mean() > 0.7
    assert dark[:, 300:1240].mean() > 0.01
