"""Key pairs: generation, public JWK, RFC 7638 thumbprint as fingerprint, inventory checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from keyroll import jwk
from keyroll.errors import InventoryError
from keyroll.generate import Format, generate
from keyroll.inventory import parse_inventory
from keyroll.model import SecretValue, fingerprint

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
FORMATS = ["ec-p256", "rsa-2048", "ed25519"]  # rsa-3072 is the same code, slower to make


def test_thumbprint_matches_rfc7638_known_answer() -> None:
    vector = json.loads((VECTORS / "jwk_thumbprint_rfc7638.json").read_text())
    digest = jwk.thumbprint(vector["jwk"])
    assert base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == vector["thumbprint_b64url"]
    # and through a key object: the PEM of that public key has the same fingerprint
    pem = jwk.public_pem(jwk.key_from_jwk(vector["jwk"]))
    assert fingerprint(pem) == digest.hex()[:16]


@pytest.mark.parametrize("fmt", [*FORMATS, "rsa-3072"])
def test_generated_key_pairs_are_pkcs8_pem_with_a_public_fingerprint(fmt: str) -> None:
    value = generate(fmt)
    text = value.reveal()
    key = jwk.load_pem_key(text)
    # PKCS#8, unencrypted: exactly what cryptography writes for that format
    assert text.encode() == key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
    assert jwk.is_private(key)
    public = jwk.public_jwk(key)
    assert not jwk.PRIVATE_MEMBERS & set(public)
    expected = jwk.thumbprint(public).hex()[:16]
    # private PEM, public PEM and JWK agree: the fingerprint may be published
    assert value.fingerprint == expected
    assert fingerprint(jwk.public_pem(key)) == expected
    assert jwk.thumbprint(jwk.public_jwk(jwk.key_from_jwk(public))).hex()[:16] == expected
    assert generate(fmt).fingerprint != expected


def test_secret_formats_keep_sha256_fingerprints_and_bad_pem_falls_back() -> None:
    plain = generate("base64-48")
    assert len(plain.fingerprint) == 16
    real = generate("ed25519").reveal().splitlines()
    junk = "\n".join([real[0], "not a key", real[-1]]) + "\n"  # a PEM frame around no key
    assert SecretValue(junk).fingerprint == fingerprint(junk.encode())
    with pytest.raises(ValueError, match="no prefix"):
        generate(Format.EC_P256, prefix="k_")


def test_default_algorithm_and_fit() -> None:
    ec = jwk.load_pem_key(generate("ec-p256").reveal())
    ed = jwk.load_pem_key(generate("ed25519").reveal())
    assert jwk.default_algorithm(ec) == "ES256" and jwk.default_algorithm(ed) == "EdDSA"
    assert jwk.key_matches_algorithm(ec, "ES256") and not jwk.key_matches_algorithm(ec, "ES384")
    assert not jwk.key_matches_algorithm(ed, "ES256") and not jwk.key_matches_algorithm(ec, "HS256")


def test_key_from_jwk_refuses_malformed_keys() -> None:
    good = jwk.public_jwk(jwk.load_pem_key(generate("ec-p256").reveal()))
    for broken in (
        {**good, "crv": "P-192"},
        {**good, "x": good["x"][:-2]},
        {**good, "y": good["x"]},  # not on the curve
        {**good, "kty": "oct"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},  # too short
        {"kty": "OKP", "crv": "X25519", "x": good["x"]},
    ):
        with pytest.raises(ValueError):
            jwk.key_from_jwk(broken)


CLASS = """
[environments.dev]
[classes.k]
kind = "jwt-signing"
env_vars = ["JWT_KEY"]
cadence_days = 90
tier = "medium"
blast_radius = "x"
owner = "y"
environments = ["dev"]
overlap = {{ token_ttl = "15m" }}
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "generator"),
    [
        ('options = { algorithm = "ES256" }', "ec-p256"),
        ('options = { algorithm = "EdDSA" }', "ed25519"),
        ('options = { algorithm = "RS256" }', "rsa-2048"),
        ('options = { algorithm = "PS256" }\ngenerator = "rsa-3072"', "rsa-3072"),
        ('options = { algorithm = "HS512" }', "base64-48"),
    ],
)
def test_inventory_picks_the_key_pair_the_algorithm_needs(extra: str, generator: str) -> None:
    inventory = parse_inventory(CLASS.format(extra=extra))
    cls = inventory.classes["k"]
    assert cls.generator is not None and cls.generator.value == generator
    from keyroll.rotation.strategies import strategy_for

    strategy_for(cls.kind).validate(cls)  # what `inventory check` runs: agrees with generate
    value = generate(cls.generator)
    if cls.generator.is_keypair:
        assert jwk.key_matches_algorithm(jwk.load_pem_key(value.reveal()), cls.options["algorithm"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('options = { algorithm = "ES256" }\ngenerator = "base64-48"', "set generator to 'ec-p256'"),
        ('options = { algorithm = "ES256" }\ngenerator = "ed25519"', "set generator to 'ec-p256'"),
        ('options = { algorithm = "EdDSA" }\ngenerator = "rsa-2048"', "'ed25519'"),
        ('generator = "ec-p256"', "is HMAC"),
        ('options = { algorithm = "none" }', "options.algorithm 'none': use one of"),
        ('options = { algorithm = "ES384" }', "use one of"),
        ('options = { algorithm = "ES256" }\nprefix = "k_"', "remove prefix"),
    ],
)
def test_inventory_refuses_an_algorithm_that_does_not_fit(extra: str, message: str) -> None:
    with pytest.raises(InventoryError, match=r"classes\.k: ") as caught:
        parse_inventory(CLASS.format(extra=extra))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_key_pair_generators_belong_to_jwt_classes() -> None:
    text = CLASS.format(extra="").replace('kind = "jwt-signing"', 'kind = "api-key"')
    with pytest.raises(InventoryError, match="only jwt-signing classes"):
        parse_inventory(text + 'generator = "ec-p256"\n')
