"""What the tools and the store exchange: points, hits, collection facts, ids; no qdrant import
here, so the server answers `initialize` before qdrant-client is loaded."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

Distance = Literal["cosine", "dot", "euclid", "manhattan"]
PointId = int | str

TEXT_KEY = "text"  # the payload field that holds a document's text
ID_NAMESPACE = uuid.UUID("8f0c2b1e-6a4d-4f43-9a57-3c2f1d0e5b7a")  # ids derived from texts


class StoreError(Exception):
    """A request the store cannot carry out, in words for the caller."""


@dataclass(frozen=True, slots=True)
class Point:
    id: PointId
    vector: list[float]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Hit:
    id: PointId
    score: float
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CollectionFacts:
    name: str
    points: int
    vector_size: int
    distance: str
    status: str
    indexed_fields: dict[str, str] = field(default_factory=dict)


def text_id(text: str) -> str:
    """The id a text gets when none is given: the same text always gets the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, text))


def point_id(value: PointId) -> PointId:
    """Qdrant ids are unsigned integers or UUIDs."""
    if isinstance(value, int):
        if value < 0:
            raise StoreError(f"point ids are unsigned integers or UUIDs (got {value})")
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        if value.isdigit():
            return int(value)
        raise StoreError(f"point ids are unsigned integers or UUIDs (got {value!r})") from None
