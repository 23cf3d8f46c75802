"""Mask secrets in log output: a `logging.Filter` and a structlog processor, one matcher.

Every value the app's key sources hold (current, previous, pending, and the last values they
held before a rotation) is masked in each form it may be logged in: raw, base64 (standard and
url-safe, padded or not), hex (lower and upper case), URL-encoded, escaped as keyroll writes it
into a .env or JSON file and as a shell quotes it (`keyroll.escaping`: the functions the files
are written with), and, for values that are themselves base64/hex of key bytes, the decoded
bytes in base64/hex. Common patterns are masked too: ``Bearer <token>`` and the password of a
DSN (``scheme://user:password@host``, `keyroll.scrub.DSN_PASSWORD`). Values keyroll no longer
holds are masked through `keyroll.recognise.Recogniser` (keyed digests, no value kept).

A match is replaced by at most its first 4 characters and ``…`` (seed 003: "mask, showing only
the first 4 characters"), so an operator can still tell which key a line is about; a match
shorter than 16 characters keeps a quarter of its length at most (none below 4), so a mask
never gives most of a short value away.

Values shorter than 8 characters (allowed with ``keyroll import --allow-short``) are masked as
whole tokens only: not preceded or followed by a letter or digit. Masked as substrings, a
5-letter value would blank every word that contains it and, by the masks' positions, tell the
reader which letters it is made of; a token match masks the value wherever it stands alone (as
``KEY=value``, ``"value"``, ``user:value@``), at the cost of missing it glued inside a word.

All literals are compiled into one regular expression, shaped as a trie so a scan costs the
same per character whatever the number of secrets; it is rebuilt when a source's snapshot
changes (checked on each call: one clock read per source).

Attach `RedactingFilter` to *handlers* (``handler.addFilter``): filters on a logger do not see
records propagated from child loggers. Place `StructlogRedactor` just before the renderer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import MutableMapping, Sequence
from typing import Any, NoReturn

from keyroll.model import SecretValue
from keyroll.recognise import Recogniser
from keyroll.runtime.keysource import KeySet, KeySource
from keyroll.scrub import DSN_PASSWORD
from keyroll.spellings import trie_regex, value_forms

__all__ = ["MASK", "RedactingFilter", "Redactor", "StructlogRedactor", "mask"]

#: Appended to the 4 characters a masked value keeps.
MASK = "…"
_KEEP = 4
_MIN_LITERAL = 8
_REMEMBER = 64  # values kept masked after they leave a source (retired keys)


def mask(text: str) -> str:
    """``text``'s first characters (4 at most, a quarter of a shorter text) and ``…``."""
    return text[: min(_KEEP, len(text) // 4)] + MASK


_BEARER = re.compile(r"((?i:bearer)\s+)([A-Za-z0-9._~+/=-]{8,})")
_DSN = DSN_PASSWORD


def _mask_literal(match: re.Match[str]) -> str:
    return mask(match.group())


def _mask_second(match: re.Match[str]) -> str:
    return match.group(1) + mask(match.group(2))


class Redactor:
    """Masks known secret values and common secret patterns in text.

    Args:
        sources: key sources whose values are masked (re-read when their keys change).
        values: additional fixed values to mask (e.g. `startup.require` results).
        patterns: also mask bearer tokens and DSN passwords.
        recognisers: recognise values no longer held (destroyed versions) by their digests.
    """

    def __init__(
        self,
        sources: Sequence[KeySource] = (),
        *,
        values: Sequence[SecretValue] = (),
        patterns: bool = True,
        recognisers: Sequence[Recogniser] = (),
    ) -> None:
        self.sources = tuple(sources)
        self.patterns = patterns
        self.recognisers = tuple(r for r in recognisers if len(r))
        self._fixed = tuple(values)
        self._remembered: dict[str, SecretValue] = {}
        self._lock = threading.Lock()
        self._seen: tuple[KeySet, ...] = ()
        self._regex: re.Pattern[str] | None = None
        self._tokens: re.Pattern[str] | None = None
        self._rebuild(tuple(s.snapshot() for s in self.sources))

    def _rebuild(self, keysets: tuple[KeySet, ...]) -> None:
        with self._lock:
            for keyset in keysets:
                for key in keyset.keys:
                    self._remembered.pop(key.value.fingerprint, None)
                    self._remembered[key.value.fingerprint] = key.value
            while len(self._remembered) > _REMEMBER:
                del self._remembered[next(iter(self._remembered))]
            forms: set[str] = set()
            tokens: set[str] = set()
            for value in (*self._fixed, *self._remembered.values()):
                text = value.reveal()
                if not text:
                    continue
                if len(text) >= _MIN_LITERAL:
                    forms |= {f for f in value_forms(text) if len(f) >= _MIN_LITERAL}
                else:
                    tokens |= value_forms(text)
            # literals only: joining the patterns into one alternation would defeat the
            # regex engine's per-position shortcuts (measured 6x slower)
            self._regex = re.compile(trie_regex(forms)) if forms else None
            self._tokens = (
                re.compile(rf"(?<![A-Za-z0-9])(?:{trie_regex(tokens)})(?![A-Za-z0-9])")
                if tokens else None
            )
            self._seen = keysets

    def _matcher(self) -> re.Pattern[str] | None:
        seen = self._seen
        for i, source in enumerate(self.sources):
            if source.snapshot() is not seen[i]:
                self._rebuild(tuple(s.snapshot() for s in self.sources))
                break
        return self._regex

    def redact(self, text: str) -> str:
        """``text`` with every known secret and pattern masked (the same object if none)."""
        regex = self._matcher()
        if not text:
            return text
        if regex is not None:
            text = regex.sub(_mask_literal, text)
        if self._tokens is not None:
            text = self._tokens.sub(_mask_literal, text)
        for recogniser in self.recognisers:
            text = recogniser.redact(text, mask)
        if self.patterns:
            # cheap hints first: most lines hold neither a URL nor a bearer token
            if "://" in text:
                text = _DSN.sub(_mask_second, text)
            if "earer" in text or "EARER" in text:
                text = _BEARER.sub(_mask_second, text)
        return text

    def redact_value(self, value: object, _depth: int = 0) -> object:
        """Redact strings inside ``value`` (dicts, lists, tuples, nested up to 8 levels)."""
        if isinstance(value, str):
            return self.redact(value)
        if _depth >= 8:
            return value
        if isinstance(value, dict):
            return {k: self.redact_value(v, _depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.redact_value(v, _depth + 1) for v in value)
        return value

    def __repr__(self) -> str:
        return f"Redactor(sources={len(self.sources)}, values={len(self._remembered)})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("Redactor refuses to be pickled: it holds secrets")


_BASE_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)))
_N_STANDARD = len(_BASE_ATTRS)
_STANDARD_ATTRS = _BASE_ATTRS | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in the message, its args, extras and tracebacks.

    Add it to every handler: ``handler.addFilter(RedactingFilter(redactor))``.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite ``record`` in place; never drops it."""
        redact = self.redactor.redact
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001  (bad %-args: logging's error report would print them)
            record.msg = redact(f"{record.msg} (arguments withheld: {record.args!r})")
            record.args = None
        else:
            clean = redact(message)
            if clean != message:
                record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        attrs = record.__dict__
        if len(attrs) > _N_STANDARD:  # extras (``extra=``) present: JSON formatters print them
            for name in attrs.keys() - _STANDARD_ATTRS:
                value = attrs[name]
                if isinstance(value, str | dict | list | tuple):
                    attrs[name] = self.redactor.redact_value(value)
        return True

    def __reduce__(self) -> NoReturn:
        raise TypeError("RedactingFilter refuses to be pickled: it holds secrets")


class StructlogRedactor:
    """A structlog processor: masks secrets in every string of the event dict.

    ``structlog.configure(processors=[..., StructlogRedactor(redactor), JSONRenderer()])``.
    Needs no structlog import (a processor is any callable).
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """Redact ``event_dict`` in place and return it."""
        for key, value in event_dict.items():
            event_dict[key] = self.redactor.redact_value(value)
        return event_dict

    def __reduce__(self) -> NoReturn:
        raise TypeError("StructlogRedactor refuses to be pickled: it holds secrets")
