import re

from cua_gateway.config.server import ServerConfig
from cua_gateway.pipeline.catalog import aggregate, allowed
from cua_gateway.pipeline.naming import prefixed_uri, safe_name, unprefixed_uri

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def server(**fields: object) -> ServerConfig:
    return ServerConfig.model_validate({"image": "x", **fields})


def tools(*names: str) -> list[dict[str, object]]:
    return [{"name": n, "inputSchema": {"type": "object"}} for n in names]


def test_unique_names_stay_and_colliding_ones_get_their_server_prefix() -> None:
    names = aggregate(
        [("gh", server(), tools("get_me", "search")), ("gl", server(), tools("search"))]
    )
    assert set(names.entries) == {"get_me", "gh_search", "gl_search"}
    assert names.entries["gl_search"].server == "gl"
    assert names.entries["gl_search"].original == "search"
    assert names.entries["gl_search"].definition["name"] == "gl_search"


def test_prefix_mode_always_and_a_custom_prefix_name() -> None:
    names = aggregate(
        [("github", server(prefix={"name": "gh", "mode": "always"}), tools("get_me"))]
    )
    assert list(names.entries) == ["gh_get_me"]


def test_a_collision_the_modes_cannot_resolve_keeps_the_first_and_says_so() -> None:
    never = server(prefix={"mode": "never"})
    names = aggregate([("a", never, tools("run")), ("b", never, tools("run"))])
    assert names.entries["run"].server == "a"
    [conflict] = names.conflicts
    assert conflict.startswith("b: name 'run' collides with a's as 'run'")


def test_names_are_made_valid_for_mcp_claude_and_openai_and_stay_distinct() -> None:
    long_a, long_b = "x" * 70 + "a", "x" * 70 + "b"
    made = {safe_name(n) for n in ("has space", "dots.and/slashes", long_a, long_b)}
    assert all(VALID.match(n) for n in made)
    assert len(made) == 4
    assert safe_name("already_fine-1") == "already_fine-1"


def test_resource_uris_carry_the_prefix_in_their_scheme_and_come_back() -> None:
    uri = prefixed_uri("my_server", "file:///tmp/{name}")
    assert uri == "my-server+file:///tmp/{name}"
    assert unprefixed_uri("my_server", uri) == "file:///tmp/{name}"
    assert unprefixed_uri("other", uri) is None


def test_capabilities_allow_server_dot_tool_and_the_seed_aliases() -> None:
    playwright = server(capabilities=["browser.navigate", "playwright.browser_click"])
    assert allowed("playwright", playwright, "browser_navigate")
    assert allowed("playwright", playwright, "browser_click")
    assert not allowed("playwright", playwright, "browser_evaluate")
    assert allowed("x", server(), "anything")  # no list: everything
