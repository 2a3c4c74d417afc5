"""Command lines from function signatures (jsonargparse), with the project's one-line errors.

Every command of both packages is a function whose typed parameters and docstring are
its flags and help: jsonargparse turns them into a parser that also takes ``--config
FILE`` and ``--print_config``, the way LightningCLI's subcommands do. A bad flag ends as
``error: <one line>`` and exit code 2 (:func:`mnist_common.errors.exit_on_user_error`),
before any work is done.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import functools
import inspect
import re
import stat
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Mapping, Sequence

import yaml
from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentError, ArgumentParser, Namespace, get_loader, set_loader

from mnist_common.documents import MAX_NUMBER_CHARACTERS, check_yaml_document
from mnist_common.errors import UserError, escaped, one_line

# The types a value given on the command line is checked against when a parse fails: plain values, choices,
# and unions of them (``int | None``). Settings of other types (classes, lists) keep jsonargparse's own message.
PLAIN_TYPES = (int, float, str, bool, type(None), Path)


def is_plain(hint: Any) -> bool:
    """Whether values of ``hint`` are judged here: plain values, choices, lists of them and unions of these."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return True
    if origin in (typing.Union, types.UnionType, list):
        return all(is_plain(arg) for arg in typing.get_args(hint))
    return hint in PLAIN_TYPES


def is_group(hint: Any) -> bool:
    """Whether a setting of type ``hint`` is a group of settings (a class or dataclass: ``model``, ``trainer``)."""
    return inspect.isclass(hint) and hint not in (typing.Any, object) and not is_plain(hint)  # Any is a class too


def admits_null(hint: Any) -> bool:
    """Whether a setting of type ``hint`` may be null: ``None``, ``Any``, ``X | None``, ``Literal[..., None]``."""
    if hint in (None, type(None), typing.Any, object):
        return True
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return None in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(admits_null(arg) for arg in typing.get_args(hint))
    return False


def describe(hint: Any) -> str:
    """``int``, ``int or null``, ``one of constant, onecycle``: a type as a flag's refusal names it."""
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in typing.get_args(hint))
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence) and typing.get_args(hint):
        return f"list of {describe(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


@functools.lru_cache(maxsize=256)
def parameter_types(target: Any) -> Mapping[str, Any]:
    """The annotated parameters of a function, a class's ``__init__`` or a dataclass; {} if unresolvable. Kept
    (read-only) once found: a config of 20,000 keys asked for them 40,000 times, 10 s of a refusal (hostile round 8).

    A parameter defaulting to None admits None whatever its annotation says (``x: int = None``), as
    jsonargparse declares it: such a type is given as ``X | None``, so null is not refused for it.
    """
    try:
        function = target if dataclasses.is_dataclass(target) or not inspect.isclass(target) else target.__init__
        hints = typing.get_type_hints(function)
        parameters = inspect.signature(target if dataclasses.is_dataclass(target) else function).parameters
    except Exception:  # forward references a library leaves unresolved: those settings are not checked here
        return {}
    return types.MappingProxyType({name: typing.Optional[hint] if name in parameters and parameters[name].default
                                   is None and not admits_null(hint) else hint for name, hint in hints.items()})


def declared_type(types_by_name: dict[str, Any], key: str) -> Any:
    """The declared type of setting ``key`` (``data.subset``), ``Any`` if unknown; each part before the last names
    a group (a class or dataclass). Unknown: a setting inside a ``class_path`` value, or of a library's class."""
    *groups, name = key.split(".")
    for group in groups:
        target = types_by_name.get(group)
        if not is_group(target):
            return typing.Any
        types_by_name = parameter_types(target)
    return types_by_name.get(name, typing.Any) if name != "return" else typing.Any


def setting_type(types_by_name: dict[str, Any], key: str) -> Any | None:
    """The type of setting ``key`` if its values are judged here (:func:`is_plain`), else None."""
    hint = declared_type(types_by_name, key)
    return hint if hint is not typing.Any and is_plain(hint) else None


