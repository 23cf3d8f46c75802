"""Flask: ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS`` from a key source, refreshed while the
app runs (extra ``flask``, Flask >= 3.1.1). ::

    from flask import Flask
    from keyroll import EnvKeySource
    from keyroll.flask import KeyrollFlask

    app = Flask(__name__)
    KeyrollFlask(app, EnvKeySource.secret_key())       # or a StoreKeySource

The source's current key becomes ``SECRET_KEY`` (it signs every new session cookie) and every
other retained key goes to ``SECRET_KEY_FALLBACKS`` (they only verify). The config is brought up
to date before each request's session is opened, so a promote reaches a running app within the
source's refresh interval, with no restart. A cookie that only a fallback key verifies is
re-signed with the current key in that request's response, so a user who comes back during the
overlap stays signed in after the old key retires.

Flask 3.1.0 signed with the *last* fallback instead of ``SECRET_KEY`` (CVE-2025-47278): a
rotation would have kept the old key signing. It is refused; the tests check that the current
key signs.
"""

from __future__ import annotations

from contextlib import suppress
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from keyroll.errors import UsageError
from keyroll.runtime.keysource import KeySet, KeySource

try:
    from flask.sessions import SecureCookieSessionInterface
    from itsdangerous import BadSignature, URLSafeTimedSerializer
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError("keyroll.flask needs Flask: pip install 'keyroll[flask]'") from None

if TYPE_CHECKING:
    from flask import Flask, Request
    from flask.sessions import SecureCookieSession

__all__ = ["KeyrollFlask", "check_flask_version"]


def check_flask_version(text: str) -> None:
    """Refuse a Flask whose session signing is wrong under rotation.

    Raises:
        UsageError: Flask older than 3.1 (no ``SECRET_KEY_FALLBACKS``) or 3.1.0 (signs with a
            fallback key, CVE-2025-47278).
    """
    parts = tuple(int(p) if p.isdigit() else 0 for p in text.split(".")[:3])
    if parts < (3, 1):
        raise UsageError(f"Flask {text} has no SECRET_KEY_FALLBACKS: keyroll.flask needs Flask >= 3.1.1")
    if parts[:3] == (3, 1, 0) or (parts[:2] == (3, 1) and len(parts) == 2):
        raise UsageError(f"Flask {text} signs sessions with a fallback key (CVE-2025-47278): "
                         "upgrade to Flask >= 3.1.1")


class _Sessions(SecureCookieSessionInterface):
    def __init__(self, owner: KeyrollFlask) -> None:
        self.owner = owner

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        self.owner.apply(app)
        return super().get_signing_serializer(app)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        session = super().open_session(app, request)
        cookie = request.cookies.get(self.get_cookie_name(app))
        if session and cookie and app.config["SECRET_KEY_FALLBACKS"]:
            current_only = URLSafeTimedSerializer(
                app.secret_key,  # type: ignore[arg-type]  # set by apply(), never None here
                salt=self.salt,
                serializer=self.serializer,
                signer_kwargs={"key_derivation": self.key_derivation,
                               "digest_method": self.digest_method},
            )
            try:
                current_only.loads(cookie)
            except BadSignature:
                session.modified = True  # verified by a fallback: re-sign with the current key
        return session


class KeyrollFlask:
    """Feeds a Flask app's signing keys from a key source.

    Args:
        app: the app (or call `init_app` later, for app factories).
        source: where the keys come from; its current key signs.

    Raises:
        UsageError: at `init_app`, a Flask version that signs wrongly (`check_flask_version`).
        KeyrollError: the source has no usable key (unless it is lazy).
    """

    def __init__(self, app: Flask | None = None, source: KeySource | None = None) -> None:
        if source is None:
            raise UsageError("KeyrollFlask needs a key source, e.g. EnvKeySource.secret_key()")
        self.source = source
        self._generation: dict[int, int] = {}
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Install the keys and the refreshing session interface on ``app``."""
        with suppress(PackageNotFoundError):  # Flask imported without its metadata
            check_flask_version(version("flask"))
        app.session_interface = _Sessions(self)

        def refresh() -> None:  # for other users of app.secret_key (returns None: Flask
            self.apply(app)     # would answer the request with anything else)

        app.before_request(refresh)
        app.extensions["keyroll"] = self
        if not self.source.lazy:
            self.apply(app)

    def apply(self, app: Flask) -> KeySet:
        """Bring ``app.config`` up to date with the source (cheap when nothing changed)."""
        keys = self.source.snapshot()
        if self._generation.get(id(app)) != keys.generation or not app.config.get("SECRET_KEY"):
            config: dict[str, Any] = app.config
            config["SECRET_KEY"] = keys.current.value.reveal()
            # oldest first, as Flask documents: it tries them after SECRET_KEY
            config["SECRET_KEY_FALLBACKS"] = [k.value.reveal() for k in reversed(keys.keys[1:])]
            self._generation[id(app)] = keys.generation
        return keys
