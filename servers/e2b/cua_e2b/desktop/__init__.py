"""What a desktop session offers: a sandbox with a screen, a mouse and a keyboard, and a live view
a person can open in a browser to watch and take over.

A desktop is a sandbox too (its commands, code and files work through the sandbox tools under
the same id). The backends are `local` (a container with a virtual X display, a window manager,
VNC bound inside it and noVNC, see `desktop/local.py`, live view through `desktop/view.py`) and
`e2b` (E2B Desktop in the cloud, through the `e2b-desktop` SDK, see `desktop/cloud.py`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from cua_e2b.backends import Sandbox

Button = Literal["left", "right", "middle"]
Direction = Literal["up", "down", "left", "right"]


@dataclass(frozen=True, slots=True)
class Screen:
    width: int
    height: int

    def check(self, x: int, y: int) -> None:
        """Raise SandboxError unless (x, y) lies on the screen."""
        from cua_e2b.backends import SandboxError  # noqa: PLC0415

        if not (0 <= x < self.width and 0 <= y < self.height):
            raise SandboxError(
                f"({x}, {y}) is off the screen: x must be in 0..{self.width - 1} and y in "
                f"0..{self.height - 1}"
            )


@dataclass(frozen=True, slots=True)
class Window:
    id: str
    title: str
    x: int
    y: int
    width: int
    height: int
    focused: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "focused": self.focused,
        }


@runtime_checkable
class Desktop(Sandbox, Protocol):
    """One desktop session. Coordinates are pixels from the top-left corner of the screen; every
    method that takes them checks them against `screen` first."""

    @property
    def screen(self) -> Screen: ...

    async def screenshot(self, scale: float = 1.0) -> bytes:
        """The whole screen as PNG, scaled by `scale` (0 < scale <= 1)."""
        ...

    async def click(
        self, x: int, y: int, button: Button = "left", double: bool = False
    ) -> None: ...

    async def move_mouse(self, x: int, y: int) -> None: ...

    async def drag(self, start: tuple[int, int], end: tuple[int, int]) -> None:
        """Press the left button at `start`, move to `end`, release."""
        ...

    async def scroll(self, direction: Direction, amount: int, x: int | None, y: int | None) -> None:
        """Turn the wheel `amount` notches, over (x, y) when given (else where the pointer is)."""
        ...

    async def type_text(self, text: str) -> None: ...

    async def press_keys(self, keys: list[str]) -> None:
        """Press the keys together, then release them: ["ctrl", "l"], ["Return"], ["alt", "F4"]."""
        ...

    async def launch(self, application: str) -> None:
        """Start an application installed in the desktop (e.g. "xterm", "chromium"), detached."""
        ...

    async def list_windows(self) -> list[Window]: ...

    async def stream_url(self) -> str:
        """The live view's URL (noVNC) with its access token; it works until the desktop closes."""
        ...
