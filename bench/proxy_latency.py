"""Echo-call latency and throughput through the gateway, against a direct connection to the same
server and against FastMCP 4's proxy (the peer; `bash bench/setup-peer.sh` first), measured in
the same run, over stdio and over streamable HTTP.

    .venv/bin/python bench/proxy_latency.py [--calls 500] [--clients 16] [--write FILE]

Sequential calls give p50/p99 latency; `--clients` concurrent sessions give throughput (the
median of three rounds of at least 50 calls per session). The clients are SDK sessions in this
one process, so their own cost, the same in every row, bounds every rate.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import httpx2
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
SERVER = ROOT / "tests" / "servers" / "testserver" / "server.py"
GATEWAY = [sys.executable, "-m", "cua_gateway", "run"]
PEER = [
    str(ROOT / ".cua" / "bench-venv" / "bin" / "python"),
    str(ROOT / "bench" / "fastmcp_proxy.py"),
]
Connect = Callable[[], AbstractAsyncContextManager[ClientSession]]
ROUNDS = 3  # throughput rounds per path; the median is reported


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def over_stdio(command: list[str]) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command[0], args=command[1:])
    with Path("/dev/null").open("w") as errlog:  # noqa: ASYNC230
        async with stdio_client(params, errlog=errlog) as (r, w), ClientSession(r, w) as s:
            await s.initialize()
            yield s


@asynccontextmanager
async def over_http(url: str) -> AsyncIterator[ClientSession]:
    async with streamable_http_client(url) as (r, w), ClientSession(r, w) as s:
        await s.initialize()
        yield s


async def wait_http(url: str) -> None:
    with anyio.fail_after(60):
        async with httpx2.AsyncClient() as http:
            while True:
                try:
                    await http.get(url)
                    return
                except httpx2.HTTPError:
                    await anyio.sleep(0.1)


async def latency(connect: Connect, tool: str, calls: int) -> list[float]:
    async with connect() as session:
        for _ in range(20):  # warm up
            await session.call_tool(tool, {"text": "x"})
        samples = []
        for _ in range(calls):
            start = time.perf_counter()
            await session.call_tool(tool, {"text": "x"})
            samples.append(time.perf_counter() - start)
        return samples


async def throughput(
    connect: Connect, tool: str, clients: int, calls: int, rounds: int = ROUNDS
) -> float:
    """Calls per second of `clients` sessions calling at once, `calls` each: the median of
    `rounds` rounds over the same sessions (one short round is at the mercy of the machine)."""
    sessions: list[ClientSession] = []
    rates = []
    async with anyio.create_task_group() as opened, _many(connect, clients, sessions, opened):
        for _ in range(rounds):
            start = time.perf_counter()
            async with anyio.create_task_group() as tasks:
                for session in sessions:
                    tasks.start_soon(_calls, session, tool, calls)
            rates.append(clients * calls / (time.perf_counter() - start))
        opened.cancel_scope.cancel()
    return statistics.median(rates)


@asynccontextmanager
async def _many(
    connect: Connect, count: int, sessions: list[ClientSession], tasks: anyio.abc.TaskGroup
) -> AsyncIterator[None]:
    ready = anyio.Event()

    async def hold() -> None:
        async with connect() as session:
            await session.call_tool("echo", {"text": "warm"})  # the server behind is up
            sessions.append(session)
            if len(sessions) == count:
                ready.set()
            await anyio.sleep_forever()

    for _ in range(count):
        tasks.start_soon(hold)
    await ready.wait()
    yield


async def _calls(session: ClientSession, tool: str, calls: int) -> None:
    for _ in range(calls):
        await session.call_tool(tool, {"text": "x"})


def config(folder: Path) -> Path:
    path = folder / "gateway.yml"
    path.write_text(
        f"gateway: {{name: bench, state_dir: {folder}/state}}\n"
        f'servers:\n  bench: {{command: "{sys.executable}", args: ["{SERVER}"]}}\n'
    )
    return path


async def measure(calls: int, clients: int) -> list[tuple[str, str, list[float], float]]:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        cfg = config(Path(scratch))
        direct_stdio: Connect = lambda: over_stdio([sys.executable, str(SERVER)])  # noqa: E731
        gateway_stdio: Connect = lambda: over_stdio([*GATEWAY, "-t", "stdio", "-c", str(cfg)])  # noqa: E731
        peer_stdio: Connect = lambda: over_stdio([*PEER, sys.executable, str(SERVER), "stdio"])  # noqa: E731
        server_port, gateway_port, peer_port = free_port(), free_port(), free_port()
        server = subprocess.Popen(
            [sys.executable, str(SERVER), "http", "--port", str(server_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        gateway = subprocess.Popen(
            [*GATEWAY, "-c", str(cfg), "--port", str(gateway_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peer = subprocess.Popen(
            [*PEER, sys.executable, str(SERVER), "http", str(peer_port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_http(f"http://127.0.0.1:{server_port}/mcp")
            await wait_http(f"http://127.0.0.1:{gateway_port}/healthz")
            await wait_http(f"http://127.0.0.1:{peer_port}/mcp")
            peer_http: Connect = lambda: over_http(f"http://127.0.0.1:{peer_port}/mcp")  # noqa: E731
            direct_http: Connect = lambda: over_http(f"http://127.0.0.1:{server_port}/mcp")  # noqa: E731
            gateway_http: Connect = lambda: over_http(f"http://127.0.0.1:{gateway_port}/mcp")  # noqa: E731
            for transport, direct, through, fastmcp in (
                ("stdio", direct_stdio, gateway_stdio, peer_stdio),
                ("streamable HTTP", direct_http, gateway_http, peer_http),
            ):
                for label, connect, tool in (
                    ("direct", direct, "echo"),
                    ("cua-gateway", through, "echo"),
                    ("FastMCP 4 proxy", fastmcp, "echo"),
                ):
                    samples = await latency(connect, tool, calls)
                    rate = await throughput(connect, tool, clients, max(calls // clients, 50))
                    rows.append((transport, label, samples, rate))
                    print(
                        f"{transport:16} {label:12} p50 {statistics.median(samples) * 1e3:.2f} ms",
                        file=sys.stderr,
                    )
        finally:
            for process in (server, gateway, peer):
                process.terminate()
                process.wait()
    return rows


def table(rows: list[tuple[str, str, list[float], float]], clients: int) -> str:
    head = f"throughput, {clients} clients (calls/s)"
    lines = [
        f"| transport | path | p50 (ms) | p99 (ms) | p50 vs direct | {head} |",
        "|---|---|---|---|---|---|",
    ]
    base: dict[str, float] = {}
    for transport, label, samples, rate in rows:
        ordered = sorted(samples)
        p50 = statistics.median(ordered)
        p99 = ordered[int(len(ordered) * 0.99) - 1]
        base.setdefault(transport, p50)
        lines.append(
            f"| {transport} | {label} | {p50 * 1e3:.2f} | {p99 * 1e3:.2f} | "
            f"{p50 / base[transport]:.2f}× | {rate:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = anyio.run(measure, args.calls, args.clients)
    result = table(rows, args.clients)
    print(result)
    if args.write:
        args.write.write_text(
            args.write.read_text() + "\n" + result + "\n" if args.write.exists() else result + "\n"
        )


if __name__ == "__main__":
    main()
