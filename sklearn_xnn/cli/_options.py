"""Command-line options generated from :class:`~sklearn_xnn.SRAEExplainer` itself.

Names and defaults come from ``get_params()``, types, ranges and choices from
``_parameter_constraints``, the help text from the class docstring: a new parameter is an
option of both commands by itself.
"""

import argparse
import contextlib
import inspect
import numbers
import re

from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, make_constraint

from sklearn_xnn import SRAEExplainer

#: What the command line adds to the first sentence of an SRAEExplainer parameter's help.
_CLI_NOTES = {
    "n_components": "An integer, or a fraction in (0, 1) that chooses K: the smallest K whose "
    "rank-K linear bound reaches that fraction of the faithfulness all components reach; "
    "auto is 0.98.",
    "faithfulness_tol": "none turns the constraint off (--alpha-faithfulness then weighs "
    "the faithfulness term).",
    "verbose": "The command prints these lines on stderr; 0 silences them.",
}

#: How a command-line user reads the constraints that sklearn describes as Python types.
_CLI_WORDS = {
    "random_state": "an integer in the range [0, 4294967295] (a seed)",
    "verbose": "an integer in the range [0, inf)",
}


def _plain(text):
    """reST markup of a docstring as plain text (``x`` -> x, :class:`~a.B` -> B)."""
    text = re.sub(r":\w+:`~?(?:[\w.]+\.)?([^`<]+?)(?:\s*<[^>]*>)?`", r"\1", text)
    text = text.replace(" (see above)", "")
    return re.sub(r"``([^`]*)``", r"\1", text).replace("%", "%%")


def parameter_help(estimator_class=SRAEExplainer):
    """``{name: first sentence}`` of each parameter in the class docstring, as plain text."""
    doc = estimator_class.__doc__ or ""
    section = re.search(
        r"\n\s*Parameters\n\s*-+\n(.*?)(?:\n\s*\n\s*\w[\w ]*\n\s*-+\n|\Z)", doc, re.S
    )
    helps = {}
    for m in re.finditer(
        r"^    (\w+) : [^\n]*\n((?:        [^\n]*\n?)*)", section.group(1) if section else "", re.M
    ):
        words = " ".join(m.group(2).split())
        first = re.split(r"(?<=[a-z0-9)`])\.(?:\s|$)", words, maxsplit=1)[0]
        helps[m.group(1)] = _plain(first.rstrip(".") + ".")
    return helps


def _takes_none(constraints):
    """Whether the parameter takes None (typed ``none``)."""
    return None in constraints or "random_state" in constraints


def _words(constraints):
    """The words a parameter takes (its string options, less hidden or deprecated ones)."""
    words = set()
    for c in constraints:
        if isinstance(c, StrOptions) and not c.hidden:
            words |= c.options - c.deprecated
    return sorted(words)


def describe(constraints):
    """The values a parameter takes, as typed on the command line: ``an int in the range
    [1, inf), a float in the range (0.0, 1.0) or auto`` (no Python types; ``none`` for
    None)."""
    parts = []
    for c in constraints:
        if isinstance(c, str) and c in _CLI_WORDS:
            parts.append(_CLI_WORDS[c])
        elif isinstance(c, Interval):
            parts.append(str(c))
    parts += _words(constraints) + (["none"] if _takes_none(constraints) else [])
    return ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else "".join(parts)


def checked(convert, constraints, what):
    """An argparse type: ``convert(text)``, then the estimator's constraints on the value."""
    objects = [make_constraint(c) for c in constraints]

    def parse(text):
        if text.lower() == "none" and _takes_none(constraints):
            return None
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not any(c.is_satisfied_by(value) for c in objects):
            allowed = describe(constraints) or " or ".join(str(c) for c in objects)
            raise argparse.ArgumentTypeError(f"expected {allowed}, got {text!r}")
        return value

    parse.__name__ = what
    return parse


def _word_or_number(text):
    for convert in (int, float):
        with contextlib.suppress(ValueError):
            return convert(text)
    return text


def _number_tuple(default):
    """Comma lists like ``800,100`` for a tuple default (positive ints for an int tuple)."""
    ints = all(isinstance(v, numbers.Integral) for v in default)

    def parse(text):
        try:
            values = tuple((int if ints else float)(s) for s in text.split(","))
        except ValueError:
            kind = "integers" if ints else "numbers"
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind}, got {text!r}"
            ) from None
        if ints and min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
        return values

    return parse, ",".join(["INT" if ints else "X"] * max(len(default), 1))


def _word_or_tuple(options):
    """argparse keyword arguments for a parameter that is a word (``options``) or a tuple
    of positive integers given as a comma list."""
    words = sorted(set().union(*(c.options for c in options)))
    parse_tuple, _ = _number_tuple((1,))

    def parse(text):
        if text in words:
            return text
        try:
            return parse_tuple(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected {' or '.join(words)} or comma-separated integers (positive), "
                f"got {text!r}"
            ) from None

    parse.__name__ = f"{' or '.join(words)} or comma-separated integers"
    return dict(type=parse, metavar="|".join([*words, "INT,INT"]))


