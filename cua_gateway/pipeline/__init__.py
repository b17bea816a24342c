"""MCP-level middleware between the front and the downstream servers: policy, limits, caching."""
