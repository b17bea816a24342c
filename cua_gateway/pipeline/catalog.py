"""The aggregate catalog: every server's tools and prompts under names that cannot collide, and
their resources under URIs that say which server to ask.

Prefix modes per server: `always` (`github_get_me`), `never` (`get_me`), `conditional` (the
default: prefixed only when another server exposes the same name). A collision that the modes
cannot resolve (two `never` servers, or a prefixed name taken) keeps the first server's entry and
records the conflict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cua_gateway.config.server import ServerConfig
from cua_gateway.pipeline.naming import prefixed, prefixed_uri, safe_name


@dataclass(frozen=True, slots=True)
class Entry:
    """One exposed item: where it comes from, and its definition as the client sees it."""

    server: str
    original: str
    exposed: str
    definition: Mapping[str, Any]


@dataclass(slots=True)
class Names:
    """Exposed name → entry, in server order, with the conflicts that could not be resolved."""

    entries: dict[str, Entry] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


def prefix_of(server: str, config: ServerConfig) -> str:
    return config.prefix.name or server


def allowed(server: str, config: ServerConfig, tool: str) -> bool:
    """Whether `capabilities:` (when given) lets `tool` through. An entry `a.b` allows tool `b`
    of server `a`, and a tool named `a_b` or `a.b` (the seed's `browser.navigate` is Playwright's
    `browser_navigate`)."""
    if config.capabilities is None:
        return True
    for entry in config.capabilities:
        owner, _, name = entry.partition(".")
        if (owner == server and name == tool) or entry.replace(".", "_") == tool.replace(".", "_"):
            return True
    return False


def aggregate(
    items: Iterable[tuple[str, ServerConfig, Sequence[Mapping[str, Any]]]], key: str = "name"
) -> Names:
    """Name the items of every server, in the given order. `key` holds each item's own name:
    `name` for tools and prompts, `uri` for resources, `uriTemplate` for resource templates."""
    uris = key in ("uri", "uriTemplate")
    listed = [(server, config, item) for server, config, found in items for item in found]
    counts = Counter(str(item[key]) for _, _, item in listed)
    names = Names()
    for server, config, item in listed:
        original = str(item[key])
        mode = config.prefix.mode
        if mode == "always" or (mode == "conditional" and counts[original] > 1):
            rename = prefixed_uri if uris else prefixed
            exposed = rename(prefix_of(server, config), original)
        else:
            exposed = original if uris else safe_name(original)
        if exposed in names.entries:
            other = names.entries[exposed].server
            names.conflicts.append(
                f"{server}: {key} {original!r} collides with {other}'s as {exposed!r}; "
                "give one of them another prefix mode or name"
            )
            continue
        names.entries[exposed] = Entry(server, original, exposed, {**item, key: exposed})
    return names
