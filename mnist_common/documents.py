"""Limits on the documents a user hands in (YAML configs and architecture descriptions, JSON, a checkpoint's recorded
settings), checked before anything walks or copies them.

YAML's aliases let a few hundred bytes stand for billions of values ("billion laughs"), and a pickled checkpoint's
shared references do the same: a loader builds them as shared objects, but whatever then walks, copies or prints
them (jsonargparse, an error message's ``repr``) spends minutes and gigabytes. YAML and JSON also let a mapping give
a key twice, and their loaders keep the last value without a word.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Iterator

import yaml

from mnist_common.errors import UserError

MAX_DOCUMENT_VALUES = 100_000  # values a document may expand to; a full config of any command has a few hundred
# How deep a document's lists and mappings may nest: a config is a few levels deep, and jsonargparse's walk of one
# 500 deep ran out of Python's stack (a RecursionError traceback of 3,000 lines)
MAX_DOCUMENT_DEPTH = 64
# keys one mapping may give: a command's largest group (the Trainer's) has some fifty settings and a layer a dozen;
# 49,000 unknown keys kept jsonargparse busy 22 s before its one line (hostile round 9)
MAX_MAPPING_KEYS = 1_000
MAX_NUMBER_CHARACTERS = 300  # a setting's number is a few dozen characters; a float has at most 309 digits
# Plain scalars YAML 1.2 (and JSON, and a reader's eye) take as the same value PyYAML's YAML 1.1 does; other forms
# PyYAML resolves to a number or a truth value mean something else in 1.2 (``010`` is 8, ``1:6`` is 66, ``off`` is
# false) and are refused rather than read silently so
YAML12_FORMS = {
    "tag:yaml.org,2002:int": re.compile(r"[-+]?(0|[1-9][0-9]*|0x[0-9a-fA-F]+)"),
    "tag:yaml.org,2002:float": re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)"
                                          r"|\.(nan|NaN|NAN)"),
    "tag:yaml.org,2002:bool": re.compile(r"true|True|TRUE|false|False|FALSE"),
}


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


def repeated_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None,
                  lines: dict[str, int] | None = None) -> Iterator[str]:
    """``model.lr twice (lines 2 and 5)`` for each setting the composed document gives twice.

    YAML forbids a mapping to give a key twice, but PyYAML keeps the last value without a word,
    so a config that sets ``lr`` twice trains with whichever came last; so does jsonargparse with
    a setting given nested (``model: {lr: ..}``) and dotted (``model.lr: ..``) in one document:
    settings are compared by their dotted names. Merge keys (``<<: *defaults``) are YAML's way to
    override on purpose and are not counted. Each node is walked once: an alias is the node of its
    anchor, reached again.
    """
    seen = set() if seen is None else seen
    lines = {} if lines is None else lines
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            yield from repeated_keys(child, f"{path}[{index}]", seen, lines)
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        name = f"{path}.{key.value}" if path else key.value
        line = key.start_mark.line + 1
        if name in lines:
            yield f"{name} twice (lines {lines[name]} and {line})"
        lines.setdefault(name, line)
        yield from repeated_keys(value, name, seen, lines)


def scalars(node: yaml.Node) -> Iterator[yaml.ScalarNode]:
    """The composed document's scalars (keys and values), each node once, walked without recursion."""
    pending, seen = [node], set()
    while pending:
        node = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            yield node
        elif isinstance(node, yaml.MappingNode):
            pending.extend(child for pair in reversed(node.value) for child in reversed(pair))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(reversed(node.value))


def yaml11_readings(node: yaml.Node) -> Iterator[str]:
    """``'010' (line 3) is 8 to YAML 1.1`` for each plain scalar of the composed document that PyYAML reads as a
    number or a truth value in a form YAML 1.2 does not (:data:`YAML12_FORMS`)."""
    for scalar in scalars(node):
        form = YAML12_FORMS.get(scalar.tag)
        if form is not None and scalar.style is None and not form.fullmatch(scalar.value):
            read = yaml.safe_load(scalar.value)
            yield f"{scalar.value!r} (line {scalar.start_mark.line + 1}) is {read!r} to YAML 1.1"


def long_numbers(node: yaml.Node) -> Iterator[str]:
    """``a number of 5,001 characters (line 2)`` for each plain number longer than :data:`MAX_NUMBER_CHARACTERS`:
    Python refuses to read an integer of more than 4,300 digits (a ValueError inside the config's reader, a
    traceback), and no setting needs more than a few dozen."""
    for scalar in scalars(node):
        if scalar.tag in YAML12_FORMS and scalar.style is None and len(scalar.value) > MAX_NUMBER_CHARACTERS:
            yield f"a number of {len(scalar.value):,} characters (line {scalar.start_mark.line + 1})"


def explicit_tags(stream: str) -> Iterator[str]:
    """``'!!int' (line 2)`` for each tag a YAML document gives a value: a config has no use for them, and PyYAML
    reads a tagged value in YAML 1.1 (``!!int "0100"`` is 64)."""
    for token in yaml.scan(stream, Loader=yaml.SafeLoader):
        if isinstance(token, yaml.TagToken):
            handle, suffix = token.value
            yield f"{(handle or '') + suffix!r} (line {token.start_mark.line + 1})"


def nesting_depth(node: yaml.Node) -> int:
    """How deep ``node``'s lists and mappings nest (a scalar: 0), walked without recursion, each node once."""
    deepest, pending, seen = 0, [(node, 0)], set()
    while pending:
        node, depth = pending.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue
        seen.add(id(node))
        deepest = max(deepest, depth + 1)
        children = [child for pair in node.value for child in pair] if isinstance(node, yaml.MappingNode) else \
            node.value
        pending.extend((child, depth + 1) for child in children)
    return deepest


