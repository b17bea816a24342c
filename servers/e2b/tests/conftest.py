"""Unit tests of the e2b server, in-process: `pytest servers/e2b/tests` from the repository."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
