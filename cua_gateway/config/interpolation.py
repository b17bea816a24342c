"""`${VAR}`, `${VAR:-default}` and `${VAR:?message}` in gateway.yml string values.

A variable is read from the environment, or else from the file that `VAR_FILE` names (the Docker
and Kubernetes convention for secrets). `$${` writes a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}|\$\{(?P<bad>[^}]*)\}?"
)


class Unresolved(Exception):
    """A reference could not be resolved; `variable` is None when the reference is malformed."""

    def __init__(self, message: str, variable: str | None) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True, slots=True)
class Environment:
    """Variables the configuration may use: the process environment, and `VAR_FILE` files."""

    variables: Mapping[str, str]

    def lookup(self, name: str) -> str | None:
        """The value of `name`, or None when neither `name` nor `name_FILE` is set."""
        if name in self.variables:
            return self.variables[name]
        file_name = self.variables.get(f"{name}_FILE")
        if file_name is None:
            return None
        try:
            return Path(file_name).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise Unresolved(f"{name}_FILE={file_name}: {e.strerror or e}", name) from e


def interpolate(text: str, env: Environment) -> str:
    """Replace every reference in `text`; raises `Unresolved` for the first that cannot be."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        if match["bad"] is not None:
            raise Unresolved(
                f"malformed reference {match.group(0)!r}: write ${{NAME}} or ${{NAME:-default}}",
                None,
            )
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.lookup(name)
        if value is not None and (value or op is None):
            return value
        if op == ":-":
            return arg
        if op == ":?":
            raise Unresolved(f"${{{name}}} is required: {arg or 'not set'}", name)
        raise Unresolved(f"${{{name}}} is not set (nor {name}_FILE)", name)

    return _REFERENCE.sub(replace, text)