def refusal_line(key: str, hint: Any, value: str) -> str:
    """``--model.lr: expected float, got abc``: the one line naming a refused value and what its type takes."""
    expected = "a mapping of its settings (see --print_config)" if is_group(hint) else describe(hint)
    return f"--{key}: {f'expected {expected}' if len(expected) < 120 else 'not of the expected type'}, got {value}"


def null_refusal(types_by_name: dict[str, Any], key: str) -> str | None:
    """The line refusing null for setting ``key`` (the line the flag gets), or None where its type admits null
    or is unknown. A group (``checkpoint: null``) is asked for its settings."""
    hint = declared_type(types_by_name, key)
    return None if admits_null(hint) else refusal_line(key, hint, "null")


def refuse_nulls(settings: Namespace, types_by_name: dict[str, Any]) -> None:
    """Refuse, in one line, a parsed setting (or group) that is null though its type does not admit null.

    jsonargparse checks a value's type unless the value is None, which it takes for "not given"
    (its ``unset_sentinel`` setting), so a ``null`` in a ``--config`` file (``model: {lr: null}``,
    ``checkpoint: null``) reached the commands, which failed on it with a traceback; the same value
    as a flag is refused. Checked on the parsed settings, wherever the null came from (a config file,
    a group's file, a default config), so a null a later flag overrides is no error. A setting of a
    type that admits null, or one defaulting to None, keeps it (``data.subset: null``).
    """
    for key, value in settings.items():
        line = null_refusal(types_by_name, key) if value is None else None
        if line:
            raise UserError(line)


PRINT_CONFIG = "--print_config"


def without_print_config(argv: Sequence[str]) -> list[str] | None:
    """``argv`` without its ``--print_config`` (or ``--print_config=flags``), or None where it has none.

    jsonargparse prints the config as soon as it is parsed, before any check of ours could run; the
    commands parse it once without the flag and check the values first, so a config a run would
    refuse is refused there too, and never printed as if it were good.
    """
    kept = [token for token in argv if token != PRINT_CONFIG and not token.startswith(PRINT_CONFIG + "=")]
    return kept if len(kept) < len(argv) else None


def flag_values(argv: Sequence[str]) -> Iterator[tuple[str, str, bool]]:
    """(key, value, given as a separate token) for each ``--key value`` and ``--key=value`` in ``argv``."""
    tokens = list(argv)
    for i, token in enumerate(tokens):
        if not token.startswith("--") or token == "--":
            continue
        key, equals, value = token[2:].partition("=")
        if not equals:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                continue
            value = tokens[i + 1]
        yield key, value, not equals


def given_values(argv: Sequence[str], groups: Collection[str] = ()) -> Iterator[tuple[str, str, bool]]:
    """(setting, value, maybe not its value) for each ``--key value``, ``--key=value`` and ``--config`` file setting,
    and each setting of a group in ``groups`` given as a file or inline (``--model m.yaml``, ``--data '{...}'``).

    The token after ``--key`` may not be its value at all (a switch such as ``--json`` takes none and
    can be followed by a positional argument); a file's values come as YAML text.
    """
    for key, value, separate in flag_values(argv):
        if key != "config":
            yield key, value, separate  # a separate token may be a positional argument after a switch
        settings = _settings_in(value) if key == "config" or key in groups else None
        if isinstance(settings, dict):
            yield from _leaves(settings, "" if key == "config" else f"{key}.")


def _settings_in(value: str) -> Any:
    """The YAML a file named ``value`` holds, or ``value`` itself as inline YAML mapping; None if neither."""
    try:
        text = Path(value).read_text() if Path(value).is_file() else value if value.lstrip().startswith("{") else None
        return None if text is None else get_loader("yaml")(text)  # the bounded loader below
    except (OSError, ValueError, yaml.YAMLError, UserError):
        return None  # jsonargparse's message (or the bound's) says what is wrong with the file


def _leaves(node: Any, prefix: str) -> Iterator[tuple[str, str, bool]]:
    if isinstance(node, dict) and "class_path" not in node:
        for name, child in node.items():
            yield from _leaves(child, f"{prefix}{name}.")
    elif prefix:
        yield prefix[:-1], yaml_text(node), False


