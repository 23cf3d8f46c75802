"""The CLI for key pairs: inventory check, generate, export --format jwks; no private output."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jwt as pyjwt

from keyroll import jwk
from tests.leaks import assert_no_leak
from tests.unit.cli.conftest import Keyroll

ES_CLASS = """
[classes.jwt-service]
kind = "jwt-signing"
description = "Signs service-to-service tokens, verified by others through the JWKS"
env_vars = ["JWT_SERVICE_PRIVATE_KEY"]
cadence_days = 90
tier = "high"
blast_radius = "Every service that accepts our tokens"
owner = "Security / Auth"
environments = ["dev", "prod"]
overlap = { token_ttl = "15m", margin = "1h" }
options = { algorithm = "ES256", jwks_max_age = "5m" }
hooks.on_promote = [{ write_jwks = "public/jwks.json" }]
"""


def test_generate_and_export_a_jwks(initialised: Keyroll, project: Path) -> None:
    with (project / "keyroll.toml").open("a") as handle:
        handle.write(ES_CLASS)
    checked = initialised("inventory", "check")
    assert checked.code == 0, checked.err
    made = initialised("generate", "jwt-service", "--env", "dev")
    assert made.code == 0, made.err
    meta = json.loads(initialised("get", "jwt-service", "--env", "dev", "--json").out)
    # the fingerprint is the public key's RFC 7638 thumbprint
    printed = initialised("export", "--env", "dev", "--format", "jwks", "--class", "jwt-service",
                          "-o", "-")
    assert printed.code == 0, printed.err
    document = json.loads(printed.out)
    (entry,) = document["keys"]
    assert entry["kid"] == meta["kid"] and entry["alg"] == "ES256" and entry["use"] == "sig"
    assert not jwk.PRIVATE_MEMBERS & set(entry)
    assert jwk.thumbprint(entry).hex()[:16] == meta["fingerprint"]
    # only one asymmetric class in dev: --class may be left out; a file is public (0644)
    written = initialised("export", "--env", "dev", "--format", "jwks", "-o", "out/jwks.json")
    assert written.code == 0, written.err
    assert json.loads((project / "out" / "jwks.json").read_text()) == document
    assert os.stat(project / "out" / "jwks.json").st_mode & 0o777 == 0o644

    private = initialised("get", "jwt-service", "--env", "dev", "--reveal").out.strip()
    numbers = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(jwk.load_pem_key(private)))
    transcript = initialised.transcript[:-2]  # type: ignore[attr-defined]  (all but --reveal)
    journal = initialised("audit", "log", "--json", "-n", "0").out
    assert_no_leak([*transcript, journal, printed.out], [private, numbers["d"]], where="CLI output")


def test_jwks_export_refuses_hmac_classes_in_one_line(initialised: Keyroll) -> None:
    assert initialised("generate", "jwt-access", "--env", "dev").code == 0
    refused = initialised("export", "--env", "dev", "--format", "jwks", "--class", "jwt-access",
                          "-o", "-")
    assert refused.code == 2
    assert "a JWKS publishes only public keys" in refused.err
    assert refused.out == "" and "Traceback" not in refused.err
    none = initialised("export", "--env", "dev", "--format", "jwks", "-o", "-")
    assert none.code == 2 and "pass --class" in none.err


def test_inventory_check_names_the_generator_to_use(initialised: Keyroll, project: Path) -> None:
    with (project / "keyroll.toml").open("a") as handle:
        handle.write(ES_CLASS.replace("options = {", 'generator = "base64-48"\noptions = {'))
    checked = initialised("inventory", "check")
    assert checked.code == 2
    assert "needs a key-pair generator: set generator to 'ec-p256'" in checked.err
    assert len(checked.err.strip().splitlines()) == 1
