"""What only the OpenBao store promises, on a real ``bao server -dev``.

Concurrency across independent handles (each its own HTTP connection, as two machines would
be), the server-side enforcement of check-and-set, integrity checks on values, recovery after a
crash between a value write and its index update, policies (the one docs/openbao.md tells users
to write, a read-only runtime one, and one that lacks a permission), AppRole with re-login, and
that neither the token nor a value ends up in a message or repr.
"""

from __future__ import annotations

import contextlib
import http.server
import pickle
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from keyroll.errors import (
    Conflict,
    KeyrollError,
    LockHeld,
    StoreCorrupted,
    StoreForbidden,
    StoreUnavailable,
    UsageError,
)
from keyroll.generate import generate
from keyroll.model import Label
from keyroll.stores import open_store
from keyroll.stores.base import AuditEntry, RotationRecord
from keyroll.stores.openbao import OpenBaoStore
from tests.leaks import assert_no_leak
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.openbao_server import DevServer
from tests.stores.contract import OTHER, REF, T0

pytestmark = pytest.mark.integration

Factory = Callable[..., OpenBaoStore]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "openbao.md"
THREADS = 6


def _race(workers: list[Callable[[], object]]) -> list[object]:
    """Run callables at once (released together by a barrier); their results or exceptions."""
    barrier = threading.Barrier(len(workers), timeout=30)
    results: list[object] = [None] * len(workers)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = workers[i]()
        except Exception as exc:  # noqa: BLE001  (the test inspects what each worker got)
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(workers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def _token_for(server: DevServer, name: str, hcl: str) -> str:
    server.api("PUT", f"sys/policies/acl/{name}", {"policy": hcl})
    made = server.api("POST", "auth/token/create", {"policies": [name], "ttl": "1h"})
    return str(made["auth"]["client_token"])


def _url(server: DevServer, store: OpenBaoStore, extra: str = "") -> str:
    return f"openbao://{server.addr.removeprefix('http://')}/secret?prefix={store.prefix}{extra}"


# --- concurrency across handles ---------------------------------------------------------


def test_concurrent_label_moves_exactly_one_wins(bao_store_factory: Factory) -> None:
    store = bao_store_factory()
    for _ in range(THREADS + 1):
        store.put_version(REF, generate("hex-32"))
    store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    handles = [bao_store_factory() for _ in range(THREADS)]
    results = _race([
        (lambda h=h, n=n: h.set_labels(
            REF, expected={Label.CURRENT: 1}, new={Label.CURRENT: n, Label.PREVIOUS: 1}
        ))
        for n, h in enumerate(handles, start=2)
    ])
    winners = [r for r in results if isinstance(r, dict)]
    assert len(winners) == 1, results
    assert all(isinstance(r, Conflict) for r in results if not isinstance(r, dict))
    assert store.get_labels(REF) == winners[0]


def test_concurrent_puts_get_distinct_contiguous_numbers(bao_store_factory: Factory) -> None:
    handles = [bao_store_factory() for _ in range(THREADS)]
    values = [generate("hex-32") for _ in handles]
    results = _race([
        (lambda h=h, v=v: h.put_version(REF, v)) for h, v in zip(handles, values, strict=True)
    ])
    numbers = sorted(r.number for r in results)  # type: ignore[attr-defined]
    assert numbers == list(range(1, THREADS + 1))
    store = bao_store_factory()
    assert [v.number for v in store.list_versions(REF)] == numbers
    for version in results:
        assert store.read_value(REF, version.number).fingerprint == version.fingerprint  # type: ignore[attr-defined]


def test_concurrent_lock_has_one_owner(bao_store_factory: Factory) -> None:
    handles = [bao_store_factory() for _ in range(THREADS)]
    results = _race([
        (lambda h=h, i=i: h.acquire_lock(REF, f"rot-{i}", ttl=timedelta(minutes=5), now=T0))
        for i, h in enumerate(handles)
    ])
    assert sum(not isinstance(r, Exception) for r in results) == 1
    assert all(isinstance(r, LockHeld) for r in results if isinstance(r, Exception))


def test_concurrent_journal_appends_take_each_seq_once(bao_store_factory: Factory) -> None:
    store = bao_store_factory()
    store.audit_append(AuditEntry(1, "{}", "0" * 64, "h1"))
    handles = [bao_store_factory() for _ in range(THREADS)]
    results = _race([
        (lambda h=h, i=i: h.audit_append(AuditEntry(2, f'{{"by":{i}}}', "h1", f"h2-{i}")))
        for i, h in enumerate(handles)
    ])
    assert sum(r is None for r in results) == 1
    assert [e.seq for e in store.audit_entries()] == [1, 2]


# --- server-side enforcement and integrity ----------------------------------------------


def test_server_refuses_writes_without_check_and_set(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    store.put_version(REF, generate("hex-32"))
    store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    for path in (f"{store.prefix}/prod/jwt-access", f"{store.prefix}/_index/prod/jwt-access"):
        with pytest.raises(requests.HTTPError, match="400"):
            bao_dev.api("POST", f"secret/data/{path}", {"data": {"x": "1"}})


def test_value_copied_to_another_secret_is_refused(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    store.put_version(REF, generate("hex-32"))
    store.put_version(OTHER, generate("hex-32"))
    copied = bao_dev.api("GET", f"secret/data/{store.prefix}/prod/jwt-access")["data"]["data"]
    bao_dev.api("POST", f"secret/data/{store.prefix}/staging/jwt-access",
                {"data": copied, "options": {"cas": 1}})
    with pytest.raises(StoreCorrupted, match="integrity"):
        store.read_value(OTHER, 2)


def test_version_written_before_a_crash_is_recovered_into_the_index(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    first = store.put_version(REF, generate("hex-32"))
    # what a process that died between the value write and the index update leaves behind
    orphan = generate("hex-32")
    bao_dev.api("POST", f"secret/data/{store.prefix}/prod/jwt-access", {
        "options": {"cas": 1},
        "data": {
            "environment": "prod", "name": "jwt-access", "number": 2, "value": orphan.reveal(),
            "kid": 0x01020304, "fingerprint": orphan.fingerprint,
            "created_at": T0.isoformat(), "meta": {"by": "crashed"},
        },
    })
    assert [v.number for v in store.list_versions(REF)] == [1]
    third = store.put_version(REF, generate("hex-32"))
    assert third.number == 3
    versions = store.list_versions(REF)
    assert [v.number for v in versions] == [1, 2, 3]
    assert (versions[1].kid, versions[1].fingerprint, versions[1].created_at) == (
        0x01020304, orphan.fingerprint, T0,
    )
    assert versions[0].fingerprint == first.fingerprint
    assert store.read_value(REF, 2) == orphan


def test_every_version_is_kept_beyond_kv_default_of_ten(bao_store_factory: Factory) -> None:
    store = bao_store_factory()
    values = [generate("hex-32") for _ in range(12)]
    for value in values:
        store.put_version(REF, value)
    assert store.read_value(REF, 1) == values[0]
    assert [v.number for v in store.list_versions(REF)] == list(range(1, 13))


def test_odd_rotation_ids_and_meta_keys_stay_distinct(bao_store_factory: Factory) -> None:
    store = bao_store_factory()
    for key in ("a/b", "a_b", "../x", "~61", "notify:2026-11-22"):
        store.put_meta(key, f"v-{key}")
    for key in ("a/b", "a_b", "../x", "~61", "notify:2026-11-22"):
        assert store.get_meta(key) == f"v-{key}"
    assert store.get_meta("a") is None


# --- policies and credentials -----------------------------------------------------------


def _docs_policy(name: str, prefix: str) -> str:
    text = DOCS.read_text()
    match = re.search(r"```hcl\n(# " + name + r":.*?)```", text, re.S)
    assert match, f"docs/openbao.md has no {name} policy block"
    return match.group(1).replace("secret/data/keyroll/", f"secret/data/{prefix}/").replace(
        "secret/metadata/keyroll/", f"secret/metadata/{prefix}/"
    ).replace("secret/destroy/keyroll/", f"secret/destroy/{prefix}/")


def test_documented_rotator_policy_is_enough_for_everything(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    root = bao_store_factory()
    token = _token_for(bao_dev, f"rotator-{root.prefix}", _docs_policy("keyroll-rotator",
                                                                         root.prefix))
    store = OpenBaoStore.from_url(_url(bao_dev, root), environ={"BAO_TOKEN": token})
    with store:
        store.put_version(REF, generate("hex-32"))
        store.put_version(REF, generate("hex-32"))
        store.set_labels(REF, expected={}, new={Label.CURRENT: 2})
        store.destroy_version(REF, 1)
        store.acquire_lock(REF, "rot-a", ttl=timedelta(minutes=5))
        store.release_lock(REF, "rot-a")
        store.audit_append(AuditEntry(1, "{}", "0" * 64, "h1"))
        assert store.audit_tail() is not None
        store.put_meta("k", "v")
        store.put_meta("k", None)
        assert store.list_secrets() == [REF]
        assert store.list_rotations() == []


def test_documented_runtime_policy_reads_prod_keys_only(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    root = bao_store_factory()
    value = generate("hex-32")
    root.put_version(REF, value)
    root.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    root.put_version(OTHER, generate("hex-32"))
    token = _token_for(bao_dev, f"runtime-{root.prefix}",
                       _docs_policy("keyroll-runtime-prod", root.prefix))
    with OpenBaoStore.from_url(_url(bao_dev, root), environ={"BAO_TOKEN": token}) as reader:
        assert reader.read(REF)[1] == value
        with pytest.raises(StoreForbidden):
            reader.read_value(OTHER, 1)
        with pytest.raises(StoreForbidden):
            reader.put_version(REF, generate("hex-32"))


def test_missing_permission_names_the_path(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    root = bao_store_factory()
    root.put_version(REF, generate("hex-32"))
    # may write values but not the label index
    hcl = (
        f'path "secret/data/{root.prefix}/prod/*" {{ capabilities = ["create","read","update"] }}'
        f'\npath "secret/metadata/{root.prefix}/*" {{ capabilities = ["read","list","update"] }}'
    )
    token = _token_for(bao_dev, f"partial-{root.prefix}", hcl)
    with OpenBaoStore.from_url(_url(bao_dev, root), environ={"BAO_TOKEN": token}) as store:
        with pytest.raises(StoreForbidden) as caught:
            store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
        message = str(caught.value)
        assert f"secret/data/{root.prefix}/_index/prod/jwt-access" in message
        assert "403" in message
        assert "policy" in message
        assert token not in message
    assert root.get_labels(REF) == {}


def test_approle_login_and_relogin_after_the_token_is_revoked(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    root = bao_store_factory()
    policy = f"rotator-{root.prefix}"
    bao_dev.api("PUT", f"sys/policies/acl/{policy}",
                {"policy": _docs_policy("keyroll-rotator", root.prefix)})
    mounts = bao_dev.api("GET", "sys/auth")["data"]
    if "approle/" not in mounts:
        bao_dev.api("POST", "sys/auth/approle", {"type": "approle"})
    role = f"keyroll-{root.prefix}"
    bao_dev.api("POST", f"auth/approle/role/{role}", {"token_policies": [policy]})
    role_id = bao_dev.api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = bao_dev.api("POST", f"auth/approle/role/{role}/secret-id")["data"]["secret_id"]
    env = {"BAO_ROLE_ID": role_id, "BAO_SECRET_ID": secret_id}
    with open_store(_url(bao_dev, root, "&auth=approle"), environ=env) as store:
        store.put_version(REF, generate("hex-32"))
        assert isinstance(store, OpenBaoStore)
        token = store._conn._clients[0].token  # the test peeks to revoke it from outside
        bao_dev.api("POST", "auth/token/revoke", {"token": token})
        store.put_version(REF, generate("hex-32"))  # logs in again by itself
        assert [v.number for v in store.list_versions(REF)] == [1, 2]
        assert_no_leak([repr(store), store.url], [token, secret_id, role_id], where="repr")


def test_token_and_values_never_in_repr_or_errors(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    store = bao_store_factory()
    value = generate("base64-48")
    store.put_version(REF, value)
    store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    outputs = [repr(store), store.url, str(store.__dict__)]
    for attempt in (
        lambda: store.destroy_version(REF, 1),
        lambda: store.set_labels(REF, expected={Label.CURRENT: 9}, new={}),
        lambda: store.read_value(REF, 7),
    ):
        with pytest.raises(KeyrollError) as caught:
            attempt()
        outputs.append(str(caught.value))
    assert_no_leak(outputs, [bao_dev.token, value.reveal()], where="store output")


def test_wrong_or_v1_mount_says_so(bao_dev: DevServer, bao_store_factory: Factory) -> None:
    base = bao_store_factory()
    url = _url(bao_dev, base).replace("/secret?", "/no-such-mount?")
    with OpenBaoStore.from_url(url, environ={"BAO_TOKEN": bao_dev.token}) as store, \
            pytest.raises(UsageError, match="check the mount"):
        store.list_versions(REF)
    mount = f"kv1-{base.prefix}"
    bao_dev.api("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "1"}})
    url = _url(bao_dev, base).replace("/secret?", f"/{mount}?")
    with OpenBaoStore.from_url(url, environ={"BAO_TOKEN": bao_dev.token}) as store, \
            pytest.raises(UsageError, match="KV version 2"):
        store.put_version(REF, generate("hex-32"))


def test_store_refuses_to_be_pickled(bao_store_factory: Factory) -> None:
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(bao_store_factory())


# --- TLS and namespaces -------------------------------------------------------------------


def test_tls_needs_the_ca_and_works_with_it() -> None:
    server = DevServer(tls=True).start()
    try:
        base = f"openbaos://127.0.0.1:{server.port}/secret?prefix=tls"
        env = {"BAO_TOKEN": server.token}
        with OpenBaoStore.from_url(base, environ=env) as store, pytest.raises(
            StoreUnavailable, match=r"TLS handshake.*\?ca="
        ):
            store.list_secrets()
        with OpenBaoStore.from_url(f"{base}&ca={server.ca_file}", environ=env) as store:
            store.put_version(REF, generate("hex-32"))
        with OpenBaoStore.from_url(base, environ={**env, "BAO_CACERT": str(server.ca_file)}) as s:
            assert [v.number for v in s.list_versions(REF)] == [1]
    finally:
        server.stop()


def test_namespace_keeps_its_own_data(bao_dev: DevServer, bao_store_factory: Factory) -> None:
    root = bao_store_factory()
    namespace = f"ns-{root.prefix}"
    bao_dev.api("POST", f"sys/namespaces/{namespace}")
    resp = bao_dev.http.post(
        f"{bao_dev.addr}/v1/sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}},
        headers={"X-Vault-Token": bao_dev.token, "X-Vault-Namespace": namespace}, timeout=10,
    )
    resp.raise_for_status()
    url = _url(bao_dev, root, f"&namespace={namespace}")
    with OpenBaoStore.from_url(url, environ={"BAO_TOKEN": bao_dev.token}) as store:
        store.put_version(REF, generate("hex-32"))
        assert store.list_secrets() == [REF]
    assert root.list_secrets() == []


def test_an_address_that_is_not_openbao_is_refused() -> None:
    """A web server answering 404 to everything must not look like an empty store."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        url = f"openbao://127.0.0.1:{server.server_address[1]}/secret"
        with OpenBaoStore.from_url(url, environ={"BAO_TOKEN": "t"}) as store, pytest.raises(
            UsageError, match="does not answer like OpenBao"
        ):
            store.list_versions(REF)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_change_markers_move_after_every_write_and_only_then(
    bao_store_factory: Factory,
) -> None:
    """What the dashboard's cache relies on: every write to versions, labels, locks and
    rotations moves the first marker, every bookkeeping write the second; a journal append,
    a read and a refused write move neither."""
    store = bao_store_factory()
    other = bao_store_factory()  # another handle on the same prefix, as another process
    assert store.change_markers() == ("", "")

    def moved(write: Callable[[], object]) -> tuple[bool, bool]:
        before = other.change_markers()
        with contextlib.suppress(LockHeld, Conflict):  # the refusals below
            write()
        after = other.change_markers()
        return before[0] != after[0], before[1] != after[1]

    rotation = RotationRecord("r-markers", REF, "plan", 0, T0, T0, {"steps": []})
    assert moved(lambda: store.put_version(REF, generate("hex-32"))) == (True, False)
    assert moved(lambda: store.put_version(REF, generate("hex-32"))) == (True, False)
    assert moved(lambda: store.set_labels(REF, expected={}, new={Label.CURRENT: 2})) == (
        True, False)
    # destroying records the value's recognition digest first: a bookkeeping write too
    assert moved(lambda: store.destroy_version(REF, 1)) == (True, True)
    assert moved(lambda: store.acquire_lock(REF, "a", ttl=timedelta(minutes=5))) == (
        True, False)
    assert moved(lambda: store.acquire_lock(REF, "b", ttl=timedelta(minutes=5))) == (
        False, False)  # LockHeld: nothing written
    assert moved(lambda: store.release_lock(REF, "a")) == (True, False)
    assert moved(lambda: store.create_rotation(rotation)) == (True, False)
    saved = store.get_rotation("r-markers")
    assert moved(lambda: store.save_rotation(saved, expected_revision=saved.revision)) == (
        True, False)
    assert moved(lambda: store.save_rotation(saved, expected_revision=saved.revision)) == (
        False, False)  # Conflict: nothing written
    assert moved(lambda: store.put_meta("k", "v")) == (False, True)
    assert moved(lambda: store.put_meta("k", None)) == (False, True)
    assert moved(lambda: store.audit_append(AuditEntry(1, "{}", "0" * 64, "f" * 64))) == (
        False, False)
    assert moved(lambda: (store.list_versions(REF), store.get_labels(REF),
                          store.list_rotations(), store.get_meta("k"))) == (False, False)
    labels, versions = other.secret_index(REF)
    assert (labels, versions) == (other.get_labels(REF), other.list_versions(REF))


def test_a_token_that_may_not_move_the_markers_still_writes(
    bao_dev: DevServer, bao_store_factory: Factory
) -> None:
    """An app whose policy covers only the bookkeeping it reports usage to (written before the
    markers existed) keeps working: the marker is best effort, and readers re-read what they
    kept after a bounded age anyway."""
    root = bao_store_factory()
    root.put_meta("seed", "1")
    hcl = (f'path "secret/data/{root.prefix}/_meta/*" {{ capabilities = ["create","read",'
           f'"update"] }}')
    token = _token_for(bao_dev, f"usage-only-{root.prefix}", hcl)
    before = root.change_markers()
    with OpenBaoStore.from_url(_url(bao_dev, root), environ={"BAO_TOKEN": token}) as app:
        app.put_meta("usage:dev/jwt-access", '{"x": 1}')
    assert root.get_meta("usage:dev/jwt-access") == '{"x": 1}'
    assert root.change_markers() == before
