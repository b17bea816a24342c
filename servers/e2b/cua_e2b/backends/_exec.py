"""`docker exec` with stdin, bounded waits and bounded output (blocking: run it in a thread).

Docker's hijacked exec stream carries stdout and stderr multiplexed in frames: an 8-byte header
(stream, 0, 0, 0, size) then the payload. The docker SDK's own reader waits on poll() without a
timeout, so a run whose output never ends could hold a thread forever; this reader has a deadline.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import cast

import docker

from cua_e2b.backends import SandboxError

EXIT_WAIT = 2.0  # seconds for an exec's exit code once its output has ended
EXIT_POLL = 0.02  # seconds between looks at it


@dataclass(frozen=True, slots=True)
class Output:
    exit_code: int | None
    stdout: bytes
    stderr: bytes
    complete: bool  # False: the output did not end in time and was abandoned
    dropped: tuple[int, int] = (0, 0)  # bytes of stdout/stderr beyond the kept limit

    def text(self, stream: int) -> str:
        data, extra = (
            (self.stdout, self.dropped[0]) if stream == 1 else (self.stderr, self.dropped[1])
        )
        text = data.decode(errors="replace")
        return text + (f"\n[… {extra} more bytes not shown]" if extra else "")


def run(
    api: docker.APIClient,
    container: str,
    *,
    user: str,
    argv: list[str],
    stdin: bytes | None,
    workdir: str,
    wait: float,
    limit: int,
) -> Output:
    """Run `argv` in the container (blocking), feeding it `stdin`, keeping `limit` bytes of
    each output stream, and waiting at most `wait` seconds for its output to end."""
    exec_id = api.exec_create(container, argv, stdin=stdin is not None, user=user, workdir=workdir)[
        "Id"
    ]
    hijacked = api.exec_start(exec_id, socket=True)
    sock = cast(socket.socket, getattr(hijacked, "_sock", hijacked))  # the hijacked connection
    kept: dict[int, bytearray] = {1: bytearray(), 2: bytearray()}
    dropped = {1: 0, 2: 0}
    complete = True
    deadline = time.monotonic() + wait
    try:
        if stdin is not None:
            sock.settimeout(wait)
            sock.sendall(stdin)
            sock.shutdown(socket.SHUT_WR)
        for stream, data in frames(sock, deadline):
            index = 1 if stream == 1 else 2
            room = max(0, limit - len(kept[index]))
            kept[index] += data[:room]
            dropped[index] += max(0, len(data) - room)
    except TimeoutError:
        complete = False
    except OSError as e:
        raise SandboxError(f"lost the connection to the sandbox: {e}") from e
    finally:
        hijacked.close()
        sock.close()  # closing the stream leaves its socket to the Docker daemon open
    exit_code = None
    end = time.monotonic() + EXIT_WAIT
    while complete:
        info = api.exec_inspect(exec_id)
        if not info.get("Running") or time.monotonic() > end:
            exit_code = info.get("ExitCode")
            break
        time.sleep(EXIT_POLL)
    return Output(exit_code, bytes(kept[1]), bytes(kept[2]), complete, (dropped[1], dropped[2]))


def frames(sock: socket.socket, deadline: float) -> Iterator[tuple[int, bytes]]:
    """Demultiplex Docker's stream: 8-byte headers (stream, 0, 0, 0, size) then the payload."""
    buffer = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        chunk = sock.recv(65536)
        if not chunk:
            return
        buffer += chunk
        while len(buffer) >= 8:
            size = int.from_bytes(buffer[4:8], "big")
            if len(buffer) < 8 + size:
                break
            yield buffer[0], bytes(buffer[8 : 8 + size])
            del buffer[: 8 + size]
