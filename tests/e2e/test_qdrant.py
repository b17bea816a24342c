"""The shipped qdrant server, started by the gateway as a container: texts embedded offline,
searched by meaning, filtered by payload, deleted, counted, and kept across restarts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import docker
import pytest

from cua_gateway.config import LoadedConfig
from cua_gateway.downstream.pool import ServerPool
from cua_gateway.runtime.images import ensure_image
from tests.e2e.conftest import shipped_server
from tests.integration.conftest import ready, running, text_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BUILD_TIMEOUT = 540.0  # seconds: the first run builds the image
CALL_TIMEOUT = 30.0  # seconds for one tool call

DOCUMENTS = [
    ("The cat slept all afternoon on the warm windowsill.", {"topic": "pets", "year": 2021}),
    ("Our puppy chewed through the garden hose again.", {"topic": "pets", "year": 2024}),
    (
        "Quarterly revenue rose twelve percent on strong exports.",
        {"topic": "finance", "year": 2023},
    ),
    ("Knead the dough, let it rise overnight, then bake at 230 degrees.", {"topic": "cooking"}),
    ("The striker scored twice before half-time to win the cup final.", {"topic": "sports"}),
    ("Rust's borrow checker rejects data races at compile time.", {"topic": "tech", "year": 2022}),
]


def qdrant_config(gateway: str, store: Path) -> LoadedConfig:
    """The shipped entry with the store in the test's own folder (never the user's store, whose
    lock a running gateway may hold). The folder does not exist yet: Docker creates it."""
    return shipped_server("qdrant", gateway, {}, f"volumes: ['{store}:/data:rw']")


async def call(pool: ServerPool, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await pool.request(
        "tools/call", {"name": tool, "arguments": arguments}, timeout=CALL_TIMEOUT
    )
    assert not result.get("isError"), text_of(result)
    structured: dict[str, Any] = result["structuredContent"]
    return structured


async def top_texts(pool: ServerPool, query: str, **arguments: Any) -> list[str]:
    found = await call(pool, "search", query=query, collection="notes", **arguments)
    return [hit["text"] for hit in found["hits"]]


async def count(pool: ServerPool, collection: str = "notes") -> int:
    info = await call(pool, "get_collection_info", collection=collection)
    points: int = info["collections"][0]["points"]
    return points


async def build(docker_api: docker.APIClient, loaded: LoadedConfig) -> None:
    with anyio.fail_after(BUILD_TIMEOUT):
        await ensure_image(docker_api, "qdrant", loaded.config.servers["qdrant"])


def test_texts_are_found_by_meaning_narrowed_by_filters_deleted_and_counted(
    docker_api: docker.APIClient, gateway_name: str, tmp_path: Path
) -> None:
    loaded = qdrant_config(gateway_name, tmp_path / "store")

    async def scenario() -> None:
        await build(docker_api, loaded)
        async with running(loaded) as supervisor:
            pool = supervisor.pool("qdrant")
            await ready(pool)
            stored = await call(
                pool,
                "upsert",
                collection="notes",
                documents=[{"text": text, "payload": payload} for text, payload in DOCUMENTS],
            )
            assert stored["created_collection"] is True
            assert len(set(stored["ids"])) == len(DOCUMENTS)
            assert await count(pool) == len(DOCUMENTS)

            # Paraphrases share almost no words with the document they mean.
            assert (await top_texts(pool, "a kitty napping by the window"))[0] == DOCUMENTS[0][0]
            assert (await top_texts(pool, "how did sales do this quarter"))[0] == DOCUMENTS[2][0]
            assert (await top_texts(pool, "recipe for homemade bread"))[0] == DOCUMENTS[3][0]
            assert (await top_texts(pool, "memory safety in programming"))[0] == DOCUMENTS[5][0]

            # A payload filter keeps only matching points, whatever the query is closest to.
            pets = await call(
                pool, "search", query="bread", collection="notes", filter={"topic": "pets"}
            )
            assert {hit["payload"]["topic"] for hit in pets["hits"]} == {"pets"}
            assert len(pets["hits"]) == 2
            recent = await top_texts(pool, "animals", filter={"year": {"gte": 2023}})
            assert recent[0] == DOCUMENTS[1][0]
            assert DOCUMENTS[0][0] not in recent

            # Deleting by id removes exactly that point.
            cat_id = stored["ids"][0]
            deleted = await call(pool, "delete", collection="notes", ids=[cat_id])
            assert deleted["deleted"] == 1
            assert await count(pool) == len(DOCUMENTS) - 1
            assert DOCUMENTS[0][0] not in await top_texts(pool, "a kitty napping by the window")
            # …and by filter, every matching point.
            deleted = await call(pool, "delete", collection="notes", filter={"topic": "pets"})
            assert deleted["deleted"] == 1
            assert await count(pool) == len(DOCUMENTS) - 2

    anyio.run(scenario)


def test_vectors_given_directly_are_stored_and_searched(
    docker_api: docker.APIClient, gateway_name: str, tmp_path: Path
) -> None:
    loaded = qdrant_config(gateway_name, tmp_path / "store")

    async def scenario() -> None:
        await build(docker_api, loaded)
        async with running(loaded) as supervisor:
            pool = supervisor.pool("qdrant")
            await ready(pool)
            created = await call(
                pool, "create_collection", collection="points", vector_size=3, distance="euclid"
            )
            assert created["created"] is True
            again = await call(
                pool, "create_collection", collection="points", vector_size=3, distance="euclid"
            )
            assert again["created"] is False
            await call(
                pool,
                "upsert",
                collection="points",
                documents=[
                    {"id": 1, "vector": [0.0, 0.0, 0.0], "payload": {"name": "origin"}},
                    {"id": 2, "vector": [10.0, 0.0, 0.0], "payload": {"name": "east"}},
                    {"id": 3, "vector": [0.0, 10.0, 0.0], "payload": {"name": "north"}},
                ],
            )
            found = await call(pool, "search", collection="points", vector=[9.0, 1.0, 0.0])
            assert [hit["id"] for hit in found["hits"]] == [2, 1, 3]
            assert found["hits"][0]["payload"] == {"name": "east"}

            wrong = await pool.request(
                "tools/call",
                {"name": "search", "arguments": {"collection": "points", "query": "east"}},
                timeout=CALL_TIMEOUT,
            )
            assert wrong.get("isError")  # a 384-d text vector does not fit a 3-d collection
            assert "holds 3-d vectors" in text_of(wrong)

            info = await call(pool, "get_collection_info")
            assert {c["name"]: (c["points"], c["vector_size"]) for c in info["collections"]} == {
                "points": (3, 3)
            }

    anyio.run(scenario)


def test_the_embedded_store_keeps_its_points_when_the_container_is_replaced(
    docker_api: docker.APIClient, gateway_name: str, tmp_path: Path
) -> None:
    loaded = qdrant_config(gateway_name, tmp_path / "store")

    async def scenario() -> None:
        await build(docker_api, loaded)
        async with running(loaded) as supervisor:
            pool = supervisor.pool("qdrant")
            await ready(pool)
            await call(
                pool,
                "upsert",
                collection="notes",
                documents=[{"text": text, "payload": payload} for text, payload in DOCUMENTS[:3]],
            )
        async with running(loaded) as supervisor:  # a new container on the same folder
            pool = supervisor.pool("qdrant")
            await ready(pool)
            assert await count(pool) == 3
            assert (await top_texts(pool, "a kitty napping by the window"))[0] == DOCUMENTS[0][0]

    anyio.run(scenario)
