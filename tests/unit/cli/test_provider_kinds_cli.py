"""``keyroll inventory check`` warns about a class that generates a provider's credential."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from keyroll.inventory import parse_inventory
from keyroll.issued import local_provider_credentials
from tests.unit.cli.conftest import Keyroll

#: an access key id of AWS's shape, made up at run time (no credential-shaped literal)
KEY_ID = "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))

CLASS = """
[classes.{name}]
kind = "{kind}"
env_vars = ["{var}"]
cadence_days = 90
tier = "low"
blast_radius = "x"
owner = "y"
environments = ["dev"]
"""


def test_the_example_inventory_generates_no_provider_credential(initialised: Keyroll) -> None:
    done = initialised("inventory", "check")
    assert done.code == 0, done.err
    assert "warning" not in done.err


@pytest.mark.parametrize("var", ["BACKUP_S3_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "STRIPE_SECRET_KEY",
                                 "GOOGLE_CLIENT_SECRET", "OPENAI_API_KEY", "GITHUB_TOKEN"])
def test_a_locally_generated_provider_credential_is_warned_about(
        initialised: Keyroll, project: Path, var: str) -> None:
    toml = project / "keyroll.toml"
    toml.write_text(toml.read_text() + CLASS.format(name="storage", kind="api-key", var=var))
    done = initialised("inventory", "check")
    assert done.code == 0, done.err
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert len(lines) == 1, done.err
    assert lines[0].startswith("warning: class 'storage' (api-key) generates " + var)
    assert "issued-key" in lines[0] and "docs/providers.md" in lines[0]


@pytest.mark.parametrize("kind, var", [("api-key", "INTERNAL_API_TOKEN"),
                                       ("provider-shared", "MINIO_ACCESS_KEY"),
                                       ("jwt-signing", "JWT_SECRET")])
def test_no_warning_for_own_secrets_or_provider_kinds(kind: str, var: str) -> None:
    text = ('[environments.dev]\n'
            + CLASS.format(name="c", kind=kind, var=var)
            + ('overlap = { token_ttl = "15m" }\n' if kind == "jwt-signing" else ""))
    assert local_provider_credentials(parse_inventory(text)) == []


def test_a_key_pair_is_imported_and_exported_as_one_version(initialised: Keyroll,
                                                          project: Path) -> None:
    secret = secrets.token_urlsafe(24) + '$"\\' + secrets.token_urlsafe(6)  # $ " \ inside
    legacy = project / "legacy.env"
    legacy.write_text(f"ACCESS_KEY_ID={KEY_ID}\n"
                      f"ACCESS_SECRET_KEY='{secret}'\n")
    done = initialised("import", "--env", "prod", "--file", str(legacy))
    assert done.code == 0, done.err
    assert "ACCESS_SECRET_KEY → prod/s3-backup: imported as version 1" in done.out
    exported = initialised("export", "--env", "prod", "--format", "json", "-o", "out.json")
    assert exported.code == 0, exported.err
    values = json.loads((project / "out.json").read_text())
    assert values["ACCESS_KEY_ID"] == KEY_ID
    assert values["ACCESS_SECRET_KEY"] == secret


@pytest.mark.parametrize("lines, said", [
    ("ACCESS_SECRET_KEY=abcdefghijklmnopqrstuvwxyz123456\n", "holds ACCESS_SECRET_KEY but not "
     "ACCESS_KEY_ID"),
    (f"ACCESS_KEY_ID={KEY_ID}\n", "holds ACCESS_KEY_ID but not its secret"),
])
def test_half_a_key_pair_is_refused(initialised: Keyroll, project: Path, lines: str,
                                    said: str) -> None:
    legacy = project / "half.env"
    legacy.write_text(lines)
    done = initialised("import", "--env", "prod", "--file", str(legacy))
    assert done.code == 2
    assert said in done.err and "nothing was imported" in done.err
    assert len(done.err.strip().splitlines()) == 1
