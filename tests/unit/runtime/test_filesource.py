"""Issue 11 §1: FileKeySource reads a Secret volume or a dotenv file and swaps only whole sets."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from keyroll.errors import SecretRejected
from keyroll.generate import generate
from keyroll.model import Label
from keyroll.runtime import metrics
from keyroll.runtime.filesource import FileKeySource, FileSourceError
from keyroll.runtime.jwt import JWTKeyRing
from keyroll.runtime.keysource import EnvKeySource
from tests.kubelet import publish


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 2.0) -> None:
        self.now += seconds


def _value() -> str:
    return generate("base64-48").reveal()


OLD, NEW = "1a2b3c4d", "5e6f7081"


def test_same_conventions_and_checks_as_env_source(tmp_path: Path) -> None:
    env = {"JWT_SECRET": _value(), "JWT_SECRET_KID": OLD, "JWT_SECRET_PREVIOUS": _value()}
    publish(tmp_path / "keys", env)
    from_files = FileKeySource.jwt_secret(path=tmp_path / "keys")
    from_env = EnvKeySource.jwt_secret(environ=env)
    assert from_files.snapshot().same_keys(from_env.snapshot())
    assert from_files.snapshot().current.origin == "file:JWT_SECRET"
    assert set(from_files.variable_names()) == set(from_env.variable_names())
    seed_001 = {"SECRET_KEY": _value(), "OLD_SECRET_KEYS": f"{_value()},{_value()}"}
    (tmp_path / "seed1").mkdir()
    for name, text in seed_001.items():
        (tmp_path / "seed1" / name).write_text(text + "\n")  # a trailing newline is not the key
    assert FileKeySource.secret_key(path=tmp_path / "seed1").snapshot().same_keys(
        EnvKeySource.secret_key(environ=seed_001).snapshot())


def test_first_load_must_be_complete_and_valid(tmp_path: Path) -> None:
    publish(tmp_path / "keys", {"JWT_SECRET_PREVIOUS": _value()})
    with pytest.raises(SecretRejected, match="JWT_SECRET is not set"):
        FileKeySource.jwt_secret(path=tmp_path / "keys")
    publish(tmp_path / "keys", {"JWT_SECRET": "short"})
    with pytest.raises(SecretRejected):
        FileKeySource.jwt_secret(path=tmp_path / "keys")
    with pytest.raises(FileSourceError, match="does not exist"):
        FileKeySource.jwt_secret(path=tmp_path / "missing.env")


def test_kubelet_swap_is_used_at_once_and_whole(tmp_path: Path) -> None:
    clock = Clock()
    folder = tmp_path / "keys"
    old, new = _value(), _value()
    publish(folder, {"JWT_SECRET": old, "JWT_SECRET_KID": OLD})
    source = FileKeySource.jwt_secret(path=folder, clock=clock)
    ring = JWTKeyRing(source)
    old_token = ring.sign({"sub": "x"}, ttl=timedelta(minutes=5))
    # apply: the new key is staged (accepted, not signing)
    publish(folder, {"JWT_SECRET": old, "JWT_SECRET_KID": OLD, "JWT_SECRET_NEXT": new,
                     "JWT_SECRET_NEXT_KID": NEW})
    clock.tick()
    snap = source.snapshot()
    assert [(k.kid_hex, k.label) for k in snap.keys] == [(OLD, Label.CURRENT), (NEW, Label.PENDING)]
    # promote
    publish(folder, {"JWT_SECRET": new, "JWT_SECRET_KID": NEW, "JWT_SECRET_PREVIOUS": old,
                     "JWT_SECRET_PREVIOUS_KID": OLD})
    clock.tick()
    assert ring.current_kid == int(NEW, 16)
    assert ring.verify(old_token)["sub"] == "x"
    # retire
    publish(folder, {"JWT_SECRET": new, "JWT_SECRET_KID": NEW})
    clock.tick()
    assert [k.kid_hex for k in source.snapshot().keys] == [NEW]
    assert source.failures == 0
    assert not [p for p in folder.iterdir() if p.name.startswith("..2")][1:]  # old dirs removed


def test_half_written_plain_file_is_used_only_once_it_settles(tmp_path: Path) -> None:
    clock = Clock()
    folder = tmp_path / "keys"
    folder.mkdir()
    old, new = _value(), _value()
    (folder / "JWT_SECRET").write_text(old)
    (folder / "JWT_SECRET_KID").write_text(OLD)
    source = FileKeySource.jwt_secret(path=folder, clock=clock)
    # a writer that has written half of the new key (still long enough to pass the checks)
    (folder / "JWT_SECRET").write_text(new[:40])
    (folder / "JWT_SECRET_KID").write_text(NEW)
    clock.tick()
    assert source.snapshot().current.value.reveal() == old  # changed this poll: not yet
    (folder / "JWT_SECRET").write_text(new)  # the writer finishes
    clock.tick()
    assert source.snapshot().current.value.reveal() == old  # changed again: wait once more
    clock.tick()
    assert source.snapshot().current.value.reveal() == new
    assert source.snapshot().current.kid_hex == NEW


def test_deleted_or_broken_files_keep_the_last_good_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    env_file = tmp_path / "keyroll.env"
    old = _value()
    env_file.write_text(f"# keyroll's keys\nJWT_SECRET={old}\nJWT_SECRET_KID={OLD}\n")
    source = FileKeySource.jwt_secret(path=env_file, clock=clock)
    caplog.set_level(logging.WARNING, "keyroll.runtime")
    env_file.unlink()
    clock.tick()
    assert source.snapshot().current.value.reveal() == old
    assert source.failures == 1
    env_file.write_text(f"JWT_SECRET={_value()}\nJWT_SECRET_KID=not-hex\n")
    for _ in range(2):
        clock.tick()
        assert source.snapshot().current.value.reveal() == old
    assert source.failures == 2  # counted once the file settled and was found invalid
    new = _value()
    env_file.write_text(f"JWT_SECRET={new}\nJWT_SECRET_KID={NEW}\n")
    for _ in range(2):
        clock.tick()
        source.snapshot()
    assert source.snapshot().current.value.reveal() == new
    assert old not in caplog.text and new not in caplog.text


def test_usage_is_exported_to_prometheus(tmp_path: Path) -> None:
    prometheus = pytest.importorskip("prometheus_client")
    publish(tmp_path / "keys", {"JWT_SECRET": _value(), "JWT_SECRET_KID": OLD})
    ring = JWTKeyRing(FileKeySource.jwt_secret(path=tmp_path / "keys"))
    for _ in range(3):
        ring.verify(ring.sign({"sub": "x"}, ttl=timedelta(minutes=5)))
    registry = prometheus.CollectorRegistry()
    registry.register(metrics.collector())
    text = prometheus.generate_latest(registry).decode()
    assert f'kid="{OLD}"' in text
    usage = metrics.parse_usage(text)
    assert usage[int(OLD, 16)].count >= 3 and usage[int(OLD, 16)].last_seen is not None
    default = prometheus.generate_latest().decode()  # registered in the default registry too
    assert "keyroll_key_uses_total" in default
