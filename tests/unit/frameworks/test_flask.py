"""keyroll.flask on a real Flask app: its signed session cookie survives a full rotation."""

from __future__ import annotations

import flask
import pytest
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

from keyroll import EnvKeySource, LazyKeySource
from keyroll.errors import UsageError
from keyroll.flask import KeyrollFlask, check_flask_version
from keyroll.model import Label, SecretRef
from tests.leaks import assert_no_leak
from tests.unit.frameworks.conftest import World, full_rotation, store_source


def _app(keyroll: KeyrollFlask) -> flask.Flask:
    app = flask.Flask(__name__)
    keyroll.init_app(app)

    @app.post("/login")
    def login() -> dict[str, str]:
        flask.session["user"] = "alice"
        return {"ok": "yes"}

    @app.get("/whoami")
    def whoami() -> dict[str, str | None]:
        return {"user": flask.session.get("user")}

    return app


def _signed_by(cookie: str, key: str) -> bool:
    """Does ``key`` alone verify the cookie (Flask's own serializer settings)?"""
    iface = SecureCookieSessionInterface()
    serializer = URLSafeTimedSerializer(key, salt=iface.salt, serializer=iface.serializer,
                                        signer_kwargs={"key_derivation": iface.key_derivation,
                                                       "digest_method": iface.digest_method})
    try:
        serializer.loads(cookie)
    except BadSignature:
        return False
    return True


def _value(world: World, ref: SecretRef, label: Label) -> str:
    return world.store.read_value(ref, world.store.get_labels(ref)[label]).reveal()


def test_a_signed_session_survives_a_full_rotation(world: World) -> None:
    ref = world.seed("jwt-access")
    app = _app(KeyrollFlask(source=store_source(world, ref)))
    client = app.test_client()
    assert client.post("/login").status_code == 200
    old = _value(world, ref, Label.CURRENT)
    cookie = client.get_cookie("session")
    assert cookie is not None and _signed_by(cookie.value, old)

    def mid_overlap() -> None:
        new = _value(world, ref, Label.CURRENT)
        assert client.get("/whoami").json == {"user": "alice"}
        # refreshed without a restart (compared, never printed: values stay out of reports)
        fresh = app.config["SECRET_KEY"] == new and app.config["SECRET_KEY_FALLBACKS"] == [old]
        assert fresh
        resigned = client.get_cookie("session")
        assert resigned is not None
        # CVE-2025-47278: the current key signs, never a fallback
        assert _signed_by(resigned.value, new) and not _signed_by(resigned.value, old)

    full_rotation(world, "jwt-access", mid_overlap)
    assert client.get("/whoami").json == {"user": "alice"}
    assert len(app.config["SECRET_KEY_FALLBACKS"]) == 0
    final = client.get_cookie("session")
    assert final is not None
    assert_no_leak([final.value, client.get("/whoami").get_data()], [old])


def test_a_cookie_signed_by_an_unknown_key_is_a_fresh_session(world: World) -> None:
    ref = world.seed("jwt-access")
    app = _app(KeyrollFlask(source=store_source(world, ref)))
    client = app.test_client()
    foreign = URLSafeTimedSerializer("x" * 40, salt="cookie-session").dumps({"user": "mallory"})
    client.set_cookie("session", foreign)
    assert client.get("/whoami").json == {"user": None}


def test_a_lazy_source_is_read_at_the_first_request() -> None:
    env: dict[str, str] = {}
    app = _app(KeyrollFlask(source=LazyKeySource(lambda: EnvKeySource.secret_key(environ=env))))
    env["SECRET_KEY"] = "Zq3-vX9_pL2mN7bR4tY6wE1uI8oA5sD0kkkkkkkk"
    client = app.test_client()
    client.post("/login")
    assert client.get("/whoami").json == {"user": "alice"}


@pytest.mark.parametrize("text", ["3.0.3", "3.1.0", "3.1", "2.3.3"])
def test_flask_versions_that_sign_wrongly_are_refused(text: str) -> None:
    with pytest.raises(UsageError, match=r"3\.1\.1"):
        check_flask_version(text)


def test_fixed_flask_versions_pass() -> None:
    for text in ("3.1.1", "3.1.3", "3.2.0", "4.0"):
        check_flask_version(text)