def widest_mapping(node: yaml.Node) -> int:
    """The most keys one of ``node``'s mappings gives, walked without recursion, each node once."""
    widest, pending, seen = 0, [node], set()
    while pending:
        node = pending.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            widest = max(widest, len(node.value))
            pending.extend(child for pair in node.value for child in pair)
        else:
            pending.extend(node.value)
    return widest


def check_yaml_document(stream: str, what: str | None = None) -> None:
    """Refuse, naming what and where: a document that expands beyond :data:`MAX_DOCUMENT_VALUES`
    values through its aliases, nests deeper than :data:`MAX_DOCUMENT_DEPTH`, gives a setting
    twice (:func:`repeated_keys`), tags a value (:func:`explicit_tags`) or holds a value that
    YAML 1.1 reads otherwise than YAML 1.2 (:func:`yaml11_readings`); a document that is no YAML
    is left to the loader to say so. ``what``: the file, where the refusal names it (a config's
    is named by the flag that gave it)."""
    aliased = "*" in stream and "&" in stream  # only a document with anchors and aliases can expand
    try:
        tags = list(explicit_tags(stream)) if "!" in stream else []
        nodes = [node for node in yaml.compose_all(stream, Loader=yaml.SafeLoader) if node is not None]
        depth = max((nesting_depth(node) for node in nodes), default=0)
        if depth > MAX_DOCUMENT_DEPTH:
            raise UserError(f"{what or 'a YAML config or value'} nests lists or mappings {depth} deep, more than "
                            f"{MAX_DOCUMENT_DEPTH} (a config is a few levels deep)")
        keys = max((widest_mapping(node) for node in nodes), default=0)
        if keys > MAX_MAPPING_KEYS:
            raise UserError(f"{what or 'a YAML config or value'} gives {keys:,} keys in one mapping, more than "
                            f"{MAX_MAPPING_KEYS:,} (a group of settings has a few dozen)")
        count = sum(expanded_values(node) for node in nodes) if aliased else 0
        repeated = [name for node in nodes for name in repeated_keys(node)]
        readings = [] if count > MAX_DOCUMENT_VALUES else [text for node in nodes for text in yaml11_readings(node)]
        long = [text for node in nodes for text in long_numbers(node)]
    except RecursionError:  # nested too deep for the composer to walk
        raise UserError(f"{what or 'a YAML config or value'} nests lists or mappings more than "
                        f"{MAX_DOCUMENT_DEPTH} deep (a config is a few levels deep)") from None
    except yaml.YAMLError:
        tags, count, repeated, readings, long = [], 0, [], [], []  # not YAML: the loader itself says so
    if tags:
        raise UserError(f"{what + ': ' if what else ''}the YAML tag {tags[0]} is not taken here; write the value "
                        f"plainly, or quote it as text")
    if count > MAX_DOCUMENT_VALUES:
        raise UserError(f"{what or 'a YAML config or value'} expands to {count:,} values through its aliases, more "
                        f"than the limit of {MAX_DOCUMENT_VALUES:,} (nested aliases, a \"billion laughs\"?)")
    if repeated:
        raise UserError(f"{what + ': ' if what else ''}a YAML mapping gives {repeated[0]}; keep one (YAML's loader "
                        f"would silently take the last)")
    if long:
        raise UserError(f"{what + ': ' if what else ''}{long[0]}, longer than any setting's (at most "
                        f"{MAX_NUMBER_CHARACTERS:,})")
    if readings:
        raise UserError(f"{what + ': ' if what else ''}{readings[0]} (this loader's), not to YAML 1.2 or a reader; "
                        f"write the value plainly (a decimal number, true or false), or quote it as text")


def unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: a JSON object that gives a key twice is refused (``json`` keeps the
    last)."""
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise ValueError(f"an object gives {repeated!r} twice; keep one (JSON's loader would silently take the last)")
    return dict(pairs)


def walked_values(value: Any, limit: int = MAX_DOCUMENT_VALUES) -> Iterator[Any]:
    """The values ``value`` holds, itself first (mappings' keys and values, lists and tuples walked, shared references
    reached each time they are reached, as a walk or a copy reaches them), no more than ``limit`` + 1 of them."""
    count, pending = 0, [value]
    while pending and count <= limit:
        item = pending.pop()
        count += 1
        yield item
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)


def count_values(value: Any, limit: int = MAX_DOCUMENT_VALUES) -> int:
    """How many values ``value`` holds (:func:`walked_values`), counting no further than ``limit`` + 1."""
    return sum(1 for _ in walked_values(value, limit))


def beyond_float_range(value: Any) -> bool:
    """Whether ``value`` is a whole number no float holds (10**400, which JSON, YAML and a checkpoint read as an
    int): ``float()`` and math's tests of it raise OverflowError."""
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > sys.float_info.max


def beyond_floats(value: Any, limit: int = MAX_DOCUMENT_VALUES) -> bool:
    """Whether ``value`` (a loaded document) holds a number :func:`beyond_float_range`: a setting read as a float from
    it was an OverflowError traceback."""
    return any(beyond_float_range(item) for item in walked_values(value, limit))


def value_depth(value: Any, limit: int = MAX_DOCUMENT_DEPTH) -> int:
    """How deep ``value``'s mappings, lists and tuples nest (a scalar: 0), walked without recursion and no deeper
    than ``limit`` + 1: what a loaded document (a checkpoint's recorded settings) is checked against before a walk
    that recurses (jsonargparse's) meets it."""
    deepest, pending = 0, [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if not isinstance(item, (dict, list, tuple)) or depth > limit:
            continue
        deepest = max(deepest, depth + 1)
        children = list(item.values()) if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children)
    return deepest
