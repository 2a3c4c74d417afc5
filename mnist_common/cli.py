"""Command lines from function signatures (jsonargparse), with the project's one-line errors.

Every command of both packages is a function whose typed parameters and docstring are
its flags and help: jsonargparse turns them into a parser that also takes ``--config
FILE`` and ``--print_config``, the way LightningCLI's subcommands do. A bad flag ends as
``error: <one line>`` and exit code 2 (:func:`mnist_common.errors.exit_on_user_error`),
before any work is done.
"""

from __future__ import annotations

import inspect
import re
import typing
from typing import Any, Callable

import yaml
from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser, Namespace, get_loader, set_loader
from jsonargparse import ArgumentError  # noqa: F401  (re-exported: LightningCLI raises it too)

from mnist_common.errors import UserError

_TYPE_ERROR = re.compile(r'Parser key "([^"]+)":\s*(?:Expected a|Does not validate against any of the types in)'
                         r"\s*(.+?)\.?\s*Got value:\s*(.+)", re.S)


_UNION_ERROR = re.compile(r'Parser key "([^"]+)": Does not validate against any of the Union subtypes.*?Errors:(.*?)'
                          r"Given value type:.*?Given value: (.*)$")


def argument_error_line(err: Exception) -> str:
    """jsonargparse's (multi-line) message as one line, e.g. ``--check_images: expected int, got x``."""
    text = " ".join(str(err).split())
    union = _UNION_ERROR.search(text)
    if union:
        key, errors, got = union.groups()
        expected = [re.sub(r"<class '(\w+)'>", r"\1", e).replace("NoneType", "null")
                    for e in re.findall(r"Expected an? (<class '\w+'>|[\w.\[\]' ,]+)", errors)]
        return f"--{key}: expected {' or '.join(expected) or 'another type'}, got {got.strip()}"
    match = _TYPE_ERROR.search(text)
    if match:
        key, expected, got = match.groups()
        expected = re.sub(r"<class '(\w+)'>", r"\1", expected).strip()
        literal = re.fullmatch(r"typing\.Literal\[(.*)\]", expected)
        if literal:
            expected = "one of " + ", ".join(v.strip(" '\"") for v in literal.group(1).split(","))
        detail = f"expected {expected}" if len(expected) < 120 else "not of the expected type"
        return f"--{key}: {detail}, got {got.split(' - ')[0].strip()!s}"
    return text


MAX_YAML_VALUES = 100_000  # values a YAML document may expand to; a full config of any command has a few hundred


def expanded_values(node: yaml.Node, sizes: dict[int, int] | None = None) -> int:
    """How many values ``node`` holds once every alias in it is expanded (an alias counts what it points to).

    Counted on the composed document, where an alias is the very node of its anchor: each node's
    count is computed once, so nested aliases that would expand to billions are counted in
    microseconds, and nothing is built.
    """
    sizes = {} if sizes is None else sizes
    if id(node) not in sizes:
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = 1 + sum(expanded_values(child, sizes) for child in children)
    return sizes[id(node)]


def bounded_yaml(load: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonargparse's YAML loader, refusing a document that expands beyond :data:`MAX_YAML_VALUES` values.

    YAML's aliases let a few hundred bytes stand for billions of values ("billion laughs"):
    PyYAML builds them as shared references, but jsonargparse then walks and copies every one,
    for minutes and gigabytes. Documents with aliases are measured first and refused in one line.
    """
    def bounded(stream: str) -> Any:
        if "*" in stream and "&" in stream:  # only a document with anchors and aliases can expand
            try:
                count = sum(expanded_values(node) for node in yaml.compose_all(stream, Loader=yaml.SafeLoader))
            except RecursionError:
                count = MAX_YAML_VALUES + 1
            except yaml.YAMLError:
                count = 0  # not YAML: the loader itself says so
            if count > MAX_YAML_VALUES:
                raise UserError(f"a YAML config or value expands to {count:,} values through its aliases, more than "
                                f"the limit of {MAX_YAML_VALUES:,} (nested aliases, a \"billion laughs\"?)")
        return load(stream)

    return bounded


if not getattr(get_loader("yaml"), "bounded", False):  # every jsonargparse parser of the process, LightningCLI's too
    _bounded_loader = bounded_yaml(get_loader("yaml"))
    _bounded_loader.bounded = True
    set_loader("yaml", _bounded_loader, exceptions=(yaml.YAMLError,))


def command_parser(function: Callable[..., Any], prog: str, description: str | None = None,
                   positional: tuple[str, ...] = ()) -> ArgumentParser:
    """A parser for ``function``'s parameters, plus ``--config``/``--print_config``.

    Parameters named in ``positional`` are positional arguments (a ``list[...]`` one takes
    one or more values); boolean ones are switches (``--json`` / ``--no_json``); the others
    are ``--name VALUE`` options, required where they have no default.
    """
    parser = ArgumentParser(prog=prog, description=description or (function.__doc__ or "").split("\n\n")[0],
                            exit_on_error=False, default_env=False)
    hints = typing.get_type_hints(function)
    for name in positional:
        hint = hints[name]
        is_list = typing.get_origin(hint) is list
        parser.add_argument(name, type=typing.get_args(hint)[0] if is_list else hint, nargs="+" if is_list else None,
                            help=_param_help(function, name))
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file of these flags (see --print_config)")
    defaults = {name: p.default for name, p in inspect.signature(function).parameters.items()}
    switches = [name for name, hint in hints.items() if hint is bool and name not in positional]
    for name in switches:
        parser.add_argument(f"--{name}", action=ActionYesNo, default=defaults[name], help=_param_help(function, name))
    parser.add_function_arguments(function, skip={*positional, *switches}, fail_untyped=True)
    return parser


def _param_help(function: Callable[..., Any], name: str) -> str | None:
    """``name``'s line from a Google-style ``Args:`` section of ``function``'s docstring."""
    match = re.search(rf"^\s+{name}:\s*(.+?)(?=^\s+\w+:|\Z)", inspect.getdoc(function) or "", re.M | re.S)
    return " ".join(match.group(1).split()) if match else None


def parse(parser: ArgumentParser, argv: list[str] | None) -> Namespace:
    """Parse ``argv``; usage errors become a one-line :class:`UserError` (exit 2)."""
    try:
        return parser.parse_args(argv)
    except ArgumentError as err:
        raise UserError(argument_error_line(err)) from None


def run(function: Callable[..., Any], argv: list[str] | None, prog: str, description: str | None = None,
        positional: tuple[str, ...] = ()) -> Any:
    """Parse ``argv`` against ``function``'s signature and call it with the result."""
    parser = command_parser(function, prog, description, positional)
    config = parse(parser, argv)
    kwargs = {k: v for k, v in config.as_dict().items() if k not in ("config", "__path__")}
    return function(**kwargs)


def run_subcommands(commands: dict[str, Callable[..., Any]], argv: list[str] | None, prog: str,
                    description: str) -> Any:
    """``prog COMMAND [flags]``: one parser per function (see :func:`command_parser`), then call the chosen one."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False, default_env=False)
    subcommands = parser.add_subcommands(dest="command")
    for name, function in commands.items():
        subcommands.add_subcommand(name, command_parser(function, f"{prog} {name}"),
                                   help=(function.__doc__ or "").split("\n")[0])
    config = parse(parser, argv)
    name = config.command
    kwargs = {k: v for k, v in config[name].as_dict().items() if k not in ("config", "__path__")}
    instantiated = parser.instantiate_classes(config)[name]  # dataclass settings become their objects
    return commands[name](**{k: instantiated[k] for k in kwargs})
