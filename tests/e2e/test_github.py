"""The shipped github server (GitHub's github-mcp-server) in a container started by the gateway,
against a stand-in of GitHub Enterprise's REST API on 127.0.0.2:80."""

from __future__ import annotations

import json
import logging
import secrets
import string
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from cua_gateway.downstream.pool import ServerPool
from tests.e2e._github_standin import BASE, GitHubStandIn
from tests.e2e.conftest import shipped_server
from tests.integration.conftest import ready, running, text_of

pytestmark = pytest.mark.e2e


@pytest.fixture
def token() -> str:
    """A classic personal access token's shape: `ghp_` and 36 letters or digits."""
    alphabet = string.ascii_letters + string.digits
    return "ghp_" + "".join(secrets.choice(alphabet) for _ in range(36))


@pytest.fixture
def github(token: str) -> Iterator[GitHubStandIn]:
    with GitHubStandIn(token).serve() as standin:
        yield standin


async def call(pool: ServerPool, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await pool.request("tools/call", {"name": tool, "arguments": arguments})
    assert not result.get("isError"), text_of(result)
    return result


async def call_json(pool: ServerPool, tool: str, **arguments: Any) -> Any:
    return json.loads(text_of(await call(pool, tool, **arguments)))


def test_github_tools_return_what_the_api_served_and_send_the_token_only_to_it(
    gateway_name: str, github: GitHubStandIn, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    loaded = shipped_server(
        "github",
        gateway_name,
        {"GITHUB_PERSONAL_ACCESS_TOKEN": token, "GITHUB_HOST": BASE},
    )
    data = github.data
    owner, name = data.repo["owner"]["login"], data.repo["name"]
    where = {"owner": owner, "repo": name}

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("github")
            await ready(pool)
            tools = {t["name"] for t in (await pool.request("tools/list"))["tools"]}
            expected = {"get_me", "search_repositories", "get_issue", "list_issues"}
            assert expected | {"get_file_contents"} <= tools

            me = await call_json(pool, "get_me")
            assert (me["login"], me["id"]) == (data.me["login"], data.me["id"])
            assert me["details"]["name"] == data.me["name"]
            assert me["details"]["total_private_repos"] == data.me["total_private_repos"]

            found = await call_json(pool, "search_repositories", query="gateway in:name")
            assert found["total_count"] == len(data.search_hits)
            assert [r["full_name"] for r in found["items"]] == [
                r["full_name"] for r in data.search_hits
            ]
            assert found["items"][0]["stargazers_count"] == data.repo["stargazers_count"]
            assert found["items"][0]["license"]["spdx_id"] == "MIT"

            # The repository itself: its root, listed at the default branch's head commit.
            root = await call_json(pool, "get_file_contents", **where, path="/")
            assert [(e["name"], e["type"]) for e in root] == [("README.md", "file")]
            assert data.head_sha in root[0]["url"]

            issue = await call_json(pool, "get_issue", **where, issue_number=42)
            assert issue["title"] == data.issue["title"]
            assert issue["body"] == data.issue["body"]
            assert issue["user"]["login"] == data.me["login"]
            assert [label["name"] for label in issue["labels"]] == ["bug"]

            listed = await call_json(pool, "list_issues", **where)  # GraphQL, not REST
            assert [(i["number"], i["title"]) for i in listed["issues"]] == [
                (data.issue["number"], data.issue["title"])
            ]
            assert [label["name"] for label in listed["issues"][0]["labels"]] == ["bug"]

            readme = await call(pool, "get_file_contents", **where, path="README.md")
            resource = next(c["resource"] for c in readme["content"] if c["type"] == "resource")
            assert resource["uri"] == f"repo://{owner}/{name}/contents/README.md"
            assert resource["text"] == data.files["README.md"].decode()

    anyio.run(scenario)

    paths = [seen.path.split("?")[0] for seen in github.seen]
    repo_api = f"/api/v3/repos/{owner}/{name}"
    for expected in (
        "/api/v3/user",
        "/api/v3/search/repositories",
        f"{repo_api}/issues/42",
        f"{repo_api}/contents/README.md",
        f"/raw/{owner}/{name}/{data.head_sha}/README.md",
        "/api/graphql",
    ):
        assert expected in paths
    assert all(seen.headers.get("authorization") == f"Bearer {token}" for seen in github.seen)
    assert caplog.records, "the gateway logged nothing: the check below would prove nothing"
    for record in caplog.records:
        assert token not in record.getMessage()
        assert token not in repr(record.__dict__)


def test_github_reports_the_apis_refusal_of_a_bad_token_as_a_tool_error(
    gateway_name: str, github: GitHubStandIn
) -> None:
    loaded = shipped_server(
        "github",
        gateway_name,
        {"GITHUB_PERSONAL_ACCESS_TOKEN": "ghp_" + "0" * 36, "GITHUB_HOST": BASE},
    )

    async def scenario() -> None:
        async with running(loaded) as supervisor:
            pool = supervisor.pool("github")
            await ready(pool)
            result = await pool.request("tools/call", {"name": "get_me", "arguments": {}})
            assert result["isError"] is True
            assert "401 Bad credentials" in text_of(result)

    anyio.run(scenario)
    assert [seen.path for seen in github.seen] == ["/api/v3/user"]


def test_github_is_disabled_with_the_reason_when_its_token_is_missing(gateway_name: str) -> None:
    loaded = shipped_server("github", gateway_name, {"GITHUB_HOST": BASE})
    assert "github" not in loaded.enabled
    assert "GITHUB_PERSONAL_ACCESS_TOKEN" in loaded.disabled["github"]