def yaml_text(value: Any) -> str:
    """A config value as YAML on one line (``5``, ``[1, 2]``, ``{lr: 0.1}``), as a refusal quotes it."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def refuses(hint: Any, value: str) -> bool:
    """Whether jsonargparse refuses ``value`` for a setting of type ``hint`` (the parse itself is the check)."""
    probe = ArgumentParser(exit_on_error=False, default_env=False)
    probe.add_argument("--value", type=hint)
    try:
        probe.parse_args([f"--value={value}"])
    except ArgumentError:
        return True
    return False


def argument_error_line(err: Exception, argv: Sequence[str], types_by_name: dict[str, Any],
                        positionals: bool = False) -> str:
    """A refused command line as one line, e.g. ``--data.subset: expected int or null, got many``.

    jsonargparse says which value it refused in prose made for people, spread over lines. Rather
    than read that prose, the values the user gave (flags, and the settings of ``--config`` files)
    are checked again one by one against their parameters' types (``types_by_name``: the
    command's parameters; a class or dataclass for a group of settings): the first one refused is
    named, with what its type allows; so is a group given as null (``--checkpoint null``, or
    ``checkpoint: null`` in a config file). Any other error (an unknown flag, a missing command) is
    jsonargparse's own message on one line. With ``positionals``, the word after a switch may be a
    positional argument, not the switch's value, and is not judged as one.
    """
    given = list(given_values(argv, {name for name, hint in types_by_name.items() if is_group(hint)}))
    for key, value, maybe_positional in given:
        hint = setting_type(types_by_name, key)
        if hint is bool and maybe_positional and positionals:
            continue  # a switch (--json) before a positional argument: jsonargparse's message says what is wrong
        if hint is not None and refuses(hint, value):
            return refusal_line(key, hint, value)
        if value == "null" and is_group(group := declared_type(types_by_name, key)):
            return refusal_line(key, group, value)  # a group set to null: jsonargparse names one of its settings
    named = re.findall(r'Parser key "([^"]+)"', str(err))  # a setting of a type not judged above (a Logger...)
    values = {key: value for key, value, _ in given}
    if named and named[-1] in values:
        hint = declared_type(types_by_name, named[-1])
        if hint is not typing.Any and not is_group(hint):
            return refusal_line(named[-1], hint, values[named[-1]])
    return " ".join(str(err).split()) + unknown_setting_hint(str(err), types_by_name)


# jsonargparse's words for a setting it does not know: a flag (``unrecognized arguments: --model.lrx 1``), or a
# setting inside a config file or a group's inline settings (``does not accept option 'model.lrx'``)
UNKNOWN_SETTING = re.compile(r"unrecognized arguments: --([\w.-]+)|does not accept option '([^']+)'")


def setting_names(types_by_name: dict[str, Any]) -> list[str]:
    """Every setting a command takes by its dotted name (``model.lr``): its parameters and their groups'."""
    names = []
    for name, hint in types_by_name.items():
        names.append(name)
        if is_group(hint):
            names += [f"{name}.{setting}" for setting in parameter_types(hint) if setting != "return"]
    return names


def unknown_setting_hint(message: str, types_by_name: dict[str, Any]) -> str:
    """``; did you mean --model.lr?`` for a misspelt setting jsonargparse refused, or ``; --help lists the
    settings`` when nothing is close: its own message names what it refused, not what it takes."""
    match = UNKNOWN_SETTING.search(message)
    if not match:
        return ""
    unknown = next(part for part in match.groups() if part)
    if ":" in unknown:  # lr:abc, one YAML key
        return "; YAML takes 'name: value', with a space after the colon"
    close = difflib.get_close_matches(unknown, setting_names(types_by_name), n=1, cutoff=0.75)
    if close == [unknown]:  # a name the command takes by its place (convert SRC DST), not as a flag
        return f"; {unknown} is given by its place on the command line, without --"
    return f"; did you mean --{close[0]}?" if close else "; --help lists the settings"


