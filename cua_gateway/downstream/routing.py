"""Which healthy replica takes the next call: `round_robin`, `least_connections` or `weighted`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar


class Routable(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def weight(self) -> int: ...


R = TypeVar("R", bound=Routable)


class Router(Protocol):
    def pick(self, candidates: Sequence[R]) -> R:
        """One of `candidates` (healthy replicas, never empty, ordered by index)."""
        ...


class RoundRobin:
    """Each replica in turn; a replica that leaves or rejoins does not reset the rotation."""

    def __init__(self) -> None:
        self._last = -1

    def pick(self, candidates: Sequence[R]) -> R:
        after = [c for c in candidates if c.index > self._last]
        chosen = after[0] if after else candidates[0]
        self._last = chosen.index
        return chosen


class LeastConnections:
    """The replica with the fewest calls in flight; ties go round robin."""

    def __init__(self) -> None:
        self._ties = RoundRobin()

    def pick(self, candidates: Sequence[R]) -> R:
        fewest = min(c.in_flight for c in candidates)
        return self._ties.pick([c for c in candidates if c.in_flight == fewest])


class Weighted:
    """Smooth weighted round robin: weights 3, 1, 1 give a, b, a, c, a — spread, not bursts."""

    def __init__(self) -> None:
        self._current: dict[int, int] = {}

    def pick(self, candidates: Sequence[R]) -> R:
        total = sum(c.weight for c in candidates)
        for c in candidates:
            self._current[c.index] = self._current.get(c.index, 0) + c.weight
        chosen = max(candidates, key=lambda c: (self._current[c.index], -c.index))
        self._current[chosen.index] -= total
        return chosen


ROUTERS: dict[str, Callable[[], Router]] = {
    "round_robin": RoundRobin,
    "least_connections": LeastConnections,
    "weighted": Weighted,
}
