"""The ``tls-certificate`` strategy driven by the engine against Debian's real ``pebble`` ACME CA.

Pebble validates every HTTP-01 challenge for real: it resolves the names through its own DNS
(every name is 127.0.0.1) and fetches the token from keyroll's standalone responder on
127.0.0.1:<http_port>. A real TLS server (`tests.tls_server`) serves the ``tls.crt``/``tls.key``
that the ``write_tls`` hook writes and reloads them; the tests connect to it and verify the
served chain against pebble's root, read from pebble's management endpoint.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.crash as crash
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.strategies.tls_certificate import acme_ref
from keyroll.status import secret_status
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.acme import AcmeClient
from keyroll.targets.http01 import StandaloneResponder
from keyroll.targets.tls_endpoint import probe
from keyroll.tlscert import Bundle, certificate_meta, make_csr, new_private_key
from tests.acme_fault_proxy import RateLimitingFront
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.leaks import assert_no_leak
from tests.pebble_server import PebbleServer
from tests.tls_server import ReloadingTLSServer

pytestmark = pytest.mark.integration

DOMAINS = ["app.keyroll.test", "www.keyroll.test"]
NAME = "web-tls"


def issue(pebble: PebbleServer, names: list[str] = DOMAINS, key_type: str = "ec-p256"
          ) -> SecretValue:
    """A certificate from pebble under a throwaway account: what an operator imports first."""
    key = new_private_key(key_type)
    csr = make_csr(key, names)
    with AcmeClient(pebble.directory_url, new_private_key(),
                    ca_bundle=str(pebble.listen_ca)) as client:
        client.register()
        order = client.new_order(csr)
        with StandaloneResponder("127.0.0.1", pebble.http_port) as responder:
            client.authorize(order.url, responder)
        chain = client.certificate(client.finalize(order.url, csr))
    return Bundle.compose(chain, key)


def seed(store: SQLiteStore, ref: SecretRef, value: SecretValue) -> SecretRef:
    version = store.put_version(ref, value, meta=certificate_meta(Bundle.parse(value)))
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    return ref


def options(pebble: PebbleServer, root: Path, **extra: Any) -> dict[str, Any]:
    return {"directory_url": pebble.directory_url, "domains": DOMAINS,
            "http01": {"listen": f"127.0.0.1:{pebble.http_port}"},
            "ca_bundle": str(pebble.listen_ca), "serve_ca": str(root),
            "contact": "mailto:ops@keyroll.test", **extra}


def key_forms(value: SecretValue) -> list[str | bytes]:
    """A bundle's private key as PEM, as each PEM line, as DER (leak_forms adds base64/hex)
    and as its raw private scalar."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    pem = Bundle.parse(value).key.reveal() if "CERTIFICATE" in value.reveal() else value.reveal()
    key = serialization.load_pem_private_key(pem.encode(), None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    lines = [line for line in pem.splitlines() if "-----" not in line]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        scalar = key.private_numbers().private_value.to_bytes(32, "big")
    else:
        assert isinstance(key, rsa.RSAPrivateKey)
        scalar = key.private_numbers().d.to_bytes(256, "big")
    return [pem, der, "".join(lines), *lines, scalar]


def sha_of_leaf(value: SecretValue) -> str:
    return str(certificate_meta(Bundle.parse(value))["cert_sha256"])


@dataclass
class Rig:
    world: EngineWorld
    ref: SecretRef
    server: ReloadingTLSServer
    first: SecretValue
    root: Path


@pytest.fixture
def make_rig(tmp_path: Path, pebble_server: PebbleServer) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(hooks: dict[str, Any] | None = None, overlap: dict[str, Any] | None = None,
             **extra: Any) -> Rig:
        folder = tmp_path / f"world{len(made)}"
        certs = folder / "certs" / "dev"
        certs.mkdir(parents=True)
        root = folder / "pebble-root.pem"
        root.write_bytes(pebble_server.root_pem())
        first = issue(pebble_server)
        bundle = Bundle.parse(first)
        (certs / "tls.crt").write_text(bundle.chain_pem)
        (certs / "tls.key").write_text(bundle.key.reveal())
        server = ReloadingTLSServer(certs).start()
        opts = options(pebble_server, root, serve_check=[f"127.0.0.1:{server.port}"], **extra)
        text = inventory_text(class_toml(
            NAME, "tls-certificate", "TLS_BUNDLE", opts, overlap or {"max": "1d"},
            hooks if hooks is not None else {"on_promote": [{"write_tls": "certs/{env}"}]}))
        world = EngineWorld.create(folder, text)
        rig = Rig(world, seed(world.store, SecretRef("dev", NAME), first), server, first, root)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.server.stop()
        rig.world.close()


def test_rotation_issues_delivers_serves_and_retires(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer,
        capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the acme library logs every request and answer at DEBUG
    rig = make_rig()
    store = rig.world.store
    served = probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0], cafile=str(rig.root))
    assert served.verified and served.leaf_sha256 == sha_of_leaf(rig.first)

    first = rig.world.rotate(NAME)
    second = rig.world.rotate(NAME)  # the account is found again, not registered twice
    assert (first.state, second.state) == ("done", "done")

    new_version = store.get_version(rig.ref, second.body.new_version)
    new_value = store.read_value(rig.ref, new_version.number)
    # the endpoint serves the new leaf, with a chain that verifies against pebble's root only
    # (so the server sent the intermediate), for both names
    for name in DOMAINS:
        now_served = probe("127.0.0.1", rig.server.port, server_name=name, cafile=str(rig.root))
        assert now_served.verified, now_served.error
        assert now_served.leaf_sha256 == new_version.meta["cert_sha256"] == sha_of_leaf(new_value)
    chain = Bundle.parse(new_value).certificates()
    assert chain[1].subject.rfc4514_string() in pebble_server.intermediate_pem().decode() or \
        chain[1].issuer.rfc4514_string().startswith("CN=Pebble Root CA")
    assert Bundle.parse(new_value).key_matches()
    # the files the hook wrote: the key private, the chain public
    certs = rig.world.path / "certs" / "dev"
    assert (certs / "tls.key").stat().st_mode & 0o777 == 0o600
    assert (certs / "tls.crt").stat().st_mode & 0o777 == 0o644
    assert (certs / "tls.key").read_text() == Bundle.parse(new_value).key.reveal()
    # old versions retired, labels clean; the ACME working secret keeps only the account key
    versions = store.list_versions(rig.ref)
    assert [v.destroyed for v in versions] == [True, True, False]
    assert store.get_labels(rig.ref) == {Label.CURRENT: new_version.number}
    acme = acme_ref(rig.ref)
    acme_versions = store.list_versions(acme)
    assert store.get_labels(acme) == {Label.CURRENT: 1}
    assert acme_versions[0].meta["role"] == "acme-account"
    assert [v.destroyed for v in acme_versions[1:]] == [True, True]  # each order's key copy
    assert not [k for k in store.list_meta() if k.startswith("acme-order:")]
    # evidence: the same account both times, the overlap ended on what the endpoint served
    records = {r.id: r for r in store.list_rotations(rig.ref)}
    journal = rig.world.journal_text()
    accounts = {json.loads(e.payload)["evidence"].get("account")
                for e in store.audit_entries() if '"account"' in e.payload}
    assert len(accounts - {None}) == 1, accounts
    assert "every endpoint serves the new certificate" in journal
    assert len(records) == 2
    # status dates it by expiry minus 30 days
    row = secret_status(store, rig.world.inventory, rig.world.inventory.classes[NAME], rig.ref,
                        rig.world.clock())
    assert row.due_at is not None
    assert row.due_at.isoformat() == (
        Bundle.parse(new_value).leaf().not_valid_after_utc - timedelta(days=30)).isoformat()
    # no private key (old, new, account) in any output, record, journal or log line
    planted: list[str | bytes] = []
    for value in (rig.first, new_value, store.read_value(acme, 1)):
        planted += key_forms(value)
    out, err = capfd.readouterr()
    meta_values = [store.get_meta(k) or "" for k in store.list_meta()]
    assert_no_leak([out, err, journal, rig.world.records_text(), caplog.text, *meta_values,
                    json.dumps([v.meta for v in versions + acme_versions])], planted,
                   where="outputs of a TLS rotation")