def bounded_yaml(load: Callable[[str], Any]) -> Callable[[str], Any]:
    """jsonargparse's YAML loader, refusing a document that expands beyond :data:`MAX_DOCUMENT_VALUES` values, or
    that gives a key twice.

    YAML's aliases let a few hundred bytes stand for billions of values ("billion laughs"):
    PyYAML builds them as shared references, but jsonargparse then walks and copies every one,
    for minutes and gigabytes. Documents with aliases are measured first and refused in one line.
    A key given twice (:func:`repeated_keys`) is refused too, naming it and its lines.
    """
    checked: collections.OrderedDict[str, None] = collections.OrderedDict()  # documents found sound, lately

    def bounded(stream: str) -> Any:
        if stream not in checked:  # jsonargparse loads one config several times (a large one: seconds each)
            check_yaml_document(stream)
            checked[stream] = None
            if len(checked) > 16:
                checked.popitem(last=False)
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


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


LONG_INTEGER = re.compile(rf"[-+]?[0-9]{{{MAX_NUMBER_CHARACTERS + 1},}}")  # as YAML reads a plain integer


def check_config_text(argv: Sequence[str], types_by_name: dict[str, Any] | None = None) -> None:
    """Refuse a config file that is not UTF-8 text or not settings by name, naming it, before jsonargparse reads it.

    jsonargparse decodes ``--config FILE`` (and a group given as a file, ``--model my.yaml``) as
    UTF-8 and lets a ``UnicodeDecodeError`` escape, a traceback without the file's name; an empty
    ``--config`` file or a YAML list gets "Unexpected config:", without it too; a group given a
    number or a list (``model: 5``) an ``AttributeError`` traceback; and a pipe blocks it for
    good. Checked here: every ``--config`` value (a regular file; its groups mappings, by
    ``types_by_name``: the settings' types, as :func:`argument_error_line` takes them); a group's
    file (``--model``, by the same types) no pipe or socket; and (UTF-8 only) every value of a flag
    without a dot that names an existing ``.yaml``/``.yml``/``.json`` file. A YAML syntax error is named with
    the file and its line (jsonargparse's line names neither: "Problems parsing config ... <unicode string>").
    """
    for key, value, _ in flag_values(argv):
        path = Path(value)
        if LONG_INTEGER.fullmatch(value.strip()):  # a float setting given it was an OverflowError traceback
            raise UserError(f"--{key} {value.strip()[:12]}...: a number of {len(value.strip()):,} characters, longer "
                            f"than any setting's (at most {MAX_NUMBER_CHARACTERS}; a float holds 309 digits)")
        if key == "config" and not value.strip():  # jsonargparse: "Unexpected config:"
            raise UserError(f"--config {value!r}: an empty name; give a YAML file of settings (--print_config shows "
                            f"them all)")
        group = key != "config" and is_group(declared_type(types_by_name or {}, key))
        if key == "config" or group:  # files jsonargparse reads
            check_not_a_stream(key, value, devices=key == "config")
        if group:
            check_group_source(key, value)
        if key != "config" and not group and ("." in key or path.suffix.lower() not in CONFIG_SUFFIXES):
            continue
        try:
            if not path.is_file():
                continue  # jsonargparse says what is wrong with a missing one
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise UserError(f"--{key} {value}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at position "
                            f"{err.start}); save the file as UTF-8") from None
        except OSError as err:
            raise UserError(f"--{key} {value}: cannot be read ({err.strerror or one_line(err)})") from None
        if key != "config" and not group:
            continue  # a flag without a dot may also take a file of its own (--ckpt_path cv_results.json)
        try:
            settings = get_loader("yaml")(text)  # the bounded loader below
        except yaml.MarkedYAMLError as err:
            raise UserError(f"--{key} {value}: {yaml_problem(err)}") from None
        except (ValueError, yaml.YAMLError):
            continue
        except UserError as err:  # the bounded loader's refusal, now that the file is known
            raise UserError(f"--{key} {value}: {err}") from None
        if not isinstance(settings, dict):
            held = "nothing" if settings is None else f"a YAML {type(settings).__name__}, not settings by name"
            example = "'model: {lr: 0.001}'" if key == "config" else f"'{GROUP_EXAMPLES.get(key, 'name: value')}'"
            kind = "a config file maps settings" if key == "config" else f"a file of --{key}'s settings maps them"
            raise UserError(f"--{key} {value}: the file holds {held}; {kind} to values, e.g. "
                            f"{example} (--print_config shows them all)")
        nested = [held for held in (settings, *(v for v in settings.values() if isinstance(v, dict)))
                  if held.get("config")] if key == "config" else []
        if nested:  # jsonargparse reads that file too: its refusals named neither file, and echoed a text's contents
            raise UserError(f"--{key} {value}: its config: {escaped(str(nested[0]['config']))[:100]} names another "
                            f"config file, which is not read from within one here; give each file with its own "
                            f"--config, or put the settings in this one")
        for setting, given in groups_given_no_mapping(settings, types_by_name or {}, "" if key == "config" else
                                                      f"{key}."):
            raise UserError(f"--{key} {value}: {refusal_line(setting, declared_type(types_by_name, setting), given)}")


