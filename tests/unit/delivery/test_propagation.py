"""Issue 11 §2: pods on a mounted Secret get the kubelet's sync delay as propagation instead of a
restart; with a rollout (env vars) the awaited restart is the propagation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from keyroll.inventory import MOUNTED_PROPAGATION, parse_inventory
from tests.unit.conftest import INVENTORY

SECRET = '{ kubernetes_secret = { name = "s", namespace = "n" } }'
ROLLOUT = '{ rollout = { name = "d", namespace = "n" } }'


@pytest.mark.parametrize(("hooks", "overlap_extra", "dev", "prod"), [
    (f"[{SECRET}]", "", MOUNTED_PROPAGATION, MOUNTED_PROPAGATION),
    (f"[{SECRET}, {ROLLOUT}]", "", timedelta(seconds=6), timedelta(seconds=6)),
    (f'[{SECRET}, {{ rollout = {{ name = "d", namespace = "n" }}, environments = ["prod"] }}]',
     "", MOUNTED_PROPAGATION, timedelta(seconds=6)),
    (f"[{SECRET}]", ', propagation = "20s"', timedelta(seconds=20), timedelta(seconds=20)),
    ('[{ write_dotenv = "app.env" }]', "", timedelta(seconds=6), timedelta(seconds=6)),
])
def test_propagation_follows_the_delivery(hooks: str, overlap_extra: str, dev: timedelta,
                                          prod: timedelta) -> None:
    overlap = 'overlap = { token_ttl = "15m", margin = "1h", settle = "10m", max = "1d" }'
    text = INVENTORY.replace('hooks.on_promote = [{ write_dotenv = "app.env" }]',
                             f"hooks.on_promote = {hooks}")
    text = text.replace(overlap, overlap.replace(" }", f"{overlap_extra} }}"))
    cls = parse_inventory(text).classes["jwt-access"]
    assert cls.propagation("dev") == dev
    assert cls.propagation("prod") == prod
