"""The MCP server: Cypher reads, explicit writes, shortest paths and the schema, over stdio.

Configuration (environment): NEO4J_URI (required, e.g. bolt://127.0.0.1:7687), NEO4J_USER
(default neo4j), NEO4J_PASSWORD (secret), NEO4J_DATABASE (default: the server's default database),
NEO4J_QUERY_TIMEOUT (seconds per transaction, default 30).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from cua_neo4j import __version__
from cua_neo4j.graph import MAX_ROWS, QUERY_TIMEOUT, Direction, Graph, GraphError, Settings

logger = logging.getLogger(__name__)
T = TypeVar("T")

EXIT_CONFIG = 78  # EX_CONFIG: a required setting is missing or invalid
MAX_PATH_DEPTH = 50
EXIT_TIMEOUT = 5.0  # seconds to close the driver when stopping

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
ADD = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)

Parameters = Annotated[
    dict[str, Any] | None, Field(description="Query parameters, used as $name in the query.")
]
Limit = Annotated[int, Field(ge=1, le=MAX_ROWS, description="The most rows to return.")]
ElementId = Annotated[str, Field(description="A node's element id (elementId(n)).")]
Properties = Annotated[dict[str, Any] | None, Field(description="Property values (JSON).")]


def settings_from(environ: Mapping[str, str]) -> Settings:
    uri = environ.get("NEO4J_URI", "").strip()
    if not uri:
        raise ValueError("NEO4J_URI is not set (e.g. bolt://127.0.0.1:7687)")
    try:
        timeout = float(environ.get("NEO4J_QUERY_TIMEOUT") or QUERY_TIMEOUT)
    except ValueError:
        raise ValueError("NEO4J_QUERY_TIMEOUT must be a number of seconds") from None
    return Settings(
        uri=uri,
        user=environ.get("NEO4J_USER") or "neo4j",
        password=environ.get("NEO4J_PASSWORD", ""),
        database=environ.get("NEO4J_DATABASE") or None,
        query_timeout=timeout,
    )


def create_server(graph: Graph, stopped: anyio.Event | None = None) -> MCPServer[None]:
    """The server; `stopped` is set once the driver is closed, after it stops serving."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[None]) -> AsyncIterator[None]:
        try:
            yield None
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(EXIT_TIMEOUT):
                await graph.aclose()
            if stopped is not None:
                stopped.set()

    mcp: MCPServer[None] = MCPServer(
        "cua-neo4j",
        version=__version__,
        instructions=(
            "A Neo4j-compatible graph over Bolt. Read with cypher_query (read-only), change it "
            "with write_cypher, create_node and create_relationship. Nodes are named by their "
            "element id, as returned by these tools and by elementId(n)."
        ),
        lifespan=lifespan,
        log_level="WARNING",
    )

    @mcp.tool(annotations=READ)
    async def cypher_query(query: str, parameters: Parameters = None, limit: Limit = 100) -> Any:
        """Run a read-only Cypher query and return its rows. A query that would write (CREATE,
        MERGE, SET, DELETE, …) is refused and nothing is changed: use write_cypher for writes."""
        return (await _graph_call(graph.read(query, parameters, limit))).as_dict()

    @mcp.tool(annotations=WRITE)
    async def write_cypher(query: str, parameters: Parameters = None, limit: Limit = 100) -> Any:
        """Run a Cypher query that may change the graph, in a write transaction that is
        committed when it succeeds. Returns its rows and what it changed (counters)."""
        return (await _graph_call(graph.write(query, parameters, limit))).as_dict()

    @mcp.tool(annotations=ADD)
    async def create_node(
        labels: Annotated[list[str], Field(min_length=1, description="The node's labels.")],
        properties: Properties = None,
    ) -> Any:
        """Create one node with these labels and properties; returns it with its element id."""
        node = await _graph_call(graph.create_node(labels, properties or {}))
        return {"node": node}

    @mcp.tool(annotations=ADD)
    async def create_relationship(
        start_id: ElementId,
        end_id: ElementId,
        type: Annotated[str, Field(min_length=1, description="The relationship type.")],
        properties: Properties = None,
    ) -> Any:
        """Create a relationship (start)-[:type]->(end) between two existing nodes."""
        relationship = await _graph_call(
            graph.create_relationship(start_id, end_id, type, properties or {})
        )
        return {"relationship": relationship}

    @mcp.tool(annotations=READ)
    async def find_path(
        start_id: ElementId,
        end_id: ElementId,
        max_depth: Annotated[int, Field(ge=1, le=MAX_PATH_DEPTH)] = 10,
        relationship_types: Annotated[
            list[str] | None, Field(description="Follow only these types (default: any).")
        ] = None,
        direction: Direction = "both",
    ) -> Any:
        """Find the shortest path between two nodes (at most max_depth relationships), following
        relationships in either direction or only outgoing/incoming from the start."""
        return await _graph_call(
            graph.find_path(start_id, end_id, max_depth, relationship_types or (), direction)
        )

    @mcp.tool(annotations=READ)
    async def get_schema() -> Any:
        """The graph's labels, relationship types and property keys, with the properties seen
        on each label and the (start label)-[type]->(end label) patterns in use."""
        return await _graph_call(graph.schema())

    return mcp


async def _graph_call(call: Awaitable[T]) -> T:
    """Await a graph operation; its anticipated failures become the tool's error message."""
    try:
        return await call
    except (GraphError, ValueError) as e:
        raise ToolError(str(e)) from e


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        settings = settings_from(os.environ)
    except ValueError as e:
        print(f"cua-neo4j: {e}", file=sys.stderr)  # noqa: T201
        sys.exit(EXIT_CONFIG)
    anyio.run(_serve, settings)


async def _serve(settings: Settings) -> None:
    stopped = anyio.Event()  # set once the lifespan has cleaned up
    server = create_server(Graph(settings), stopped)
    async with anyio.create_task_group() as tasks:
        with anyio.CancelScope() as serving:
            tasks.start_soon(_exit_on_signal, serving, stopped)
            await server.run_stdio_async()
        tasks.cancel_scope.cancel()


async def _exit_on_signal(serving: anyio.CancelScope, stopped: anyio.Event) -> None:
    """SIGTERM/SIGINT: stop serving, let the lifespan clean up, then leave at once (the thread
    that reads stdin cannot be interrupted, and the event loop would wait for it)."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            break
    serving.cancel()
    with anyio.move_on_after(EXIT_TIMEOUT):
        await stopped.wait()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)
