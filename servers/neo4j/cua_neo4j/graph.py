"""The graph database behind the tools, through the official neo4j driver (async).

Every query runs in an explicit transaction. Reads run in a READ transaction that is never
committed: a query that writes is refused before it is sent when a writing clause can be seen,
and rolled back and refused when the database reports changes anyway (a server that does not
enforce READ access, such as ArcadeDB, still honours the rollback).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import neo4j
import neo4j.exceptions
from neo4j.graph import Node, Path, Relationship
from neo4j.spatial import Point

from cua_neo4j import cypher

QUERY_TIMEOUT = 30.0  # seconds a transaction may run, unless configured
SCHEMA_SAMPLE = 1000  # nodes and relationships sampled for property keys
MAX_ROWS = 1000  # the most rows a query may return in one call
COUNTERS = (
    "nodes_created",
    "nodes_deleted",
    "relationships_created",
    "relationships_deleted",
    "properties_set",
    "labels_added",
    "labels_removed",
    "indexes_added",
    "indexes_removed",
    "constraints_added",
    "constraints_removed",
    "system_updates",
)

Direction = Literal["both", "outgoing", "incoming"]


class GraphError(Exception):
    """A failure the caller should read: unreachable database, bad Cypher, refused write."""


class WriteRefused(GraphError):
    pass


@dataclass(frozen=True, slots=True)
class Settings:
    uri: str
    user: str
    password: str
    database: str | None = None
    query_timeout: float = QUERY_TIMEOUT


@dataclass(frozen=True, slots=True)
class Rows:
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    counters: dict[str, int]
    changed: bool

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "columns": self.columns,
            "rows": self.rows,
            "truncated": self.truncated,
        }
        if self.counters:
            result["counters"] = self.counters
        return result


class Graph:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._driver = neo4j.AsyncGraphDatabase.driver(
            settings.uri, auth=(settings.user, settings.password)
        )

    async def aclose(self) -> None:
        await self._driver.close()

    async def read(
        self, query: str, parameters: Mapping[str, Any] | None = None, limit: int = 100
    ) -> Rows:
        if clauses := cypher.write_clauses(query):
            raise WriteRefused(
                f"cypher_query is read-only and this query writes ({', '.join(clauses)}); "
                "nothing was run. Use write_cypher to change the graph."
            )
        rows = await self._run(query, parameters, limit, write=False)
        if rows.changed:
            raise WriteRefused(
                "cypher_query is read-only and this query changed the graph "
                f"({_describe(rows.counters)}); it was rolled back. Use write_cypher instead."
            )
        return rows

    async def write(
        self, query: str, parameters: Mapping[str, Any] | None = None, limit: int = 100
    ) -> Rows:
        return await self._run(query, parameters, limit, write=True)

    async def create_node(self, labels: Sequence[str], properties: Mapping[str, Any]) -> Any:
        names = "".join(":" + cypher.name(label, "a label") for label in labels)
        rows = await self.write(f"CREATE (n{names} $props) RETURN n", {"props": dict(properties)})
        return rows.rows[0]["n"]

    async def create_relationship(
        self, start_id: str, end_id: str, type: str, properties: Mapping[str, Any]
    ) -> Any:
        await self._require_nodes(start_id, end_id)
        rows = await self.write(
            "MATCH (a) WHERE elementId(a) = $start MATCH (b) WHERE elementId(b) = $end "
            f"CREATE (a)-[r:{cypher.name(type, 'the relationship type')} $props]->(b) RETURN r",
            {"start": start_id, "end": end_id, "props": dict(properties)},
        )
        return rows.rows[0]["r"]

    async def find_path(
        self,
        start_id: str,
        end_id: str,
        max_depth: int,
        relationship_types: Sequence[str] = (),
        direction: Direction = "both",
    ) -> dict[str, Any]:
        """The shortest path from one node to another (Cypher's shortestPath, no plugin)."""
        await self._require_nodes(start_id, end_id)
        if start_id == end_id:
            node = await self.read("MATCH (a) WHERE elementId(a) = $id RETURN a", {"id": start_id})
            return {"found": True, "length": 0, "nodes": [node.rows[0]["a"]], "relationships": []}
        types = "|".join(cypher.name(t, "a relationship type") for t in relationship_types)
        hops = f"[{':' + types if types else ''}*..{max_depth}]"
        left, right = {"both": ("-", "-"), "outgoing": ("-", "->"), "incoming": ("<-", "-")}[
            direction
        ]
        rows = await self.read(
            "MATCH (a) WHERE elementId(a) = $start MATCH (b) WHERE elementId(b) = $end "
            f"MATCH p = shortestPath((a){left}{hops}{right}(b)) RETURN p",
            {"start": start_id, "end": end_id},
            limit=1,
        )
        if not rows.rows:
            return {"found": False, "length": None, "nodes": [], "relationships": []}
        path: dict[str, Any] = rows.rows[0]["p"]
        return {"found": True, "length": len(path["relationships"]), **path}

    async def schema(self, sample: int = SCHEMA_SAMPLE) -> dict[str, Any]:
        """Labels, relationship types and property keys, from the db.* procedures that Neo4j and
        ArcadeDB share, completed by a sample of the data (ArcadeDB lists no property keys)."""
        labels = await self._column("CALL db.labels() YIELD label RETURN label")
        types = await self._column(
            "CALL db.relationshipTypes() YIELD relationshipType RETURN relationshipType"
        )
        keys = set(
            await self._column("CALL db.propertyKeys() YIELD propertyKey RETURN propertyKey")
        )
        nodes: dict[str, set[str]] = {label: set() for label in labels}
        for row in (
            await self.read(
                "MATCH (n) WITH n LIMIT $sample RETURN labels(n) AS labels, keys(n) AS keys",
                {"sample": sample},
                limit=sample,
            )
        ).rows:
            for label in row["labels"]:
                nodes.setdefault(label, set()).update(row["keys"])
        patterns: dict[tuple[str, str, str], set[str]] = {}
        for row in (
            await self.read(
                "MATCH (a)-[r]->(b) WITH a, r, b LIMIT $sample "
                "RETURN labels(a) AS start, type(r) AS type, labels(b) AS end, keys(r) AS keys",
                {"sample": sample},
                limit=sample,
            )
        ).rows:
            for start in row["start"] or [""]:
                for end in row["end"] or [""]:
                    patterns.setdefault((start, row["type"], end), set()).update(row["keys"])
        for found in [*nodes.values(), *patterns.values()]:
            keys.update(found)
        return {
            "labels": sorted(nodes),
            "relationship_types": sorted(set(types) | {t for _, t, _ in patterns}),
            "property_keys": sorted(keys),
            "node_properties": {label: sorted(k) for label, k in sorted(nodes.items())},
            "relationships": [
                {"start": s, "type": t, "end": e, "properties": sorted(k)}
                for (s, t, e), k in sorted(patterns.items())
            ],
        }

    async def _column(self, query: str) -> list[str]:
        rows = await self.read(query, limit=MAX_ROWS)
        return [str(next(iter(row.values()))) for row in rows.rows]

    async def _require_nodes(self, *ids: str) -> None:
        rows = await self.read(
            "UNWIND $ids AS id MATCH (n) WHERE elementId(n) = id RETURN DISTINCT id",
            {"ids": list(ids)},
            limit=len(ids),
        )
        missing = set(ids) - {row["id"] for row in rows.rows}
        if missing:
            raise GraphError(f"no node with element id {', '.join(sorted(missing))}")

    async def _run(
        self, query: str, parameters: Mapping[str, Any] | None, limit: int, *, write: bool
    ) -> Rows:
        mode = neo4j.WRITE_ACCESS if write else neo4j.READ_ACCESS
        try:
            async with self._driver.session(
                database=self._settings.database, default_access_mode=mode
            ) as session:
                tx = await session.begin_transaction(timeout=self._settings.query_timeout)
                try:
                    result = await tx.run(query, dict(parameters or {}))
                    columns = list(result.keys())
                    records = await result.fetch(limit + 1)
                    summary = await result.consume()
                    if write:
                        await tx.commit()
                finally:
                    if not tx.closed():
                        await tx.rollback()
        except neo4j.exceptions.AuthError as e:
            raise GraphError(
                f"the graph database at {self._settings.uri} refused the credentials of user "
                f"{self._settings.user!r}"
            ) from e
        except neo4j.exceptions.Neo4jError as e:
            if e.code and e.code.endswith("AccessMode"):
                raise WriteRefused(
                    "cypher_query is read-only and the database refused this query's writes. "
                    "Use write_cypher to change the graph."
                ) from e
            raise GraphError(f"the database refused the query: {e.message or e}") from e
        except neo4j.exceptions.DriverError as e:
            raise GraphError(f"cannot use the graph database at {self._settings.uri}: {e}") from e
        counts = summary.counters
        return Rows(
            columns,
            [{key: to_json(record[key]) for key in columns} for record in records[:limit]],
            len(records) > limit,
            {key: value for key in COUNTERS if (value := getattr(counts, key, 0))},
            counts.contains_updates or counts.contains_system_updates,
        )


def to_json(value: Any) -> Any:
    """A driver value as JSON: nodes, relationships and paths as objects, temporal values as
    ISO 8601 text, points as coordinates, bytes as base64."""
    if isinstance(value, Node):
        return {
            "element_id": value.element_id,
            "labels": sorted(value.labels),
            "properties": to_json(dict(value)),
        }
    if isinstance(value, Relationship):
        return {
            "element_id": value.element_id,
            "type": value.type,
            "start": None if value.start_node is None else value.start_node.element_id,
            "end": None if value.end_node is None else value.end_node.element_id,
            "properties": to_json(dict(value)),
        }
    if isinstance(value, Path):
        return {
            "nodes": [to_json(n) for n in value.nodes],
            "relationships": [to_json(r) for r in value.relationships],
        }
    if isinstance(value, Point):
        return {"srid": value.srid, "coordinates": list(value)}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    iso = getattr(value, "iso_format", None) or getattr(value, "isoformat", None)
    return iso() if callable(iso) else str(value)


def _describe(counters: Mapping[str, int]) -> str:
    return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in counters.items())
