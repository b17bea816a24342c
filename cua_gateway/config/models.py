"""The whole of gateway.yml as pydantic models; `GatewayConfig` is the root."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from cua_gateway.config._types import Duration, Name, StrictModel, resolve_path
from cua_gateway.config.server import ServerConfig

SUPPORTED_VERSIONS = ("1", "1.0")


class RoutingConfig(StrictModel):
    """How calls are spread across a server's healthy replicas."""

    strategy: Literal["round_robin", "least_connections", "weighted"] = "round_robin"
    health_check_path: Annotated[str, Field(pattern=r"^/")] = "/healthz"
    timeout: Annotated[Duration, Field(gt=0)] = 60.0
    retries: Annotated[int, Field(ge=0, le=10)] = 2


class GatewaySection(StrictModel):
    """The gateway process itself."""

    version: str = "1"
    name: Name = "cua-gateway"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    health_check_interval: Annotated[Duration, Field(gt=0)] = 30.0
    max_concurrent_connections: Annotated[int, Field(ge=1)] = 100
    shutdown_timeout: Annotated[Duration, Field(gt=0)] = 10.0
    state_dir: str = Field(default="./.cua/state", validate_default=True)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)

    @field_validator("state_dir")
    @classmethod
    def _state_relative_to_file(cls, value: str, info: ValidationInfo) -> str:
        return str(resolve_path(value, info))

    @field_validator("version", mode="before")
    @classmethod
    def _supported(cls, value: object) -> str:
        text = str(value)
        if text not in SUPPORTED_VERSIONS:
            raise ValueError(f"must be one of {', '.join(SUPPORTED_VERSIONS)} (got {text!r})")
        return text


class CacheTTL(StrictModel):
    session: Duration = 3600.0
    artifact: Duration = 86400.0
    plan: Duration = 300.0
    tool_result: Duration = 300.0


class CachePrefixes(StrictModel):
    session: str = "sess:"
    artifact: str = "artf:"
    vector: str = "vec:"
    graph: str = "graph:"
    plan: str = "plan:"
    tool_result: str = "call:"


class CacheConfig(StrictModel):
    """Where sessions, artifacts, plans and cached tool results live."""

    backend: Literal["memory", "redis"] = "memory"
    url: Annotated[str | None, Field(pattern=r"^(redis|rediss|unix)://")] = None
    max_entries: Annotated[int, Field(ge=1)] = 10_000
    ttl: CacheTTL = Field(default_factory=CacheTTL)
    prefixes: CachePrefixes = Field(default_factory=CachePrefixes)

    @model_validator(mode="after")
    def _redis_needs_url(self) -> CacheConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("backend redis needs url, e.g. redis://127.0.0.1:6379/0")
        return self


class QdrantConfig(StrictModel):
    """Vector memory: an embedded local store at `path`, or a Qdrant server at `url`."""

    path: str | None = Field(default="./.cua/memory/qdrant", validate_default=True)
    url: Annotated[str | None, Field(pattern=r"^https?://")] = None
    api_key: SecretStr | None = None
    collection: Name = "cua_context"

    @field_validator("path")
    @classmethod
    def _relative_to_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return str(resolve_path(value, info)) if value else None

    @model_validator(mode="after")
    def _path_or_url(self) -> QdrantConfig:
        if self.url and "path" in self.model_fields_set and self.path:
            raise ValueError("give either path (embedded) or url (server), not both")
        return self


class Neo4jConfig(StrictModel):
    """Graph memory over Bolt."""

    uri: Annotated[str, Field(pattern=r"^(bolt|neo4j)(\+s|\+ssc)?://")]
    user: str = "neo4j"
    password: SecretStr | None = None
    database: str | None = None


class MemoryConfig(StrictModel):
    """Context memory of the cua toolset: similarity (Qdrant) and relations (Neo4j)."""

    # defaults validated like written values, so that the default path is the file's folder's
    qdrant: QdrantConfig = Field(default_factory=dict, validate_default=True)
    neo4j: Neo4jConfig | None = None


class LLMConfig(StrictModel):
    """The planner's model, called through litellm; without a model the planner is deterministic."""

    model: str | None = None
    api_base: Annotated[str | None, Field(pattern=r"^https?://")] = None
    api_key: SecretStr | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.0
    max_tokens: Annotated[int, Field(ge=1)] = 2048
    timeout: Annotated[Duration, Field(gt=0)] = 60.0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("model", "api_base", "api_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `${CUA_LLM_MODEL:-}` with the variable unset means "no model", not a model named "".
        return None if value == "" else value


class AuthConfig(StrictModel):
    """Who may use the HTTP endpoints."""

    bearer_tokens: list[SecretStr] = Field(default_factory=list)
    allow_unauthenticated: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)

    @field_validator("bearer_tokens")
    @classmethod
    def _drop_empty(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        # `- ${CUA_GATEWAY_TOKEN:-}` with the variable unset means "no token", not an empty one.
        return [t for t in tokens if t.get_secret_value()]


class MonitoringConfig(StrictModel):
    """Metrics and logs."""

    metrics_port: Annotated[int | None, Field(ge=1, le=65535)] = None
    prometheus_endpoint: Annotated[str, Field(pattern=r"^/")] = "/metrics"
    tracing_enabled: bool = True
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"

    @field_validator("log_level", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class GatewayConfig(StrictModel):
    """The root of gateway.yml."""

    gateway: GatewaySection = Field(default_factory=dict, validate_default=True)
    servers: dict[Name, ServerConfig] = Field(default_factory=dict)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    memory: MemoryConfig = Field(default_factory=dict, validate_default=True)
    llm: LLMConfig = Field(default_factory=LLMConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    monitoring: MonitoringConfig = Field(default_factory=MonitoringConfig)

    @model_validator(mode="after")
    def _prefixes_unique(self) -> GatewayConfig:
        """Two servers under one prefix would make `prefix_tool` names ambiguous."""
        owners: dict[str, str] = {}
        for name, server in self.servers.items():
            prefix = server.prefix.name or name
            if prefix in owners:
                raise ValueError(
                    f"servers {owners[prefix]} and {name} both use the prefix {prefix!r}; "
                    "give one of them another prefix.name"
                )
            owners[prefix] = name
        return self
