"""Kubernetes-style quantities and durations, parsed to plain numbers.

`cpu: "500m"` is half a core, `memory: "512Mi"` is 536870912 bytes, `"1m30s"` is 90 seconds.
"""

from __future__ import annotations

import re

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?|\.\d+)\s*(?P<unit>[A-Za-z]*)\s*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def parse_cpu(value: object) -> float:
    """CPU cores from `2`, `0.5` or `"500m"` (millicores)."""
    number = _number(value)
    if number is None:
        match = _QUANTITY.match(str(value))
        if not match or match["unit"] not in ("", "m"):
            raise ValueError(
                f'must be cores like 2 or 0.5, or millicores like "500m" (got {value!r})'
            )
        number = float(match["number"]) / (1000 if match["unit"] == "m" else 1)
    if number <= 0:
        raise ValueError(f"must be more than 0 cores (got {value!r})")
    return number


def parse_bytes(value: object) -> int:
    """Bytes from `1048576`, `"512Mi"`, `"2Gi"` or `"1G"`."""
    number = _number(value)
    if number is not None:
        result = int(number)
    else:
        match = _QUANTITY.match(str(value))
        unit = match["unit"] if match else None
        if match is None or unit not in ("", *_BINARY, *_DECIMAL):
            hint = ""
            if match and unit and unit[0].lower() in ("m", "g"):
                hint = f'; did you mean "{match["number"]}{unit[0].upper()}i"?'
            raise ValueError(f'must be bytes like "512Mi", "2Gi" or 1048576 (got {value!r}){hint}')
        scale = _BINARY.get(unit or "") or _DECIMAL.get(unit or "") or 1
        result = int(float(match["number"]) * scale)
    if result <= 0:
        raise ValueError(f"must be more than 0 bytes (got {value!r})")
    return result


def parse_duration(value: object) -> float:
    """Seconds from `30`, `"500ms"`, `"30s"`, `"5m"`, `"1h30m"` or `"2d"`."""
    number = _number(value)
    if number is None:
        text = str(value).replace(" ", "")
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f'must be seconds or a duration like "500ms", "30s", "5m", "1h" (got {value!r})'
            )
        number = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if number < 0:
        raise ValueError(f"must not be negative (got {value!r})")
    return number


def format_bytes(value: int) -> str:
    """The shortest exact binary form: 536870912 is `512Mi`."""
    for unit, scale in reversed(_BINARY.items()):
        if value % scale == 0:
            return f"{value // scale}{unit}"
    return str(value)
