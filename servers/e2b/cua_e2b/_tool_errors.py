"""A sandbox's anticipated failures (SandboxError) as the tool's error message, for every tool."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from cua_e2b.backends import SandboxError

T = TypeVar("T")


async def call(work: Awaitable[T]) -> T:
    """Await a sandbox operation; its SandboxError becomes the tool's error."""
    try:
        return await work
    except SandboxError as e:
        raise ToolError(str(e)) from e


@asynccontextmanager
async def using(context: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter `context` (e.g. `sessions.use(id)`); its SandboxError, also from the body, becomes
    the tool's error."""
    try:
        async with context as value:
            yield value
    except SandboxError as e:
        raise ToolError(str(e)) from e
