"""Parsing of ``openbao://`` store URLs (no server needed: nothing here opens a connection)."""

from __future__ import annotations

import pytest

from keyroll.errors import UsageError
from keyroll.stores import open_store
from keyroll.stores.openbao import OpenBaoStore

TOKEN = {"BAO_TOKEN": "s.planted-token-value-123"}


def _open(url: str, env: dict[str, str] | None = None) -> OpenBaoStore:
    store = open_store(url, environ=TOKEN if env is None else env)
    assert isinstance(store, OpenBaoStore)
    return store


def test_defaults() -> None:
    store = _open("openbao://127.0.0.1:8200")
    assert (store.mount, store.prefix) == ("secret", "keyroll")
    assert store._conn.addresses == ["http://127.0.0.1:8200"]
    assert store.url == "openbao://127.0.0.1:8200"


@pytest.mark.parametrize(
    ("url", "addresses"),
    [
        ("openbaos://bao.example:8201/kv", ["https://bao.example:8201"]),
        ("vaults://a.example,b.example:9000/kv", ["https://a.example:8200",
                                                  "https://b.example:9000"]),
        ("vault://localhost:8200/kv", ["http://localhost:8200"]),
        ("openbao://[::1]:8200/kv", ["http://[::1]:8200"]),
        ("openbao://10.0.0.5:8200/kv?plaintext=ok", ["http://10.0.0.5:8200"]),
    ],
)
def test_addresses(url: str, addresses: list[str]) -> None:
    assert _open(url)._conn.addresses == addresses


def test_options() -> None:
    store = _open("openbaos://h1:1,h2:2/team/kv?prefix=apps/shop&namespace=ns1&timeout=5&retry=7")
    assert (store.mount, store.prefix) == ("team/kv", "apps/shop")
    assert store._conn._retry_seconds == 7
    assert store._conn._clients[0].adapter.namespace == "ns1"
    several = _open("openbaos://h1:1,h2:2/kv")
    assert several._conn._retry_seconds == 30
    assert _open("openbaos://h1:1/kv")._conn._retry_seconds == 0


def test_vault_token_is_accepted_and_never_shown() -> None:
    store = _open("openbao://127.0.0.1:8200/kv", {"VAULT_TOKEN": "s.planted-token-value-123"})
    assert "planted" not in repr(store)
    assert "planted" not in store.url


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("openbao://10.0.0.5:8200/kv", TOKEN, "unencrypted"),
        ("openbao://tok@127.0.0.1:8200/kv", TOKEN, "never put credentials"),
        ("openbao://127.0.0.1:8200/kv?colour=blue", TOKEN, "unknown option"),
        ("openbao://127.0.0.1:8200/kv", {}, "BAO_TOKEN"),
        ("openbao://127.0.0.1:8200/kv?auth=approle", {"BAO_ROLE_ID": "r"}, "BAO_SECRET_ID"),
        ("openbao://127.0.0.1:8200/kv?auth=ldap", TOKEN, "token or approle"),
        ("openbao://127.0.0.1:8200/kv?timeout=soon", TOKEN, "seconds"),
        ("openbao://127.0.0.1:8200/kv?verify=maybe", TOKEN, "true or false"),
        ("openbao://127.0.0.1:8200/kv?cert=/c.pem", TOKEN, "both cert= and key="),
        ("openbao://127.0.0.1:8200/kv?prefix=../up", TOKEN, "segment"),
        ("openbao:///kv", TOKEN, "host"),
        ("openbao://127.0.0.1:notaport/kv", TOKEN, "host:port"),
    ],
)
def test_bad_urls_say_what_to_fix(url: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message) as caught:
        open_store(url, environ=env)
    assert "planted" not in str(caught.value)
