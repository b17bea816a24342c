"""Unit tests of the neo4j server, in-process: `pytest servers/neo4j/tests` from the repository.
Its behaviour against a real Bolt server is tested by tests/e2e/test_neo4j.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
