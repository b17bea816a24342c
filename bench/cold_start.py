"""Image size and cold start (container start → `initialize` answered) of the shipped servers.

    .venv/bin/python bench/cold_start.py [--runs 3]

Starts each server that needs no outside service (playwright, qdrant, e2b) through the gateway's
own runtime, from the shipped gateway.yml, `--runs` times; reports the median. Image sizes are
read from Docker for all six (build them first: `bash scripts/run.sh` or the e2e tests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import anyio
import docker

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import shipped_server  # noqa: E402
from tests.integration.conftest import ready, running  # noqa: E402

SELF_CONTAINED = ("playwright", "qdrant", "e2b")
ALL = ("github", "playwright", "ssh", "qdrant", "neo4j", "e2b")


async def cold_start(name: str) -> float:
    loaded = shipped_server(name, f"bench{uuid.uuid4().hex[:6]}", {})
    pool_ready = 0.0
    started = time.perf_counter()
    async with running(loaded) as supervisor:
        await ready(supervisor.pool(name))
        pool_ready = time.perf_counter() - started
    return pool_ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    api = docker.APIClient(version="auto")
    print(f"| server | image size | cold start, median of {args.runs} (s) |")
    print("|---|---|---|")
    for name in ALL:
        try:
            size = f"{api.inspect_image(f'cua-gateway/{name}:latest')['Size'] / 1e6:.0f} MB"
        except docker.errors.ImageNotFound:
            size = "not built"
        if name in SELF_CONTAINED:
            anyio.run(cold_start, name)  # builds the image if it must; not measured
            times = [anyio.run(cold_start, name) for _ in range(args.runs)]
            shown = f"{statistics.median(times):.2f} ({', '.join(f'{t:.2f}' for t in times)})"
        else:
            shown = "needs its service: see its e2e test"
        print(f"| {name} | {size} | {shown} |")


if __name__ == "__main__":
    main()
