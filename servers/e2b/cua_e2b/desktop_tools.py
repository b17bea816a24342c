"""The computer-use tools: desktop sessions, their screen, mouse and keyboard, and the live view.

Names follow the e2b-desktop SDK where it has one (left_click, double_click, drag, scroll,
press, launch, screenshot) and say what they do where it does not. A desktop's id is also a
sandbox id: run_command, read_file and the other sandbox tools work on the desktop too.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from cua_e2b._tool_errors import call, using
from cua_e2b.desktop import Screen
from cua_e2b.sessions import Sessions

MAX_IDLE_TIMEOUT = 24 * 3600.0
MAX_SIDE = 3840  # pixels a screen side may have at most
MAX_ALLOW = 32  # hosts a desktop's network allowlist may name

DesktopId = Annotated[str, Field(description="The sandbox_id create_desktop returned.")]
X = Annotated[int, Field(ge=0, description="Pixels from the left edge of the screen.")]
Y = Annotated[int, Field(ge=0, description="Pixels from the top edge of the screen.")]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ACT = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
ENDS = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)


def register_desktop_tools(mcp: MCPServer[None], sessions: Sessions, screen: Screen) -> None:
    """Add the desktop tools to `mcp`; `screen` is a new desktop's size by default."""
    _register_sessions(mcp, sessions, screen)
    _register_pointer(mcp, sessions)
    _register_keyboard(mcp, sessions)


def _register_sessions(mcp: MCPServer[None], sessions: Sessions, screen: Screen) -> None:

    @mcp.tool(annotations=ACT)
    async def create_desktop(
        width: Annotated[int, Field(ge=320, le=MAX_SIDE, description="Screen width.")] = (
            screen.width
        ),
        height: Annotated[int, Field(ge=240, le=MAX_SIDE, description="Screen height.")] = (
            screen.height
        ),
        idle_timeout: Annotated[
            float | None,
            Field(gt=0, le=MAX_IDLE_TIMEOUT, description="Seconds of disuse before it closes."),
        ] = None,
        allow_network: Annotated[
            list[str],
            Field(
                max_length=MAX_ALLOW,
                description=(
                    "Hosts the desktop may reach (example.com, *.example.com, host:port); "
                    "empty: no network at all."
                ),
            ),
        ] = [],  # noqa: B006 (pydantic copies defaults)
    ) -> dict[str, Any]:
        """Create a desktop: an isolated computer with a screen, mouse and keyboard, for the
        calls that name its sandbox_id. Returns the link of its live view, where a person can
        watch and take over in a browser."""
        screen_size = Screen(width, height)
        session = await call(sessions.create_desktop(screen_size, idle_timeout, allow_network))
        async with using(sessions.use_desktop(session.id)) as desktop:
            url = await desktop.stream_url()
        return {
            "type": "desktop",
            "url": url,
            "sandbox_id": session.id,
            "backend": sessions.backend,
            "width": desktop.screen.width,
            "height": desktop.screen.height,
            "idle_timeout": session.idle_timeout,
            "network": allow_network or "none",
        }

    @mcp.tool(annotations=ENDS)
    async def close_desktop(sandbox_id: DesktopId) -> dict[str, Any]:
        """Close the desktop: its live view stops and everything in it is gone."""
        async with using(sessions.use_desktop(sandbox_id)):
            pass
        await call(sessions.close(sandbox_id))
        return {"closed": sandbox_id}

    @mcp.tool(annotations=READ)
    async def get_stream_url(sandbox_id: DesktopId) -> dict[str, Any]:
        """The link of the desktop's live view (noVNC in a browser: watch, and take over with
        keyboard and mouse). It stops working when the desktop closes."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            return {"type": "desktop", "url": await desktop.stream_url(), "sandbox_id": sandbox_id}

    @mcp.tool(annotations=READ)
    async def screenshot(
        sandbox_id: DesktopId,
        scale: Annotated[
            float, Field(gt=0, le=1, description="Shrink the picture by this factor.")
        ] = 1.0,
    ) -> Image:
        """A PNG picture of the whole screen."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            return Image(data=await desktop.screenshot(scale), format="png")

    @mcp.tool(annotations=ACT)
    async def launch(
        sandbox_id: DesktopId,
        application: Annotated[
            str, Field(description="A program installed in the desktop, e.g. xterm.")
        ],
    ) -> dict[str, Any]:
        """Start an application on the desktop (it keeps running after the call returns)."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.launch(application)
        return {"launched": application}

    @mcp.tool(annotations=READ)
    async def list_windows(sandbox_id: DesktopId) -> dict[str, Any]:
        """The windows on the screen: id, title, position, size, and which has the focus."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            windows = await desktop.list_windows()
        return {"windows": [w.as_dict() for w in windows]}


