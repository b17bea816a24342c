"""The `servers:` section of gateway.yml: how to start one MCP server and how to treat it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from cua_gateway.config._types import Bytes, Cores, Duration, StrictModel, resolve_path

Runtime = Literal["docker", "process", "remote"]
Transport = Literal["stdio", "streamable-http", "sse"]
PrefixMode = Literal["always", "conditional", "never"]

_ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _shorthand(key: str) -> Any:
    """Let a mapping be written as a string: `build: servers/x` is `build: {context: servers/x}`."""

    def expand(value: object) -> object:
        return {key: value} if isinstance(value, str) else value

    return expand


class BuildSpec(StrictModel):
    """Build the server's image from a directory of this repository (when the image is missing)."""

    context: str
    dockerfile: str = "Dockerfile"
    args: dict[str, str] = Field(default_factory=dict)

    @field_validator("context")
    @classmethod
    def _context_exists(cls, value: str, info: ValidationInfo) -> str:
        path = resolve_path(value, info)
        if info.context is not None and not path.is_dir():
            raise ValueError(f"build context {str(path)!r} is not a directory")
        return str(path)


class SecretRef(StrictModel):
    """A secret given to the server as an environment variable, read from the gateway's environment
    (`NAME`) or the file named by `NAME_FILE`. A missing required secret disables the server."""

    name: Annotated[str, Field(pattern=_ENV_NAME)]
    env: Annotated[str | None, Field(pattern=_ENV_NAME)] = None
    required: bool = True

    @property
    def source(self) -> str:
        return self.env or self.name


class Resources(StrictModel):
    """Limits for each replica's container (Kubernetes notation)."""

    cpu: Cores | None = None
    memory: Bytes | None = None
    pids: Annotated[int | None, Field(ge=8)] = 256

    @field_validator("memory")
    @classmethod
    def _docker_minimum(cls, value: int | None) -> int | None:
        if value is not None and value < 6 * 2**20:
            raise ValueError(f"must be at least 6Mi, Docker's minimum (got {value} bytes)")
        return value


class Volume(StrictModel):
    """A mount into the container, read-only unless declared writable."""

    source: str
    target: Annotated[str, Field(pattern=r"^/")]
    read_only: bool = True

    @field_validator("source")
    @classmethod
    def _host_path(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith((".", "/", "~")):  # a host path; anything else names a Docker volume
            return str(resolve_path(value, info))
        return value


def _parse_volume(value: object) -> object:
    """`"./data:/data:rw"` is `{source: ./data, target: /data, read_only: false}`."""
    if not isinstance(value, str):
        return value
    parts = value.split(":")
    if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ValueError(f'must be "SOURCE:TARGET", "SOURCE:TARGET:ro" or ":rw" (got {value!r})')
    return {"source": parts[0], "target": parts[1], "read_only": parts[2:] != ["rw"]}


class Prefix(StrictModel):
    """How the server's tools, prompts and resource URIs are namespaced in the aggregate catalog."""

    name: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")] = None
    mode: PrefixMode = "conditional"


class HealthCheck(StrictModel):
    """MCP ping health checks of each replica."""

    interval: Duration | None = None
    timeout: Duration = 5.0
    failures: Annotated[int, Field(ge=1)] = 3
    start_timeout: Duration = 60.0


class RestartPolicy(StrictModel):
    """What to do when a replica exits or turns unhealthy."""

    policy: Literal["always", "on-failure", "never"] = "on-failure"
    backoff_initial: Duration = 1.0
    backoff_max: Duration = 60.0
    circuit_failures: Annotated[int, Field(ge=1)] = 5
    circuit_reset: Duration = 120.0


class Lifetime(StrictModel):
    """`persistent`: start with the gateway; `on_demand`: start at first use, stop when idle."""

    mode: Literal["persistent", "on_demand"] = "persistent"
    idle_timeout: Duration = 600.0


def _shorthand_field(key: str, model: type[StrictModel]) -> Any:
    return BeforeValidator(_shorthand(key), json_schema_input_type=str | model)


class ServerConfig(StrictModel):
    """One MCP server: exactly one of `image`/`build` (a container), `command` (a local process) or
    `url` (a remote server)."""

    image: str | None = None
    build: Annotated[BuildSpec | None, _shorthand_field("context", BuildSpec)] = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    cwd: str | None = None
    url: Annotated[str | None, Field(pattern=r"^https?://")] = None
    transport: Transport | None = None
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    path: Annotated[str, Field(pattern=r"^/")] = "/mcp"
    headers: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    replicas: Annotated[int, Field(ge=1, le=64)] = 1
    weights: list[Annotated[int, Field(ge=1)]] | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    secrets: list[Annotated[SecretRef, _shorthand_field("name", SecretRef)]] = Field(
        default_factory=list
    )
    resources: Resources = Field(default_factory=Resources)
    capabilities: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")]] | None = None
    network: Annotated[str, Field(min_length=1)] = "none"
    volumes: list[
        Annotated[Volume, BeforeValidator(_parse_volume, json_schema_input_type=str | Volume)]
    ] = Field(default_factory=list)
    read_only: bool = False
    user: str | None = None
    lifetime: Annotated[Lifetime, _shorthand_field("mode", Lifetime)] = Field(
        default_factory=Lifetime
    )
    prefix: Annotated[Prefix, _shorthand_field("name", Prefix)] = Field(default_factory=Prefix)
    healthcheck: HealthCheck = Field(default_factory=HealthCheck)
    restart: Annotated[RestartPolicy, _shorthand_field("policy", RestartPolicy)] = Field(
        default_factory=RestartPolicy
    )
    timeout: Duration | None = None
    retries: Annotated[int | None, Field(ge=0, le=10)] = None
    idempotent_tools: list[str] = Field(default_factory=list)

    @property
    def runtime(self) -> Runtime:
        if self.url is not None:
            return "remote"
        if self.command is not None:
            return "process"
        return "docker"

    @property
    def effective_transport(self) -> Transport:
        if self.transport is not None:
            return self.transport
        return "streamable-http" if self.runtime == "remote" else "stdio"

    @model_validator(mode="after")
    def _one_way_to_start(self) -> ServerConfig:
        ways = [k for k in ("image", "build", "command", "url") if getattr(self, k) is not None]
        if "image" in ways and "build" in ways:
            ways.remove("image")  # `image` then names the tag that `build` produces
        if len(ways) != 1:
            given = " and ".join(ways) if ways else "none of them"
            raise ValueError(f"needs exactly one of image/build, command or url (got {given})")
        self._check_runtime_fields()
        if self.weights is not None and len(self.weights) != self.replicas:
            raise ValueError(
                f"weights needs one entry per replica ({self.replicas}), got {len(self.weights)}"
            )
        return self

    def _check_runtime_fields(self) -> None:
        runtime = self.runtime
        only = {
            "docker": ("volumes", "network", "read_only", "user", "port", "resources"),
            "remote": ("headers",),
            "process": ("cwd",),
        }
        for owner, keys in only.items():
            misplaced = [k for k in keys if k in self.model_fields_set] if owner != runtime else []
            if misplaced:
                raise ValueError(f"{', '.join(misplaced)} applies only to {owner} servers")
        if runtime != "remote" and self.transport == "sse":
            raise ValueError(
                "transport sse is for url servers; containers use stdio or streamable-http"
            )
        if runtime == "remote" and self.transport == "stdio":
            raise ValueError("a url server speaks streamable-http or sse, not stdio")
        if runtime == "docker" and self.transport == "streamable-http" and self.port is None:
            raise ValueError("a container serving streamable-http needs the port it listens on")
