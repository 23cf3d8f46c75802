"""OpenBao going away in the middle of a rotation, on a durable (raft) single server.

The dev server loses everything when stopped, so these tests use one raft node that survives a
restart: it comes back sealed, then is unsealed. A stopped or sealed server must give
`StoreUnavailable` saying what to do, change nothing, and the same store handle must carry on
once the server is back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.errors import StoreUnavailable
from keyroll.generate import generate
from keyroll.model import Label, SecretRef
from keyroll.stores.base import AuditEntry, RotationRecord
from keyroll.stores.openbao import OpenBaoStore
from tests.openbao_engine import INVENTORY, VERIFY_HOOK, EngineWorld, finish_overlap
from tests.openbao_server import RaftCluster
from tests.stores.contract import REF, T0

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ITERATIONS_BEFORE_KILL = 8


@pytest.fixture(scope="module")
def bao_single() -> Iterator[RaftCluster]:
    cluster = RaftCluster(1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _store(cluster: RaftCluster, prefix: str) -> OpenBaoStore:
    hosts = ",".join(a.removeprefix("http://") for a in cluster.addrs)
    return OpenBaoStore.from_url(
        f"openbao://{hosts}/secret?prefix={prefix}", environ={"BAO_TOKEN": cluster.token}
    )


def test_stopped_then_sealed_server_pauses_and_the_same_handle_resumes(
    bao_single: RaftCluster,
) -> None:
    node = bao_single.nodes[0]
    store = _store(bao_single, "pause")
    store.put_version(REF, generate("hex-32"))
    store.set_labels(REF, expected={}, new={Label.CURRENT: 1})
    store.acquire_lock(REF, "r-1", ttl=timedelta(hours=1))
    record = store.create_rotation(RotationRecord("r-1", REF, "create", 0, T0, T0, {}))
    pending = store.put_version(REF, generate("hex-32"))

    bao_single.stop_node(node)
    with pytest.raises(StoreUnavailable) as caught:
        store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: 2})
    message = str(caught.value)
    assert "OpenBao is unavailable" in message
    assert node.addr in message
    assert f"secret/data/pause/_index/{REF.environment}/{REF.name}" in message
    assert "Start or unseal" in message
    assert bao_single.token not in message

    bao_single.start_node(node, unseal=False)
    with pytest.raises(StoreUnavailable, match="sealed"):
        store.get_labels(REF)

    bao_single.unseal(node)
    bao_single.active()
    # nothing was lost or half-done: the same handle picks up where the rotation paused
    assert store.get_labels(REF) == {Label.CURRENT: 1}
    assert [v.number for v in store.list_versions(REF)] == [1, 2]
    lock = store.get_lock(REF)
    assert lock is not None
    assert lock.owner == "r-1"
    store.set_labels(REF, expected={Label.PENDING: None}, new={Label.PENDING: pending.number})
    store.save_rotation(
        RotationRecord("r-1", REF, "apply", 1, T0, T0, {"pending": 2}),
        expected_revision=record.revision,
    )
    assert store.get_rotation("r-1").state == "apply"
    store.close()


def test_server_killed_during_a_stream_of_writes_leaves_a_consistent_store(
    bao_single: RaftCluster,
) -> None:
    node = bao_single.nodes[0]
    store = _store(bao_single, "killed")
    ref = SecretRef("prod", "webhook-bank")
    done = threading.Event()
    progress: list[int] = []
    outcome: list[BaseException | None] = []

    def rotate_forever() -> None:
        """Rotation-shaped writes, round after round, until the store fails."""
        try:
            for round_no in range(1, 10_000):
                version = store.put_version(ref, generate("hex-32"))
                labels = store.get_labels(ref)
                new: dict[Label, int | None] = {Label.CURRENT: version.number}
                if Label.CURRENT in labels:
                    new[Label.PREVIOUS] = labels[Label.CURRENT]
                store.set_labels(ref, expected=dict(labels), new=new)
                tail = store.audit_tail()
                seq = tail.seq + 1 if tail else 1
                store.audit_append(AuditEntry(seq, f'{{"round":{round_no}}}', "p", f"h{seq}"))
                progress.append(round_no)
                if len(progress) == ITERATIONS_BEFORE_KILL:
                    done.set()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001  (the test asserts what ended the loop)
            outcome.append(exc)
        finally:
            done.set()

    worker = threading.Thread(target=rotate_forever)
    worker.start()
    assert done.wait(timeout=120)
    bao_single.stop_node(node, hard=True)  # SIGKILL: no graceful shutdown
    worker.join(timeout=120)
    assert not worker.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], StoreUnavailable), repr(outcome[0])

    bao_single.start_node(node)
    bao_single.active()
    # one more version repairs an index that missed the last value write, if any
    store.put_version(ref, generate("hex-32"))
    versions = store.list_versions(ref)
    assert [v.number for v in versions] == list(range(1, len(versions) + 1))
    assert len(versions) >= ITERATIONS_BEFORE_KILL + 1
    for version in versions:
        assert store.read_value(ref, version.number).fingerprint == version.fingerprint
    labels = store.get_labels(ref)
    assert labels[Label.CURRENT] in {v.number for v in versions}
    seqs = [e.seq for e in store.audit_entries()]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= ITERATIONS_BEFORE_KILL
    store.close()


def test_engine_rotation_pauses_when_openbao_dies_mid_step_and_resumes(
    bao_single: RaftCluster, tmp_path: Path
) -> None:
    """OpenBao is killed (SIGKILL) from inside a rotation step: the verify hook kills it, once.

    The engine stops with `StoreUnavailable` (a pause, not a rollback); once OpenBao is back
    the same engine resumes the rotation from its last saved step and completes it.
    """
    node = bao_single.nodes[0]
    assert node.process.proc is not None
    kill_once = (
        'hooks.verify = [{ run = "test -e killed || { touch killed; kill -KILL '
        f'{node.process.proc.pid}; sleep 1; }}", shell = true, environments = ["dev"] }}]'
    )
    assert VERIFY_HOOK in INVENTORY
    with _store(bao_single, "engine-pause") as store:
        world = EngineWorld.make(store, tmp_path, INVENTORY.replace(VERIFY_HOOK, kill_once))
        ref = world.seed()
        engine = world.engine()
        started = engine.start("jwt-access", "dev")
        with pytest.raises(StoreUnavailable, match="OpenBao is unavailable") as caught:
            engine.run(started.id)
        assert "Start or unseal" in str(caught.value)
        assert (tmp_path / "killed").exists()  # it died inside the step, as planned

        bao_single.stop_node(node)  # reap the killed process
        bao_single.start_node(node)
        bao_single.active()
        paused = store.get_rotation(started.id)
        # paused inside the step that runs the verify hook (promote, today), not rolled back
        assert paused.state not in ("rolled-back", "rolling-back", "done")
        assert "error" not in paused.body
        assert engine.run(started.id).state == "overlap"
        assert finish_overlap(world, engine, started.id) == "done"
        assert store.get_labels(ref) == {Label.CURRENT: 2}
        assert engine.journal.check().ok