def _register_pointer(mcp: MCPServer[None], sessions: Sessions) -> None:
    async def _click(
        sandbox_id: str, x: int, y: int, button: Literal["left", "right", "middle"], double: bool
    ) -> dict[str, Any]:
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.click(x, y, button, double)
        return {"clicked": [x, y], "button": button, "double": double}

    @mcp.tool(annotations=ACT)
    async def left_click(sandbox_id: DesktopId, x: X, y: Y) -> dict[str, Any]:
        """Move the pointer to (x, y) and click the left button."""
        return await _click(sandbox_id, x, y, "left", double=False)

    @mcp.tool(annotations=ACT)
    async def right_click(sandbox_id: DesktopId, x: X, y: Y) -> dict[str, Any]:
        """Move the pointer to (x, y) and click the right button."""
        return await _click(sandbox_id, x, y, "right", double=False)

    @mcp.tool(annotations=ACT)
    async def middle_click(sandbox_id: DesktopId, x: X, y: Y) -> dict[str, Any]:
        """Move the pointer to (x, y) and click the middle button."""
        return await _click(sandbox_id, x, y, "middle", double=False)

    @mcp.tool(annotations=ACT)
    async def double_click(sandbox_id: DesktopId, x: X, y: Y) -> dict[str, Any]:
        """Move the pointer to (x, y) and double-click the left button."""
        return await _click(sandbox_id, x, y, "left", double=True)

    @mcp.tool(annotations=ACT)
    async def mouse_move(sandbox_id: DesktopId, x: X, y: Y) -> dict[str, Any]:
        """Move the pointer to (x, y)."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.move_mouse(x, y)
        return {"pointer": [x, y]}

    @mcp.tool(annotations=ACT)
    async def drag(sandbox_id: DesktopId, from_x: X, from_y: Y, to_x: X, to_y: Y) -> dict[str, Any]:
        """Press the left button at (from_x, from_y), move to (to_x, to_y), release."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.drag((from_x, from_y), (to_x, to_y))
        return {"dragged": [[from_x, from_y], [to_x, to_y]]}

    @mcp.tool(annotations=ACT)
    async def scroll(
        sandbox_id: DesktopId,
        direction: Literal["up", "down", "left", "right"] = "down",
        amount: Annotated[int, Field(ge=1, le=100, description="Wheel notches.")] = 3,
        x: Annotated[int | None, Field(ge=0, description="Scroll over this point.")] = None,
        y: Annotated[int | None, Field(ge=0, description="Scroll over this point.")] = None,
    ) -> dict[str, Any]:
        """Turn the mouse wheel, over (x, y) when given, else where the pointer is."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.scroll(direction, amount, x, y)
        return {"scrolled": direction, "amount": amount}


def _register_keyboard(mcp: MCPServer[None], sessions: Sessions) -> None:
    @mcp.tool(annotations=ACT)
    async def type_text(
        sandbox_id: DesktopId,
        text: Annotated[str, Field(description="Typed as it is, into the focused window.")],
    ) -> dict[str, Any]:
        """Type text with the keyboard, into whatever has the focus."""
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.type_text(text)
        return {"typed": len(text)}

    @mcp.tool(annotations=ACT)
    async def press_keys(
        sandbox_id: DesktopId,
        keys: Annotated[
            str | list[str],
            Field(description='A key or combination: "enter", "ctrl+l", ["alt", "F4"].'),
        ],
    ) -> dict[str, Any]:
        """Press keys together and release them: enter, esc, tab, ctrl+l, alt+f4, ctrl+shift+t,
        up/down/left/right, pageup, home, f1..f12, or one character."""
        chord = _keys(keys)
        async with using(sessions.use_desktop(sandbox_id)) as desktop:
            await desktop.press_keys(chord)
        return {"pressed": chord}


def _keys(keys: str | list[str]) -> list[str]:
    """["ctrl", "l"] from "ctrl+l" (a lone "+" is the plus key)."""
    if isinstance(keys, list):
        return keys
    if keys == "+" or "+" not in keys:
        return [keys]
    parts = keys.split("+")
    if parts[-1] == "":  # "ctrl++": ctrl and the plus key
        parts = [*parts[:-2], "+"]
    if not all(parts):
        raise ToolError(f"cannot read the keys {keys!r}: write them like ctrl+l")
    return parts
