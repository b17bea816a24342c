"""The last known tool list of each server, kept on disk so that a restarted gateway can list a
server's tools while that server is still starting."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class CatalogStore:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def _path(self, server: str) -> Path:
        return self._directory / f"{server}.tools.json"

    def load(self, server: str) -> list[dict[str, Any]] | None:
        try:
            tools = json.loads(self._path(server).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            logger.warning("ignoring unreadable tool catalog of %s: %s", server, e)
            return None
        return tools if isinstance(tools, list) else None

    def save(self, server: str, tools: list[dict[str, Any]]) -> None:
        path = self._path(server)
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            scratch = path.with_suffix(f".{os.getpid()}.tmp")
            scratch.write_text(json.dumps(tools), encoding="utf-8")
            scratch.replace(path)  # atomic: a reader never sees half a file
        except OSError as e:
            logger.warning("could not save the tool catalog of %s: %s", server, e)
