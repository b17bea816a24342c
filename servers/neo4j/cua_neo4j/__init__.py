"""cua-neo4j: an MCP server for Neo4j-compatible graph databases, over the official driver."""

__version__ = "0.1.0"
