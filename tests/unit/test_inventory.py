from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import pytest

from keyroll.errors import InventoryError, UnknownSecret
from keyroll.generate import Format
from keyroll.inventory import load_inventory, parse_inventory
from keyroll.model import Kind, Tier

GOOD = """
[environments.dev]
[environments.prod]
approvals = 2

[classes.jwt-access]
kind = "jwt-signing"
env_vars = ["JWT_SECRET"]
cadence_days = 90
tier = "medium"
blast_radius = "All active user sessions"
owner = "Security / Auth"
environments = ["dev", "prod"]
overlap = { token_ttl = "30d", margin = "24h" }
"""


def test_example_inventory_expresses_the_runbooks() -> None:
    text = files("keyroll").joinpath("example_inventory.toml").read_text()
    inv = parse_inventory(text)
    env_vars = {v for c in inv.classes.values() for v in c.env_vars}
    # seed 004 §1, every row (non-secret ids such as VNPAY_TMN_CODE stay out)
    for var in [
        "JWT_SECRET", "JWT_REFRESH_SECRET", "FIELD_ENCRYPTION_KEY", "VNPAY_HASH_SECRET",
        "MOMO_ACCESS_KEY", "MOMO_SECRET_KEY", "ZALOPAY_KEY1", "ZALOPAY_KEY2",
        "BANK_TRANSFER_WEBHOOK_SECRET", "DATABASE_URL", "REDIS_PASSWORD",
        "GOOGLE_CLIENT_SECRET", "ZALO_APP_SECRET", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY",
        "ZALO_OA_ACCESS_TOKEN",
        # seed 000 §1
        "PAYMENT_WEBHOOK_SECRET", "OPENAI_API_KEY",
    ]:
        assert var in env_vars, var
    assert {c.tier for c in inv.classes.values()} == {Tier.HIGH, Tier.MEDIUM, Tier.LOW}
    # api-key is for keys the app itself hands out and checks: the runbooks list none (the
    # MinIO keys they name are issued by MinIO, issue 19), and opaque is the catch-all; no
    # runbook has a MySQL/MariaDB database, a RabbitMQ broker or a TLS certificate, so those
    # kinds have no row
    assert set(Kind) - {c.kind for c in inv.classes.values()} == {
        Kind.OPAQUE, Kind.API_KEY, Kind.MYSQL_USER, Kind.RABBITMQ_USER, Kind.TLS_CERTIFICATE}
    assert inv.environments["prod"].approvals == 2
    assert inv.classes["jwt-refresh"].overlap.deadline() == timedelta(days=31)
    # seed 004 §3: prod changes inside a window, high-tier classes rehearsed in staging first,
    # a verified backup of the app database before the classes that touch its data
    jwt, database = inv.classes["jwt-access"], inv.classes["database"]
    window = inv.window_for(jwt, "prod")
    assert window is not None and inv.window_for(jwt, "staging") is None
    for name in ("jwt-access", "database", "field-encryption"):
        rule = inv.rehearsal_for(inv.classes[name], "prod")
        assert rule is not None and rule.environments == ["staging"], name
    assert inv.rehearsal_for(inv.classes["s3-backup"], "prod") is None  # prod only
    assert [(p.backup, p.dsn_env, p.environments) for p in database.preflight] == [
        ("pg_dump", "DATABASE_URL", ["prod"])]
    kinds = ("http", "rollout_status", "jwt_request")  # readiness and a login with the new key
    assert {k for h in jwt.hooks.verify for k in kinds if getattr(h, k, None)} == set(kinds)


def test_defaults_and_lookups() -> None:
    inv = parse_inventory(GOOD)
    cls = inv.get_class("jwt-access")
    assert cls.generator is Format.BASE64_48
    assert cls.previous_env_vars == ["JWT_SECRET_PREVIOUS"]
    assert inv.environments["dev"].warn_days == 7
    assert [str(ref) for _, ref in inv.secrets()] == ["dev/jwt-access", "prod/jwt-access"]
    with pytest.raises(UnknownSecret, match="known: jwt-access"):
        inv.get_class("jwt")
    with pytest.raises(UnknownSecret, match="known: dev, prod"):
        inv.resolve("jwt-access", "staging")


