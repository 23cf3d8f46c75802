"""keyroll.fastapi on a real Starlette/FastAPI app through a full rotation (TestClient)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

import jwt as pyjwt
import pytest
from fastapi import Depends, FastAPI, Request
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)  # as tests/unit/dashboard
    from fastapi.testclient import TestClient

from keyroll import EnvKeySource, InvalidToken, JWTKeyRing, LazyKeySource
from keyroll.fastapi import BearerJWT, KeyRingSessionMiddleware
from keyroll.runtime.keysource import KeySource
from tests.leaks import assert_no_leak
from tests.unit.frameworks.conftest import World, full_rotation, store_source


def _app(source: KeySource) -> tuple[FastAPI, JWTKeyRing]:
    app = FastAPI()
    app.add_middleware(KeyRingSessionMiddleware, source=source)
    tokens = JWTKeyRing(source, audience="api")
    user = BearerJWT(tokens)

    @app.post("/login")
    def login(request: Request) -> dict[str, str]:
        request.session["user"] = "alice"
        return {"ok": "yes"}

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        return {"user": request.session.get("user")}

    @app.get("/me")
    def me(claims: dict[str, Any] = Depends(user)) -> dict[str, Any]:  # noqa: B008
        return {"sub": claims["sub"]}

    return app, tokens


def _cookie_kid(client: TestClient) -> str:
    return str(pyjwt.get_unverified_header(client.cookies["session"])["kid"])


def test_a_session_survives_a_full_rotation(world: World) -> None:
    ref = world.seed("jwt-access")
    app, _ = _app(store_source(world, ref))
    client = TestClient(app)
    assert client.post("/login").status_code == 200
    old_kid = _cookie_kid(client)

    def mid_overlap() -> None:
        # the old cookie still reads, and the response re-signs it with the new current key
        assert client.get("/whoami").json() == {"user": "alice"}
        assert _cookie_kid(client) != old_kid

    full_rotation(world, "jwt-access", mid_overlap)
    assert client.get("/whoami").json() == {"user": "alice"}
    current = world.store.list_versions(ref)[-1].kid_hex
    assert _cookie_kid(client) == current  # the current key signs (no fallback ordering bug)
    assert_no_leak([str(client.cookies)], [world.store.read_value(ref, 2).reveal()], where="cookie")


def test_a_tampered_or_foreign_cookie_is_a_fresh_session(world: World) -> None:
    ref = world.seed("jwt-access")
    app, tokens = _app(store_source(world, ref))
    client = TestClient(app)
    client.post("/login")
    cookie = client.cookies["session"]
    client.cookies.clear()
    client.cookies.set("session", cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB"))
    assert client.get("/whoami").json() == {"user": None}
    # an API token signed by the same key is not a session cookie (audience)
    client.cookies.clear()
    api_token = tokens.sign({"sub": "alice", "session": {"user": "admin"}}, ttl=timedelta(minutes=5))
    client.cookies.set("session", api_token)
    assert client.get("/whoami").json() == {"user": None}


def test_bearer_dependency_answers_401_with_a_challenge(world: World) -> None:
    ref = world.seed("jwt-access")
    app, tokens = _app(store_source(world, ref))
    client = TestClient(app)
    token = tokens.sign({"sub": "u1", "aud": "api"}, ttl=timedelta(minutes=5))
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == {"sub": "u1"}

    def mid_overlap() -> None:
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200

    full_rotation(world, "jwt-access", mid_overlap)
    missing = client.get("/me")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    for bad in (token, "garbage", token[:-3] + "abc"):
        answer = client.get("/me", headers={"Authorization": f"Bearer {bad}"})
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert answer.json() == {"detail": "invalid token"}


def test_invalid_token_is_a_pyjwt_invalid_token_error(world: World) -> None:
    ring = JWTKeyRing(store_source(world, world.seed("jwt-access")))
    with pytest.raises(pyjwt.InvalidTokenError) as caught:  # what existing handlers catch
        ring.verify("not.a.token")
    assert isinstance(caught.value, InvalidToken)


def test_a_lazy_ring_needs_no_keys_until_used() -> None:
    env: dict[str, str] = {}
    built: list[int] = []

    def factory() -> EnvKeySource:
        built.append(1)
        return EnvKeySource.jwt_secret(environ=env)

    source = LazyKeySource(factory)
    ring = JWTKeyRing(source)  # e.g. at import time of a module a migration script imports
    app = FastAPI()
    app.add_middleware(KeyRingSessionMiddleware, source=source)
    assert built == []
    env["JWT_SECRET"] = "k" * 8 + "Zq3-vX9_pL2mN7bR4tY6wE1uI8oA5sD0"
    token = ring.sign({"sub": "u"}, ttl=timedelta(minutes=1))
    assert ring.verify(token)["sub"] == "u"
    assert built == [1]
    assert source.usage is source.inner.usage
