"""Starting MCP servers: Docker containers, local processes, remote URLs, behind one Protocol.

Data flows one way: config → runtime → downstream → pipeline → front. Nothing here imports from
the layers after it.
"""
