from collections import Counter
from dataclasses import dataclass

from cua_gateway.downstream.routing import LeastConnections, RoundRobin, Weighted


@dataclass
class Fake:
    index: int
    in_flight: int = 0
    weight: int = 1


def test_round_robin_takes_each_replica_in_turn() -> None:
    replicas = [Fake(0), Fake(1), Fake(2)]
    router = RoundRobin()
    assert [router.pick(replicas).index for _ in range(6)] == [0, 1, 2, 0, 1, 2]


def test_round_robin_skips_a_replica_that_left_without_resetting() -> None:
    a, b, c = Fake(0), Fake(1), Fake(2)
    router = RoundRobin()
    assert router.pick([a, b, c]) is a
    assert router.pick([a, c]) is c  # b is unhealthy: the turn passes to c, not back to a
    assert router.pick([a, b, c]) is a


def test_least_connections_prefers_the_idle_replica() -> None:
    busy, idle = Fake(0, in_flight=3), Fake(1, in_flight=0)
    router = LeastConnections()
    assert [router.pick([busy, idle]).index for _ in range(3)] == [1, 1, 1]


def test_least_connections_breaks_ties_in_turn() -> None:
    replicas = [Fake(0), Fake(1)]
    router = LeastConnections()
    assert [router.pick(replicas).index for _ in range(4)] == [0, 1, 0, 1]


def test_weighted_spreads_in_proportion_without_bursts() -> None:
    replicas = [Fake(0, weight=3), Fake(1, weight=1), Fake(2, weight=1)]
    router = Weighted()
    picks = [router.pick(replicas).index for _ in range(10)]
    assert Counter(picks) == {0: 6, 1: 2, 2: 2}
    assert picks[:5] == [0, 1, 0, 2, 0]
