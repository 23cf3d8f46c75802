"""Read and update ``.env`` files the way Docker Compose and python-dotenv read them.

`parse` turns ``KEY=value`` lines into a dict (``export`` prefix, single and double quotes,
``#`` comments, double-quoted values over several lines). `merge` updates only the variables
keyroll owns in an existing file, in place: every other line, comment, blank line and the
order are kept byte for byte; a variable keyroll owns but no longer renders (``JWT_SECRET_PREVIOUS``
after retire) is removed; new ones are appended. Standard library only: the runtime's
`FileKeySource` reads dotenv files with `parse`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping

from keyroll.errors import UsageError
from keyroll.escaping import dotenv_quote

__all__ = ["merge", "parse"]

_KEY = re.compile(r"^\s*(export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$")


def _unquote_double(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '\\"$':
            out.append(text[i + 1])
            i += 2
            continue
        if c == "\\" and i + 1 < len(text) and text[i + 1] == "n":
            out.append("\n")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _closing(text: str, quote: str) -> int:
    """Index of the quote closing a value that starts after an opening ``quote``, or -1."""
    i = 0
    while i < len(text):
        if text[i] == "\\" and quote == '"':
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1


def _lines(text: str) -> list[str]:
    """Lines split on ``\n`` only, ends kept (`str.splitlines` also splits on ``\x0c``, which
    a value may hold)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _entries(text: str) -> Iterator[tuple[int, int, str | None, str | None]]:
    """``(first line, end line (exclusive), key or None, value or None)`` for every logical line.

    Raises:
        UsageError: a line that is neither blank, a comment nor ``KEY=value`` (by line number,
            never its text: it may hold a value), or a quote that never closes.
    """
    lines = _lines(text)
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            yield i, i + 1, None, None
            i += 1
            continue
        match = _KEY.match(raw.rstrip("\r\n"))
        if match is None:
            raise UsageError(f"line {i + 1} is not KEY=value; fix or remove it")
        key, rest = match.group(2), match.group(3).lstrip()
        end = i + 1
        if rest[:1] in ("'", '"'):
            quote, body = rest[0], rest[1:]
            close = _closing(body, quote)
            while close < 0 and end < len(lines):  # a quoted value over several lines
                body += "\n" + lines[end].removesuffix("\n")
                end += 1
                close = _closing(body, quote)
            if close < 0:
                raise UsageError(f"line {i + 1}: the quote opened here never closes")
            inner = body[:close]
            value = _unquote_double(inner) if quote == '"' else inner
        else:
            value = rest.split(" #", 1)[0].strip() if " #" in rest else rest.strip()
        yield i, end, key, value
        i = end


def parse(text: str) -> dict[str, str]:
    """The variables of a .env file (later definitions win, as in Compose).

    Raises:
        UsageError: a malformed line (named by number only).
    """
    return {key: value for _, _, key, value in _entries(text) if key is not None and value is not None}


def merge(existing: str, values: Mapping[str, str], owned: Collection[str]) -> str:
    """``existing`` with keyroll's variables updated in place and everything else kept.

    Args:
        existing: the file's current text (may be empty).
        values: what keyroll renders now, in the order new variables are appended.
        owned: every variable keyroll may write for this environment; an owned variable not in
            ``values`` is removed (the overlap ended), a variable not owned is never touched.

    Returns:
        The new text. It holds values: write it with `keyroll.files.write_private` only.

    Raises:
        UsageError: the existing file has a malformed line (by number; nothing is written).
    """
    lines = _lines(existing)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    written: set[str] = set()
    for start, end, key, _ in list(_entries(existing)):
        if key is None or (key not in owned and key not in values):
            out.extend(lines[start:end])
            continue
        if key in written or key not in values:
            continue  # a duplicate of a line already updated, or a variable keyroll retired
        prefix = "export " if lines[start].lstrip().startswith("export") else ""
        out.append(f"{prefix}{key}={dotenv_quote(values[key])}{newline}")
        written.add(key)
    if out and not out[-1].endswith(("\n", "\r")):
        out[-1] += newline
    out.extend(f"{key}={dotenv_quote(value)}{newline}"
               for key, value in values.items() if key not in written)
    return "".join(out)
