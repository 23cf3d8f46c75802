"""Crash safety: every key-kind strategy, killed with SIGKILL after every durable write."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from keyroll.inventory import Inventory, parse_inventory
from tests.crash import format_table, run_crash_matrix, run_pause_matrix
from tests.unit.conftest import INVENTORY


@pytest.fixture
def make_world(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], tuple[Path, Inventory]]:
    def _make() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("crash")
        (folder / "keyroll.toml").write_text(INVENTORY)
        (folder / "remaining.txt").write_text("0\n")
        return folder, parse_inventory(INVENTORY, folder / "keyroll.toml")

    return _make


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jwt-access", "webhook", "api", "opaque", "field", "vnpay"])
def test_sigkill_at_every_step_boundary_resumes(
    name: str, make_world: Callable[[], tuple[Path, Inventory]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    points = run_crash_matrix(make_world, name)
    assert len(points) >= 15  # every step writes: plan … retire, journal, lock
    with capsys.disabled():
        print("\n" + format_table(name, points))
    assert {p.final for p in points} <= {"done", "rolled-back"}
    # a crash is not a failure: the rotation must finish unless the crash hit before the start
    assert all(p.final == "done" for p in points), [p for p in points if p.final != "done"]


@pytest.mark.slow
def test_sigkill_during_a_rollback_resumes_the_rollback(
    tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    def make() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("crash-rollback")
        (folder / "keyroll.toml").write_text(INVENTORY)
        (folder / "verify-fails").touch()  # the verify hook fails after promote
        return folder, parse_inventory(INVENTORY, folder / "keyroll.toml")

    points = run_crash_matrix(make, "jwt-access")
    with capsys.disabled():
        print("\n" + format_table("jwt-access, verify fails → rollback", points))
    assert all(p.final == "rolled-back" for p in points), points


@pytest.mark.slow
def test_sigkill_during_an_operator_rollback_in_the_overlap(
    make_world: Callable[[], tuple[Path, Inventory]], capsys: pytest.CaptureFixture[str]
) -> None:
    points = run_crash_matrix(make_world, "jwt-access", rollback_at="overlap")
    with capsys.disabled():
        print("\n" + format_table("jwt-access, rolled back by the operator in the overlap", points))
    assert all(p.final == "rolled-back" for p in points), points


@pytest.mark.slow
@pytest.mark.parametrize("name", ["jwt-access", "api", "field"])
def test_a_process_paused_past_its_lease_at_every_write_writes_nothing(
    name: str, make_world: Callable[[], tuple[Path, Inventory]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    points = run_pause_matrix(make_world, name)
    assert len(points) >= 15
    with capsys.disabled():
        print("\n" + format_table(f"{name}, paused past its lease (SIGSTOP … SIGCONT)", points))
    assert all(p.final.startswith("done") for p in points), points
    # most pauses land inside a run that still had writes to make: those must stop
    assert any(p.final.endswith("exit 4)") for p in points), points