def yaml_problem(err: yaml.MarkedYAMLError) -> str:
    """``not valid YAML: <what> at line L, column C``: PyYAML's error in one line, where it is."""
    mark = err.problem_mark or err.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"not valid YAML: {err.problem or err.context}{where}"


# What one setting of a group looks like, for the refusals of a group's file (--model my.yaml)
GROUP_EXAMPLES = {"model": "lr: 0.001", "data": "batch_size: 64", "trainer": "max_epochs: 5"}


def check_group_source(key: str, value: str) -> None:
    """Refuse ``--group value`` (``--model``, ``--trainer``) that names a folder, or is neither a file nor the
    settings inline (``--model '{lr: 0.001}'``): jsonargparse says only "Unable to load config", twice."""
    wanted = f"give a YAML file of --{key}'s settings, or them inline, e.g. --{key} " \
             f"'{{{GROUP_EXAMPLES.get(key, 'name: value')}}}'"
    if not value.strip():
        raise UserError(f"--{key}: an empty value; {wanted}")
    path = Path(value)
    if path.is_dir():
        raise UserError(f"--{key} {value}: a folder; {wanted}")
    if path.exists():
        return
    try:
        inline = yaml.safe_load(value)
    except yaml.MarkedYAMLError as err:  # jsonargparse's line quotes it twice, "in <unicode string>"
        raise UserError(f"--{key} {value}: {yaml_problem(err)}") from None
    except yaml.YAMLError:
        return  # jsonargparse names the YAML error
    if isinstance(inline, dict):
        glued = next((k for k, v in inline.items() if v is None and isinstance(k, str) and ":" in k), None)
        if glued is not None:  # {lr:abc} is YAML for the key 'lr:abc' with no value
            name, _, given = glued.partition(":")
            raise UserError(f"--{key} {value}: {glued!r} is one key with no value (YAML takes 'name: value', a space "
                            f"after the colon); write --{key} '{{{name}: {given}}}'")
    if inline is None or isinstance(inline, dict):
        return  # the settings inline; a null has its own refusal
    what = "no such file" if isinstance(inline, str) else "neither a file nor settings by name"
    raise UserError(f"--{key} {value}: {what}; {wanted}")


def check_not_a_stream(key: str, value: str, devices: bool = False) -> None:
    """Refuse ``--key value`` naming a pipe or a socket (``devices``: a device too), which a reader would wait on
    for good (``/dev/zero`` would never end)."""
    try:
        mode = Path(value).stat().st_mode
    except (OSError, ValueError):
        return
    if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or (devices and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode))):
        raise UserError(f"--{key} {value}: a pipe, a socket or a device, not a file; give a "
                        f"{'YAML file' if key == 'config' else 'regular file'}")


