"""Resolve each server's declared secrets from the environment or from `NAME_FILE` files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import SecretStr

from cua_gateway.config.interpolation import Environment, Unresolved
from cua_gateway.config.server import ServerConfig


@dataclass(frozen=True, slots=True)
class ResolvedSecrets:
    """The values found, and why the server cannot run when a required one is missing."""

    values: Mapping[str, SecretStr]
    missing_reason: str | None


def resolve_secrets(server: ServerConfig, env: Environment) -> ResolvedSecrets:
    values: dict[str, SecretStr] = {}
    missing: list[str] = []
    for ref in server.secrets:
        try:
            value = env.lookup(ref.source)
        except Unresolved as e:
            return ResolvedSecrets(values, f"secret {ref.name}: {e}")
        if value:
            values[ref.name] = SecretStr(value)
        elif ref.required:
            missing.append(ref.source)
    if missing:
        names = ", ".join(f"{m} (or {m}_FILE)" for m in missing)
        return ResolvedSecrets(values, f"missing secret {names}")
    return ResolvedSecrets(values, None)
