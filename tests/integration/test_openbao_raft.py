"""A 3-node OpenBao raft cluster on loopback: the store keeps working while the leader is down.

The store URL lists all three nodes, the leader first. The leader is stopped; every store
operation a rotation makes (lock, rotation record, new version, label compare-and-set, record
saves, journal appends, release) then goes through the other nodes while they elect a new
leader. The old leader comes back, rejoins as a follower, and a handle that talks only to it
sees the finished rotation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.generate import generate
from keyroll.model import Label, SecretValue
from keyroll.stores.base import AuditEntry, RotationRecord
from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_engine import EngineWorld, finish_overlap
from tests.openbao_server import RaftCluster
from tests.stores.contract import REF, T0

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def bao_cluster() -> Iterator[RaftCluster]:
    cluster = RaftCluster(3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _open(cluster: RaftCluster, addrs: list[str]) -> OpenBaoStore:
    hosts = ",".join(a.removeprefix("http://") for a in addrs)
    return OpenBaoStore.from_url(
        f"openbao://{hosts}/secret?prefix=raft&retry=90", environ={"BAO_TOKEN": cluster.token}
    )


def test_rotation_store_operations_survive_a_leader_stop(bao_cluster: RaftCluster) -> None:
    leader = bao_cluster.active()
    followers = [n for n in bao_cluster.nodes if n is not leader]
    store = _open(bao_cluster, [leader.addr, *(n.addr for n in followers)])
    old = generate("hex-32")
    store.put_version(REF, old)
    store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    store.audit_append(AuditEntry(1, '{"step":"seed"}', "0" * 64, "h1"))

    bao_cluster.stop_node(leader)

    new = generate("hex-32")
    store.acquire_lock(REF, "r-raft", ttl=timedelta(minutes=30))
    record = store.create_rotation(RotationRecord("r-raft", REF, "plan", 0, T0, T0, {}))
    pending = store.put_version(REF, new)
    assert pending.number == 2
    store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: 2})
    record = store.save_rotation(
        RotationRecord("r-raft", REF, "promote", 0, T0, T0, {"pending": 2}),
        expected_revision=record.revision,
    )
    store.audit_append(AuditEntry(2, '{"step":"create"}', "h1", "h2"))
    after = store.set_labels(
        REF,
        expected={Label.CURRENT: 1, Label.PENDING: 2, Label.PREVIOUS: None},
        new={Label.CURRENT: 2, Label.PREVIOUS: 1, Label.PENDING: None},
    )
    assert after == {Label.CURRENT: 2, Label.PREVIOUS: 1}
    store.save_rotation(
        RotationRecord("r-raft", REF, "overlap", 0, T0, T0, {"pending": 2}),
        expected_revision=record.revision,
    )
    store.audit_append(AuditEntry(3, '{"step":"promote"}', "h2", "h3"))
    store.release_lock(REF, "r-raft")

    successor = bao_cluster.active()
    assert successor is not leader

    # the handle that made the writes reads them back, whichever node it talks to now
    _assert_rotated(store, old, new)

    # the old leader rejoins as a follower and catches up: a fresh handle that talks only to
    # it serves the finished rotation (a fresh handle has no index yet, so it may see the
    # node's copy before it has caught up: wait for that, bounded)
    bao_cluster.start_node(leader)
    only_old_leader = _open(bao_cluster, [leader.addr])
    with only_old_leader, store:
        for _ in range(600):
            if only_old_leader.get_labels(REF) == {Label.CURRENT: 2, Label.PREVIOUS: 1}:
                break
            time.sleep(0.1)
        _assert_rotated(only_old_leader, old, new)


def _assert_rotated(handle: OpenBaoStore, old: SecretValue, new: SecretValue) -> None:
    assert handle.get_labels(REF) == {Label.CURRENT: 2, Label.PREVIOUS: 1}
    assert handle.read(REF)[1] == new
    assert handle.read(REF, Label.PREVIOUS)[1] == old
    assert handle.get_rotation("r-raft").state == "overlap"
    assert handle.get_lock(REF) is None
    assert [e.hash for e in handle.audit_entries()] == ["h1", "h2", "h3"]


def test_a_handle_on_a_standby_reads_its_own_writes(bao_cluster: RaftCluster) -> None:
    """Standbys serve reads from their own copy; the store still sees every write it made."""
    active = bao_cluster.active()
    standby = next(n for n in bao_cluster.nodes if n is not active and n.process.running)
    store = _open(bao_cluster, [standby.addr])
    ref = REF.__class__("prod", "read-your-writes")
    with store:
        for number in range(1, 31):
            store.put_version(ref, generate("hex-32"))
            labels = store.set_labels(ref, expected={}, new={Label.CURRENT: number})
            assert store.get_labels(ref) == labels == {Label.CURRENT: number}
            assert store.list_versions(ref)[-1].number == number


def test_engine_rotation_completes_while_the_leader_is_stopped(
    bao_cluster: RaftCluster, tmp_path: Path
) -> None:
    """The engine, unchanged, runs a whole JWT rotation across a leader stop."""
    leader = bao_cluster.active()
    others = [n for n in bao_cluster.nodes if n is not leader]
    hosts = ",".join(a.removeprefix("http://") for a in [leader.addr, *(n.addr for n in others)])
    store = OpenBaoStore.from_url(
        f"openbao://{hosts}/secret?prefix=engine&retry=90", environ={"BAO_TOKEN": bao_cluster.token}
    )
    with store:
        world = EngineWorld.make(store, tmp_path)
        ref = world.seed()
        engine = world.engine()
        started = engine.start("jwt-access", "dev")
        bao_cluster.stop_node(leader)
        try:
            assert engine.run(started.id).state == "overlap"
            assert store.get_labels(ref) == {Label.CURRENT: 2, Label.PREVIOUS: 1}
            assert finish_overlap(world, engine, started.id) == "done"
        finally:
            bao_cluster.start_node(leader)
        assert store.get_labels(ref) == {Label.CURRENT: 2}
        assert store.list_versions(ref)[0].destroyed
        assert store.get_lock(ref, now=world.clock()) is None
        assert engine.journal.check().ok
