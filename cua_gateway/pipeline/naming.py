"""Names in the aggregate catalog: `server_tool` prefixes, safe for MCP, Claude and OpenAI.

Tool and prompt names must match `^[a-zA-Z0-9_-]{1,64}$`; resource URIs get the prefix as part of
their scheme (`github+repo://…`) so that they stay URIs, and URI templates stay templates.
"""

from __future__ import annotations

import hashlib
import re

SEPARATOR = "_"
MAX_NAME = 64
_VALID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def safe_name(name: str) -> str:
    """`name` itself when valid, else a valid name made from it, kept unique by a short hash."""
    if _VALID.fullmatch(name):
        return name
    digest = hashlib.sha1(name.encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{_UNSAFE.sub('_', name)[: MAX_NAME - 9]}-{digest}"


def prefixed(prefix: str, name: str) -> str:
    return safe_name(f"{prefix}{SEPARATOR}{name}")


def scheme_prefix(prefix: str) -> str:
    """A prefix usable inside a URI scheme (letters first; `_` is not allowed there)."""
    cleaned = prefix.replace("_", "-")
    return cleaned if cleaned[:1].isalpha() else f"s{cleaned}"


def prefixed_uri(prefix: str, uri: str) -> str:
    """`repo://x` under prefix `github` is `github+repo://x` (templates stay templates)."""
    return f"{scheme_prefix(prefix)}+{uri}"


def unprefixed_uri(prefix: str, uri: str) -> str | None:
    """The original URI if `uri` carries `prefix`, else None."""
    head = f"{scheme_prefix(prefix)}+"
    return uri[len(head) :] if uri.startswith(head) else None
