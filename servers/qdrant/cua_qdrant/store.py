"""The vector store: qdrant-client, embedded (`QdrantClient(path=...)`) or against a Qdrant server.

Methods are blocking; the MCP layer calls them one at a time from a worker thread (the embedded
store is not meant for concurrent use). Failures the caller can act on raise `StoreError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from cua_qdrant.records import CollectionFacts, Distance, Hit, Point, PointId, StoreError

_DISTANCES: dict[str, models.Distance] = {
    "cosine": models.Distance.COSINE,
    "dot": models.Distance.DOT,
    "euclid": models.Distance.EUCLID,
    "manhattan": models.Distance.MANHATTAN,
}
_FILTER_KEYS = {"must", "should", "must_not", "min_should"}
_RANGE_KEYS = {"gt", "gte", "lt", "lte"}


def to_filter(spec: Mapping[str, Any] | None) -> models.Filter | None:
    """A Qdrant filter from either Qdrant's own JSON (`must`/`should`/`must_not`) or a shorthand
    `{field: value}`: a scalar matches exactly, a list matches any of its values, and a mapping
    of gt/gte/lt/lte is a range. Shorthand conditions must all hold."""
    if not spec:
        return None
    try:
        if spec.keys() & _FILTER_KEYS:
            return models.Filter.model_validate(dict(spec))
        return models.Filter(must=[_condition(key, value) for key, value in spec.items()])
    except ValueError as e:  # pydantic's ValidationError included
        raise StoreError(f"invalid filter: {e}") from e


def _condition(key: str, value: Any) -> models.Condition:
    if isinstance(value, list):
        return models.FieldCondition(key=key, match=models.MatchAny(any=value))
    if isinstance(value, Mapping):
        if not value or not value.keys() <= _RANGE_KEYS:
            raise StoreError(f"filter {key!r}: a mapping is a range of gt/gte/lt/lte")
        return models.FieldCondition(key=key, range=models.Range(**value))
    if isinstance(value, float):
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if value is None:
        return models.IsNullCondition(is_null=models.PayloadField(key=key))
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


class Store:
    def __init__(self, client: QdrantClient) -> None:
        self._client = client

    @classmethod
    def open(cls, *, path: str | None, url: str | None, api_key: str | None) -> Store:
        """A Qdrant server at `url` when given, else the embedded store in folder `path`."""
        if url:
            return cls(QdrantClient(url=url, api_key=api_key or None))
        if not path:
            raise StoreError("set QDRANT_PATH (embedded store) or QDRANT_URL (a Qdrant server)")
        try:
            return cls(QdrantClient(path=path))
        except RuntimeError as e:  # the folder is locked by another process
            raise StoreError(str(e)) from e

    def close(self) -> None:
        self._client.close()

    @staticmethod
    def where(spec: Mapping[str, Any] | None) -> models.Filter | None:
        return to_filter(spec)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StoreError:
            raise
        except UnexpectedResponse as e:
            detail = e.content.decode(errors="replace") if e.content else e.reason_phrase
            raise StoreError(f"{what}: Qdrant answered {e.status_code}: {detail}") from e
        except ResponseHandlingException as e:
            raise StoreError(f"{what}: Qdrant is not reachable: {e}") from e
        except (ValueError, KeyError, AssertionError) as e:  # what the embedded store raises
            raise StoreError(f"{what}: {e}") from e

    def exists(self, collection: str) -> bool:
        return bool(self._call("collection_exists", self._client.collection_exists, collection))

    def _require(self, collection: str) -> None:
        if not self.exists(collection):
            raise StoreError(f"collection {collection!r} does not exist")

    def create(self, collection: str, size: int, distance: Distance) -> bool:
        """Create the collection; False when it exists already with the same vectors."""
        if self.exists(collection):
            vectors = self._info(collection)[1]
            there = (vectors.size, vectors.distance.value.lower())
            if there != (size, distance):
                raise StoreError(
                    f"collection {collection!r} exists with {there[0]}-d {there[1]} vectors "
                    f"(asked: {size}-d {distance})"
                )
            return False
        params = models.VectorParams(size=size, distance=_DISTANCES[distance])
        self._call("create_collection", self._client.create_collection, collection, params)
        return True

    def upsert(self, collection: str, points: Sequence[Point]) -> None:
        size = self._info(collection)[1].size
        for point in points:
            if len(point.vector) != size:
                raise StoreError(
                    f"point {point.id}: vector has {len(point.vector)} dimensions, "
                    f"collection {collection!r} holds {size}-d vectors"
                )
        structs = [models.PointStruct(id=p.id, vector=p.vector, payload=p.payload) for p in points]
        self._call("upsert", self._client.upsert, collection, structs, wait=True)

    def search(
        self,
        collection: str,
        vector: list[float],
        *,
        limit: int,
        where: models.Filter | None,
        score_threshold: float | None,
    ) -> list[Hit]:
        size = self._info(collection)[1].size
        if len(vector) != size:
            raise StoreError(
                f"the query vector has {len(vector)} dimensions, collection {collection!r} "
                f"holds {size}-d vectors"
            )
        found = self._call(
            "search",
            self._client.query_points,
            collection,
            query=vector,
            query_filter=where,
            limit=limit,
            score_threshold=score_threshold,
            with_payload=True,
        )
        return [Hit(p.id, float(p.score), dict(p.payload or {})) for p in found.points]

    def delete(self, collection: str, ids: Sequence[PointId], where: models.Filter | None) -> int:
        """Delete the points with these ids, or those matching the filter; return how many."""
        self._require(collection)
        selector: models.PointIdsList | models.FilterSelector
        if where is not None:
            count = self._call("count", self._client.count, collection, where, exact=True).count
            selector = models.FilterSelector(filter=where)
        else:
            there = self._call("retrieve", self._client.retrieve, collection, list(ids))
            count = len(there)
            selector = models.PointIdsList(points=list(ids))
        self._call("delete", self._client.delete, collection, selector, wait=True)
        return int(count)

    def _info(self, collection: str) -> tuple[models.CollectionInfo, models.VectorParams]:
        self._require(collection)
        info = self._call("get_collection", self._client.get_collection, collection)
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(
                f"collection {collection!r} has named vectors, which this server skips"
            )
        return info, vectors

    def facts(self, collection: str) -> CollectionFacts:
        info, vectors = self._info(collection)
        count = self._call("count", self._client.count, collection, exact=True).count
        indexed = {
            key: str(getattr(schema.data_type, "value", schema.data_type))
            for key, schema in (info.payload_schema or {}).items()
        }
        return CollectionFacts(
            name=collection,
            points=int(count),
            vector_size=vectors.size,
            distance=vectors.distance.value.lower(),
            status=str(getattr(info.status, "value", info.status)),
            indexed_fields=indexed,
        )

    def collections(self) -> list[str]:
        response = self._call("get_collections", self._client.get_collections)
        return sorted(c.name for c in response.collections)
