"""A stand-in for a GitHub Enterprise Server's API, for the github server's e2e test.

github-mcp-server 0.12.1 drops the port of `GITHUB_HOST`, so this listens on port 80 of a spare
loopback address (127.0.0.2) and serves REST at `/api/v3/...`, file contents at `/raw/...` and the
GraphQL query of `list_issues` at `/api/graphql` the way GitHub Enterprise does: the same paths,
status codes, headers and JSON shapes (fields as in GitHub's API reference, URLs pointing back at
this host). It answers only requests that carry its token (otherwise 401 "Bad credentials", as
GitHub does) and records every request it saw.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.2"
PORT = 80  # github-mcp-server 0.12.1 ignores any port in GITHUB_HOST
BASE = f"http://{HOST}"
API = f"{BASE}/api/v3"
DOCS = "https://docs.github.com/enterprise-server@3.17/rest"
API_VERSION = "2022-11-28"

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


def _json(status: int, payload: object) -> Reply:
    return Reply(status, json.dumps(payload, indent=2).encode())


def _error(status: HTTPStatus, message: str, doc: str = "") -> Reply:
    return _json(
        status, {"message": message, "documentation_url": DOCS + doc, "status": str(int(status))}
    )


# --- payloads, shaped like GitHub's --------------------------------------------------------------


def _node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode().rstrip("=")


def simple_user(login: str, user_id: int, kind: str = "User") -> Json:
    url = f"{API}/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": _node_id(kind, user_id),
        "avatar_url": f"{BASE}/avatars/u/{user_id}",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{BASE}/{login}",
        "followers_url": f"{url}/followers",
        "following_url": f"{url}/following{{/other_user}}",
        "gists_url": f"{url}/gists{{/gist_id}}",
        "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{url}/subscriptions",
        "organizations_url": f"{url}/orgs",
        "repos_url": f"{url}/repos",
        "events_url": f"{url}/events{{/privacy}}",
        "received_events_url": f"{url}/received_events",
        "type": kind,
        "user_view_type": "public",
        "site_admin": False,
    }


def private_user(login: str, user_id: int, name: str) -> Json:
    """`GET /user` with a token that has the `user` scope: the private profile."""
    return simple_user(login, user_id) | {
        "name": name,
        "company": "@octo-org",
        "blog": "https://octo-org.example",
        "location": "Lisbon",
        "email": f"{login}@octo-org.example",
        "hireable": None,
        "bio": "Builds the build.",
        "twitter_username": None,
        "notification_email": f"{login}@octo-org.example",
        "public_repos": 12,
        "public_gists": 3,
        "followers": 41,
        "following": 7,
        "created_at": "2016-03-02T10:21:09Z",
        "updated_at": "2025-06-30T08:12:44Z",
        "private_gists": 2,
        "total_private_repos": 5,
        "owned_private_repos": 4,
        "disk_usage": 48211,
        "collaborators": 3,
        "two_factor_authentication": True,
        "plan": {
            "name": "enterprise",
            "space": 976562499,
            "collaborators": 0,
            "private_repos": 9999,
        },
    }


def repository(owner: Json, name: str, repo_id: int, **extra: Any) -> Json:
    full = f"{owner['login']}/{name}"
    url = f"{API}/repos/{full}"
    return {
        "id": repo_id,
        "node_id": _node_id("Repository", repo_id),
        "name": name,
        "full_name": full,
        "private": False,
        "owner": owner,
        "html_url": f"{BASE}/{full}",
        "description": None,
        "fork": False,
        "url": url,
        "forks_url": f"{url}/forks",
        "keys_url": f"{url}/keys{{/key_id}}",
        "collaborators_url": f"{url}/collaborators{{/collaborator}}",
        "teams_url": f"{url}/teams",
        "hooks_url": f"{url}/hooks",
        "issue_events_url": f"{url}/issues/events{{/number}}",
        "events_url": f"{url}/events",
        "assignees_url": f"{url}/assignees{{/user}}",
        "branches_url": f"{url}/branches{{/branch}}",
        "tags_url": f"{url}/tags",
        "blobs_url": f"{url}/git/blobs{{/sha}}",
        "git_tags_url": f"{url}/git/tags{{/sha}}",
        "git_refs_url": f"{url}/git/refs{{/sha}}",
        "trees_url": f"{url}/git/trees{{/sha}}",
        "statuses_url": f"{url}/statuses/{{sha}}",
        "languages_url": f"{url}/languages",
        "stargazers_url": f"{url}/stargazers",
        "contributors_url": f"{url}/contributors",
        "subscribers_url": f"{url}/subscribers",
        "subscription_url": f"{url}/subscription",
        "commits_url": f"{url}/commits{{/sha}}",
        "git_commits_url": f"{url}/git/commits{{/sha}}",
        "comments_url": f"{url}/comments{{/number}}",
        "issue_comment_url": f"{url}/issues/comments{{/number}}",
        "contents_url": f"{url}/contents/{{+path}}",
        "compare_url": f"{url}/compare/{{base}}...{{head}}",
        "merges_url": f"{url}/merges",
        "archive_url": f"{url}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{url}/downloads",
        "issues_url": f"{url}/issues{{/number}}",
        "pulls_url": f"{url}/pulls{{/number}}",
        "milestones_url": f"{url}/milestones{{/number}}",
        "notifications_url": f"{url}/notifications{{?since,all,participating}}",
        "labels_url": f"{url}/labels{{/name}}",
        "releases_url": f"{url}/releases{{/id}}",
        "deployments_url": f"{url}/deployments",
        "created_at": "2019-01-26T19:01:12Z",
        "updated_at": "2025-07-01T11:42:05Z",
        "pushed_at": "2025-07-01T11:41:59Z",
        "git_url": f"git://{HOST}/{full}.git",
        "ssh_url": f"git@{HOST}:{full}.git",
        "clone_url": f"{BASE}/{full}.git",
        "svn_url": f"{BASE}/{full}",
        "homepage": None,
        "size": 108,
        "stargazers_count": 0,
        "watchers_count": 0,
        "language": None,
        "has_issues": True,
        "has_projects": True,
        "has_downloads": True,
        "has_wiki": True,
        "has_pages": False,
        "has_discussions": False,
        "forks_count": 0,
        "mirror_url": None,
        "archived": False,
        "disabled": False,
        "open_issues_count": 0,
        "license": None,
        "allow_forking": True,
        "is_template": False,
        "web_commit_signoff_required": False,
        "topics": [],
        "visibility": "public",
        "forks": 0,
        "open_issues": 0,
        "watchers": 0,
        "default_branch": "main",
    } | extra


MIT = {
    "key": "mit",
    "name": "MIT License",
    "spdx_id": "MIT",
    "url": f"{API}/licenses/mit",
    "node_id": "MDc6TGljZW5zZTEz",
}


def label(repo: Json, label_id: int, name: str, color: str, description: str) -> Json:
    return {
        "id": label_id,
        "node_id": _node_id("Label", label_id),
        "url": f"{repo['url']}/labels/{name}",
        "name": name,
        "color": color,
        "default": False,
        "description": description,
    }


def issue(repo: Json, number: int, issue_id: int, user: Json, **extra: Any) -> Json:
    url = f"{repo['url']}/issues/{number}"
    return {
        "url": url,
        "repository_url": repo["url"],
        "labels_url": f"{url}/labels{{/name}}",
        "comments_url": f"{url}/comments",
        "events_url": f"{url}/events",
        "html_url": f"{repo['html_url']}/issues/{number}",
        "id": issue_id,
        "node_id": _node_id("Issue", issue_id),
        "number": number,
        "title": "",
        "user": user,
        "labels": [],
        "state": "open",
        "locked": False,
        "assignee": None,
        "assignees": [],
        "milestone": None,
        "comments": 0,
        "created_at": "2025-06-12T09:30:00Z",
        "updated_at": "2025-06-13T16:02:11Z",
        "closed_at": None,
        "author_association": "MEMBER",
        "type": None,
        "active_lock_reason": None,
        "sub_issues_summary": {"total": 0, "completed": 0, "percent_completed": 0},
        "body": None,
        "closed_by": None,
        "reactions": {
            "url": f"{url}/reactions",
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "hooray": 0,
            "confused": 0,
            "heart": 0,
            "rocket": 0,
            "eyes": 0,
        },
        "timeline_url": f"{url}/timeline",
        "performed_via_github_app": None,
        "state_reason": None,
    } | extra


def git_blob_sha(data: bytes) -> str:
    """The blob id git gives `data`: what the Contents API reports as a file's `sha`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def content_entry(repo: Json, path: str, data: bytes, ref: str) -> Json:
    """A file as `GET /repos/{owner}/{repo}/contents/{path}` lists it (in a directory)."""
    sha = git_blob_sha(data)
    url = f"{repo['url']}/contents/{path}?ref={ref}"
    html = f"{repo['html_url']}/blob/{ref}/{path}"
    git = f"{repo['url']}/git/blobs/{sha}"
    return {
        "type": "file",
        "size": len(data),
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "url": url,
        "git_url": git,
        "html_url": html,
        "download_url": f"{BASE}/raw/{repo['full_name']}/{ref}/{path}",
        "_links": {"self": url, "git": git, "html": html},
    }


