"""gateway.yml: its schema (`models`), and how it is read (`loader`)."""

from cua_gateway.config.loader import LoadedConfig, load_config, parse_config
from cua_gateway.config.models import GatewayConfig
from cua_gateway.config.server import ServerConfig

__all__ = ["GatewayConfig", "LoadedConfig", "ServerConfig", "load_config", "parse_config"]
