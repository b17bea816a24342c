"""Shared building blocks of the gateway.yml models: the strict base and the parsed scalar types."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from cua_gateway.config.quantities import parse_bytes, parse_cpu, parse_duration


class StrictModel(BaseModel):
    """Unknown keys are errors (a typo must never be silently ignored); values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Duration = Annotated[
    float, BeforeValidator(parse_duration, json_schema_input_type=str | float), Field(ge=0)
]
"""Seconds; written as a number of seconds or `"500ms"`, `"30s"`, `"5m"`, `"1h"`."""

Cores = Annotated[float, BeforeValidator(parse_cpu, json_schema_input_type=str | float)]
"""CPU cores; written as `2`, `0.5` or `"500m"`."""

Bytes = Annotated[int, BeforeValidator(parse_bytes, json_schema_input_type=str | int)]
"""Bytes; written as `"512Mi"`, `"2Gi"`, `"1G"` or a number."""

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")]
"""A server name: it becomes part of tool names, container labels and metric labels."""


def resolve_path(path: str, info: ValidationInfo) -> Path:
    """A path of the file, relative to the file's folder (passed as `base_dir` in the context)."""
    base = (info.context or {}).get("base_dir")
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() or base is None else Path(base) / resolved