def test_kubernetes_tls_secret_delivery(make_rig: Callable[..., Rig], tmp_path: Path) -> None:
    pytest.importorskip("kubernetes")
    from tests.fake_kube_api import serve

    with serve() as api:
        kubeconfig = tmp_path / "kubeconfig"
        api.write_kubeconfig(kubeconfig)
        rig = make_rig(hooks={"on_promote": [
            {"kubernetes_secret": {"name": "web-tls", "namespace": "app-{env}",
                                   "type": "kubernetes.io/tls", "kubeconfig": str(kubeconfig)}},
            {"write_tls": "certs/{env}"}]})
        record = rig.world.rotate(NAME)
        assert record.state == "done"
        secret = api.secret("app-dev", "web-tls")
        assert secret is not None and secret["type"] == "kubernetes.io/tls"
        assert sorted(secret["data"]) == ["tls.crt", "tls.key"]
        value = rig.world.store.read_value(rig.ref, record.body.new_version)
        bundle = Bundle.parse(value)
        assert base64.b64decode(secret["data"]["tls.crt"]).decode() == bundle.chain_pem
        assert base64.b64decode(secret["data"]["tls.key"]).decode() == bundle.key.reveal()
        notes = secret["metadata"]["annotations"]
        assert notes["keyroll.dev/cert-sha256"] == sha_of_leaf(value)
        assert_no_leak([json.dumps(notes)], key_forms(value), where="annotations")


