"""Sizes and rates in words, in one unit family: binary, as the kernel and `ls -h` count.

    >>> format_bytes(27_100_000)
    '25.8 MiB'
    >>> format_rate(1_100_000_000, 1.0)
    '1.0 GiB/s'

Every size a command prints or logs goes through here, so the console never says MB in one
place and MiB in another, and the divisor always matches the unit's name (MiB = 1 << 20
bytes). Module constants MIB and GIB are for the code's own thresholds.
"""

from __future__ import annotations

KIB = 1 << 10
MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
# Largest first: a size gets the largest unit it reaches.
_UNITS = (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB))


def format_bytes(count: float) -> str:
    """`512 B`, `5.3 KiB`, `25.8 MiB`, `1.4 GiB`: one decimal, the largest unit reached."""
    for name, size in _UNITS:
        if abs(count) >= size:
            return f"{count / size:,.1f} {name}"
    return f"{count:,.0f} B"


def format_rate(count: float, seconds: float) -> str:
    """`count` bytes in `seconds` as `812.4 MiB/s` (format_bytes' unit, per second)."""
    return f"{format_bytes(count / max(seconds, 1e-9))}/s"
