"""Make sure a server's image exists: present locally, else built from `build`, else pulled."""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import docker
import docker.errors

from cua_gateway.config.server import ServerConfig
from cua_gateway.errors import GatewayError, ImageError

logger = logging.getLogger(__name__)

BUILD_LOG_TAIL = 30  # lines of build output kept for the error message
DIGEST_LABEL = "io.cua-gateway.build-digest"  # what the image was built from


def image_tag(server: str, config: ServerConfig) -> str:
    """The image a server runs: `image`, or for a `build` without one, `cua-gateway/<server>`."""
    return config.image or f"cua-gateway/{server}:latest"


async def ensure_image(api: docker.APIClient, server: str, config: ServerConfig) -> str:
    """The image's tag, once it is present and — for `build` — built from the context as it is
    now (a changed file, Dockerfile or build argument rebuilds it)."""
    tag = image_tag(server, config)
    if config.build is None:
        if await anyio.to_thread.run_sync(_labels, api, tag) is None:
            await anyio.to_thread.run_sync(_pull, api, server, tag)
        return tag
    digest = await anyio.to_thread.run_sync(build_digest, config)
    labels = await anyio.to_thread.run_sync(_labels, api, tag)
    if labels is None or labels.get(DIGEST_LABEL) != digest:
        await anyio.to_thread.run_sync(_build, api, server, config, tag, digest)
    return tag


async def build_images(servers: Mapping[str, ServerConfig]) -> dict[str, str]:
    """`ensure_image` for each server, one after the other (builds share two cores); the tags."""
    try:
        api = await anyio.to_thread.run_sync(partial(docker.APIClient, version="auto"))
    except docker.errors.DockerException as e:
        raise GatewayError(f"Docker is not reachable: {e}") from e
    try:
        return {name: await ensure_image(api, name, config) for name, config in servers.items()}
    finally:
        api.close()


def build_digest(config: ServerConfig) -> str:
    """A digest of everything a build depends on: the context's files and the build settings."""
    build = config.build
    assert build is not None
    root = Path(build.context)
    digest = hashlib.sha256(repr((build.dockerfile, sorted(build.args.items()))).encode())
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()


def _labels(api: docker.APIClient, tag: str) -> dict[str, str] | None:
    """The image's labels, or None when there is no such image."""
    try:
        info = api.inspect_image(tag)  # type: ignore[no-untyped-call]
    except docker.errors.ImageNotFound:
        return None
    return dict(info.get("Config", {}).get("Labels") or {})


def _pull(api: docker.APIClient, server: str, tag: str) -> None:
    logger.info("pulling image %s", tag, extra={"server": server})
    try:
        api.pull(tag)
    except docker.errors.APIError as e:
        raise ImageError(
            server, tag, f"not present and could not be pulled: {e.explanation}"
        ) from e


def _build(api: docker.APIClient, server: str, config: ServerConfig, tag: str, digest: str) -> None:
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
            labels={DIGEST_LABEL: digest},
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
    if _labels(api, tag) is None:
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
