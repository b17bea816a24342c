"""The words xdotool and wmctrl understand: key names, buttons, wheel notches, and the window
list. Pure functions, so a request is checked before anything runs in the desktop."""

from __future__ import annotations

from cua_e2b.backends import SandboxError
from cua_e2b.desktop import Button, Direction, Window

MAX_KEYS = 8  # keys pressed together at most
BUTTONS: dict[Button, str] = {"left": "1", "middle": "2", "right": "3"}
WHEEL: dict[Direction, str] = {"up": "4", "down": "5", "left": "6", "right": "7"}

# Friendly names (and the X keysyms themselves, in any case) to X keysyms.
_NAMED: dict[str, tuple[str, ...]] = {
    "Control_L": ("ctrl", "control", "ctl"),
    "Alt_L": ("alt", "option"),
    "Shift_L": ("shift",),
    "Super_L": ("super", "cmd", "command", "meta", "win", "windows"),
    "Return": ("enter",),
    "Escape": ("esc",),
    "Tab": (),
    "BackSpace": (),
    "Delete": ("del",),
    "Insert": ("ins",),
    "space": (),
    "Up": (),
    "Down": (),
    "Left": (),
    "Right": (),
    "Prior": ("pageup", "page_up", "pgup"),
    "Next": ("pagedown", "page_down", "pgdn"),
    "Home": (),
    "End": (),
    "Menu": (),
    "Print": ("printscreen",),
    **{f"F{n}": () for n in range(1, 13)},
}
KEYS: dict[str, str] = {
    alias: keysym for keysym, aliases in _NAMED.items() for alias in (keysym.lower(), *aliases)
}
ACCEPTED = (
    "ctrl, alt, shift, super (cmd, meta, win), enter, esc, tab, backspace, delete, insert, "
    "space, up, down, left, right, pageup, pagedown, home, end, menu, print, f1..f12, "
    "or one character"
)


def keysym(name: str) -> str:
    """The X keysym xdotool presses for a key name, or a SandboxError naming what is accepted."""
    if len(name) == 1 and name.isprintable():
        # Letters and digits are keysyms already; any other character goes by its code point,
        # which also keeps "+" (xdotool's separator) and "-" from being read as syntax.
        return name if name.isascii() and name.isalnum() else f"U{ord(name):04X}"
    found = KEYS.get(name.strip().lower())
    if found is None:
        raise SandboxError(f"unknown key {name!r}; the keys are {ACCEPTED}")
    return found


def chord(keys: list[str]) -> str:
    """`xdotool key`'s argument that presses `keys` together and releases them."""
    if not keys:
        raise SandboxError("press_keys needs at least one key")
    if len(keys) > MAX_KEYS:
        raise SandboxError(f"at most {MAX_KEYS} keys can be pressed together")
    return "+".join(keysym(k) for k in keys)


def parse_windows(listing: str, active: str) -> list[Window]:
    """Windows from `wmctrl -lG` (id, desktop, x, y, width, height, host, title) and the
    focused window's id from `xdotool getactivewindow` (decimal)."""
    focused = int(active) if active.strip().isdigit() else None
    windows = []
    for line in listing.splitlines():
        fields = line.split(maxsplit=7)
        if len(fields) < 7:
            continue
        wid, _, x, y, width, height = fields[:6]
        try:
            number = int(wid, 16)
            left, top, w, h = (int(v) for v in (x, y, width, height))
        except ValueError:
            continue
        title = fields[7] if len(fields) > 7 else ""
        windows.append(Window(wid, title, left, top, w, h, focused=number == focused))
    return windows


def parse_location(text: str) -> tuple[int, int]:
    """The pointer's position from `xdotool getmouselocation` ("x:10 y:20 screen:0 window:…")."""
    fields = dict(part.partition(":")[::2] for part in text.split())
    try:
        return int(fields["x"]), int(fields["y"])
    except (KeyError, ValueError) as e:
        raise SandboxError(f"unexpected pointer location {text.strip()!r}") from e