def test_overlap_waits_until_the_endpoint_serves_the_new_certificate(
        make_rig: Callable[..., Rig]) -> None:
    # no delivery hook: the server keeps the old pair until the operator copies the new one
    rig = make_rig(hooks={}, overlap={"max": "1d"})
    engine = rig.world.engine()
    record = engine.start(NAME, "dev")
    record = engine.run(record.id)
    assert record.state == "overlap"
    assert "serves the old certificate" in str(record.body.waiting)
    assert rig.world.store.list_versions(rig.ref)[0].destroyed is False  # the old one is kept
    new_value = rig.world.store.read_value(rig.ref, record.body.new_version)
    bundle = Bundle.parse(new_value)
    certs = rig.world.path / "certs" / "dev"
    (certs / "tls.key").write_text(bundle.key.reveal())
    (certs / "tls.crt").write_text(bundle.chain_pem)
    record = engine.run(record.id)
    assert record.state == "done"
    assert rig.server.reloads == 2


def test_incident_rotation_revokes_the_old_certificate(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer) -> None:
    rig = make_rig()
    # the first certificate was ordered by another account (an imported one): keyroll revokes
    # it with a request signed by the certificate's own key (RFC 8555 §7.6)
    old_serial = Bundle.parse(rig.first).leaf().serial_number
    assert pebble_server.cert_status(old_serial)["Status"] == "Valid"
    incident = rig.world.rotate(NAME, incident=True)
    assert incident.state == "done"
    assert pebble_server.cert_status(old_serial)["Status"] == "Revoked"
    new_serial = int(rig.world.store.get_version(rig.ref, incident.body.new_version)
                     .meta["serial"], 16)
    assert pebble_server.cert_status(new_serial)["Status"] == "Valid"
    served = probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0], cafile=str(rig.root))
    assert served.leaf_sha256 == rig.world.store.get_version(
        rig.ref, incident.body.new_version).meta["cert_sha256"]


def _failed_rotation(rig: Rig) -> tuple[Any, str]:
    engine = rig.world.engine()
    record = engine.start(NAME, "dev")
    record = engine.run(record.id)
    return record, rig.world.journal_text()


def test_a_name_the_ca_refuses_is_one_line_and_changes_nothing(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    text = (rig.world.path / "keyroll.toml").read_text().replace(
        '"www.keyroll.test"', '"203.0.113.7"')
    rig.world.reload(text)
    record, journal = _failed_rotation(rig)
    assert record.state in ("rolled-back", "failed"), record.state
    assert record.body.error is not None
    error = record.body.error.message
    assert "\n" not in error
    assert "the CA refused (malformed)" in error and "203.0.113.7" in error
    assert "options.domains" in error
    assert rig.world.store.get_labels(rig.ref) == {Label.CURRENT: 1}
    assert probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0],
                 cafile=str(rig.root)).leaf_sha256 == sha_of_leaf(rig.first)
    assert "Traceback" not in journal


def test_a_rate_limit_is_one_line_and_changes_nothing(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer) -> None:
    front = RateLimitingFront(pebble_server).start()
    try:
        rig = make_rig()
        text = (rig.world.path / "keyroll.toml").read_text().replace(
            json.dumps(pebble_server.directory_url), json.dumps(front.directory_url))
        rig.world.reload(text)
        record, _journal = _failed_rotation(rig)
    finally:
        front.stop()
    assert front.refused == 1
    assert record.body.error is not None
    error = record.body.error.message
    assert "\n" not in error
    assert "the CA refused (rateLimited)" in error and "too many certificates" in error
    assert "wait until the limit resets" in error
    assert rig.world.store.get_labels(rig.ref) == {Label.CURRENT: 1}


