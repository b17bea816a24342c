"""Live connections to MCP servers: replicas, health, restarts, and routing between them."""