def _metavar(constraints):
    """``auto|INT|X``: the words, then INT for integers, X for other numbers, ``none``."""
    kinds = [
        "X" if isinstance(c, Interval) and c.type is not numbers.Integral else "INT"
        for c in constraints
        if isinstance(c, Interval) or c in ("random_state", "verbose")
    ]
    none = ["none"] if _takes_none(constraints) else []
    return "|".join(dict.fromkeys(_words(constraints) + kinds + none))


def _option_kwargs(default, constraints):
    """argparse keyword arguments for one parameter from its default and its constraints."""
    options = [c for c in constraints if isinstance(c, StrOptions)]
    if options and "array-like" in constraints:  # a word or a comma list, e.g. "auto" or 64,16
        return _word_or_tuple(options)
    if options and len(options) == len(constraints):
        return dict(choices=sorted(set().union(*(c.options for c in options))), type=str)
    metavar = _metavar(constraints)
    if options:  # a word or a number, e.g. "auto" or 0.5
        kind = "a word or a number"
        return dict(type=checked(_word_or_number, constraints, kind), metavar=metavar)
    for c in constraints:
        if c == "boolean":
            return dict(action=argparse.BooleanOptionalAction)
        if isinstance(c, Interval):
            if c.type is numbers.Integral:
                return dict(type=checked(int, constraints, "an integer"), metavar=metavar)
            return dict(type=checked(float, constraints, "a number"), metavar=metavar)
        if c in ("random_state", "verbose"):
            return dict(type=checked(int, constraints, "an integer"), metavar=metavar)
        if c == "array-like" and isinstance(default, tuple):
            parse, metavar = _number_tuple(default)
            return dict(type=parse, metavar=metavar)
    if isinstance(default, bool):
        return dict(action=argparse.BooleanOptionalAction)
    if isinstance(default, tuple):
        parse, metavar = _number_tuple(default)
        return dict(type=parse, metavar=metavar)
    kinds = {int: "an integer", float: "a number"}
    convert = type(default) if type(default) in kinds else str
    return dict(type=checked(convert, constraints, kinds.get(convert, "a string")))


def estimator_options(estimator_class=SRAEExplainer):
    """``{parameter: (flag, argparse kwargs)}`` for every parameter of the estimator
    but those :func:`left_out_parameters` names.

    Names and defaults come from ``estimator_class().get_params()``, types, ranges and
    choices from its ``_parameter_constraints``, the help text from its docstring (with
    the command line's notes for SRAEExplainer's own parameters).
    """
    defaults = estimator_class().get_params(deep=False)
    order = list(inspect.signature(estimator_class).parameters)
    constraints = getattr(estimator_class, "_parameter_constraints", {})
    helps = parameter_help(estimator_class)
    notes = _CLI_NOTES if estimator_class is SRAEExplainer else {}
    left_out = left_out_parameters(estimator_class)
    options = {}
    for name in sorted(defaults, key=lambda n: order.index(n) if n in order else len(order)):
        if name in left_out:
            continue
        default = defaults[name]
        kwargs = _option_kwargs(default, constraints.get(name, []))
        text = " ".join(filter(None, [helps.get(name, f"The {name} parameter."), notes.get(name)]))
        kwargs.update(default=default, dest=name, help=text)
        options[name] = ("--" + name.replace("_", "-"), kwargs)
    return options


def left_out_parameters(estimator_class=SRAEExplainer):
    """``{parameter: why}`` for the parameters that have no command-line form: those that
    take a Python object (``network_head``, a torch module) and deprecated ones (default
    ``"deprecated"``)."""
    constraints = getattr(estimator_class, "_parameter_constraints", {})
    left_out = {}
    for name, default in estimator_class().get_params(deep=False).items():
        if any(isinstance(c, HasMethods) for c in constraints.get(name, [])):
            left_out[name] = "takes a Python object"
        elif isinstance(default, str) and default == "deprecated":
            left_out[name] = "deprecated"
    return left_out


def add_estimator_options(parser, defaults):
    """Add every estimator option to ``parser``, with ``defaults`` over the estimator's."""
    left_out = ", ".join(f"{k} ({why})" for k, why in left_out_parameters().items())
    group = parser.add_argument_group(
        "SRAEExplainer parameters",
        "the parameters of sklearn_xnn.SRAEExplainer, each with the estimator's default "
        "unless the command changes it; not on the command line: " + (left_out or "none"),
    )
    for name, (flag, kwargs) in estimator_options().items():
        group.add_argument(flag, **{**kwargs, "default": defaults.get(name, kwargs["default"])})


def estimator_params(args):
    """The SRAEExplainer parameters given on the command line (with their defaults)."""
    names = SRAEExplainer().get_params(deep=False)
    return {name: getattr(args, name) for name in names if hasattr(args, name)}
