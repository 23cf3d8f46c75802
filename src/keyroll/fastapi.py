"""Starlette and FastAPI: a session middleware that rotates, and a bearer-JWT dependency.

Extra ``web`` (``pip install 'keyroll[web]'``). ::

    from fastapi import Depends, FastAPI
    from keyroll import EnvKeySource, JWTKeyRing, LazyKeySource
    from keyroll.fastapi import BearerJWT, KeyRingSessionMiddleware

    source = LazyKeySource(EnvKeySource.jwt_secret)        # read on first use
    app = FastAPI()
    app.add_middleware(KeyRingSessionMiddleware, source=source)
    user = BearerJWT(JWTKeyRing(source, audience="api"))

    @app.get("/me")
    def me(claims: dict = Depends(user)) -> dict:
        return {"sub": claims["sub"]}

Starlette's own ``SessionMiddleware`` signs with one fixed key: changing it logs every user
out. `KeyRingSessionMiddleware` signs the session cookie with a key ring's current key (kid in
the cookie) and accepts every retained key, so a session signed before a promote still reads
during the overlap, and each response re-signs it with the current key: a user who comes back
during the overlap stays signed in after the old key retires. The cookie is a JWT whose
audience (``keyroll-session`` by default) no API token carries, so one cannot stand in for the
other even when both use the same key.

This module imports Starlette at import time (it exists to be used with it) and nothing of
keyroll's rotation, CLI or dashboard. It deliberately has no ``from __future__ import
annotations``: FastAPI reads `BearerJWT.__call__`'s annotations at runtime.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from keyroll.errors import InvalidToken, UsageError
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import KeySource

try:
    from starlette.datastructures import MutableHeaders
    from starlette.exceptions import HTTPException
    from starlette.requests import HTTPConnection, Request
    from starlette.types import ASGIApp, Message, Receive, Scope, Send
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError("keyroll.fastapi needs Starlette: pip install 'keyroll[web]'") from None

__all__ = ["SESSION_AUDIENCE", "BearerJWT", "KeyRingSessionMiddleware"]

#: The ``aud`` of session cookies: API tokens never carry it.
SESSION_AUDIENCE = "keyroll-session"


class KeyRingSessionMiddleware:
    """`request.session` in a cookie signed by a key ring (drop-in for ``SessionMiddleware``).

    Args:
        app: the ASGI app.
        source: the key source (a `LazyKeySource` is read on the first request), or
        ring: a ready `JWTKeyRing` (its audience must be ``audience``).
        session_cookie, max_age, path, same_site, https_only, domain: as Starlette's
            ``SessionMiddleware``; ``max_age`` in seconds (default 14 days) is also the
            signed cookie's lifetime, so an old cookie cannot be replayed after it.
        audience: the cookie token's ``aud``.

    Raises:
        UsageError: neither or both of ``source`` and ``ring``.
    """

    def __init__(
        self,
        app: ASGIApp,
        source: KeySource | None = None,
        *,
        ring: JWTKeyRing | None = None,
        session_cookie: str = "session",
        max_age: int = 14 * 24 * 3600,
        path: str = "/",
        same_site: str = "lax",
        https_only: bool = False,
        domain: str | None = None,
        audience: str = SESSION_AUDIENCE,
    ) -> None:
        if (source is None) == (ring is None):
            raise UsageError("KeyRingSessionMiddleware needs a key source or a ring (one of them)")
        if ring is None:
            assert source is not None
            ring = JWTKeyRing(source, audience=audience)
        self.app = app
        self.ring = ring
        self.audience = audience
        self.session_cookie = session_cookie
        self.max_age = max_age
        flags = f"path={path}; httponly; samesite={same_site}; Max-Age={max_age}"
        if https_only:
            flags += "; secure"
        if domain:
            flags += f"; domain={domain}"
        self._flags = flags
        self._clear = f"path={path}; httponly; samesite={same_site}; Max-Age=0"
        if domain:
            self._clear += f"; domain={domain}"

    def _read(self, token: str) -> dict[str, Any]:
        try:
            claims = self.ring.verify(token, audience=self.audience)
        except InvalidToken:
            return {}  # tampered, expired or signed by a retired key: a fresh session
        data = claims.get("session")
        return dict(data) if isinstance(data, Mapping) else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        token = connection.cookies.get(self.session_cookie)
        scope["session"] = self._read(token) if token else {}
        had_session = bool(scope["session"])

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                session = scope["session"]
                if session:
                    cookie = self.ring.sign({"session": session, "aud": self.audience},
                                            ttl=timedelta(seconds=self.max_age))
                    headers.append("Set-Cookie", f"{self.session_cookie}={cookie}; {self._flags}")
                elif had_session:
                    headers.append("Set-Cookie", f"{self.session_cookie}=null; {self._clear}")
            await send(message)

        await self.app(scope, receive, send_wrapper)


class BearerJWT:
    """A FastAPI dependency: the verified claims of the request's ``Authorization: Bearer``.

    Missing or unusable credentials are a 401 with ``WWW-Authenticate: Bearer`` (RFC 6750;
    ``error="invalid_token"`` when a token was sent), one message whatever check failed.

    Args:
        ring: verifies the token (its audience, issuer and required claims apply).
        realm: put in the challenge when given.
    """

    def __init__(self, ring: JWTKeyRing, *, realm: str | None = None) -> None:
        self.ring = ring
        self._challenge = f'Bearer realm="{realm}"' if realm else "Bearer"

    def __call__(self, request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "not authenticated", headers={"WWW-Authenticate": self._challenge})
        try:
            return self.ring.verify(token)
        except InvalidToken:
            challenge = f'{self._challenge}, error="invalid_token"'.replace("Bearer, ", "Bearer ")
            raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": challenge}) from None
