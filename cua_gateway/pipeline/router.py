"""The gateway as one MCP server: each request of a client is answered from the aggregate
catalog or routed to the server that owns the tool, prompt or resource.

Everything travels as plain JSON (dicts), as the servers sent it; only names and URIs are mapped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

import anyio
import jsonschema

from cua_gateway.downstream.pool import ServerPool
from cua_gateway.downstream.session import ProgressFn, list_all
from cua_gateway.errors import GatewayError, InvalidRequest
from cua_gateway.pipeline.catalog import Entry, Names, aggregate, allowed
from cua_gateway.pipeline.naming import unprefixed_uri

logger = logging.getLogger(__name__)

LIST_TIMEOUT = 10.0  # seconds a server gets to list its prompts or resources for a client
CATALOG_WAIT = 30.0  # seconds a first tools/list waits for servers whose tools are not yet known


ENVELOPE = "io.modelcontextprotocol/"  # per-hop `_meta` keys of protocol 2026-07-28


def hop(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params for the next hop: `_meta` without what belongs to the client's own connection (its
    progress token, which the gateway replaces, and the 2026-07-28 envelope)."""
    forwarded = dict(params)
    meta = forwarded.pop("_meta", None)
    if isinstance(meta, Mapping):
        kept = {
            k: v for k, v in meta.items() if k != "progressToken" and not k.startswith(ENVELOPE)
        }
        if kept:
            forwarded["_meta"] = kept
    return forwarded


