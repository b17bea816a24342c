"""The `cua-gateway` command. The only module that reads the environment or exits the process."""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import anyio

from cua_gateway import __version__, logs
from cua_gateway._table import table
from cua_gateway.config import LoadedConfig, load_config
from cua_gateway.config.quantities import format_bytes
from cua_gateway.config.schema import json_schema
from cua_gateway.config.server import ServerConfig
from cua_gateway.errors import ConfigError, ConfigFileError, GatewayError
from cua_gateway.front.status import fetch_status, status_table
from cua_gateway.gateway import serve_http, serve_stdio
from cua_gateway.runtime.docker import owner_id
from cua_gateway.runtime.images import build_images
from cua_gateway.runtime.registry import Runtimes

EXIT_OK = 0
EXIT_FAILURE = 1  # the gateway started but failed while running
EXIT_USAGE = 2  # argparse's own code for a bad command line
EXIT_NO_INPUT = 66  # sysexits EX_NOINPUT: the configuration file cannot be read
EXIT_UNAVAILABLE = 69  # sysexits EX_UNAVAILABLE: the requested mode is not available
EXIT_CONFIG = 78  # sysexits EX_CONFIG: the configuration file is invalid

CONFIG_ENV = "CUA_GATEWAY_CONFIG"
DEFAULT_CONFIG = "gateway.yml"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "schema":
        print(json.dumps(json_schema(), indent=2))
        return EXIT_OK
    config_path = Path(args.config or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)
    try:
        loaded = load_config(config_path, os.environ)
    except ConfigFileError as e:
        print(f"cua-gateway: cannot read configuration {e}", file=sys.stderr)
        return EXIT_NO_INPUT
    except ConfigError as e:
        print(e, file=sys.stderr)
        count = len(e.problems)
        print(
            f"cua-gateway: {count} problem{'s' if count > 1 else ''} in {config_path}",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if args.command == "check":
        print(server_table(loaded))
        return EXIT_OK
    if args.command == "ls":
        return _ls(loaded, args)
    if args.command == "build":
        return _build(loaded, args.servers)
    return _run(loaded, args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cua-gateway", description="An MCP gateway.")
    parser.add_argument("--version", action="version", version=f"cua-gateway {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = f"configuration file (default: ${CONFIG_ENV} or ./{DEFAULT_CONFIG})"
    check = commands.add_parser("check", help="validate the configuration and list its servers")
    check.add_argument("-c", "--config", help=config_help)
    commands.add_parser("schema", help="print the JSON Schema of gateway.yml")
    build = commands.add_parser("build", help="build (or pull) the images of container servers")
    build.add_argument("-c", "--config", help=config_help)
    build.add_argument("servers", nargs="*", help="only these servers (default: all)")
    ls = commands.add_parser("ls", help="show the servers and replicas of a running gateway")
    ls.add_argument("-c", "--config", help=config_help)
    ls.add_argument("--url", help="the gateway's address (default: from the configuration)")
    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("-c", "--config", help=config_help)
    run.add_argument("-t", "--transport", choices=("stdio", "http"), default="http")
    run.add_argument("--host", help="address to listen on (default: gateway.host)")
    run.add_argument("--port", type=int, help="port to listen on (default: gateway.port)")
    return parser


def server_table(loaded: LoadedConfig) -> str:
    """One row per server: how it runs, from what, how many, within which limits, and whether."""
    base = loaded.path.parent.resolve()
    header = ("SERVER", "RUNTIME", "SOURCE", "REPLICAS", "LIMITS", "STATUS")
    rows = [header]
    for name, server in loaded.config.servers.items():
        reason = loaded.disabled.get(name)
        status = f"disabled: {reason}" if reason else "enabled"
        rows.append(
            (
                name,
                server.runtime,
                _source(server, base),
                str(server.replicas),
                _limits(server),
                status,
            )
        )
    for name, reason in loaded.disabled.items():  # left out: a missing variable made them invalid
        if name not in loaded.config.servers:
            rows.append((name, "?", "?", "?", "?", f"disabled: {reason}"))
    if len(rows) == 1:
        return "no servers configured"
    return table(rows)


def _source(server: ServerConfig, base: Path) -> str:
    if server.build is not None:
        context = Path(server.build.context)
        shown = context.relative_to(base) if context.is_relative_to(base) else context
        return f"build {shown}" + (f" -> {server.image}" if server.image else "")
    if server.image is not None:
        return server.image
    if server.command is not None:
        return " ".join([server.command, *server.args])
    return f"{server.url} ({server.effective_transport})"


def _limits(server: ServerConfig) -> str:
    if server.runtime != "docker":
        return "-"
    limits = server.resources
    parts = [
        f"cpu {limits.cpu:g}" if limits.cpu else "",
        f"mem {format_bytes(limits.memory)}" if limits.memory else "",
    ]
    parts.append(f"pids {limits.pids}" if limits.pids else "")
    return ", ".join(p for p in parts if p) or "none"


def _ls(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    gateway = loaded.config.gateway
    base = args.url or f"http://{gateway.host}:{gateway.port}"
    try:
        tokens = loaded.config.auth.bearer_tokens
        token = tokens[0].get_secret_value() if tokens else None
        status = fetch_status(base.rstrip("/") + "/readyz", token)
    except OSError as e:
        print(f"cua-gateway: no gateway answers at {base}: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print(status_table(status))
    return EXIT_OK


def _build(loaded: LoadedConfig, names: Sequence[str]) -> int:
    """Make sure every container server's image is there and current, whether or not the
    server is enabled now (its secrets may come later)."""
    logs.configure(loaded.config.monitoring.log_level, "text")
    unknown = [n for n in names if n not in loaded.config.servers]
    if unknown:
        print(f"cua-gateway: no such server: {', '.join(unknown)}", file=sys.stderr)
        return EXIT_USAGE
    wanted = {
        name: server
        for name, server in loaded.config.servers.items()
        if server.runtime == "docker" and (not names or name in names)
    }
    try:
        built = anyio.run(build_images, wanted)
    except GatewayError as e:
        print(f"cua-gateway: {e}", file=sys.stderr)
        return EXIT_FAILURE
    for name, tag in built.items():
        print(f"{name}: {tag}")
    return EXIT_OK


def _run(loaded: LoadedConfig, args: argparse.Namespace) -> int:
    monitoring = loaded.config.monitoring
    logs.configure(monitoring.log_level, monitoring.log_format)
    host = args.host or loaded.config.gateway.host
    port = args.port or loaded.config.gateway.port
    runtimes = Runtimes(loaded.config.gateway.name, uuid.uuid4().hex, owner_id(), os.environ)
    try:
        if args.transport == "stdio":
            anyio.run(serve_stdio, loaded, runtimes)
        else:
            anyio.run(serve_http, loaded, runtimes, host, port)
    except GatewayError as e:
        print(f"cua-gateway: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        pass
    return EXIT_OK
