"""The JSON Schema of gateway.yml as an editor sees it: before `${VAR}` interpolation."""

from __future__ import annotations

from typing import Any

from cua_gateway.config.models import GatewayConfig

_REFERENCE = {"type": "string", "pattern": r"\$\{", "description": "a ${VAR} reference"}
_SCALARS = {"integer", "number", "boolean"}


def json_schema() -> dict[str, Any]:
    """Every constrained scalar may also be written as a string holding a `${VAR}` reference."""
    schema = GatewayConfig.model_json_schema(mode="validation")
    schema["title"] = "gateway.yml"
    result: dict[str, Any] = _allow_references(schema)
    result["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return result


def _allow_references(node: Any) -> Any:
    if isinstance(node, list):
        return [_allow_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _allow_references(value) for key, value in node.items()}
    constrained = node.get("type") in _SCALARS or "enum" in node or "const" in node
    if node.get("type") == "string" and ("pattern" in node or "minLength" in node):
        constrained = True
    if not constrained:
        return node
    annotations = {k: node.pop(k) for k in ("title", "description", "default") if k in node}
    return {**annotations, "anyOf": [node, _REFERENCE]}
