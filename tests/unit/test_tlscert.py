"""`keyroll.tlscert` and the due date of a ``tls-certificate`` class: its expiry minus the renew
window, in `status`, `calendar` and ``keyroll status``/``keyroll calendar``, at a frozen clock.

The certificates here come from a throwaway CA made with `cryptography` with chosen validity
dates (the integration tests use pebble's real ones).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from keyroll.calendar import calendar
from keyroll.cli.app import run
from keyroll.errors import UsageError
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.strategies.tls_certificate import tls_options
from keyroll.status import State, secret_status
from keyroll.stores.sqlite import SQLiteStore
from keyroll.tlscert import (
    Bundle,
    BundleError,
    certificate_meta,
    due_at,
    make_csr,
    new_private_key,
    parse_renew_before,
)

NOT_BEFORE = datetime(2026, 3, 1, tzinfo=UTC)
NOT_AFTER = datetime(2026, 5, 30, tzinfo=UTC)  # 90 days, like Let's Encrypt


def make_bundle(not_before: datetime = NOT_BEFORE, not_after: datetime = NOT_AFTER,
                names: tuple[str, ...] = ("app.example.test",)) -> SecretValue:
    """A leaf signed by a throwaway CA, as a version's value (chain, then key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    key = new_private_key()
    csr = x509.load_pem_x509_csr(make_csr(key, names))
    leaf = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_name)
            .public_key(csr.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(csr.extensions.get_extension_for_class(
                x509.SubjectAlternativeName).value, critical=False)
            .sign(ca_key, hashes.SHA256()))
    return Bundle.compose(leaf.public_bytes(serialization.Encoding.PEM).decode(), key)


INVENTORY = """project = "t"
[environments.prod]
warn_days = 7
[classes.web-tls]
kind = "tls-certificate"
env_vars = ["TLS_BUNDLE"]
cadence_days = 365
tier = "high"
blast_radius = "the public site"
owner = "web"
environments = ["prod"]
[classes.web-tls.options]
directory_url = "https://acme.example.test/dir"
domains = ["app.example.test"]
http01 = {{ listen = "127.0.0.1:80" }}
renew_before = {renew}
"""


def _store(tmp_path: Path, value: SecretValue, *, with_meta: bool = True
           ) -> tuple[SQLiteStore, SecretRef]:
    store = SQLiteStore(tmp_path / ".keyroll" / "store.db", b"k" * 32)
    ref = SecretRef("prod", "web-tls")
    meta = certificate_meta(Bundle.parse(value)) if with_meta else {}
    version = store.put_version(ref, value, created_at=NOT_BEFORE, meta=meta)
    store.set_labels(ref, expected={}, new={Label.CURRENT: version.number})
    return store, ref


@pytest.mark.parametrize(("renew", "due"), [
    ('"30d"', NOT_AFTER - timedelta(days=30)),
    ('"1/3"', NOT_AFTER - timedelta(days=30)),
    ("0.5", NOT_AFTER - timedelta(days=45)),
])
def test_due_date_is_expiry_minus_renew_window(tmp_path: Path, renew: str, due: datetime) -> None:
    inventory = parse_inventory(INVENTORY.format(renew=renew))
    store, ref = _store(tmp_path, make_bundle())
    cls = inventory.classes["web-tls"]
    # frozen clock: well before the window, inside the warn days, past the due date
    ok = secret_status(store, inventory, cls, ref, due - timedelta(days=8))
    assert (ok.due_at, ok.state, ok.days_left) == (due, State.OK, 8)
    warned = secret_status(store, inventory, cls, ref, due - timedelta(days=3))
    assert warned.state is State.DUE
    late = secret_status(store, inventory, cls, ref, due + timedelta(hours=1))
    assert late.state is State.OVERDUE
    # not the cadence: created + 365 days would be a year away
    assert ok.due_at != NOT_BEFORE + timedelta(days=365)
    entries = calendar(store, inventory, due - timedelta(days=8), days=30)
    assert [(e.name, e.due_at) for e in entries] == [("web-tls", due)]
    store.close()


def test_a_version_without_validity_falls_back_to_the_cadence(tmp_path: Path) -> None:
    inventory = parse_inventory(INVENTORY.format(renew='"30d"'))
    store, ref = _store(tmp_path, make_bundle(), with_meta=False)
    row = secret_status(store, inventory, inventory.classes["web-tls"], ref, NOT_BEFORE)
    assert row.due_at == NOT_BEFORE + timedelta(days=365)
    store.close()