def content_file(repo: Json, path: str, data: bytes, ref: str) -> Json:
    """A file as `GET /repos/{owner}/{repo}/contents/{path}` returns it: base64, 60-char lines."""
    encoded = base64.b64encode(data).decode()
    lines = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60))
    return content_entry(repo, path, data, ref) | {"content": lines + "\n", "encoding": "base64"}


def git_ref(repo: Json, branch: str, sha: str) -> Json:
    return {
        "ref": f"refs/heads/{branch}",
        "node_id": _node_id("Ref", int(sha[:6], 16)),
        "url": f"{repo['url']}/git/refs/heads/{branch}",
        "object": {"sha": sha, "type": "commit", "url": f"{repo['url']}/git/commits/{sha}"},
    }


# --- the fixture data and the server -------------------------------------------------------------


@dataclass
class GitHubData:
    """One user, who owns one repository with one file and one issue."""

    me: Json
    repo: Json
    search_hits: list[Json]
    issue: Json
    files: dict[str, bytes]
    head_sha: str

    @classmethod
    def example(cls) -> GitHubData:
        me = private_user("mona-lisa", 583231, "Mona Lisa Octocat")
        owner = simple_user("octo-org", 9919, "Organization")
        repo = repository(
            owner,
            "hello-gateway",
            1296269,
            description="An MCP gateway's test repository",
            language="Python",
            stargazers_count=1420,
            watchers_count=1420,
            watchers=1420,
            forks_count=87,
            forks=87,
            open_issues_count=3,
            open_issues=3,
            topics=["mcp", "gateway"],
            license=MIT,
        )
        other = repository(
            simple_user("mona-lisa", 583231),
            "gateway-notes",
            1300192,
            description="Notes about running MCP servers",
            stargazers_count=12,
            watchers_count=12,
            watchers=12,
        )
        bug = label(repo, 208045946, "bug", "d73a4a", "Something isn't working")
        found = issue(
            repo,
            42,
            1874513205,
            simple_user("mona-lisa", 583231),
            title="Replica restarts forever when the image is missing",
            body="Steps:\n1. remove the image\n2. `cua-gateway run`\n\nThe replica never settles.",
            labels=[bug],
            comments=2,
        )
        readme = (
            b"# hello-gateway\n\nServed by a stand-in of GitHub's REST API "
            b"to github-mcp-server in a container.\n"
        )
        return cls(
            me=me,
            repo=repo,
            search_hits=[repo | {"score": 1.0}, other | {"score": 0.61}],
            issue=found,
            files={"README.md": readme},
            head_sha="7fd1a60b01f91b314f59955a4e4d4e80d8edf11d",
        )