def test_crash_between_finalize_and_store_downloads_the_same_certificate(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer) -> None:
    """Kill the process right after the order's stage ``issued`` was recorded (the CA has
    issued; the store has not got it): the next run downloads that certificate, issues none."""
    rig = make_rig()
    key = rig.world.key
    rig.world.store.close()
    path = rig.world.path / "store.db"
    inventory = rig.world.inventory
    pid = os.fork()
    if pid == 0:
        try:
            with _KillOnIssued(path, key) as child:
                crash.drive(child, inventory, rig.world.path, NAME, "dev", "-")
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status), status
    with SQLiteStore(path, key) as store:
        note_keys = [k for k in store.list_meta() if k.startswith("acme-order:")]
        assert len(note_keys) == 1
        note = json.loads(store.get_meta(note_keys[0]) or "{}")
        assert note["stage"] == "issued"
        # the CA issued it, the store holds no version of it yet
        assert [v.number for v in store.list_versions(rig.ref)] == [1]
        final = crash.drive(store, inventory, rig.world.path, NAME, "dev", "-")
        assert final.state == "done"
        value = store.read_value(rig.ref, final.body.new_version)
        version = store.get_version(rig.ref, final.body.new_version)
        assert version.meta["order"] == note["order"]
        resumed = [json.loads(e.payload) for e in store.audit_entries()
                   if "resumed_order" in e.payload]
        assert resumed and resumed[0]["evidence"]["resumed_order"]["stage"] == "issued"
        with AcmeClient(pebble_server.directory_url, store.read_value(acme_ref(rig.ref), 1),
                        ca_bundle=str(pebble_server.listen_ca)) as client:
            client.register()
            assert client.certificate(client.order(note["order"])).split(
                "-----END CERTIFICATE-----")[0] in value.reveal()
    rig.world.store = SQLiteStore(path, key)


class _KillOnIssued(crash.KillingStore):
    """Dies by SIGKILL right after the bookkeeping write that records ``stage: issued``."""

    def __init__(self, path: Path, key: bytes) -> None:
        super().__init__(path, key, None)

    def put_meta(self, key: str, value: str | None, *, fence: Any = None) -> None:
        super().put_meta(key, value, fence=fence)
        if key.startswith("acme-order:") and value and '"issued"' in value:
            os.kill(os.getpid(), 9)


def test_crash_matrix(tmp_path: Path, pebble_server: PebbleServer) -> None:
    """SIGKILL after every durable write of a rotation (account key, certificate key, each
    order stage, the version, labels, records, journal); resume; check the invariants and that
    the store's certificate is the one pebble issued for the rotation's last order."""
    root = tmp_path / "pebble-root.pem"
    root.write_bytes(pebble_server.root_pem())
    counter = iter(range(1000))
    first = issue(pebble_server)
    issued_per_world: list[int] = []

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path / f"w{next(counter)}"
        folder.mkdir()
        text = inventory_text(class_toml(NAME, "tls-certificate", "TLS_BUNDLE",
                                         options(pebble_server, root), {"max": "1d"}))
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def seed_first(store: SQLiteStore, _inventory: Inventory, name: str, env: str) -> SecretRef:
        return seed(store, SecretRef(env, name), first)

    def check(store: SQLiteStore, ref: SecretRef) -> None:
        current = store.get_labels(ref)[Label.CURRENT]
        value = store.read_value(ref, current)
        bundle = Bundle.parse(value)
        assert bundle.key_matches()
        if current == 1:
            return
        version = store.get_version(ref, current)
        assert version.meta["cert_sha256"] == sha_of_leaf(value)
        # pebble issued exactly one certificate to this world's account: a crash at any point
        # neither lost the issued one nor ordered a second
        with AcmeClient(pebble_server.directory_url, store.read_value(acme_ref(ref), 1),
                        ca_bundle=str(pebble_server.listen_ca)) as client:
            client.register()
            valid = [o for o in client.orders() if o.status == "valid"]
        issued_per_world.append(len(valid))
        assert valid[0].url == version.meta["order"]
        # no order left half-done, no copy of a certificate key left behind
        assert not [k for k in store.list_meta() if k.startswith("acme-order:")]
        acme = acme_ref(ref)
        assert Label.PENDING not in store.get_labels(acme)
        live = [v for v in store.list_versions(acme) if not v.destroyed]
        assert [v.meta["role"] for v in live] == ["acme-account"]

    points = crash.run_crash_matrix(make_world, NAME, seed=seed_first, check_target=check)
    print(crash.format_table("tls-certificate", points))
    assert len(points) >= 15
    writes = [p.write for p in points]
    assert writes.count("put_meta") >= 3  # ordered, finalizing, issued (and more)
    assert all(p.final == "done" for p in points), [p for p in points if p.final != "done"]
    assert issued_per_world and all(count == 1 for count in issued_per_world), issued_per_world