def test_keyroll_status_and_calendar_show_the_certificate_due_date(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "keyroll.toml").write_text(INVENTORY.format(renew='"30d"'))
    value = make_bundle()
    store, _ref = _store(tmp_path, value)
    store.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("KEYROLL_NOW", "2026-04-28T00:00:00Z")  # 2 days before due
    assert run(["status", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["secrets"][0]
    assert row["due_at"] == (NOT_AFTER - timedelta(days=30)).isoformat()
    assert (row["state"], row["days_left"], row["kind"]) == ("due", 2, "tls-certificate")
    assert run(["calendar", "--json", "--days", "5"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["entries"][0]["due_at"] == row["due_at"]
    key = Bundle.parse(value).key.reveal()
    assert key not in out and key.splitlines()[1] not in out


def test_bundle_parse_and_compose() -> None:
    value = make_bundle(names=("a.example.test", "b.example.test"))
    bundle = Bundle.parse(value)
    assert bundle.key_matches()
    meta = certificate_meta(bundle)
    assert meta["names"] == ["a.example.test", "b.example.test"]
    assert meta["not_after"] == NOT_AFTER.isoformat()
    assert len(meta["cert_sha256"]) == 64
    assert "PRIVATE KEY" not in json.dumps(meta)
    other = Bundle.parse(make_bundle())
    assert not Bundle(bundle.chain_pem, other.key).key_matches()
    with pytest.raises(BundleError, match="no PEM certificate"):
        Bundle.parse(bundle.key)
    with pytest.raises(BundleError, match="exactly one PEM private key"):
        Bundle.parse(SecretValue(bundle.chain_pem))
    with pytest.raises(BundleError, match="found 2") as caught:
        Bundle.parse(SecretValue(value.reveal() + other.key.reveal()))
    assert bundle.key.reveal().splitlines()[1] not in str(caught.value)


def test_csr_for_a_long_first_name_has_no_common_name() -> None:
    from cryptography import x509

    long_name = "a" * 63 + ".example.test"
    csr = x509.load_pem_x509_csr(make_csr(new_private_key("rsa-2048"), [long_name]))
    assert list(csr.subject) == []
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [long_name]


@pytest.mark.parametrize("spec", ["0", "1/1", "3/2", "1.5", -1, 0, 1, True, "soon", "", "0d",
                                  [1]])
def test_renew_before_refuses_what_is_not_a_window(spec: object) -> None:
    with pytest.raises(ValueError, match=r"duration|fraction"):
        parse_renew_before(spec)


def test_due_at_with_fraction_and_duration() -> None:
    assert due_at(NOT_BEFORE, NOT_AFTER, "10d") == NOT_AFTER - timedelta(days=10)
    assert due_at(NOT_BEFORE, NOT_AFTER, "1/3") == NOT_AFTER - timedelta(days=30)


OPTIONS_OK = {"directory_url": "https://acme.example.test/dir", "domains": ["a.example.test"],
              "http01": {"listen": "127.0.0.1:80"}}


@pytest.mark.parametrize(("change", "field"), [
    ({"directory_url": "http://acme.example.test/dir"}, "directory_url"),
    ({"domains": []}, "domains"),
    ({"domains": ["Bad_Name.test"]}, "domains"),
    ({"domains": ["*.example.test"]}, "domains"),
    ({"domains": ["a.example.test", "a.example.test"]}, "domains"),
    ({"http01": {"listen": "nowhere"}}, "http01"),
    ({"http01": {"listen": "0.0.0.0:80", "webroot": "/srv"}}, "http01"),
    ({"key_type": "dsa-1024"}, "key_type"),
    ({"renew_before": "1/1"}, "renew_before"),
    ({"contact": "ops@example.test"}, "contact"),
    ({"serve_check": ["127.0.0.1"]}, "serve_check"),
    ({"revoke_on_retire": "yes"}, "revoke_on_retire"),
    ({"surprise": 1}, "surprise"),
])
def test_options_errors_are_one_line_naming_the_field(change: dict[str, object],
                                                       field: str) -> None:
    text = INVENTORY.format(renew='"30d"')
    inventory = parse_inventory(text)
    cls = inventory.classes["web-tls"].model_copy(update={"options": {**OPTIONS_OK, **change}})
    with pytest.raises(UsageError) as caught:
        tls_options(cls)
    message = str(caught.value)
    assert f"options.{field}" in message and "\n" not in message
    assert tls_options(inventory.classes["web-tls"].model_copy(
        update={"options": OPTIONS_OK})).server_name == "a.example.test"


def test_keyroll_import_of_a_bundle_records_its_dates(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    (tmp_path / "keyroll.toml").write_text(INVENTORY.format(renew='"30d"'))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(b"k" * 32).decode())
    monkeypatch.setenv("KEYROLL_NOW", "2026-04-28T00:00:00Z")
    store = SQLiteStore(tmp_path / ".keyroll" / "store.db", b"k" * 32)  # what `init` would make
    store.close()
    value = make_bundle()
    bundle = Bundle.parse(value)
    # the key alone, or a key that is not the leaf's: one line, exit 2, nothing stored
    for bad in (bundle.key.reveal(), bundle.chain_pem + Bundle.parse(make_bundle()).key.reveal()):
        monkeypatch.setattr("sys.stdin", io.StringIO(bad))
        assert run(["import", "web-tls", "--env", "prod"]) == 2
        err = capsys.readouterr().err
        assert "nothing was imported" in err and len(err.strip().splitlines()) == 1
        assert bad.splitlines()[1] not in err
    monkeypatch.setattr("sys.stdin", io.StringIO(bundle.chain_pem + "\n" + bundle.key.reveal()))
    assert run(["import", "web-tls", "--env", "prod"]) == 0
    capsys.readouterr()
    assert run(["status", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["secrets"][0]
    assert row["due_at"] == (NOT_AFTER - timedelta(days=30)).isoformat()
    with SQLiteStore(tmp_path / ".keyroll" / "store.db", b"k" * 32) as store:
        version, stored = store.read(SecretRef("prod", "web-tls"))
        assert stored == value and version.meta["cert_sha256"] == certificate_meta(bundle)[
            "cert_sha256"]
