"""cua-gateway: one MCP endpoint in front of many supervised MCP servers."""

__version__ = "0.1.0"
