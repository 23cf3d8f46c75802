"""How a value is spelled once it is escaped for a file or a shell: one function per spelling.

`keyroll.render` writes .env and JSON files with these functions, and the redactor
(`keyroll.runtime.redaction`) and the recogniser (`keyroll.recognise`) mask the same spellings
with the same functions, so what a file holds and what the masks look for cannot drift apart.
Standard library only: the runtime imports this module.
"""

from __future__ import annotations

import json
import shlex

__all__ = [
    "dotenv_escape",
    "dotenv_quote",
    "escaped_forms",
    "json_escape",
    "shell_backslash",
    "shell_quote",
]

#: Characters a .env value may hold unquoted (docker compose and python-dotenv agree on these).
_DOTENV_BARE = frozenset("_-.:/+=@%,~")
#: Characters bash's ``printf %q`` leaves alone (everything else gets a backslash); ``~`` and
#: ``#`` are escaped only as the first character.
_SHELL_BARE = frozenset("_-.:/+=@%")
_SHELL_BARE_INSIDE = frozenset("~#")


def dotenv_escape(text: str) -> str:
    """The inside of a double-quoted .env value: ``\\``, ``"`` and ``$`` backslash-escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")


def dotenv_quote(text: str) -> str:
    """``text`` as a .env value: bare when it is plain, else double-quoted and escaped."""
    if text and all(c.isalnum() or c in _DOTENV_BARE for c in text):
        return text
    return f'"{dotenv_escape(text)}"'


def json_escape(text: str, *, ensure_ascii: bool = True) -> str:
    """The inside of ``text`` as a JSON string (``json.dumps`` without its quotes)."""
    return json.dumps(text, ensure_ascii=ensure_ascii)[1:-1]


def shell_quote(text: str) -> str:
    """``text`` as a POSIX shell word (`shlex.quote`: single quotes, ``'"'"'`` inside)."""
    return shlex.quote(text)


def shell_backslash(text: str) -> str:
    """``text`` as bash's ``printf %q`` writes printable text in a UTF-8 locale: a backslash
    before each special ASCII character."""
    return "".join(
        c if c.isalnum() or c in _SHELL_BARE or ord(c) > 127 or (i and c in _SHELL_BARE_INSIDE)
        else "\\" + c
        for i, c in enumerate(text)
    )


def escaped_forms(text: str) -> set[str]:
    """Every escaped spelling of ``text`` keyroll knows of (may include ``text`` itself)."""
    return {
        dotenv_escape(text),
        json_escape(text),
        json_escape(text, ensure_ascii=False),
        shell_quote(text),
        shell_backslash(text),
        # inside a single-quoted shell word: a quote becomes '\'' (or '"'"' as shlex writes)
        text.replace("'", "'\\''"),
        text.replace("'", "'\"'\"'"),
    }