Route = Callable[[re.Match[str], dict[str, list[str]]], Reply]


@dataclass
class GitHubStandIn:
    """Serves `data` to requests that bear `token`; `seen` records every request."""

    token: str
    data: GitHubData = field(default_factory=GitHubData.example)
    seen: list[SeenRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def routes(self) -> list[tuple[re.Pattern[str], Route]]:
        full = re.escape(self.data.repo["full_name"])
        return [
            (re.compile(r"/api/v3/user"), lambda m, q: _json(200, self.data.me)),
            (re.compile(r"/api/v3/search/repositories"), self._search),
            (re.compile(rf"/api/v3/repos/{full}"), lambda m, q: _json(200, self.data.repo)),
            (re.compile(rf"/api/v3/repos/{full}/git/ref/heads/(?P<b>.+)"), self._ref),
            (re.compile(rf"/api/v3/repos/{full}/issues/(?P<n>\d+)"), self._issue),
            (re.compile(rf"/api/v3/repos/{full}/contents/(?P<p>.*)"), self._contents),
            (
                re.compile(rf"/raw/{full}/(?P<r>refs/heads/[^/]+|[0-9a-f]{{40}})/(?P<p>.+)"),
                self._raw,
            ),
        ]

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        url = urlsplit(target)
        path, query = unquote(url.path), parse_qs(url.query)
        with self._lock:
            self.seen.append(SeenRequest(method, target, headers))
        if headers.get("authorization") != f"Bearer {self.token}":
            return _error(HTTPStatus.UNAUTHORIZED, "Bad credentials")
        if (method, path) == ("POST", "/api/graphql"):
            return self._graphql(json.loads(body))
        if method != "GET":
            return _error(HTTPStatus.NOT_FOUND, "Not Found")
        for pattern, route in self.routes():
            if match := pattern.fullmatch(path):
                return route(match, query)
        return _error(HTTPStatus.NOT_FOUND, "Not Found")

    def _graphql(self, request: Json) -> Reply:
        """The one GraphQL query served: a repository's issues (`list_issues`). GraphQL answers
        200 with `errors` for what it cannot resolve, and only the fields that were asked for."""
        variables = request.get("variables") or {}
        if "{issues(" not in request.get("query", ""):
            message = "This stand-in resolves only repository.issues"
            return _json(200, {"errors": [{"message": message}]})
        repo = self.data.repo
        if f"{variables.get('owner')}/{variables.get('repo')}" != repo["full_name"]:
            name = f"{variables.get('owner')}/{variables.get('repo')}"
            error = {
                "type": "NOT_FOUND",
                "path": ["repository"],
                "locations": [{"line": 1, "column": 180}],
                "message": f"Could not resolve to a Repository with the name '{name}'.",
            }
            return _json(200, {"data": {"repository": None}, "errors": [error]})
        issues = (
            [self.data.issue] if self.data.issue["state"].upper() in variables["states"] else []
        )
        nodes = [
            {
                "number": i["number"],
                "title": i["title"],
                "body": i["body"],
                "state": i["state"].upper(),
                "databaseId": i["id"],
                "author": {"login": i["user"]["login"]},
                "createdAt": i["created_at"],
                "updatedAt": i["updated_at"],
                "labels": {
                    "nodes": [
                        {"name": la["name"], "id": la["node_id"], "description": la["description"]}
                        for la in i["labels"]
                    ]
                },
                "comments": {"totalCount": i["comments"]},
            }
            for i in issues
        ]
        cursor = base64.b64encode(b"cursor:v2:1").decode() if nodes else None
        page = {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": cursor,
            "endCursor": cursor,
        }
        connection = {"nodes": nodes, "pageInfo": page, "totalCount": len(nodes)}
        return _json(200, {"data": {"repository": {"issues": connection}}})

    def _search(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        if not query.get("q"):
            return _json(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Search", "field": "q", "code": "missing"}],
                    "documentation_url": f"{DOCS}/search/search#search-repositories",
                    "status": "422",
                },
            )
        hits = self.data.search_hits
        return _json(200, {"total_count": len(hits), "incomplete_results": False, "items": hits})

    def _ref(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        if match["b"] != self.data.repo["default_branch"]:
            return _error(HTTPStatus.NOT_FOUND, "Not Found", "/git/refs#get-a-reference")
        return _json(200, git_ref(self.data.repo, match["b"], self.data.head_sha))

    def _issue(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        if int(match["n"]) != self.data.issue["number"]:
            return _error(HTTPStatus.NOT_FOUND, "Not Found", "/issues/issues#get-an-issue")
        return _json(200, self.data.issue)

    def _contents(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        path = match["p"].strip("/")
        ref = query.get("ref", [self.data.repo["default_branch"]])[0]
        if not path:
            listing = [content_entry(self.data.repo, p, d, ref) for p, d in self.data.files.items()]
            return _json(200, listing)
        if path not in self.data.files:
            return _error(
                HTTPStatus.NOT_FOUND, "Not Found", "/repos/contents#get-repository-content"
            )
        return _json(200, content_file(self.data.repo, path, self.data.files[path], ref))

    def _raw(self, match: re.Match[str], query: dict[str, list[str]]) -> Reply:
        data = self.data.files.get(match["p"])
        if data is None:
            return Reply(404, b"404: Not Found", "text/plain; charset=utf-8")
        return Reply(200, data, "text/plain; charset=utf-8")

    @contextmanager
    def serve(self) -> Iterator[GitHubStandIn]:
        """Listen on 127.0.0.2:80 in a thread until the context exits."""
        server = ThreadingHTTPServer((HOST, PORT), _handler(self))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="github-standin", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _handler(standin: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "GitHub.com"
        sys_version = ""

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = standin.answer(self.command, self.path, headers, body)
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            self.send_header("X-GitHub-Api-Version-Selected", API_VERSION)
            self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
            self.send_header("X-GitHub-Request-Id", uuid.uuid4().hex[:20].upper())
            self.send_header("X-RateLimit-Limit", "5000")
            self.send_header("X-RateLimit-Remaining", "4999")
            self.send_header("X-RateLimit-Reset", "4102444800")
            self.send_header("X-RateLimit-Used", "1")
            self.send_header("X-RateLimit-Resource", "core")
            if reply.status < 400:
                self.send_header("X-OAuth-Scopes", "repo, read:org, read:user")
                self.send_header("ETag", f'W/"{hashlib.sha256(reply.body).hexdigest()}"')
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = do_HEAD = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads `seen`; nothing on stderr

    return Handler
