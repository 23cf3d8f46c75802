"""An ES256 class rotated end to end on the embedded store, verified by another service through
`JWKSKeySource` against a real local HTTP server that serves keyroll's JWKS from the store."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import jwt as pyjwt
import pytest

from keyroll import jwk
from keyroll.errors import InvalidToken
from keyroll.inventory import parse_inventory
from keyroll.model import Label, SecretRef
from keyroll.rotation.deploy import jwks_text
from keyroll.runtime.jwks_source import JWKSKeySource
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import StoreKeySource
from keyroll.stores.sqlite import SQLiteStore
from tests.jwks_server import JWKSServer, serve_jwks
from tests.leaks import assert_no_leak
from tests.unit.conftest import Clock, World
from tests.unit.runtime.conftest import FakeClock

INVENTORY = """
project = "test"
[environments.dev]
[environments.prod]

[classes.jwt-es]
kind = "jwt-signing"
env_vars = ["JWT_PRIVATE_KEY"]
cadence_days = 90
tier = "high"
blast_radius = "sessions"
owner = "auth"
environments = ["dev", "prod"]
options = { algorithm = "ES256", jwks_max_age = "5m", jwks_margin = "1m" }
overlap = { token_ttl = "15m", margin = "1h", settle = "10m", max = "1d" }
hooks.on_promote = [{ write_jwks = "public/jwks.json" }]
"""
MAX_AGE = 300  # what the publisher sends: options.jwks_max_age
WAIT = timedelta(seconds=6 + 300 + 60)  # overlap.propagation + jwks_max_age + jwks_margin
OVERLAP = timedelta(minutes=15 + 60)


@pytest.fixture
def es_world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "keyroll.toml").write_text(INVENTORY)
    key = secrets.token_bytes(32)
    inventory = parse_inventory(INVENTORY, tmp_path / "keyroll.toml")
    with SQLiteStore(tmp_path / ".keyroll" / "store.db", key) as store:
        yield World(tmp_path, store, inventory, Clock(), key)


class Services:
    """The publisher (signs, serves its JWKS from the store) and a verifier elsewhere."""

    def __init__(self, world: World, ref: SecretRef, server: JWKSServer) -> None:
        self.world, self.ref, self.server = world, ref, server
        wall = lambda: world.clock().timestamp()  # noqa: E731
        self.signer = JWTKeyRing(StoreKeySource(world.store, ref, refresh_interval=0), clock=wall)
        self.verifier_clock = FakeClock(0)
        self.source = JWKSKeySource(server.url, clock=self.verifier_clock)
        self.verifier = JWTKeyRing(self.source, clock=wall)

    def served_kids(self) -> list[str]:
        """What a fresh fetch of the published JWKS holds now (and that the hook file agrees)."""
        document = json.loads(self.server.body())
        for entry in document["keys"]:
            assert not jwk.PRIVATE_MEMBERS & set(entry)
            assert entry["alg"] == "ES256" and entry["use"] == "sig"
        hook_file = self.world.path / "public" / "jwks.json"
        if hook_file.exists():
            assert json.loads(hook_file.read_text()) == document
        return [entry["kid"] for entry in document["keys"]]

    def verifier_catches_up(self) -> None:
        """The verifier's cache (max-age) runs out: its next call refetches."""
        self.verifier_clock.advance(MAX_AGE)
        self.source.snapshot()

    def kid(self, number: int) -> str:
        return self.world.store.get_version(self.ref, number).kid_hex


@pytest.fixture
def services(es_world: World) -> Iterator[Services]:
    ref = es_world.seed("jwt-es")
    cls = es_world.inventory.classes["jwt-es"]
    body = lambda: jwks_text(es_world.store, cls, ref)[0].encode()  # noqa: E731
    with serve_jwks(body, cache_control=f"public, max-age={MAX_AGE}") as server:
        yield Services(es_world, ref, server)


