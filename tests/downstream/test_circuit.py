from cua_gateway.downstream.circuit import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_circuit_opens_after_threshold_failures_in_a_row() -> None:
    breaker = CircuitBreaker(3, 10.0, Clock())
    breaker.failure()
    breaker.failure()
    assert breaker.allows()
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allows()


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(2, 10.0, Clock())
    breaker.failure()
    breaker.success()
    breaker.failure()
    assert breaker.state is CircuitState.CLOSED


def test_open_circuit_lets_one_attempt_through_after_the_reset_time() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failure()
    clock.now = 4.0
    assert breaker.retry_in == 6.0
    clock.now = 10.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allows()


def test_failure_when_half_open_reopens_and_success_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(2, 10.0, clock)
    breaker.failure()
    breaker.failure()
    clock.now = 10.0
    breaker.failure()
    assert breaker.state is CircuitState.OPEN
    clock.now = 20.0
    breaker.success()
    assert breaker.state is CircuitState.CLOSED
