"""The gateway's error hierarchy: one root, subclasses that carry fields, not just text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a configuration file, located as precisely as the file allows."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(GatewayError):
    """gateway.yml could not be loaded; `problems` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.file, p.line, p.column)))
        super().__init__("\n".join(str(p) for p in self.problems))


class ConfigFileError(GatewayError):
    """The configuration file itself is missing or unreadable."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ServerError(GatewayError):
    """Something went wrong with one MCP server, named by `server` (and `replica` when known)."""

    def __init__(self, server: str, message: str, *, replica: int | None = None) -> None:
        self.server = server
        self.replica = replica
        where = server if replica is None else f"{server}#{replica}"
        super().__init__(f"{where}: {message}")


class ImageError(ServerError):
    """The server's image is missing and cannot be pulled or built; `log` ends with the failure."""

    def __init__(self, server: str, image: str, message: str, log: str = "") -> None:
        self.image = image
        self.log = log
        super().__init__(server, f"image {image}: {message}")


class StartError(ServerError):
    """A replica could not be started or did not answer `initialize` in time."""

    def __init__(
        self,
        server: str,
        replica: int,
        message: str,
        *,
        container_id: str | None = None,
        exit_status: int | None = None,
    ) -> None:
        self.container_id = container_id
        self.exit_status = exit_status
        super().__init__(server, message, replica=replica)


class ReplicaLost(ServerError):
    """The connection to a replica ended (it exited, was killed, or the network dropped)."""


class CallTimeout(ServerError):
    """A request to a server got no answer within its timeout."""

    def __init__(self, server: str, method: str, timeout: float, *, replica: int | None = None):
        self.method = method
        self.timeout = timeout
        super().__init__(server, f"{method} got no answer within {timeout:g}s", replica=replica)


class Unavailable(ServerError):
    """No replica of the server can take calls now (starting, restarting, or circuit open)."""


class DownstreamError(ServerError):
    """The server answered with a JSON-RPC error; `code`, `error_message` and `data` are its own."""

    def __init__(
        self,
        server: str,
        code: int,
        error_message: str,
        data: object = None,
        *,
        replica: int | None = None,
    ) -> None:
        self.code = code
        self.error_message = error_message
        self.data = data
        super().__init__(server, f"error {code}: {error_message}", replica=replica)


class InvalidRequest(GatewayError):
    """The client asked for something that does not exist or sent arguments that do not fit."""