def test_es256_rotation_end_to_end_through_a_jwks_verifier(
    es_world: World, services: Services
) -> None:
    world, s = es_world, services
    v1 = s.kid(1)
    assert s.served_kids() == [v1]
    signed_at = world.clock().timestamp()
    old_token = s.signer.sign({"sub": "before"}, ttl=timedelta(minutes=15))
    assert s.verifier.verify(old_token)["sub"] == "before"
    # the private key never left: not in the token, the JWKS or anything served
    private = world.store.read_value(s.ref, 1).reveal()

    # create → publish: the pending public key is in the JWKS, nothing signs with it yet
    engine = world.engine()
    record = engine.run(engine.start("jwt-es", "dev").id)
    assert record.state == "promote"  # waiting for verifiers' caches
    assert "apps load the new key until" in world.events[-1].message
    v2 = s.kid(2)
    assert world.store.get_labels(s.ref) == {Label.CURRENT: 1, Label.PENDING: 2}
    assert s.served_kids() == [v2, v1]
    probe = s.signer.sign({"sub": "x"}, ttl=timedelta(minutes=1))
    assert pyjwt.get_unverified_header(probe)["kid"] == v1
    s.verifier_catches_up()
    assert {k.kid_hex for k in s.source.snapshot().keys} == {v1, v2}
    world.clock.tick(WAIT - timedelta(minutes=3))
    assert engine.run(record.id).state == "promote"  # max-age + margin not over yet

    # promote: the new key signs; verifiers already hold it (no refetch on its kid)
    world.clock.tick(timedelta(minutes=3))
    record = engine.run(record.id)
    assert record.state == "overlap"
    promoted_at = world.clock().timestamp()
    assert s.served_kids() == [v2, v1]
    last_old = JWTKeyRing(StoreKeySource(world.store, s.ref, primary=Label.PREVIOUS,
                                         accept=()), clock=lambda: promoted_at - 1)
    late_old_token = last_old.sign({"sub": "late-old"}, ttl=timedelta(minutes=15))
    new_token = s.signer.sign({"sub": "after"}, ttl=timedelta(minutes=15))
    assert pyjwt.get_unverified_header(new_token)["kid"] == v2
    assert s.verifier.verify(new_token)["sub"] == "after"
    assert s.source.unknown_kid_refetches == 0

    # the whole overlap: the old public key stays published and verifies old tokens
    checkpoints = [timedelta(minutes=1), timedelta(minutes=13), timedelta(minutes=30),
                   timedelta(hours=1), OVERLAP - timedelta(minutes=1)]
    elapsed = timedelta(0)
    for point in checkpoints:
        world.clock.tick(point - elapsed)
        elapsed = point
        assert engine.run(record.id).state == "overlap"
        assert s.served_kids() == [v2, v1]
        s.verifier_catches_up()
        assert s.verifier.verify(old_token, now=signed_at + 60)["sub"] == "before"
        if point < timedelta(minutes=14):  # still inside its own lifetime, at the real time
            assert s.verifier.verify(late_old_token)["sub"] == "late-old"
        assert s.verifier.verify(new_token, now=promoted_at + 60)["sub"] == "after"

    # retire: the old key is unpublished; once the verifier refetches, old tokens fail
    world.clock.tick(OVERLAP - elapsed)
    done = engine.run(record.id)
    assert done.state == "done"
    assert world.store.get_labels(s.ref) == {Label.CURRENT: 2}
    assert world.store.list_versions(s.ref)[0].destroyed
    assert s.served_kids() == [v2]
    s.verifier_catches_up()
    assert {k.kid_hex for k in s.source.snapshot().keys} == {v2}
    with pytest.raises(InvalidToken):
        s.verifier.verify(old_token, now=signed_at + 60)
    assert s.verifier.verify(new_token, now=promoted_at + 60)["sub"] == "after"
    assert s.source.failures == 0

    outputs = [*s.server.served, (world.path / "public" / "jwks.json").read_bytes(),
               old_token, new_token, json.dumps([e.message for e in world.events]),
               json.dumps([r.evidence for r in engine.journal.records()])]
    assert_no_leak(outputs, [private], where="served JWKS, tokens, events and journal")
    private_jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(jwk.load_pem_key(private)))
    assert_no_leak(outputs, [private_jwk["d"]], where="served JWKS, tokens, events and journal")
    assert engine.journal.check().ok


def test_incident_skips_pre_publication_and_unpublishes_at_once(
    es_world: World, services: Services
) -> None:
    world, s = es_world, services
    v1 = s.kid(1)
    signed_at = world.clock().timestamp()
    old_token = s.signer.sign({"sub": "leaked?"}, ttl=timedelta(minutes=15))
    assert s.verifier.verify(old_token)["sub"] == "leaked?"
    engine = world.engine()
    record = engine.run(engine.start("jwt-es", "dev", incident=True).id)
    assert record.state == "done"  # no wait for caches, no overlap
    v2 = s.kid(2)
    assert v2 != v1 and s.served_kids() == [v2]
    # the verifier never saw the new key: its kid triggers one refetch, then it verifies
    new_token = s.signer.sign({"sub": "new"}, ttl=timedelta(minutes=15))
    assert s.verifier.verify(new_token)["sub"] == "new"
    assert s.source.unknown_kid_refetches == 1
    with pytest.raises(InvalidToken):
        s.verifier.verify(old_token, now=signed_at + 60)


def test_a_rollback_while_waiting_unpublishes_the_pending_key(
    es_world: World, services: Services
) -> None:
    world, s = es_world, services
    v1 = s.kid(1)
    engine = world.engine()
    record = engine.run(engine.start("jwt-es", "dev").id)
    assert record.state == "promote" and s.served_kids() == [s.kid(2), v1]
    rolled = engine.rollback(record.id)
    assert rolled.state == "rolled-back"
    assert s.served_kids() == [v1]
    assert world.store.get_labels(s.ref) == {Label.CURRENT: 1}


def test_the_plan_and_the_strategy_agree_on_the_wait(es_world: World) -> None:
    es_world.seed("jwt-es")
    engine = es_world.engine()
    steps = {p.step: p.description for p in engine.preview("jwt-es", "dev")}
    assert "ec-p256" in steps["create"]
    cls = es_world.inventory.classes["jwt-es"]
    from keyroll.rotation.strategies import strategy_for

    strategy = strategy_for(cls.kind)
    strategy.validate(cls)
    ctx = engine._preview_context(cls, SecretRef("dev", "jwt-es"), False,
                                  es_world.store.list_versions(SecretRef("dev", "jwt-es"))[0])
    assert strategy.propagation(ctx) == WAIT