def test_webroot_challenge_and_rsa_key(make_rig: Callable[..., Rig],
                                       pebble_server: PebbleServer) -> None:
    """``http01 = { webroot }``: keyroll writes the token files, the site's own web server (a
    plain static file server here) answers pebble; the key is RSA-2048 as asked."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from cryptography.hazmat.primitives.asymmetric import rsa

    rig = make_rig(http01={"webroot": "www"}, key_type="rsa-2048")
    webroot = rig.world.path / "www"
    webroot.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    site = ThreadingHTTPServer(("127.0.0.1", pebble_server.http_port),
                               functools.partial(Quiet, directory=str(webroot)))
    thread = threading.Thread(target=site.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        record = rig.world.rotate(NAME)
    finally:
        site.shutdown()
        site.server_close()
        thread.join(timeout=5)
    assert record.state == "done", record.body.error
    value = rig.world.store.read_value(rig.ref, record.body.new_version)
    assert isinstance(Bundle.parse(value).leaf().public_key(), rsa.RSAPublicKey)
    assert Bundle.parse(value).leaf().public_key().key_size == 2048
    challenge_dir = webroot / ".well-known" / "acme-challenge"
    assert challenge_dir.is_dir() and not list(challenge_dir.iterdir())  # tokens removed
    assert probe("127.0.0.1", rig.server.port, server_name=DOMAINS[1],
                 cafile=str(rig.root)).leaf_sha256 == sha_of_leaf(value)


def test_failed_test_step_rolls_back_and_revokes_the_unused_certificate(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer) -> None:
    # serve_ca names a CA that did not sign pebble's chain: the test step must refuse it
    rig = make_rig(serve_ca=str(pebble_server.listen_ca))
    record, journal = _failed_rotation(rig)
    assert record.state == "rolled-back", record.state
    assert record.body.error is not None
    assert "the new chain does not verify" in record.body.error.message
    new = rig.world.store.get_version(rig.ref, 2)
    assert new.destroyed
    assert pebble_server.cert_status(int(new.meta["serial"], 16))["Status"] == "Revoked"
    assert rig.world.store.get_labels(rig.ref) == {Label.CURRENT: 1}
    acme = acme_ref(rig.ref)
    assert Label.PENDING not in rig.world.store.get_labels(acme)
    assert not [k for k in rig.world.store.list_meta() if k.startswith("acme-order:")]
    assert any("revoked the unused certificate" in e.message for e in rig.world.events)
    assert "Traceback" not in journal
    assert probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0],
                 cafile=str(rig.root)).leaf_sha256 == sha_of_leaf(rig.first)


def test_rollback_after_promote_serves_the_old_certificate_again(
        make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(overlap={"min": "1h", "max": "1d"})
    engine = rig.world.engine()
    record = engine.run(engine.start(NAME, "dev").id)
    assert record.state == "overlap"
    new_sha = rig.world.store.get_version(rig.ref, record.body.new_version).meta["cert_sha256"]
    assert probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0],
                 cafile=str(rig.root)).leaf_sha256 == new_sha
    record = engine.rollback(record.id, reason="the new certificate breaks old clients")
    final = rig.world.finish(record.id, engine=engine)
    assert final.state == "rolled-back"
    served = probe("127.0.0.1", rig.server.port, server_name=DOMAINS[0], cafile=str(rig.root))
    assert served.verified and served.leaf_sha256 == sha_of_leaf(rig.first)
    assert rig.world.store.get_labels(rig.ref) == {Label.CURRENT: 1}
    assert rig.world.store.list_versions(rig.ref)[1].destroyed


def test_revoke_on_retire_revokes_the_old_certificate_as_superseded(
        make_rig: Callable[..., Rig], pebble_server: PebbleServer) -> None:
    rig = make_rig(revoke_on_retire=True)
    old_serial = Bundle.parse(rig.first).leaf().serial_number
    record = rig.world.rotate(NAME)
    assert record.state == "done"
    status = pebble_server.cert_status(old_serial)
    assert (status["Status"], status["Reason"]) == ("Revoked", 4)  # superseded
    retired = [json.loads(e.payload) for e in rig.world.store.audit_entries()
               if '"revoked"' in e.payload]
    assert retired and retired[-1]["evidence"]["revoked"]["serial"] == format(old_serial, "x")