BAD = {
    "missing field": (GOOD.replace('owner = "Security / Auth"\n', ""),
                      "classes.jwt-access.owner: required field is missing"),
    "wrong type": (GOOD.replace("cadence_days = 90", 'cadence_days = "ninety"'),
                   "classes.jwt-access.cadence_days"),
    "unknown kind": (GOOD.replace('kind = "jwt-signing"', 'kind = "jwt"'),
                     "classes.jwt-access.kind: Input should be 'jwt-signing'"),
    "duplicate class": (GOOD + '\n[classes.jwt-access]\nkind = "opaque"\n', "Cannot declare"),
    "bad cadence": (GOOD.replace("cadence_days = 90", "cadence_days = 0"),
                    "classes.jwt-access.cadence_days: Input should be greater than or equal to 1"),
    "unknown env": (GOOD.replace('environments = ["dev", "prod"]', 'environments = ["qa"]'),
                    "environment 'qa', which is not defined"),
    "unknown field": (GOOD.replace("tier =", "teir = 'x'\ntier ="),
                      "unknown field 'teir'"),
    "bad duration": (GOOD.replace('token_ttl = "30d"', 'token_ttl = "30 days"'),
                     "is not a duration"),
    "bad tier": (GOOD.replace('tier = "medium"', 'tier = "critical"'),
                 "Input should be 'high', 'medium' or 'low'"),
    "no environments": (GOOD.split("[classes")[0].replace("[environments.dev]\n", "").replace(
        "[environments.prod]\napprovals = 2\n", ""), "environments"),
    "not toml": ("[classes\n", "not valid TOML"),
    "bad env var": (GOOD.replace('["JWT_SECRET"]', '["jwt-secret"]'), "not an env var name"),
    # issue 10 §6: OverflowError (exit 1), or a pass that crashes `rotate` after promote
    "overflowing overlap": (GOOD.replace('token_ttl = "30d"', 'min = "99999999999d", token_ttl = "30d"'),
                            "is too long"),
    "overlap beyond any date": (GOOD.replace('token_ttl = "30d"', 'token_ttl = "999999999d"'),
                                "classes.jwt-access.overlap.token_ttl: '999999999d' is too long"),
    "overlap of 11 years": (GOOD.replace('margin = "24h"', 'margin = "4000d"'),
                            "at most 3650d"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inventory_gives_one_line_with_the_fix(case: str, tmp_path: Path) -> None:
    text, expected = BAD[case]
    path = tmp_path / "keyroll.toml"
    path.write_text(text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert expected in message
    assert message.startswith(str(path))
    assert "\n" not in message


def test_duplicate_env_var_in_one_environment() -> None:
    text = GOOD + """
[classes.other]
kind = "opaque"
env_vars = ["JWT_SECRET"]
cadence_days = 30
tier = "low"
blast_radius = "x"
owner = "y"
environments = ["prod"]
"""
    with pytest.raises(InventoryError, match="JWT_SECRET in prod is fed by both"):
        parse_inventory(text)


def test_encryption_column_database_url_per_environment() -> None:
    from keyroll.inventory import EncryptionColumn

    column = EncryptionColumn(table="users", column="phone_enc", database_env="DATABASE_URL_{ENV}")
    assert column.dsn_var("prod") == "DATABASE_URL_PROD"
    assert column.dsn_var("eu-west.stg") == "DATABASE_URL_EU_WEST_STG"
    assert EncryptionColumn(table="t", column="c").dsn_var("prod") == "DATABASE_URL"
    with pytest.raises(ValueError, match="env var name"):
        EncryptionColumn(table="t", column="c", database_env="database-url")