def groups_given_no_mapping(settings: dict[str, Any], types_by_name: dict[str, Any],
                            prefix: str = "") -> Iterator[tuple[str, str]]:
    """(setting, its value as YAML) for each group of settings (``model``, ``trainer``) that a config gives a number,
    a boolean, a list or any other value instead of a mapping of its settings (a string may name a file of them;
    null is refused on its own)."""
    for name, value in settings.items():
        key = f"{prefix}{name}"
        if not is_group(declared_type(types_by_name, key)):
            continue
        if isinstance(value, dict):
            yield from groups_given_no_mapping(value, types_by_name, f"{key}.")
        elif value is not None and not isinstance(value, str):  # a number, a list, a !!set, a date...
            yield key, yaml_text(value)


def parse(parser: ArgumentParser, argv: list[str] | None, types_of: Callable[[list[str]], dict[str, Any]],
          positionals: bool = False, subcommand: str | None = None,
          check_values: Callable[[Namespace], None] | None = None) -> Namespace:
    """Parse ``argv``; usage errors, and nulls the types refuse (:func:`refuse_nulls`), become a one-line
    :class:`UserError` (exit 2).

    ``types_of(argv)`` gives the types of the settings ``argv`` may set (see :func:`argument_error_line`);
    with ``subcommand``, the key naming the chosen subcommand, whose settings are under its name.
    ``check_values(config)`` refuses what a run would refuse; given, it runs before ``--print_config`` prints.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    check_config_text(argv, types_of(argv))
    printed = without_print_config(argv)
    if printed is not None and check_values is not None:
        check_values(parse(parser, printed, types_of, positionals, subcommand))
    try:
        config = parser.parse_args(argv)
    except ArgumentError as err:
        raise UserError(argument_error_line(err, argv, types_of(argv), positionals)) from None
    refuse_nulls(config[config[subcommand]] if subcommand else config, types_of(argv))
    return config


def run(function: Callable[..., Any], argv: list[str] | None, prog: str, description: str | None = None,
        positional: tuple[str, ...] = (), check_values: Callable[..., None] | None = None) -> Any:
    """Parse ``argv`` against ``function``'s signature and call it with the result.

    ``check_values(**settings)``, given, refuses settings that ``function`` would refuse, before ``--print_config``
    prints them (``function`` itself checks them again when it runs)."""
    parser = command_parser(function, prog, description, positional)

    def settings(config: Namespace) -> dict[str, Any]:
        return {k: v for k, v in config.as_dict().items() if k not in ("config", "__path__")}

    config = parse(parser, argv, lambda _: parameter_types(function), positionals=bool(positional),
                   check_values=(lambda checked: check_values(**settings(checked))) if check_values else None)
    return function(**settings(config))


def run_subcommands(commands: dict[str, Callable[..., Any]], argv: list[str] | None, prog: str,
                    description: str, check_values: Callable[..., None] | None = None) -> Any:
    """``prog COMMAND [flags]``: one parser per function (see :func:`command_parser`), then call the chosen one.

    ``check_values(command, **settings)``, given, refuses a command's settings that a run would refuse, before
    ``--print_config`` prints them (the command itself checks them again when it runs)."""
    parser = ArgumentParser(prog=prog, description=description, exit_on_error=False, default_env=False)
    subcommands = parser.add_subcommands(dest="command")
    for name, function in commands.items():
        subcommands.add_subcommand(name, command_parser(function, f"{prog} {name}"),
                                   help=(function.__doc__ or "").split("\n")[0])
    def types_of(args: list[str]) -> dict[str, Any]:  # the parameters of the command named first
        command = next((commands[a] for a in args if a in commands), None)
        return parameter_types(command) if command else {}

    def settings(config: Namespace) -> tuple[str, dict[str, Any]]:  # the command chosen and its arguments
        name = config.command
        kwargs = {k: v for k, v in config[name].as_dict().items() if k not in ("config", "__path__")}
        instantiated = parser.instantiate_classes(config)[name]  # dataclass settings become their objects
        return name, {k: instantiated[k] for k in kwargs}

    def check(config: Namespace) -> None:
        name, kwargs = settings(config)
        check_values(name, **kwargs)

    name, kwargs = settings(parse(parser, argv, types_of, subcommand="command",
                                  check_values=check if check_values else None))
    return commands[name](**kwargs)
