"""Make sure a server's image exists: present locally, else built from `build`, else pulled."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

import anyio
import docker
import docker.errors

from cua_gateway.config.server import ServerConfig
from cua_gateway.errors import ImageError

logger = logging.getLogger(__name__)

BUILD_LOG_TAIL = 30  # lines of build output kept for the error message


def image_tag(server: str, config: ServerConfig) -> str:
    """The image a server runs: `image`, or for a `build` without one, `cua-gateway/<server>`."""
    return config.image or f"cua-gateway/{server}:latest"


async def ensure_image(api: docker.APIClient, server: str, config: ServerConfig) -> str:
    tag = image_tag(server, config)
    if await anyio.to_thread.run_sync(_exists, api, tag):
        return tag
    if config.build is None:
        await anyio.to_thread.run_sync(_pull, api, server, tag)
    else:
        await anyio.to_thread.run_sync(_build, api, server, config, tag)
    return tag


def _exists(api: docker.APIClient, tag: str) -> bool:
    try:
        api.inspect_image(tag)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return False
    return True


def _pull(api: docker.APIClient, server: str, tag: str) -> None:
    logger.info("pulling image %s", tag, extra={"server": server})
    try:
        api.pull(tag)
    except docker.errors.APIError as e:
        raise ImageError(
            server, tag, f"not present and could not be pulled: {e.explanation}"
        ) from e


def _build(api: docker.APIClient, server: str, config: ServerConfig, tag: str) -> None:
    build = config.build
    assert build is not None
    if not (Path(build.context) / build.dockerfile).is_file():
        raise ImageError(server, tag, f"no {build.dockerfile} in {build.context} to build from")
    logger.info("building image %s from %s", tag, build.context, extra={"server": server})
    tail: deque[str] = deque(maxlen=BUILD_LOG_TAIL)
    try:
        for chunk in api.build(
            path=build.context,
            dockerfile=build.dockerfile,
            tag=tag,
            buildargs=dict(build.args),
            network_mode="host",
            rm=True,
            forcerm=True,
            decode=True,
        ):
            _progress(server, tag, chunk, tail)
    except ImageError:
        raise
    except docker.errors.APIError as e:
        raise ImageError(server, tag, f"build failed: {e.explanation}", "\n".join(tail)) from e
    except (docker.errors.BuildError, OSError) as e:
        raise ImageError(server, tag, f"build failed: {e}", "\n".join(tail)) from e
    if not _exists(api, tag):
        raise ImageError(
            server, tag, "build failed: " + (tail[-1] if tail else "no output"), "\n".join(tail)
        )
    logger.info("built image %s", tag, extra={"server": server})


def _progress(server: str, tag: str, chunk: dict[str, Any], tail: deque[str]) -> None:
    if "error" in chunk:
        message = str(chunk.get("error", "")).strip()
        tail.append(message)
        raise ImageError(server, tag, f"build failed: {message}", "\n".join(tail))
    for line in str(chunk.get("stream", "")).splitlines():
        if line.strip():
            tail.append(line)
            logger.info("build: %s", line, extra={"server": server})
