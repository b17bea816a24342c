"""Every Prometheus metric of the gateway, defined here and only here; others just record."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _StatusCollector(Collector):
    """Per-server readiness and replica counts, and active client sessions, read at scrape time."""

    def __init__(
        self, status: Callable[[], Mapping[str, Mapping[str, Any]]], sessions: Callable[[], int]
    ) -> None:
        self._status = status
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "cua_gateway_server_up", "1 when a server can take calls", labels=["server"]
        )
        replicas = GaugeMetricFamily(
            "cua_gateway_replicas", "Replicas of each server by state", labels=["server", "state"]
        )
        for name, server in self._status().items():
            up.add_metric([name], 1.0 if server.get("ready") else 0.0)
            counts: dict[str, int] = {}
            for replica in server.get("replicas") or []:
                counts[replica["state"]] = counts.get(replica["state"], 0) + 1
            for state, count in counts.items():
                replicas.add_metric([name, state], count)
        sessions = GaugeMetricFamily("cua_gateway_active_sessions", "Connected client sessions")
        sessions.add_metric([], self._sessions())
        yield from (up, replicas, sessions)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cua_gateway_requests",
            "MCP requests from clients, by method, server, tool and outcome",
            ["method", "server", "tool", "outcome"],
            registry=self.registry,
        )
        self.tool_latency = Histogram(
            "cua_gateway_tool_call_seconds",
            "Latency of tool calls through the gateway",
            ["server", "tool"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def watch(
        self, status: Callable[[], Mapping[str, Mapping[str, Any]]], sessions: Callable[[], int]
    ) -> None:
        self.registry.register(_StatusCollector(status, sessions))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
