"""Limits on the documents a user hands in (YAML configs and architecture descriptions, JSON, a checkpoint's recorded
settings), checked before anything walks or copies them.

YAML's aliases let a few hundred bytes stand for billions of values ("billion laughs"), and a pickled checkpoint's
shared references do the same: a loader builds them as shared objects, but whatever then walks, copies or prints
them (jsonargparse, an error message's ``repr``) spends minutes and gigabytes. YAML and JSON also let a mapping give
a key twice, and their loaders keep the last value without a word.
"""

from __future__ import annotations

from typing import Any, Iterator

import yaml

from mnist_common.errors import UserError

MAX_DOCUMENT_VALUES = 100_000  # values a document may expand to; a full config of any command has a few hundred


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


def repeated_keys(node: yaml.Node, path: str = "", seen: set[int] | None = None) -> Iterator[str]:
    """``model.lr twice (lines 2 and 5)`` for each key a mapping of the composed document gives twice.

    YAML forbids it, but PyYAML keeps the last value without a word, so a config that sets
    ``lr`` twice trains with whichever came last. Merge keys (``<<: *defaults``) are YAML's way
    to override on purpose and are not counted. Each node is walked once: an alias is the node of
    its anchor, reached again.
    """
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            yield from repeated_keys(child, f"{path}[{index}]", seen)
    if not isinstance(node, yaml.MappingNode):
        return
    lines: dict[str, int] = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        name = f"{path}.{key.value}" if path else key.value
        line = key.start_mark.line + 1
        if key.value in lines:
            yield f"{name} twice (lines {lines[key.value]} and {line})"
        lines.setdefault(key.value, line)
        yield from repeated_keys(value, name, seen)


def check_yaml_document(stream: str, what: str | None = None) -> None:
    """Refuse a YAML document that expands beyond :data:`MAX_DOCUMENT_VALUES` values through its aliases, or that
    gives a key twice (:func:`repeated_keys`), naming it and its lines; a document that is no YAML is left to the
    loader to say so. ``what``: the file, where the refusal names it (a config's is named by the flag that gave it)."""
    aliased = "*" in stream and "&" in stream  # only a document with anchors and aliases can expand
    if not aliased and stream.count(":") < 2:  # nor repeat a key: that takes a mapping of two keys or more
        return
    try:
        nodes = [node for node in yaml.compose_all(stream, Loader=yaml.SafeLoader) if node is not None]
        count = sum(expanded_values(node) for node in nodes) if aliased else 0
        repeated = [name for node in nodes for name in repeated_keys(node)]
    except RecursionError:  # nested too deep to walk: refused where aliases could expand it
        count, repeated = (MAX_DOCUMENT_VALUES + 1 if aliased else 0), []
    except yaml.YAMLError:
        count, repeated = 0, []  # not YAML: the loader itself says so
    if count > MAX_DOCUMENT_VALUES:
        raise UserError(f"{what or 'a YAML config or value'} expands to {count:,} values through its aliases, more "
                        f"than the limit of {MAX_DOCUMENT_VALUES:,} (nested aliases, a \"billion laughs\"?)")
    if repeated:
        raise UserError(f"{what + ': ' if what else ''}a YAML mapping gives {repeated[0]}; keep one (YAML's loader "
                        f"would silently take the last)")


def unique_json_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' ``object_pairs_hook``: a JSON object that gives a key twice is refused (``json`` keeps the
    last)."""
    keys = [key for key, _ in pairs]
    repeated = next((key for key in keys if keys.count(key) > 1), None)
    if repeated is not None:
        raise ValueError(f"an object gives {repeated!r} twice; keep one (JSON's loader would silently take the last)")
    return dict(pairs)


def count_values(value: Any, limit: int = MAX_DOCUMENT_VALUES) -> int:
    """How many values ``value`` holds (mappings, lists and tuples walked, shared references counted each time they
    are reached, as a walk or a copy reaches them), counting no further than ``limit`` + 1."""
    count, pending = 0, [value]
    while pending and count <= limit:
        item = pending.pop()
        count += 1
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return count
