"""The neo4j server, built from servers/neo4j and started by the gateway from its shipped entry,
against a real Bolt server (ArcadeDB) that the test starts on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from cua_gateway.config import LoadedConfig
from tests.e2e._neo4j_arcadedb import DATABASE, USER, ArcadeDB, arcadedb_server
from tests.e2e.conftest import ROOT, call, fails, shipped_server
from tests.integration.conftest import containers_of, ready, running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def arcadedb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArcadeDB]:
    yield from arcadedb_server(tmp_path_factory.mktemp("arcadedb"))


def neo4j_entry(arcadedb: ArcadeDB, gateway: str) -> LoadedConfig:
    env = {
        "NEO4J_URI": arcadedb.uri,
        "NEO4J_USER": USER,
        "NEO4J_PASSWORD": arcadedb.password,
        "NEO4J_DATABASE": DATABASE,
    }
    return shipped_server("neo4j", gateway, env)


def names(path: dict[str, Any]) -> list[str]:
    return [node["properties"]["name"] for node in path["nodes"]]


def test_builds_a_graph_then_finds_the_shortest_path_and_reads_the_schema(
    arcadedb: ArcadeDB, gateway_name: str, docker_api: Any
) -> None:
    loaded = neo4j_entry(arcadedb, gateway_name)

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("neo4j")
            await ready(pool)
            tools = {t["name"]: t for t in (await pool.request("tools/list"))["tools"]}
            assert set(tools) == {
                "cypher_query",
                "write_cypher",
                "create_node",
                "create_relationship",
                "find_path",
                "get_schema",
            }
            assert tools["cypher_query"]["annotations"]["readOnlyHint"] is True
            assert tools["write_cypher"]["annotations"]["destructiveHint"] is True

            ids: dict[str, str] = {}
            for name, labels in [
                ("Ada", ["Person"]),
                ("Bob", ["Person"]),
                ("Cy", ["Person"]),
                ("Dan", ["Person", "Engineer"]),
                ("Acme", ["Company"]),
                ("Oslo", ["City"]),
            ]:
                created = await call(pool, "create_node", labels=labels, properties={"name": name})
                assert created["node"]["labels"] == sorted(labels)
                ids[name] = created["node"]["element_id"]
            for start, type, end, properties in [
                ("Ada", "KNOWS", "Bob", {"since": 2019}),
                ("Bob", "WORKS_AT", "Acme", {}),
                ("Ada", "KNOWS", "Cy", {"since": 2021}),
                ("Cy", "KNOWS", "Dan", {}),
                ("Dan", "WORKS_AT", "Acme", {}),
                ("Acme", "LOCATED_IN", "Oslo", {}),
            ]:
                created = await call(
                    pool,
                    "create_relationship",
                    start_id=ids[start],
                    end_id=ids[end],
                    type=type,
                    properties=properties,
                )
                relationship = created["relationship"]
                assert (relationship["start"], relationship["type"], relationship["end"]) == (
                    ids[start],
                    type,
                    ids[end],
                )

            # the shortest of two routes, with its relationships in order
            path = await call(pool, "find_path", start_id=ids["Ada"], end_id=ids["Oslo"])
            assert path["found"] is True
            assert path["length"] == 3
            assert names(path) == ["Ada", "Bob", "Acme", "Oslo"]
            assert [r["type"] for r in path["relationships"]] == [
                "KNOWS",
                "WORKS_AT",
                "LOCATED_IN",
            ]
            # only KNOWS: Oslo is out of reach; against the arrows: nothing; with them: found
            only_knows = await call(
                pool,
                "find_path",
                start_id=ids["Ada"],
                end_id=ids["Oslo"],
                relationship_types=["KNOWS"],
            )
            assert only_knows["found"] is False
            outgoing = {"start_id": ids["Oslo"], "end_id": ids["Ada"]}
            backwards = await call(pool, "find_path", direction="outgoing", **outgoing)
            assert backwards["found"] is False
            incoming = await call(pool, "find_path", direction="incoming", **outgoing)
            assert names(incoming) == ["Oslo", "Acme", "Bob", "Ada"]
            too_short = await call(
                pool, "find_path", start_id=ids["Ada"], end_id=ids["Oslo"], max_depth=2
            )
            assert too_short["found"] is False

            friends = await call(
                pool,
                "cypher_query",
                query="MATCH (p:Person {name: $name})-[:KNOWS]->(f) "
                "RETURN f.name AS friend ORDER BY friend",
                parameters={"name": "Ada"},
            )
            assert friends["columns"] == ["friend"]
            assert friends["rows"] == [{"friend": "Bob"}, {"friend": "Cy"}]

            written = await call(
                pool,
                "write_cypher",
                query="MATCH (p:Person {name: 'Ada'}) SET p.role = $role RETURN p.role AS role",
                parameters={"role": "founder"},
            )
            assert written["rows"] == [{"role": "founder"}]
            assert written["counters"] == {"properties_set": 1}

            schema = await call(pool, "get_schema")
            assert {"Person", "Engineer", "Company", "City"} <= set(schema["labels"])
            assert {"KNOWS", "WORKS_AT", "LOCATED_IN"} <= set(schema["relationship_types"])
            assert {"name", "since", "role"} <= set(schema["property_keys"])
            assert {"name", "role"} <= set(schema["node_properties"]["Person"])
            assert {
                "start": "Person",
                "type": "KNOWS",
                "end": "Person",
                "properties": ["since"],
            } in schema["relationships"]

    anyio.run(scenario)
    assert containers_of(docker_api, gateway_name) == []


def test_a_write_through_cypher_query_is_refused_and_changes_nothing(
    arcadedb: ArcadeDB, gateway_name: str
) -> None:
    loaded = neo4j_entry(arcadedb, gateway_name)

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("neo4j")
            await ready(pool)
            count = "MATCH (n) RETURN count(n) AS nodes"
            before = (await call(pool, "cypher_query", query=count))["rows"]

            message = await fails(pool, "cypher_query", query="CREATE (:Intruder {name: 'x'})")
            assert "read-only" in message
            assert "CREATE" in message
            assert "write_cypher" in message
            message = await fails(pool, "cypher_query", query="MATCH (n) DETACH DELETE n")
            assert "DETACH, DELETE" in message

            intruders = "MATCH (n:Intruder) RETURN count(n) AS intruders"
            assert (await call(pool, "cypher_query", query=intruders))["rows"] == [{"intruders": 0}]
            assert (await call(pool, "cypher_query", query=count))["rows"] == before

            # mistakes come back as the tool's error, in words
            message = await fails(pool, "cypher_query", query="MATCH (n RETURN n")
            assert "the database refused the query" in message
            message = await fails(
                pool,
                "create_relationship",
                start_id="#999:999",
                end_id="#999:998",
                type="KNOWS",
            )
            assert "no node with element id #999:998, #999:999" in message

    anyio.run(scenario)


def test_a_write_the_clause_check_cannot_see_is_rolled_back(
    arcadedb: ArcadeDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ArcadeDB runs writes even in a READ transaction: the read tool's last line of defence is
    that it never commits and refuses any query the database reports as a change."""
    monkeypatch.syspath_prepend(str(ROOT / "servers" / "neo4j"))
    from cua_neo4j import cypher  # noqa: PLC0415
    from cua_neo4j.graph import Graph, Settings, WriteRefused  # noqa: PLC0415

    monkeypatch.setattr(cypher, "write_clauses", lambda query: [])
    graph = Graph(Settings(arcadedb.uri, USER, arcadedb.password, DATABASE))

    async def scenario() -> None:
        try:
            with pytest.raises(WriteRefused, match="it was rolled back"):
                await graph.read("CREATE (:Hidden {name: 'x'})")
            rows = await graph.read("MATCH (n:Hidden) RETURN count(n) AS hidden")
            assert rows.rows == [{"hidden": 0}]
        finally:
            await graph.aclose()

    anyio.run(scenario)
