"""cua-e2b: code sandboxes over MCP, with E2B's operations: a local container per sandbox, or
E2B's cloud."""

__version__ = "0.1.0"
