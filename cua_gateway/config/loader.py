"""Load gateway.yml: YAML with positions → `${VAR}` interpolation → models → secrets.

Every problem is reported with file:line:column and its key path, all at once; a server that lacks
a secret or an environment variable is disabled with the reason instead of failing the load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from cua_gateway.config import _yaml, problems
from cua_gateway.config.interpolation import Environment, Unresolved, interpolate
from cua_gateway.config.models import GatewayConfig
from cua_gateway.config.secrets import resolve_secrets
from cua_gateway.config.server import ServerConfig
from cua_gateway.errors import ConfigError, ConfigFileError, ConfigProblem


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration with what the loader learnt about each server."""

    path: Path
    config: GatewayConfig
    disabled: Mapping[str, str]
    secrets: Mapping[str, Mapping[str, SecretStr]]

    @property
    def enabled(self) -> dict[str, ServerConfig]:
        return {n: s for n, s in self.config.servers.items() if n not in self.disabled}


def load_config(path: Path, environ: Mapping[str, str]) -> LoadedConfig:
    """Read and validate the file at `path`; `environ` supplies `${VAR}` values and secrets."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigFileError(str(path), e.strerror or str(e)) from e
    return parse_config(text, path, environ)


def parse_config(text: str, path: Path, environ: Mapping[str, str]) -> LoadedConfig:
    name = str(path)
    try:
        data, positions = _yaml.load(text)
    except _yaml.YamlSyntaxError as e:
        raise ConfigError([ConfigProblem(name, e.line, e.column, "", e.message)]) from e
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([ConfigProblem(name, 1, 1, "", "the file must be a mapping of sections")])

    env = Environment(environ)
    interpolation = _Interpolation(env, positions, name)
    data = interpolation.apply(data)
    if interpolation.found:
        raise ConfigError(interpolation.found)
    config = _validate(data, path, positions, interpolation.blanked)
    disabled = interpolation.disabled

    secrets: dict[str, Mapping[str, SecretStr]] = {}
    for server_name, server in config.servers.items():
        if not server.enabled:
            disabled.setdefault(server_name, "enabled: false")
        resolved = resolve_secrets(server, env)
        secrets[server_name] = resolved.values
        if resolved.missing_reason:
            disabled.setdefault(server_name, resolved.missing_reason)
    return LoadedConfig(path, config, disabled, secrets)


def _validate(
    data: dict[str, Any],
    path: Path,
    positions: _yaml.Positions,
    blanked: list[_yaml.Path],
) -> GatewayConfig:
    """Validate; a server whose only errors stem from a missing variable is left out, not fatal."""
    context = {"base_dir": path.parent.resolve()}
    found: list[ConfigProblem] = []
    try:
        return GatewayConfig.model_validate(data, context=context)
    except ValidationError as e:
        left_out: set[str | int] = set()
        for error in e.errors():
            where = problems.location(error)
            if any(where[: len(b)] == b for b in blanked):
                left_out.add(where[1])
            else:
                found.append(_problem(error, positions, str(path)))
    if found:
        raise ConfigError(found)
    servers = {k: v for k, v in data.get("servers", {}).items() if k not in left_out}
    return GatewayConfig.model_validate({**data, "servers": servers}, context=context)


@dataclass(slots=True)
class _Interpolation:
    """One pass of `${VAR}` replacement over the parsed file, remembering what could not be done."""

    env: Environment
    positions: _yaml.Positions
    file: str
    found: list[ConfigProblem] = field(default_factory=list)
    disabled: dict[str, str] = field(default_factory=dict)
    blanked: list[_yaml.Path] = field(default_factory=list)

    def apply(self, node: Any, path: _yaml.Path = ()) -> Any:
        if isinstance(node, dict):
            return {k: self.apply(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.apply(v, (*path, i)) for i, v in enumerate(node)]
        if not isinstance(node, str):
            return node
        try:
            return interpolate(node, self.env)
        except Unresolved as e:
            line, column = self.positions.of_value(path)
            if len(path) > 2 and path[0] == "servers" and e.variable is not None:
                # the server cannot run, but the gateway and the other servers can
                self.disabled.setdefault(str(path[1]), f"{e} ({self.file}:{line}:{column})")
                self.blanked.append(path)
            else:
                self.found.append(
                    ConfigProblem(self.file, line, column, problems.dotted(path), str(e))
                )
            return node


def _problem(error: Any, positions: _yaml.Positions, file: str) -> ConfigProblem:
    path = problems.location(error)
    if problems.points_at_key(error):
        line, column = positions.of_key(path)
    elif error["type"] == "missing":
        line, column = positions.of_key(path[:-1])
    else:
        line, column = positions.of_value(path)
    return ConfigProblem(
        file, line, column, problems.dotted(path), problems.message(error, GatewayConfig)
    )
