"""`keyroll.rotation.deploy`: the hook redactor masks every value keyroll holds or held, and
keyroll's own credentials; the hook runner passes the step's environment."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path

import pytest

from keyroll.model import Label, SecretRef, SecretValue
from keyroll.rotation.deploy import HookRunner, store_redactor
from keyroll.rotation.strategies.base import StepContext
from keyroll.stores.openbao import OpenBaoStore
from keyroll.stores.sqlite import SQLiteStore
from tests.leaks import assert_no_leak
from tests.unit.conftest import INVENTORY, World


def test_every_environment_version_and_credential(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYROLL_MASTER_KEY", raising=False)
    key = secrets.token_bytes(32)
    store = SQLiteStore(tmp_path / ".keyroll" / "store.db", key)
    # another key in the file than the one the store was opened with (a leftover)
    other = base64.b64encode(secrets.token_bytes(32)).decode()
    (tmp_path / ".keyroll" / "master.key").write_text(other + "\n")
    values = {}
    for env in ("dev", "staging", "prod"):
        ref = SecretRef(env, "api")
        for number in (1, 2, 3):
            values[(env, number)] = f"{env}-v{number}-$\"\\-{secrets.token_urlsafe(12)}"
            store.put_version(ref, SecretValue(values[(env, number)]))
        store.set_labels(ref, expected={}, new={Label.CURRENT: 3, Label.PENDING: 2})
        store.destroy_version(ref, 1)  # retired: recognised by its digest only
    redactor = store_redactor(store, workdir=tmp_path)
    master = base64.b64encode(key).decode()
    text = "\n".join([*values.values(), master, other, key.hex()])
    assert_no_leak([redactor.redact(text)], [*values.values(), master, other])
    assert "dev-v1-" not in redactor.redact(f'X="{values[("dev", 1)]}"')


def test_the_openbao_token_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BAO_TOKEN", "VAULT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token = "s." + secrets.token_urlsafe(24)
    store = OpenBaoStore(["http://127.0.0.1:9"], token=token)  # never contacted
    assert [v.reveal() for v in store.own_secrets()] == [token]
    assert token not in repr(store.own_secrets())


def test_the_hook_runner_masks_values_and_passes_the_extra_env(world: World) -> None:
    """`HookRunner.run` (the encryption-key strategy's remaining hooks go through it): the
    step's environment plus ``extra_env``, and every store value masked in the output."""
    ref = world.seed("field")
    value = world.store.read(ref)[1].reveal()
    text = INVENTORY.replace('hooks.remaining = [{ run = "cat remaining.txt" }]',
                             'hooks.remaining = [{ run = "sh -c \'echo $KEYROLL_OLD_KID; '
                             f'echo {value}; echo 7\'" }}]')
    world.reload(text)
    ctx = StepContext(
        rotation="r-1", ref=ref, cls=world.inventory.classes["field"],
        policy=world.inventory.policy("dev"), inventory=world.inventory, store=world.store,
        now=world.clock(), incident=False, old=None, new=None, state={}, evidence={},
        workdir=world.path,
    )
    results = HookRunner(world.store, world.inventory, world.path).run(
        ctx, "remaining", step="overlap", report=lambda _line: None,
        extra_env={"KEYROLL_OLD_KID": "0000abcd"})
    output = str(results[0]["output"])
    assert output.splitlines()[0] == "0000abcd"
    assert output.splitlines()[-1] == "7"
    assert value not in output
