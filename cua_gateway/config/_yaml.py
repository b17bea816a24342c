"""YAML reading that remembers where every key and value stands, for error messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

Path = tuple[str | int, ...]
Position = tuple[int, int]  # 1-based line and column


class YamlSyntaxError(Exception):
    """The text is not YAML; `line` and `column` are 1-based."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(slots=True)
class Positions:
    """Where each key path's key and value stand in the file."""

    keys: dict[Path, Position] = field(default_factory=dict)
    values: dict[Path, Position] = field(default_factory=dict)

    def of_key(self, path: Path) -> Position:
        """The key's own position; for a list item or the root, the value's."""
        for prefix in _prefixes(path):
            if prefix in self.keys:
                return self.keys[prefix]
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)

    def of_value(self, path: Path) -> Position:
        """The value's position, or that of the nearest enclosing node the file has."""
        for prefix in _prefixes(path):
            if prefix in self.values:
                return self.values[prefix]
        return (1, 1)


def _prefixes(path: Path) -> Iterator[Path]:
    for end in range(len(path), -1, -1):
        yield path[:end]


def load(text: str) -> tuple[Any, Positions]:
    """Parse YAML `text` into plain dicts, lists and scalars, with their positions."""
    try:
        document = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = " ".join(str(part) for part in (e.context, e.problem) if part)
        raise YamlSyntaxError(message.strip() or "not valid YAML", line, column) from e
    positions = Positions()
    positions.values[()] = (1, 1)
    return _plain(document, (), positions), positions


def _plain(node: Any, path: Path, positions: Positions) -> Any:
    if isinstance(node, CommentedMap):
        result: dict[Any, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            key_line, key_col = node.lc.key(key)
            value_line, value_col = node.lc.value(key)
            positions.keys[child] = (key_line + 1, key_col + 1)
            positions.values[child] = (value_line + 1, value_col + 1)
            result[str(key)] = _plain(value, child, positions)
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, value in enumerate(node):
            line, col = node.lc.item(index)
            positions.values[(*path, index)] = (line + 1, col + 1)
            items.append(_plain(value, (*path, index), positions))
        return items
    if isinstance(node, str):
        return str(node)  # drop ruamel's string subclasses
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node
