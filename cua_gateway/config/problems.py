"""Turn pydantic's validation errors into messages a person can act on; suggest keys for typos."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from cua_gateway.config._yaml import Path

_SHOWN_INPUT = 40  # longer inputs are not echoed back
_PATTERNS = {  # regular expressions of the models, in words
    r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$": "a name of letters, digits, '_' and '-' (at most 32)",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "an environment variable name",
    r"^https?://": "an http:// or https:// URL",
    r"^/": "an absolute path starting with /",
}


def dotted(path: Path) -> str:
    """`("servers", "github", "volumes", 0)` is `servers.github.volumes[0]`."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def location(error: ErrorDetails) -> Path:
    """The error's key path in the file, without pydantic's steps (`[key]`, validator tags)."""
    return tuple(
        part
        for part in error["loc"]
        if isinstance(part, int) or (part != "[key]" and not part.startswith("function-"))
    )


def points_at_key(error: ErrorDetails) -> bool:
    return error["type"] == "extra_forbidden" or "[key]" in error["loc"]


def message(error: ErrorDetails, root: type[BaseModel]) -> str:
    """What is wrong, in the words of gateway.yml."""
    kind, ctx, given = error["type"], error.get("ctx", {}), _shown(error.get("input"))
    if kind == "extra_forbidden":
        path = location(error)
        hint = suggestion(str(path[-1]), _fields_at(root, path[:-1]))
        return f"unknown key{hint}"
    bounds = {
        "greater_than_equal": (">=", "ge"),
        "greater_than": (">", "gt"),
        "less_than_equal": ("<=", "le"),
        "less_than": ("<", "lt"),
    }
    if kind in bounds:
        op, key = bounds[kind]
        return f"must be {op} {ctx.get(key)} (got {given})"
    simple = {
        "missing": "is required",
        "int_parsing": f"must be a whole number (got {given})",
        "int_type": f"must be a whole number (got {given})",
        "int_from_float": f"must be a whole number (got {given})",
        "float_parsing": f"must be a number (got {given})",
        "bool_parsing": f"must be true or false (got {given})",
        "bool_type": f"must be true or false (got {given})",
        "string_type": f"must be a string (got {given})",
        "dict_type": f"must be a mapping of keys to values (got {given})",
        "model_type": f"must be a mapping of keys to values (got {given})",
        "list_type": f"must be a list (got {given})",
        "string_too_short": "must not be empty",
    }
    if kind in simple:
        return simple[kind]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')} (got {given})"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        return f"must be {_PATTERNS.get(pattern, 'text matching ' + pattern)} (got {given})"
    text = str(error["msg"])
    return text.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def suggestion(word: str, choices: list[str]) -> str:
    """`" 'replcas'; did you mean 'replicas'?"`, or just the quoted word when nothing is close."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f" {word!r}; did you mean {close[0]!r}?"
    return f" {word!r}; valid keys: {', '.join(sorted(choices))}" if choices else f" {word!r}"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_INPUT else text[: _SHOWN_INPUT - 3] + "..."


def _fields_at(root: type[BaseModel], path: Path) -> list[str]:
    """The keys valid in the mapping at `path`, found by walking the models' annotations."""
    current: Any = root
    for part in path:
        model = _model_in(current)
        if model is None:
            current = _element(current)
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        current = field.annotation
    model = _model_in(current)
    return list(model.model_fields) if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _element(annotation: Any) -> Any:
    """The value type of a dict or list annotation (the type one step deeper in the file)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    args = get_args(annotation)
    return args[-1] if args else None
