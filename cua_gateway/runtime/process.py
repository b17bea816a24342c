"""The `process` runtime: a local command speaking MCP on stdin/stdout (the Claude Desktop style).

Each replica runs in its own process group, so stopping it stops everything it started.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from functools import partial

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from cua_gateway.errors import StartError
from cua_gateway.runtime._attach import StderrLines
from cua_gateway.runtime._wire import Inbound, LineDecoder, SessionMessage, encode, pipes
from cua_gateway.runtime.base import Exit, Link, ReplicaSpec

logger = logging.getLogger(__name__)

STOP_GRACE = 2.0  # seconds a process gets to exit once its stdin is closed
TERM_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of its process group
READ_CHUNK = 65536

INHERITED = ("HOME", "LANG", "LC_ALL", "LOGNAME", "PATH", "SHELL", "TERM", "TMPDIR", "USER")
"""Variables a process server inherits from the gateway; nothing else leaks (no other secrets)."""


class ProcessRuntime:
    def __init__(self, inherited: Mapping[str, str]) -> None:
        self._inherited = {k: v for k, v in inherited.items() if k in INHERITED}

    async def prepare(self, spec: ReplicaSpec) -> None:
        """Nothing to prepare: the command is started as it is."""

    @asynccontextmanager
    async def open(self, spec: ReplicaSpec) -> AsyncIterator[Link]:
        config = spec.config
        assert config.command is not None
        try:
            process = await anyio.open_process(
                [config.command, *config.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=config.cwd,
                env={**self._inherited, **spec.environment},
                start_new_session=True,
            )
        except OSError as e:
            raise StartError(spec.server, spec.index, f"cannot run {config.command!r}: {e}") from e
        assert process.stdin and process.stdout and process.stderr
        exit = Exit()
        inbound_send, inbound_receive, outbound_send, outbound_receive = pipes()
        link = Link(inbound_receive, outbound_send, exit, f"pid {process.pid}")
        stderr = StderrLines(partial(_log_stderr, spec), link.stderr_tail)
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(_watch_exit, process, exit)
                tasks.start_soon(_read_stdout, process.stdout, inbound_send)
                tasks.start_soon(_read_stderr, process.stderr, stderr)
                tasks.start_soon(_write_stdin, process.stdin, outbound_receive)
                try:
                    yield link
                except Exception:
                    await exit.learn()
                    raise
                finally:
                    exit.stopping = True
                    await outbound_send.aclose()
                    await inbound_receive.aclose()
                    with anyio.CancelScope(shield=True):
                        await _stop(process)
                    tasks.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await process.aclose()


async def _stop(process: Process) -> None:
    """stdin closed → wait; then SIGTERM the group → wait; then SIGKILL the group."""
    for signum, grace in ((None, STOP_GRACE), (signal.SIGTERM, TERM_GRACE), (signal.SIGKILL, None)):
        if signum is not None:
            try:
                os.killpg(process.pid, signum)
            except ProcessLookupError:
                return
        if grace is None:
            return
        with anyio.move_on_after(grace):
            await process.wait()
            # the leader exited; its group may live on
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            return


async def _watch_exit(process: Process, exit: Exit) -> None:
    status = await process.wait()
    exit.set(f"process exited with status {status}", status)


async def _read_stdout(stdout: ByteReceiveStream, inbound: MemoryObjectSendStream[Inbound]) -> None:
    decoder = LineDecoder()
    async with inbound:
        async for chunk in stdout:
            for message in decoder.feed(chunk):
                try:
                    await inbound.send(message)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return


async def _read_stderr(stderr: ByteReceiveStream, lines: StderrLines) -> None:
    async for chunk in stderr:
        lines.feed(chunk)


async def _write_stdin(
    stdin: ByteSendStream, outbound: MemoryObjectReceiveStream[SessionMessage]
) -> None:
    try:
        async with outbound:
            async for message in outbound:
                await stdin.send(encode(message))
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        return
    finally:
        await stdin.aclose()


def _log_stderr(spec: ReplicaSpec, line: str) -> None:
    logger.info("stderr: %s", line, extra={"server": spec.server, "replica": spec.index})
