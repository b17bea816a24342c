"""A circuit breaker: after `threshold` failures in a row, stop trying for `reset_after` seconds,
then let one attempt through (half-open); its success closes the circuit, a failure re-opens it."""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(
        self, threshold: int, reset_after: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self.reset_after:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def retry_in(self) -> float:
        """Seconds until an attempt is allowed again (0 when it is allowed now)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.reset_after - self._clock())

    def allows(self) -> bool:
        return self.state is not CircuitState.OPEN

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self.state is CircuitState.HALF_OPEN or self._failures >= self.threshold:
            self._opened_at = self._clock()
