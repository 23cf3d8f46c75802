"""On a real OpenBao the actor is the token's identity: an approval by an identity that is
not among ``approvers`` is refused (and journaled), whatever ``KEYROLL_ACTOR`` claims; an
entity in a listed group may approve."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from keyroll.audit import Journal
from keyroll.cli.app import run
from keyroll.errors import RotationRefused
from keyroll.generate import generate
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef
from keyroll.rotation.engine import Engine
from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_fixtures import bao_dev as bao_dev
from tests.openbao_fixtures import bao_store_factory as bao_store_factory
from tests.openbao_server import DevServer

pytestmark = pytest.mark.integration

Factory = Callable[..., OpenBaoStore]

_INVENTORY = """
project = "approvals"
[store]
url = "{url}"
[environments.prod]
approvals = 2
production = true
approvers = ["group:{group}"]

[classes.payments-api]
kind = "api-key"
env_vars = ["PAYMENTS_API_KEY"]
cadence_days = 90
tier = "high"
blast_radius = "checkout"
owner = "payments"
environments = ["prod"]
"""
_POLICY = """
path "secret/*" { capabilities = ["create", "read", "update", "delete", "list", "patch"] }
path "identity/entity/id/*" { capabilities = ["read"] }
path "identity/group/id/*" { capabilities = ["read"] }
"""


def _token(bao: DevServer, policy: str, **extra: object) -> str:
    made = bao.api("POST", "auth/token/create", {"policies": [policy], "ttl": "1h", **extra})
    return str(made["auth"]["client_token"])


def _entity_token(bao: DevServer, policy: str, name: str, group: str) -> str:
    """A token bound to entity ``name``, member of ``group`` (through a token role alias)."""
    entity = bao.api("POST", "identity/entity", {"name": name, "policies": [policy]})["data"]["id"]
    bao.api("POST", "identity/group", {"name": group, "member_entity_ids": [entity]})
    accessor = bao.api("GET", "sys/auth")["data"]["token/"]["accessor"]
    bao.api("POST", "identity/entity-alias", {"name": name, "canonical_id": entity,
                                              "mount_accessor": accessor})
    role = f"approvers-{name}"
    bao.api("POST", f"auth/token/roles/{role}", {"allowed_entity_aliases": [name],
                                                 "allowed_policies": [policy]})
    made = bao.api("POST", f"auth/token/create/{role}", {"entity_alias": name,
                                                        "policies": [policy], "ttl": "1h"})
    return str(made["auth"]["client_token"])


def test_an_identity_not_listed_is_refused_on_openbao(
    bao_dev: DevServer, bao_store_factory: Factory, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    root = bao_store_factory()
    tag = secrets.token_hex(3)
    policy, group, alice = f"keyroll-{tag}", f"payments-leads-{tag}", f"alice-{tag}"
    bao_dev.api("PUT", f"sys/policies/acl/{policy}", {"policy": _POLICY})
    url = f"openbao://{bao_dev.addr.removeprefix('http://')}/secret?prefix={root.prefix}"
    (tmp_path / "keyroll.toml").write_text(_INVENTORY.format(url=url, group=group))
    inventory = parse_inventory(_INVENTORY.format(url=url, group=group),
                                tmp_path / "keyroll.toml")
    ref = SecretRef("prod", "payments-api")
    version = root.put_version(ref, generate("hex-32"))
    root.set_labels(ref, expected={}, new={Label.CURRENT: version.number})

    # the requester acts as root: its identity is the token's display name
    assert root.identity() == ("token", ())  # the dev root token's display name
    requester = Engine(root, inventory, journal=Journal(root, actor=root.identity()[0]),
                       workdir=tmp_path)
    record = requester.start("payments-api", "prod")

    # mallory: a token with a display name, claiming to be alice through KEYROLL_ACTOR
    mallory = _token(bao_dev, policy, display_name="mallory")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BAO_TOKEN", mallory)
    monkeypatch.setenv("KEYROLL_ACTOR", alice)
    for var in ("KEYROLL_STORE", "KEYROLL_CONFIG", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    code = run(["approve", record.id])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "token-mallory may not approve rotations of prod/payments-api" in captured.err
    assert "KEYROLL_ACTOR is ignored" in captured.err
    assert "Traceback" not in captured.err and mallory not in captured.out + captured.err

    refused = [r for r in Journal(root).records()
               if r.action == "rotation.approve" and r.outcome == "refused"]
    assert len(refused) == 1
    assert refused[0].actor == "token-mallory"
    assert requester.get(record.id).state == "awaiting-approval"

    # alice: an entity in the listed group, identified by the store, approves
    with OpenBaoStore.from_url(url, environ={"BAO_TOKEN": _entity_token(bao_dev, policy, alice,
                                                                        group)}) as store:
        name, groups = store.identity()
        assert (name, groups) == (alice, (group,))
        engine = Engine(store, inventory, journal=Journal(store, actor=name),
                        actor_groups=groups, workdir=tmp_path)
        assert engine.approve(record.id).state == "plan"
        with pytest.raises(RotationRefused, match=r"approved rotation .* already|not waiting"):
            engine.approve(record.id)
    assert Journal(root).verify().ok
