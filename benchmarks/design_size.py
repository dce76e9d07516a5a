"""How big is the design of a default fit: functions it runs, and module/function sizes.

1. Dynamic: ``SRAEExplainer(n_components=5, random_state=0, device="cpu")`` (all other
   parameters at their defaults) is fitted on ``make_concept_activations(2000, 256,
   random_state=0)`` under ``sys.setprofile`` / ``threading.setprofile``. Every distinct
   function of the installed ``sklearn_xnn`` package that runs during ``fit`` is recorded
   as ``(module, qualified name, first line)``; nested functions and lambdas count, code
   of sklearn, torch, numpy and the standard library does not. Comprehensions, generator
   expressions and module bodies are counted apart (``n_comprehensions``), not as functions.
2. Static: every module's line count (flagged over 600 lines) and every function or
   method's code lines (body lines that are not blank, comment or docstring; flagged over 60).

Writes ``<out>.json`` and ``<out>.md`` (default ``benchmarks/results/design_size``) and prints
the Markdown with PASS/FAIL lines for the targets: a default fit runs <= 120 distinct package
functions in <= 14 modules; no module over 600 lines; no function over 60 code lines.

    python benchmarks/design_size.py [--out PREFIX] [--fit-only | --static-only]
"""

import argparse
import ast
import functools
import io
import json
import sys
import threading
import tokenize
from collections import Counter
from pathlib import Path

import sklearn_xnn
from sklearn_xnn import SRAEExplainer
from sklearn_xnn.datasets import make_concept_activations

PKG_DIR = Path(sklearn_xnn.__file__).resolve().parent
NOT_FUNCTIONS = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>", "<module>"}
MAX_FUNCS, MAX_MODULES, MAX_MODULE_LINES, MAX_CODE_LINES = 120, 14, 600, 60
_SKIP_TOKENS = {
    getattr(tokenize, n) for n in "COMMENT NL NEWLINE INDENT DEDENT ENCODING ENDMARKER".split()
}


@functools.cache
def module_name(path):
    """Dotted module name of a file inside the package (``sklearn_xnn._nn.engine``)."""
    parts = list(Path(path).resolve().relative_to(PKG_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def trace_fit():
    """Fit the default explainer under a profiler; return the set of functions run."""
    Z, y, codes = make_concept_activations(2000, 256, random_state=0)
    est = SRAEExplainer(n_components=5, random_state=0, device="cpu")
    prefix, seen = str(PKG_DIR) + "/", set()

    def profile(frame, event, arg):
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(prefix):
            qualname = getattr(code, "co_qualname", code.co_name)
            seen.add((module_name(code.co_filename), qualname, code.co_firstlineno))

    threading.setprofile(profile)
    sys.setprofile(profile)
    try:
        est.fit(Z, y)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return seen


def fit_summary(seen):
    """Totals and per-module counts (largest first) of the traced functions."""
    other = {f for f in seen if f[1].rsplit(".", 1)[-1] in NOT_FUNCTIONS}
    seen = seen - other
    per_module = Counter(mod for mod, _, _ in seen)
    return {
        "n_functions": len(seen),
        "n_modules": len(per_module),
        "n_comprehensions": len(other),
        "per_module": dict(sorted(per_module.items(), key=lambda kv: (-kv[1], kv[0]))),
        "functions": sorted(f"{m}:{q}:{line}" for m, q, line in seen),
    }


def code_lines(source):
    """Set of line numbers that hold a code token (not blank, not only a comment)."""
    lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in _SKIP_TOKENS:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return lines


def function_sizes(tree, lines, prefix=""):
    """Yield ``(qualname, first line, code lines)`` of every function under ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.ClassDef):
            yield from function_sizes(node, lines, f"{prefix}{node.name}.")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0]
            span = set(range(first.lineno, node.end_lineno + 1))
            if ast.get_docstring(node, clean=False) is not None:
                span -= set(range(first.lineno, first.end_lineno + 1))
            yield f"{prefix}{node.name}", node.lineno, len(span & lines)
            yield from function_sizes(node, lines, f"{prefix}{node.name}.<locals>.")
        else:
            yield from function_sizes(node, lines, prefix)


def static_sizes():
    """Line count of every package module and code lines of every function."""
    modules, functions = {}, []
    for path in sorted(PKG_DIR.rglob("*.py")):
        source = path.read_text()
        mod = module_name(path)
        modules[mod] = len(source.splitlines())
        lines = code_lines(source)
        for qual, first, n in function_sizes(ast.parse(source), lines):
            functions.append({"module": mod, "function": qual, "line": first, "code_lines": n})
    functions.sort(key=lambda f: -f["code_lines"])
    return {
        "n_modules": len(modules),
        "total_lines": sum(modules.values()),
        "n_functions": len(functions),
        "modules": dict(sorted(modules.items(), key=lambda kv: -kv[1])),
        "modules_over": {m: n for m, n in modules.items() if n > MAX_MODULE_LINES},
        "functions_over": [f for f in functions if f["code_lines"] > MAX_CODE_LINES],
        "largest_functions": functions[:10],
    }


def fit_markdown(fit):
    """Markdown lines for the traced fit."""
    title = f"## Default fit: {fit['n_functions']} package functions in {fit['n_modules']} modules"
    out = [title, "", "| module | functions |", "| --- | ---: |"]
    return out + [f"| `{m}` | {n} |" for m, n in fit["per_module"].items()] + [""]


def static_markdown(st):
    """Markdown lines for the static sizes."""
    title = f"## Static: {st['n_modules']} modules, {st['total_lines']} lines"
    big = ", ".join(f"`{m}` ({n})" for m, n in st["modules_over"].items()) or "none"
    out = [title, "", f"Modules over {MAX_MODULE_LINES} lines: {big}", ""]
    out += [f"Functions over {MAX_CODE_LINES} code lines: {len(st['functions_over'])}"]
    out += [
        f"- `{f['module']}.{f['function']}` (line {f['line']}): {f['code_lines']}"
        for f in st["functions_over"]
    ]
    return out + [""]


def targets(result):
    """``(passed, text)`` for each target that the result measures."""
    fit, st, checks = result.get("fit"), result.get("static"), []
    if fit:
        n, m = fit["n_functions"], fit["n_modules"]
        checks += [(n <= MAX_FUNCS, f"fit runs <= {MAX_FUNCS} functions ({n})")]
        checks += [(m <= MAX_MODULES, f"fit runs in <= {MAX_MODULES} modules ({m})")]
    if st:
        n, m = len(st["modules_over"]), len(st["functions_over"])
        checks += [(not n, f"no module over {MAX_MODULE_LINES} lines ({n})")]
        checks += [(not m, f"no function over {MAX_CODE_LINES} code lines ({m})")]
    return checks


def to_markdown(result):
    """Compact Markdown summary with the PASS/FAIL lines of the targets."""
    out = ["# Design size", ""]
    out += fit_markdown(result["fit"]) if "fit" in result else []
    out += static_markdown(result["static"]) if "static" in result else []
    out += ["## Targets", ""]
    out += [f"- {'PASS' if ok else 'FAIL'}: {text}" for ok, text in targets(result)]
    return "\n".join(out) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results/design_size"))
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--fit-only", action="store_true")
    group.add_argument("--static-only", action="store_true")
    args = parser.parse_args(argv)
    result = {"package": str(PKG_DIR)}
    if not args.static_only:
        result["fit"] = fit_summary(trace_fit())
    if not args.fit_only:
        result["static"] = static_sizes()
    md = to_markdown(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(result, indent=1) + "\n")
    Path(args.out + ".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
