"""cua-gateway's qdrant MCP server: vector search with offline embeddings."""
