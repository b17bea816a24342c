import io
import json
import logging
from collections.abc import Iterator

import anyio
import pytest

from cua_gateway import logs


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    logs.configure("info", "json", out)
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def test_records_are_json_lines_with_the_fields_bound_for_the_request(stream: io.StringIO) -> None:
    async def request(server: str) -> None:
        logs.bind(method="tools/call", server=server)
        logging.getLogger("cua_gateway.test").warning("slow answer from %s", server)

    async def main() -> None:
        async with anyio.create_task_group() as tasks:  # each request has its own context
            tasks.start_soon(request, "alpha")
            tasks.start_soon(request, "beta")

    anyio.run(main)
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {(r["server"], r["message"]) for r in records} == {
        ("alpha", "slow answer from alpha"),
        ("beta", "slow answer from beta"),
    }
    assert all(r["level"] == "warning" and r["method"] == "tools/call" for r in records)
