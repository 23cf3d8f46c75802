"""Issue 11 §3: SealedSecret manifests sealed as kubeseal does, checked by unsealing with the
controller's private key following sealed-secrets' documented algorithm (crypto.md,
pkg/crypto/crypto.go HybridDecrypt), written here independently of keyroll's `unseal`."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from keyroll.inventory import parse_inventory
from keyroll.model import Label
from keyroll.targets.sealedsecrets import encryption_label, manifest, seal, unseal
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World


def _controller(folder: Path, name: str) -> tuple[Path, bytes]:
    """A controller key pair and its self-signed certificate, as sealed-secrets makes them."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealed-secret")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    path = folder / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return path, pem


def _hybrid_decrypt(ciphertext_b64: str, private_pem: bytes, label: bytes) -> bytes:
    """HybridDecrypt, step by step from crypto.go."""
    data = base64.b64decode(ciphertext_b64)
    rsa_len = struct.unpack(">H", data[:2])[0]
    rsa_ct, aes_ct = data[2:2 + rsa_len], data[2 + rsa_len:]
    key = serialization.load_pem_private_key(private_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    session = key.decrypt(rsa_ct, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                               algorithm=hashes.SHA256(), label=label or None))
    assert len(session) == 32  # AES-256
    return AESGCM(session).decrypt(b"\0" * 12, aes_ct, None)


@pytest.mark.parametrize(("scope", "label"), [("strict", b"prod/app-secrets"),
                                              ("namespace-wide", b"prod"),
                                              ("cluster-wide", b"")])
def test_scopes_bind_the_value_to_where_it_may_be_unsealed(
    tmp_path: Path, scope: str, label: bytes
) -> None:
    cert, private = _controller(tmp_path, "prod")
    assert encryption_label("prod", "app-secrets", scope) == label
    text = manifest("app-secrets", "prod", scope, {"JWT_SECRET": b"value-1"}, cert.read_bytes(), {})
    doc = json.loads(text)
    sealed = doc["spec"]["encryptedData"]["JWT_SECRET"]
    assert _hybrid_decrypt(sealed, private, label) == b"value-1"
    assert unseal(sealed, private, label) == b"value-1"
    notes = doc["metadata"]["annotations"]
    if scope == "strict":
        assert not [k for k in notes if k.startswith("sealedsecrets.bitnami.com/")]
        wrong = [b"prod/other", b"dev/app-secrets", b"prod", b""]
    else:
        assert notes[f"sealedsecrets.bitnami.com/{scope}"] == "true"
        wrong = [b"dev", b"prod/app-secrets"] if scope == "namespace-wide" else [b"prod"]
    for other in wrong:
        with pytest.raises(ValueError):
            _hybrid_decrypt(sealed, private, other)
    assert doc["kind"] == "SealedSecret" and doc["apiVersion"] == "bitnami.com/v1alpha1"
    assert doc["spec"]["template"]["metadata"]["namespace"] == "prod"


def test_known_answer_layout_and_tamper(tmp_path: Path) -> None:
    cert, private = _controller(tmp_path, "c")
    session = bytes(range(32))
    sealed = base64.b64decode(seal(b"abc", cert.read_bytes(), b"ns/n", session_key=session))
    assert struct.unpack(">H", sealed[:2])[0] == 256  # a 2048-bit RSA block
    # the AES part is exactly AES-256-GCM(session key, zero nonce) of the value
    assert sealed[2 + 256:] == AESGCM(session).encrypt(b"\0" * 12, b"abc", None)
    for i in range(2 + 256, len(sealed)):
        flipped = bytearray(sealed)
        flipped[i] ^= 1
        with pytest.raises((ValueError, InvalidTag)):
            _hybrid_decrypt(base64.b64encode(bytes(flipped)).decode(), private, b"ns/n")


def test_dev_and_prod_overlays_from_a_rotation(world: World) -> None:
    dev_cert, dev_key = _controller(world.path, "dev")
    prod_cert, prod_key = _controller(world.path, "prod")
    hook = ('hooks.on_promote = [{ sealed_secret = { path = "overlays/{env}/app-secrets.json", '
            'cert = "{env}.pem", namespace = "app-{env}", name = "app-secrets", '
            'classes = ["jwt-access"] } }]')
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]', hook)
    world.inventory = parse_inventory(text, world.path / "keyroll.toml")
    ref = world.seed("jwt-access")
    engine = world.engine()
    record = engine.run(engine.start("jwt-access", "dev").id)
    assert record.state == "overlap"
    doc = json.loads((world.path / "overlays" / "dev" / "app-secrets.json").read_text())
    label = b"app-dev/app-secrets"
    new = world.store.read(ref, Label.CURRENT)[1].reveal()
    old = world.store.read(ref, Label.PREVIOUS)[1].reveal()
    values = {k: _hybrid_decrypt(v, dev_key, label).decode()
              for k, v in doc["spec"]["encryptedData"].items()}
    assert values["JWT_SECRET"] == new and values["JWT_SECRET_PREVIOUS"] == old
    assert doc["metadata"]["annotations"]["keyroll.dev/rotation"] == record.id
    # sealed for dev: the prod controller (other key) and another namespace cannot unseal it
    sealed = doc["spec"]["encryptedData"]["JWT_SECRET"]
    with pytest.raises(ValueError):
        _hybrid_decrypt(sealed, prod_key, label)
    with pytest.raises(ValueError):
        _hybrid_decrypt(sealed, dev_key, b"app-production/app-secrets")
    assert_no_leak([(world.path / "overlays" / "dev" / "app-secrets.json").read_text()],
                   [new, old], where="the SealedSecret manifest")
    assert prod_cert.exists() and dev_cert.exists()
