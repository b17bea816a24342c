"""The MCP tools: search, upsert, delete, create_collection, get_collection_info.

Text goes in and is embedded offline (all-MiniLM-L6-v2, 384-d); vectors may also be given directly.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field, model_validator

from cua_qdrant.embedder import Embedder, EmbedderError
from cua_qdrant.records import TEXT_KEY, Distance, Point, PointId, StoreError, point_id, text_id

if TYPE_CHECKING:
    from cua_qdrant.store import Store

T = TypeVar("T")
logger = logging.getLogger(__name__)

VERSION = "1.0.0"
MAX_LIMIT = 100

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADDITIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)
OVERWRITES = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False
)

Collection = Annotated[
    str | None,
    Field(description="Collection name; defaults to the server's default collection."),
]
Filter = Annotated[
    dict[str, Any] | None,
    Field(
        description=(
            "Payload filter. Shorthand {field: value}: a scalar matches exactly, a list matches "
            'any of its values, {"gte": 1, "lt": 5} is a range, null matches a null field; all '
            "must hold. Nested fields use dots (a.b). Qdrant's own filter JSON "
            "(must / should / must_not) is accepted too."
        )
    ),
]


class Document(BaseModel):
    """A point to store: text (embedded by the server) and/or a vector, plus a payload."""

    id: PointId | None = Field(
        None,
        description="Unsigned integer or UUID. Default: a UUID derived from the text, so "
        "upserting the same text again replaces it.",
    )
    text: str | None = Field(None, description="Text to embed; kept in the payload as 'text'.")
    vector: list[float] | None = Field(
        None, description="The vector itself, instead of (or besides) embedding the text."
    )
    payload: dict[str, Any] = Field(default_factory=dict, description="Metadata to filter on.")

    @model_validator(mode="after")
    def _something_to_store(self) -> Document:
        if self.text is None and self.vector is None:
            raise ValueError("a document needs text or a vector")
        if self.id is None and self.text is None:
            raise ValueError("a document given only as a vector needs an id")
        if self.text is not None and TEXT_KEY in self.payload:
            raise ValueError(f"payload field {TEXT_KEY!r} is reserved for the document's text")
        return self


class UpsertResult(BaseModel):
    collection: str
    ids: list[PointId] = Field(description="The ids of the stored points, in input order.")
    created_collection: bool


class SearchHit(BaseModel):
    id: PointId
    score: float = Field(description="Similarity; higher is closer (cosine: at most 1).")
    text: str | None
    payload: dict[str, Any]


class SearchResult(BaseModel):
    collection: str
    hits: list[SearchHit]


class DeleteResult(BaseModel):
    collection: str
    deleted: int = Field(description="How many points existed and were removed.")


class CreateResult(BaseModel):
    collection: str
    created: bool = Field(description="False when it existed already with the same vectors.")
    vector_size: int
    distance: Distance


class CollectionInfo(BaseModel):
    name: str
    points: int
    vector_size: int
    distance: str
    status: str
    indexed_fields: dict[str, str]


class CollectionsInfo(BaseModel):
    """Every collection, when no name was given."""

    collections: list[CollectionInfo]
    default_collection: str
    embedding_model: str
    embedding_dimension: int


class Tools:
    """The tools, bound to one store and embedder.

    The store is opened (qdrant-client imported, the embedded store locked) and the model loaded
    in the background while the server already answers `initialize` and `tools/list`; tool calls
    wait for it. If the store cannot be opened, `on_fatal` is told why.
    """

    def __init__(
        self,
        open_store: Callable[[], Store],
        embedder: Embedder,
        default_collection: str,
        on_fatal: Callable[[str], None],
    ) -> None:
        self._open_store = open_store
        self._store: Store | None = None
        self._opened = anyio.Event()
        self._embedder = embedder
        self._default = default_collection
        self._on_fatal = on_fatal
        # One store call at a time, off the event loop: the embedded store is single-threaded.
        self._limiter = anyio.CapacityLimiter(1)

    def register(self, server: MCPServer) -> None:
        for tool, hints in (
            (self.search, READ_ONLY),
            (self.upsert, OVERWRITES),
            (self.delete, OVERWRITES),
            (self.create_collection, ADDITIVE),
            (self.get_collection_info, READ_ONLY),
        ):
            description = inspect.cleandoc(tool.__doc__ or "")
            server.add_tool(tool, description=description, annotations=hints)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._open)
            try:
                yield
            finally:
                tasks.cancel_scope.cancel()
        if self._store is not None:
            await anyio.to_thread.run_sync(self._store.close, limiter=self._limiter)

    async def _open(self) -> None:
        try:
            self._store = await anyio.to_thread.run_sync(self._open_store, limiter=self._limiter)
        except StoreError as e:
            self._on_fatal(str(e))
            return
        self._opened.set()
        try:  # warm up, so the first search does not pay for loading the model
            await self._run(self._embedder.embed, ["warm-up"])
        except ToolError:
            logger.exception("the embedding model does not load")

    async def _store_ready(self) -> Store:
        await self._opened.wait()
        assert self._store is not None
        return self._store

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await anyio.to_thread.run_sync(
                partial(fn, *args, **kwargs), limiter=self._limiter
            )
        except (StoreError, EmbedderError) as e:
            raise ToolError(str(e)) from e

    def _name(self, collection: str | None) -> str:
        return collection or self._default

    async def search(
        self,
        query: Annotated[str | None, Field(description="Text to search for by meaning.")] = None,
        collection: Collection = None,
        *,
        vector: Annotated[
            list[float] | None, Field(description="Search with this vector instead of a text.")
        ] = None,
        filter: Filter = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIMIT, description="Most hits to return.")] = 5,
        score_threshold: Annotated[
            float | None, Field(description="Leave out hits scoring below this.")
        ] = None,
    ) -> SearchResult:
        """Find the stored points closest in meaning to `query` (or to `vector`), best first,
        optionally only among those whose payload matches `filter`."""
        if (query is None) == (vector is None):
            raise ToolError("give exactly one of query (a text) or vector")
        store = await self._store_ready()
        where = _checked(store.where, filter)
        if vector is None:
            vector = (await self._run(self._embedder.embed, [str(query)]))[0]
        target = self._name(collection)
        hits = await self._run(
            store.search,
            target,
            vector,
            limit=limit,
            where=where,
            score_threshold=score_threshold,
        )
        return SearchResult(
            collection=target,
            hits=[
                SearchHit(
                    id=h.id, score=h.score, text=h.payload.pop(TEXT_KEY, None), payload=h.payload
                )
                for h in hits
            ],
        )

    async def upsert(
        self,
        documents: Annotated[list[Document], Field(min_length=1, max_length=1000)],
        collection: Collection = None,
    ) -> UpsertResult:
        """Store documents (text and/or vector, plus payload); a point with the same id is
        replaced. A missing collection is created, sized for the vectors (cosine distance)."""
        target = self._name(collection)
        store = await self._store_ready()
        texts = [str(d.text) for d in documents if d.vector is None]
        embedded = iter(await self._run(self._embedder.embed, texts) if texts else [])
        points: list[Point] = []
        for d in documents:
            payload = dict(d.payload)
            if d.text is not None:
                payload[TEXT_KEY] = d.text
            points.append(
                Point(
                    id=_checked(point_id, d.id) if d.id is not None else text_id(str(d.text)),
                    vector=d.vector if d.vector is not None else next(embedded),
                    payload=payload,
                )
            )
        sizes = {len(p.vector) for p in points}
        if len(sizes) != 1:
            raise ToolError(f"the vectors differ in length: {sorted(sizes)}")
        created = False
        if not await self._run(store.exists, target):
            created = await self._run(store.create, target, sizes.pop(), "cosine")
        await self._run(store.upsert, target, points)
        return UpsertResult(
            collection=target, ids=[p.id for p in points], created_collection=created
        )

    async def delete(
        self,
        collection: Collection = None,
        ids: Annotated[
            list[PointId] | None, Field(description="Delete the points with these ids.")
        ] = None,
        filter: Filter = None,
    ) -> DeleteResult:
        """Delete points by id, or every point whose payload matches `filter`."""
        if (ids is None) == (filter is None):
            raise ToolError("give exactly one of ids or filter")
        store = await self._store_ready()
        where = _checked(store.where, filter)
        targets = [_checked(point_id, i) for i in ids or []]
        target = self._name(collection)
        deleted = await self._run(store.delete, target, targets, where)
        return DeleteResult(collection=target, deleted=deleted)

    async def create_collection(
        self,
        collection: Collection = None,
        vector_size: Annotated[
            int | None,
            Field(ge=1, le=65536, description="Dimensions; default: the embedder's (384)."),
        ] = None,
        distance: Annotated[Distance, Field(description="How closeness is measured.")] = "cosine",
    ) -> CreateResult:
        """Create a collection (nothing happens if it exists with the same vectors)."""
        size = vector_size or self._embedder.dimension
        target = self._name(collection)
        store = await self._store_ready()
        created = await self._run(store.create, target, size, distance)
        return CreateResult(collection=target, created=created, vector_size=size, distance=distance)

    async def get_collection_info(
        self,
        collection: Annotated[
            str | None, Field(description="A collection's name; omit it to list them all.")
        ] = None,
    ) -> CollectionsInfo:
        """Point count, vector size, distance and status of one collection, or of every one."""
        store = await self._store_ready()
        names = [collection] if collection else await self._run(store.collections)
        facts = [await self._run(store.facts, n) for n in names]
        return CollectionsInfo(
            collections=[
                CollectionInfo(
                    name=f.name,
                    points=f.points,
                    vector_size=f.vector_size,
                    distance=f.distance,
                    status=f.status,
                    indexed_fields=f.indexed_fields,
                )
                for f in facts
            ],
            default_collection=self._default,
            embedding_model=self._embedder.name,
            embedding_dimension=self._embedder.dimension,
        )


def _checked(fn: Callable[..., T], *args: Any) -> T:
    try:
        return fn(*args)
    except StoreError as e:
        raise ToolError(str(e)) from e


def build_server(
    open_store: Callable[[], Store],
    embedder: Embedder,
    default_collection: str,
    on_fatal: Callable[[str], None],
) -> MCPServer:
    tools = Tools(open_store, embedder, default_collection, on_fatal)

    @asynccontextmanager
    async def lifespan(_server: MCPServer) -> AsyncIterator[None]:
        async with tools.running():
            yield

    server = MCPServer(
        "qdrant",
        version=VERSION,
        instructions=(
            "Vector search over Qdrant. Store texts with `upsert` (they are embedded offline "
            f"with {embedder.name}, {embedder.dimension}-d) and find them by meaning with "
            "`search`; payload fields narrow a search through `filter`."
        ),
        log_level="WARNING",
        lifespan=lifespan,
    )
    tools.register(server)
    return server
