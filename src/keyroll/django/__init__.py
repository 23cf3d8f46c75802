"""Django: ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` from a key source, an encrypted model
field, a ``keyroll_reencrypt`` management command and a system check (extra ``django``). ::

    # settings.py
    from keyroll import EnvKeySource
    from keyroll.django import secret_keys

    KEYROLL_KEY_SOURCE = EnvKeySource.secret_key()          # or a StoreKeySource
    SECRET_KEY, SECRET_KEY_FALLBACKS = secret_keys(KEYROLL_KEY_SOURCE)
    INSTALLED_APPS = [..., "keyroll.django"]                 # system checks, keyroll_reencrypt
    MIDDLEWARE = ["keyroll.django.KeyRefreshMiddleware", ...]  # picks up a promote, no restart

The source's current key is ``SECRET_KEY`` (it signs: sessions, password reset tokens,
``signing.dumps``); every other retained key is a fallback that only verifies. Django itself
re-signs a session's auth hash with the current key when a fallback verified it, so a signed-in
user stays signed in through the overlap and after the old key retires.

This package imports Django and keyroll's runtime; the management command also imports
`keyroll.reencrypt`. Never rotation, CLI or dashboard code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from keyroll.errors import UsageError
from keyroll.runtime.keysource import KeySet, KeySource

try:
    import django  # noqa: F401  (checked here so the message names the extra)
    from django.http import HttpRequest, HttpResponse
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError("keyroll.django needs Django: pip install 'keyroll[django]'") from None

__all__ = ["KeyRefreshMiddleware", "refresh_settings", "secret_keys"]

#: the setting that holds the key source of SECRET_KEY
SOURCE_SETTING = "KEYROLL_KEY_SOURCE"


def _split(keys: KeySet) -> tuple[str, list[str]]:
    return keys.current.value.reveal(), [k.value.reveal() for k in keys.keys[1:]]


def secret_keys(source: KeySource) -> tuple[str, list[str]]:
    """``(SECRET_KEY, SECRET_KEY_FALLBACKS)`` for settings.py: the current key first (it signs),
    then every other retained key (they verify only).

    Raises:
        KeyrollError: the source has no usable key (a one-line message naming the variable).
    """
    return _split(source.snapshot())


_lock = threading.Lock()
_generation: list[int | None] = [None]


def refresh_settings() -> None:
    """Bring ``settings.SECRET_KEY``/``SECRET_KEY_FALLBACKS`` up to date with
    ``settings.KEYROLL_KEY_SOURCE`` (cheap when nothing changed; a failed reload keeps the old
    keys, as every key source does)."""
    from django.conf import settings

    source = getattr(settings, SOURCE_SETTING, None)
    if source is None:
        return
    keys = source.snapshot()
    if keys.generation == _generation[0] and settings.SECRET_KEY:
        return
    with _lock:
        current, fallbacks = _split(keys)
        settings.SECRET_KEY_FALLBACKS = [*fallbacks, current]  # the new key verifies first,
        settings.SECRET_KEY = current                           # then signs
        settings.SECRET_KEY_FALLBACKS = fallbacks
        _generation[0] = keys.generation


class KeyRefreshMiddleware:
    """Refreshes the signing keys before each request (put it first in ``MIDDLEWARE``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        refresh_settings()
        return self.get_response(request)
