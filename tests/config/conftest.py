from collections.abc import Callable, Mapping
from pathlib import Path
from textwrap import dedent

import pytest

from cua_gateway.config import LoadedConfig, parse_config

Load = Callable[..., LoadedConfig]


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """Parse YAML text as if it were `gateway.yml` in an empty project folder."""

    def parse(text: str, env: Mapping[str, str] | None = None) -> LoadedConfig:
        return parse_config(dedent(text), tmp_path / "gateway.yml", env or {})

    return parse
