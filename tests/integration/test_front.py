"""Every forwarded protocol feature, through each front transport, with two servers behind one
endpoint: a container and a local process running the project's test server."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession, MCPError

from tests.integration.conftest import TEST_SERVER
from tests.integration.frontends import TRANSPORTS, Recorder, connect, free_port, http_gateway

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def front_config(tmp_path_factory: pytest.TempPathFactory, test_image: str) -> Path:
    folder = tmp_path_factory.mktemp("front")
    config = folder / "gateway.yml"
    config.write_text(
        f"gateway: {{name: front{free_port()}, state_dir: {folder}/state}}\n"
        "servers:\n"
        f'  alpha: {{image: "{test_image}"}}\n'
        f'  beta: {{command: "{sys.executable}", args: ["{TEST_SERVER / "server.py"}"]}}\n'
    )
    return config


@pytest.fixture(scope="module")
def gateway_url(front_config: Path) -> Iterator[str]:
    with http_gateway(front_config, free_port()) as base:
        yield base


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def tool_names(session: ClientSession, recorder: Recorder, wanted: set[str]) -> set[str]:
    """The listed tool names, once `wanted` are among them (a server may still be starting)."""
    with anyio.fail_after(90):
        while True:
            changed = recorder.changed
            names = {t.name for t in (await session.list_tools()).tools}
            if wanted <= names:
                return names
            await changed.wait()


def run(transport: str, gateway_url: str, front_config: Path, scenario: object) -> None:
    recorder = Recorder()

    async def main() -> None:
        base = "" if transport == "stdio" else gateway_url
        async with connect(transport, recorder, base=base, config=front_config) as session:
            await tool_names(session, recorder, {"alpha_echo", "beta_echo"})
            for server in ("alpha", "beta"):  # calls wait until the server is ready
                await session.call_tool(f"{server}_echo", {"text": "ready?"})
            await scenario(session, recorder)  # type: ignore[operator]

    anyio.run(main)


def text(result: object) -> str:
    return "".join(c.text for c in result.content if c.type == "text")  # type: ignore[attr-defined]


def test_colliding_tools_are_prefixed_and_calls_reach_the_right_server(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        names = await tool_names(session, recorder, set())
        assert {"alpha_echo", "beta_echo", "alpha_whoami", "beta_whoami"} <= names
        assert "echo" not in names  # both servers have it: prefixed, not shadowed
        alpha = await session.call_tool("alpha_whoami", {})
        beta = await session.call_tool("beta_whoami", {})
        assert '"server":"alpha"' in text(alpha).replace(" ", "")
        assert '"server":"beta"' in text(beta).replace(" ", "")

    run(transport, gateway_url, front_config, scenario)


def test_image_audio_and_embedded_resources_arrive_intact(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        result = await session.call_tool("alpha_media", {})
        image, audio, resource = result.content
        assert image.type == "image" and image.mime_type == "image/png"
        assert base64.b64decode(image.data).startswith(b"\x89PNG\r\n\x1a\n")
        assert audio.type == "audio" and base64.b64decode(audio.data) == b"RIFF0000WAVE"
        assert resource.type == "resource" and resource.resource.text == "hello"

    run(transport, gateway_url, front_config, scenario)


def test_progress_and_logging_reach_the_client(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        seen: list[float] = []

        async def progress(value: float, total: float | None, message: str | None) -> None:
            seen.append(value)

        result = await session.call_tool("beta_slow", {"seconds": 0.3}, progress_callback=progress)
        assert text(result) == "slept 0.3"
        assert seen[0] == 0 and seen[-1] == pytest.approx(0.3)
        await session.call_tool("alpha_log", {"level": "warning", "message": "disk nearly full"})
        logged = await recorder.wait_for("notifications/message")
        assert logged["params"]["level"] == "warning"
        assert logged["params"]["data"] == "disk nearly full"

    run(transport, gateway_url, front_config, scenario)


def test_sampling_elicitation_and_roots_go_to_the_calling_client_and_back(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        sampled = await session.call_tool("alpha_ask_llm", {"prompt": "capital of France?"})
        assert text(sampled) == "model says: capital of France?"
        assert recorder.sampled == ["capital of France?"]
        elicited = await session.call_tool("beta_ask_user", {"question": "who are you?"})
        assert text(elicited) == "accept:alice"
        roots = await session.call_tool("alpha_list_roots", {})
        assert "file:///work/project" in text(roots)

    run(transport, gateway_url, front_config, scenario)


def test_resources_prompts_and_completions_are_namespaced_and_routed(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        uris = {str(r.uri) for r in (await session.list_resources()).resources}
        assert {"alpha+test://static/greeting", "beta+test://static/greeting"} <= uris
        read = await session.read_resource("beta+test://static/greeting")
        assert read.contents[0].text == "hello"  # type: ignore[union-attr]
        templates = {
            t.uri_template for t in (await session.list_resource_templates()).resource_templates
        }
        assert "alpha+test://item/{item}" in templates
        item = await session.read_resource("alpha+test://item/42")
        assert item.contents[0].text == "item 42"  # type: ignore[union-attr]

        prompts = {p.name for p in (await session.list_prompts()).prompts}
        assert {"alpha_greet", "beta_greet"} <= prompts
        prompt = await session.get_prompt("beta_greet", {"name": "Ada"})
        assert "Say hello to Ada." in prompt.messages[0].content.text  # type: ignore[union-attr]
        from mcp.types import PromptReference  # noqa: PLC0415

        completion = await session.complete(
            PromptReference(type="ref/prompt", name="alpha_greet"), {"name": "name", "value": "al"}
        )
        assert completion.completion.values == ["alice", "albert"]

    run(transport, gateway_url, front_config, scenario)


def test_subscriptions_deliver_updates_with_the_exposed_uri(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        await session.list_resources()
        await session.subscribe_resource("alpha+test://static/greeting")
        result = await session.call_tool("alpha_touch", {"uri": "test://static/greeting"})
        assert text(result) == "notified"
        updated = await recorder.wait_for("notifications/resources/updated")
        assert updated["params"]["uri"] == "alpha+test://static/greeting"
        await session.unsubscribe_resource("alpha+test://static/greeting")

    run(transport, gateway_url, front_config, scenario)


def test_bad_requests_get_json_rpc_errors_and_the_gateway_keeps_serving(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        with pytest.raises(MCPError) as unknown:
            await session.call_tool("no_such_tool", {})
        assert unknown.value.code == -32602
        assert "unknown tool: no_such_tool" in unknown.value.message
        with pytest.raises(MCPError) as invalid:
            await session.call_tool("alpha_add", {"a": "one", "b": 2})
        assert invalid.value.code == -32602
        assert "a: 'one' is not of type 'integer'" in invalid.value.message
        with pytest.raises(MCPError) as missing:
            await session.call_tool("beta_add", {"a": 1})
        assert "'b' is a required property" in missing.value.message
        assert text(await session.call_tool("alpha_add", {"a": 2, "b": 3})) == "5"

    run(transport, gateway_url, front_config, scenario)


def test_a_tool_added_at_runtime_is_announced_and_callable(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        recorder.notifications.clear()
        late = text(await session.call_tool("beta_grow", {}))
        await recorder.wait_for("notifications/tools/list_changed")
        await tool_names(session, recorder, {late})  # only beta has it: no prefix needed
        assert text(await session.call_tool(late, {})) == "late but here"

    run(transport, gateway_url, front_config, scenario)


def test_a_2026_07_28_client_gets_server_requests_as_input_required_and_its_answers_relayed(
    gateway_url: str, front_config: Path
) -> None:
    from mcp import Client  # noqa: PLC0415

    recorder = Recorder()

    async def scenario() -> None:
        async with Client(
            f"{gateway_url}/mcp",
            mode="2026-07-28",
            sampling_callback=recorder.sampling,
            list_roots_callback=recorder.roots,
        ) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {"alpha_echo", "beta_echo"} <= names
            assert text(await client.call_tool("beta_echo", {"text": "stateless"})) == "stateless"
            # a handshake-era server asks for sampling during a stateless client's call: the
            # client gets an InputRequiredResult, answers it, and the answer reaches the server
            sampled = await client.call_tool("alpha_ask_llm", {"prompt": "two rounds?"})
            assert text(sampled) == "model says: two rounds?"
            assert recorder.sampled == ["two rounds?"]
            roots = await client.call_tool("beta_list_roots", {})
            assert "file:///work/project" in text(roots)
            prompt = await client.get_prompt("alpha_briefed", {"topic": "the plan"})
            assert prompt.messages[0].content.text == "Brief: model says: the plan"  # type: ignore[union-attr]

    anyio.run(scenario)


def test_a_cancelled_call_is_cancelled_on_the_server_too(
    transport: str, gateway_url: str, front_config: Path
) -> None:
    async def scenario(session: ClientSession, recorder: Recorder) -> None:
        before = int(text(await session.call_tool("beta_cancellations", {})))
        with pytest.raises(MCPError):  # the client gives up: it sends notifications/cancelled
            await session.call_tool("beta_hang", {}, read_timeout_seconds=0.5)
        with anyio.fail_after(15):
            while int(text(await session.call_tool("beta_cancellations", {}))) == before:
                await anyio.lowlevel.checkpoint()

    run(transport, gateway_url, front_config, scenario)


def test_a_2026_07_28_client_hears_of_list_changes_on_subscriptions_listen(
    gateway_url: str, front_config: Path
) -> None:
    from mcp import Client  # noqa: PLC0415
    from mcp.shared.subscriptions import ToolsListChanged  # noqa: PLC0415

    async def scenario() -> None:
        async with (
            Client(f"{gateway_url}/mcp", mode="2026-07-28") as client,
            client.listen(tools_list_changed=True) as subscription,
        ):
            late = text(await client.call_tool("beta_grow", {}))
            with anyio.fail_after(15):
                event = await subscription.__anext__()
            assert isinstance(event, ToolsListChanged)
            assert late in {t.name for t in (await client.list_tools()).tools}

    anyio.run(scenario)


def test_a_2026_07_28_listener_gets_resource_updates_through_a_downstream_subscription(
    gateway_url: str, front_config: Path
) -> None:
    """The server announces updates only to a session that subscribed: the gateway subscribes
    on the listener's behalf, and unsubscribes once the listener is gone."""
    from mcp import Client  # noqa: PLC0415
    from mcp.shared.subscriptions import ResourceUpdated  # noqa: PLC0415

    uri = "alpha+test://static/greeting"

    async def scenario() -> None:
        async with Client(f"{gateway_url}/mcp", mode="2026-07-28") as client:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                touched = await client.call_tool("alpha_touch", {"uri": "test://static/greeting"})
                assert text(touched) == "notified"
                with anyio.fail_after(15):
                    event = await subscription.__anext__()
                assert event == ResourceUpdated(uri=uri)
            with anyio.fail_after(15):  # the listener left: the gateway unsubscribes
                while True:
                    touched = await client.call_tool(
                        "alpha_touch", {"uri": "test://static/greeting"}
                    )
                    if text(touched) == "nobody subscribed":
                        break
                    await anyio.sleep(0.05)

    anyio.run(scenario)
