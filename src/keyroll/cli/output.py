"""Terminal output: one rich console for results, one for messages (stderr)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console

__all__ = ["err", "escape", "out", "print_json"]


def escape(text: str) -> str:
    """``text`` with every control or invisible formatting character escaped (``\\n``, ``\\x1b``).

    For untrusted text echoed back (arguments, names from files, driver messages): a newline
    in a rotation id must not forge an extra output line, nor an ANSI sequence recolour one.
    Spaces stay as they are; everything else `str.isprintable` rejects is shown escaped.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def out() -> Console:
    """Results, on stdout (wide when not a terminal, so tables stay one row per line)."""
    width = None if sys.stdout.isatty() else 200
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=True)


def err() -> Console:
    """Messages and warnings, on stderr."""
    width = None if sys.stderr.isatty() else 200
    return Console(file=sys.stderr, width=width, highlight=False, soft_wrap=True)


def print_json(doc: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colour codes."""
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=True, default=str) + "\n")
