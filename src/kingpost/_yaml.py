"""YAML reading that refuses what PyYAML silently accepts: duplicate keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kingpost.errors import ConfigError

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKey(Exception):
    def __init__(self, key: str, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


def _check_duplicates(node: yaml.Node, prefix: str = "", visited: set[int] | None = None) -> None:
    """Refuse a mapping that names a key twice, reporting the dotted key (``runtime.workers``)."""
    visited = set() if visited is None else visited
    if id(node) in visited:  # an alias of a node already checked (anchors may even be recursive)
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # a complex key (never in a config) cannot repeat one written plainly
            key = (key_node.tag, key_node.value)
            dotted = f"{prefix}{key_node.value}"
            line = key_node.start_mark.line + 1
            if key in seen:
                raise _DuplicateKey(dotted, seen[key], line)
            seen[key] = line
            _check_duplicates(value_node, dotted + ".", visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicates(item, f"{prefix.rstrip('.')}[{i}].", visited)


def _load(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicates(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    """Parse ``path``; every problem is one ConfigError sentence naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "", "a readable file", f"<{exc.strerror or exc}>") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", "UTF-8 text", "<undecodable bytes>") from exc
    try:
        return _load(text)
    except _DuplicateKey as exc:
        raise ConfigError(
            path, exc.key, "each key once", f"<the key twice, on lines {exc.first} and {exc.second}>"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(path, "", "valid YAML", f"<a syntax error{where}: {problem}>") from None