class Router:
    def __init__(self, pools: Mapping[str, ServerPool]) -> None:
        self._pools = pools
        self._tools: tuple[tuple[int, ...], Names] | None = None
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        self._resources = Names()
        self._templates = Names()
        self._prompts = Names()

    # -- tools ------------------------------------------------------------------------------

    async def settled_tools(self) -> Names:
        """The catalog, after waiting (boundedly) for servers that are starting for the first
        time: a client that lists tools right after launching the gateway should see them."""
        with anyio.move_on_after(CATALOG_WAIT):
            async with anyio.create_task_group() as tasks:
                for pool in self._pools.values():
                    if not pool.settled:
                        tasks.start_soon(pool.until_settled)
        return self.tools()

    def tools(self) -> Names:
        """The aggregate tool catalog (live, or last known for servers still starting)."""
        versions = tuple(p.tools_version for p in self._pools.values())
        if self._tools is None or self._tools[0] != versions:
            listed = [
                (
                    name,
                    pool.config,
                    [t for t in pool.tools if allowed(name, pool.config, t["name"])],
                )
                for name, pool in self._pools.items()
                if pool.state != "failed"
            ]
            names = aggregate(listed)
            for conflict in names.conflicts:
                logger.error("tool catalog: %s", conflict)
            self._tools = (versions, names)
            self._validators.clear()
        return self._tools[1]

    async def tool(self, name: str) -> Entry:
        """The catalog entry of tool `name`, waiting if need be for servers starting for the
        first time (their tools are not known yet)."""
        entry = self.tools().entries.get(name)
        if entry is None:
            entry = (await self.settled_tools()).entries.get(name)
        if entry is None:
            raise InvalidRequest(f"unknown tool: {name}")
        return entry

    async def call_tool(
        self,
        entry: Entry,
        arguments: Mapping[str, Any] | None,
        meta: Mapping[str, Any] | None,
        *,
        on_progress: ProgressFn | None = None,
        origin: object | None = None,
    ) -> dict[str, Any]:
        """Validate the arguments against the tool's schema, then call it on its server."""
        self._validate(entry, arguments or {})
        params: dict[str, Any] = {"name": entry.original, "arguments": dict(arguments or {})}
        if meta:
            params["_meta"] = meta
        return await self._pools[entry.server].request(
            "tools/call", hop(params), on_progress=on_progress, origin=origin
        )

    def _validate(self, entry: Entry, arguments: Mapping[str, Any]) -> None:
        validator = self._validators.get(entry.exposed)
        if validator is None:
            schema = entry.definition.get("inputSchema") or {"type": "object"}
            cls = jsonschema.validators.validator_for(schema)
            validator = self._validators[entry.exposed] = cls(schema)
        errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            details = "; ".join(
                f"{'.'.join(map(str, e.path)) or 'arguments'}: {e.message}" for e in errors[:5]
            )
            raise InvalidRequest(f"invalid arguments for {entry.exposed}: {details}")

    # -- prompts and resources: listed live from every ready server -------------------------

    async def _gather(self, capability: str, method: str, key: str) -> list[Any]:
        found: dict[str, list[dict[str, Any]]] = {}

        async def one(name: str, pool: ServerPool) -> None:
            try:
                found[name] = await list_all(
                    partial(pool.request, timeout=LIST_TIMEOUT), method, key
                )
            except GatewayError as e:  # fail open: one broken server must not hide the others
                logger.warning("%s: %s failed: %s", name, method, e)

        async with anyio.create_task_group() as tasks:
            for name, pool in self._pools.items():
                if pool.ready and capability in pool.capabilities:
                    tasks.start_soon(one, name, pool)
        return [(n, p.config, found[n]) for n, p in self._pools.items() if n in found]

    async def list_prompts(self) -> list[dict[str, Any]]:
        self._prompts = aggregate(await self._gather("prompts", "prompts/list", "prompts"))
        return [dict(e.definition) for e in self._prompts.entries.values()]

    async def get_prompt(self, params: Mapping[str, Any], origin: object | None) -> dict[str, Any]:
        entry = await self._prompt(str(params.get("name")))
        forwarded = hop({**params, "name": entry.original})
        return await self._pools[entry.server].request("prompts/get", forwarded, origin=origin)

    async def list_resources(self) -> list[dict[str, Any]]:
        found = await self._gather("resources", "resources/list", "resources")
        self._resources = aggregate(found, key="uri")
        return [dict(e.definition) for e in self._resources.entries.values()]

    async def list_resource_templates(self) -> list[dict[str, Any]]:
        found = await self._gather("resources", "resources/templates/list", "resourceTemplates")
        self._templates = aggregate(found, key="uriTemplate")
        return [dict(e.definition) for e in self._templates.entries.values()]

    def resolve_uri(self, uri: str) -> tuple[str, str]:
        """The server and original URI behind an exposed URI."""
        entry = self._resources.entries.get(uri)
        if entry is not None:
            return entry.server, entry.original
        for name, pool in self._pools.items():
            prefix = pool.config.prefix.name or name
            original = unprefixed_uri(prefix, uri)
            if original is not None:
                return name, original
        owners = {e.server for e in self._templates.entries.values()}
        owners |= {e.server for e in self._resources.entries.values()}
        ready = [n for n, p in self._pools.items() if p.ready and "resources" in p.capabilities]
        candidates = [n for n in ready if n in owners] or ready
        if len(candidates) == 1:
            return candidates[0], uri
        raise InvalidRequest(f"unknown resource: {uri}")

    async def resource_request(
        self, method: str, params: Mapping[str, Any], origin: object | None
    ) -> dict[str, Any]:
        """resources/read, subscribe and unsubscribe: routed by URI."""
        uri = str(params.get("uri"))
        if uri not in self._resources.entries:
            await self.list_resources()
        server, original = self.resolve_uri(uri)
        forwarded = hop({**params, "uri": original})
        return await self._pools[server].request(method, forwarded, origin=origin)

    def exposed_uri(self, server: str, uri: str) -> str:
        """The URI a client knows for `uri` of `server` (for resource update notifications)."""
        for entry in self._resources.entries.values():
            if entry.server == server and entry.original == uri:
                return entry.exposed
        return uri

    async def complete(self, params: Mapping[str, Any], origin: object | None) -> dict[str, Any]:
        ref = dict(params.get("ref") or {})
        if ref.get("type") == "ref/prompt":
            entry = await self._prompt(str(ref.get("name")))
            server, ref["name"] = entry.server, entry.original
        else:
            uri = str(ref.get("uri"))
            if uri not in self._resources.entries:
                await self.list_resource_templates()
            server, ref["uri"] = self._resolve_template(uri)
        forwarded = hop({**params, "ref": ref})
        return await self._pools[server].request("completion/complete", forwarded, origin=origin)

    def _resolve_template(self, uri: str) -> tuple[str, str]:
        entry = self._templates.entries.get(uri)
        if entry is not None:
            return entry.server, entry.original
        return self.resolve_uri(uri)

    async def set_level(self, level: str) -> None:
        """logging/setLevel goes to every ready server that logs."""

        async def one(pool: ServerPool) -> None:
            try:
                await pool.request("logging/setLevel", {"level": level}, timeout=LIST_TIMEOUT)
            except GatewayError as e:
                logger.warning("%s: logging/setLevel failed: %s", pool.name, e)

        async with anyio.create_task_group() as tasks:
            for pool in self._pools.values():
                if pool.ready and "logging" in pool.capabilities:
                    tasks.start_soon(one, pool)

    async def _prompt(self, name: str) -> Entry:
        if name not in self._prompts.entries:
            await self.list_prompts()
        entry = self._prompts.entries.get(name)
        if entry is None:
            raise InvalidRequest(f"unknown prompt: {name}")
        return entry
