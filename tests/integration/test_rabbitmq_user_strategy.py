"""The ``rabbitmq-user`` strategy driven by the engine against a real RabbitMQ broker.

One broker per session (`tests.rabbitmq_server`); each test gets its own vhost and users. The
first user of each pair has tags, permissions and topic permissions that the alternate must
receive; passwords are planted with ``$``, ``"``, ``\\`` and ``%`` and every output is grepped
for them (stdout, stderr, every log record down to DEBUG, the journal, the rotation records,
the broker's own log).
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest

import tests.crash as crash
from keyroll.audit import Journal
from keyroll.errors import TargetError
from keyroll.inventory import Inventory, parse_inventory
from keyroll.model import SecretRef, SecretValue
from keyroll.rotation.events import Event
from keyroll.rotation.strategies.rabbitmq_user import rabbitmq_target
from keyroll.stores.sqlite import SQLiteStore
from keyroll.targets.rabbitmq import AmqpEndpoint, RabbitMQTarget
from tests.integration.rotation_world import EngineWorld, class_toml, inventory_text
from tests.leaks import assert_no_leak
from tests.rabbitmq_server import RabbitMQServer

pytestmark = pytest.mark.integration

ADMIN_ENV = "KR_TEST_RABBITMQ_ADMIN_URL"
OVERLAP = {"min": "1h", "settle": "10m", "max": "2d"}
TAGS = ("monitoring",)
WAIT = 15.0  # seconds: bounded waits for the broker's connection table


def planted() -> SecretValue:
    """A password with every character a URL, a .env file, JSON or a shell treats specially."""
    return SecretValue('pa$s"w\\rd%24-' + secrets.token_urlsafe(12))


def admin(server: RabbitMQServer, vhost: str = "/") -> RabbitMQTarget:
    return rabbitmq_target(server.management_url(),
                           AmqpEndpoint("127.0.0.1", server.amqp_port, vhost, tls=False),
                           what="test")


def logs_in(server: RabbitMQServer, vhost: str, user: str, password: SecretValue) -> bool:
    try:
        admin(server, vhost).check_login(user, password)
    except TargetError:
        return False
    return True


def connect(server: RabbitMQServer, vhost: str, user: str, password: SecretValue
            ) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", server.amqp_port, vhost,
        pika.PlainCredentials(user, password.reveal()), connection_attempts=1, heartbeat=0))


def wait_connections(target: RabbitMQTarget, user: str, count: int) -> None:
    deadline = time.monotonic() + WAIT
    for _ in range(int(WAIT / 0.05)):
        if target.connection_count(user) == count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert target.connection_count(user) == count


def setup_vhost(server: RabbitMQServer, vhost: str) -> None:
    server.api("PUT", f"/api/vhosts/{quote(vhost, safe='')}")
    server.api("PUT", f"/api/permissions/{quote(vhost, safe='')}/{server.admin_user}",
               {"configure": ".*", "write": ".*", "read": ".*"})
    server.api("PUT", f"/api/queues/{quote(vhost, safe='')}/kr.load",
               {"durable": False, "auto_delete": False})


def setup_first_user(server: RabbitMQServer, vhost: str, user: str, password: SecretValue
                     ) -> None:
    """The user apps log in as today: tags, permissions on the test vhost and on ``/``,
    a topic permission, a connection limit."""
    admin(server).set_password(user, password, TAGS)
    v = quote(vhost, safe="")
    server.api("PUT", f"/api/permissions/{v}/{user}",
               {"configure": "^kr\\.", "write": ".*", "read": ".*"})
    server.api("PUT", f"/api/permissions/%2F/{user}", {"configure": "", "write": "", "read": "^kr"})
    server.api("PUT", f"/api/topic-permissions/{v}/{user}",
               {"exchange": "amq.topic", "write": "^kr\\.", "read": ".*"})
    server.api("PUT", f"/api/user-limits/{user}/max-connections", {"value": 500})


def cleanup(server: RabbitMQServer, users: list[str], vhosts: list[str]) -> None:
    target = admin(server)
    for user in users:
        if target.user_exists(user):
            server.api("DELETE", f"/api/users/{quote(user, safe='')}")
    for vhost in vhosts:
        server.api("DELETE", f"/api/vhosts/{quote(vhost, safe='')}")


def options(server: RabbitMQServer, user: str, vhost: str) -> dict[str, Any]:
    v = quote(vhost, safe="")
    return {"admin_url_env": ADMIN_ENV, "user": user,
            "amqp_url": f"amqp://127.0.0.1:{server.amqp_port}/{v}",
            "app_url": f"amqp://{{role}}:{{password}}@127.0.0.1:{server.amqp_port}/{v}"}


@dataclass
class MqRig:
    world: EngineWorld
    first: SecretValue
    users: tuple[str, str]
    vhost: str
    ref: SecretRef
    target: RabbitMQTarget


@pytest.fixture
def make_rig(tmp_path: Path, rabbitmq_server: RabbitMQServer, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[Callable[..., MqRig]]:
    monkeypatch.setenv(ADMIN_ENV, rabbitmq_server.management_url())
    made: list[EngineWorld] = []
    users: list[str] = []
    vhosts: list[str] = []

    def make(store_password: SecretValue | None = None,
             hooks: dict[str, Any] | None = None) -> MqRig:
        base = f"kr{secrets.token_hex(4)}"
        pair = (f"{base}_a", f"{base}_b")
        vhost = f"kr-{secrets.token_hex(3)}"
        users.extend(pair)
        vhosts.append(vhost)
        setup_vhost(rabbitmq_server, vhost)
        first = planted()
        setup_first_user(rabbitmq_server, vhost, pair[0], first)
        text = inventory_text(class_toml("mq", "rabbitmq-user", "AMQP_URL",
                                         options(rabbitmq_server, base, vhost), OVERLAP, hooks))
        folder = tmp_path / f"world{len(made)}"
        folder.mkdir()
        world = EngineWorld.create(folder, text)
        made.append(world)
        ref = world.seed("mq", store_password or first, role=pair[0])
        return MqRig(world, first, pair, vhost, ref, admin(rabbitmq_server, vhost))

    yield make
    for world in made:
        world.close()
    cleanup(rabbitmq_server, users, vhosts)


def _outputs(rig: MqRig, server: RabbitMQServer, capfd: pytest.CaptureFixture[str],
             caplog: pytest.LogCaptureFixture) -> list[str]:
    captured = capfd.readouterr()
    return [captured.out, captured.err, caplog.text, rig.world.journal_text(),
            rig.world.records_text(), server.log_text()]


def test_rotation_waits_for_the_old_users_connections_then_resets_its_password(
    make_rig: Callable[..., MqRig], rabbitmq_server: RabbitMQServer,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # pika's and httpx's own logs are grepped too
    rig = make_rig()
    a, b = rig.users
    before = rig.target.grants_of(a)
    assert not rig.target.user_exists(b)
    held = connect(rabbitmq_server, rig.vhost, a, rig.first)  # an app connected before
    try:
        wait_connections(rig.target, a, 1)
        engine = rig.world.engine()
        record = engine.run(engine.start("mq", "dev").id)
        assert record.state == "overlap", record.body.error
        role, new = rig.world.current("mq")
        assert role == b
        assert logs_in(rabbitmq_server, rig.vhost, b, new)  # both users log in meanwhile
        assert logs_in(rabbitmq_server, rig.vhost, a, rig.first)
        assert rig.target.grants_of(b) == before  # tags, permissions, topic permissions
        steps = {s.step: s.evidence for s in record.body.steps}
        assert steps["apply"]["applied"]["tags"] == list(TAGS)
        assert steps["apply"]["applied"]["permissions"] == 2
        assert steps["apply"]["applied"]["limits"] == {"max-connections": 500}
        assert "equal to" in steps["test"]["checked"]["grants"]
        rig.world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        assert record.state == "overlap"
        assert f"user {a!r} still has open connections" in str(record.body.waiting)
        held.process_data_events(0)  # the held connection was not cut by the rotation
    finally:
        held.close()
    wait_connections(rig.target, a, 0)
    record = engine.run(record.id)
    assert record.state == "overlap" and "waiting" in str(record.body.waiting)
    rig.world.clock.tick(timedelta(minutes=11))
    record = engine.run(record.id)
    assert record.state == "done", record.body.error
    assert not logs_in(rabbitmq_server, rig.vhost, a, rig.first)
    assert logs_in(rabbitmq_server, rig.vhost, b, new)
    assert rig.target.grants_of(a) == before  # retire reset the password, kept the grants
    retired = {s.step: s.evidence for s in record.body.steps}["retire"]["retired_user"]
    assert retired["user"] == a and retired["break_glass_fingerprint"] not in (
        None, rig.first.fingerprint, new.fingerprint)
    # and back to the first user
    again = rig.world.rotate("mq", tick=timedelta(hours=3))
    assert again.state == "done", again.body.error
    role, third = rig.world.current("mq")
    assert role == a and logs_in(rabbitmq_server, rig.vhost, a, third)
    assert not logs_in(rabbitmq_server, rig.vhost, b, new)
    assert Journal(rig.world.store).verify().ok
    assert_no_leak(_outputs(rig, rabbitmq_server, capfd, caplog),
                   [rig.first.reveal(), new.reveal(), third.reveal(),
                    rabbitmq_server.admin_password])


def test_rollback_after_promote_is_a_rotation_back(
    make_rig: Callable[..., MqRig], rabbitmq_server: RabbitMQServer,
) -> None:
    rig = make_rig()
    a, b = rig.users
    engine = rig.world.engine()
    record = engine.run(engine.start("mq", "dev").id)
    assert record.state == "overlap"
    _, new = rig.world.current("mq")
    # an app already moved to the new user when the operator rolls back
    moved = connect(rabbitmq_server, rig.vhost, b, new)
    try:
        wait_connections(rig.target, b, 1)
        record = engine.rollback(record.id, reason="operator: the new user misbehaves")
        assert record.reverted
        role, value = rig.world.current("mq")
        assert role == a and value == rig.first  # the old version is current again
        rig.world.clock.tick(timedelta(hours=2))
        record = engine.run(record.id)
        assert record.state == "overlap"
        assert f"user {b!r} still has open connections" in str(record.body.waiting)
        assert logs_in(rabbitmq_server, rig.vhost, b, new)  # still accepted meanwhile
    finally:
        moved.close()
    wait_connections(rig.target, b, 0)
    engine.run(record.id)
    rig.world.clock.tick(timedelta(minutes=11))
    record = engine.run(record.id)
    assert record.state == "rolled-back", record.body.error
    assert logs_in(rabbitmq_server, rig.vhost, a, rig.first)  # the active user untouched
    assert not logs_in(rabbitmq_server, rig.vhost, b, new)  # the rolled-back user retired
    steps = {s.step: s.evidence for s in record.body.steps}
    assert steps["retire"]["retired_user"]["user"] == b
    assert any("verified_current" in e for e in steps.values() if isinstance(e, dict))


def test_wrong_current_password_refuses_and_changes_nothing(
    make_rig: Callable[..., MqRig], rabbitmq_server: RabbitMQServer,
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = planted()
    rig = make_rig(store_password=wrong)
    record = rig.world.rotate("mq")
    assert record.state == "rolled-back" and record.body.error.step == "plan"
    assert "nothing was changed" in record.body.error.message
    assert "login was refused" in record.body.error.message
    assert len(rig.world.store.list_versions(rig.ref)) == 1
    assert not rig.target.user_exists(rig.users[1])
    assert logs_in(rabbitmq_server, rig.vhost, rig.users[0], rig.first)
    assert_no_leak(_outputs(rig, rabbitmq_server, capfd, caplog),
                   [wrong.reveal(), rig.first.reveal(), rabbitmq_server.admin_password])


def test_grants_that_drift_before_the_test_step_fail_it_and_roll_back(
    make_rig: Callable[..., MqRig], rabbitmq_server: RabbitMQServer,
) -> None:
    rig = make_rig()
    a, b = rig.users

    def someone_changes_grants(event: Event) -> None:
        # another admin edits the active user between apply and test
        if event.kind == "step.finished" and event.step == "apply":
            rabbitmq_server.api("PUT", f"/api/topic-permissions/%2F/{a}",
                                {"exchange": "amq.topic", "write": "", "read": "^x"})

    engine = rig.world.engine(observers=[someone_changes_grants])
    record = rig.world.rotate("mq", engine=engine)
    assert record.state == "rolled-back"
    assert record.body.error.step == "test"
    assert f"user {b!r} does not have the grants of {a!r}" in record.body.error.message
    assert "topic permissions ('/', 'amq.topic', '', '^x') only on" in record.body.error.message
    assert logs_in(rabbitmq_server, rig.vhost, a, rig.first)
    pending = [v for v in rig.world.store.list_versions(rig.ref) if v.number != 1]
    assert pending and all(v.destroyed for v in pending)
    assert not logs_in(rabbitmq_server, rig.vhost, b, rig.first)
    assert rig.target.user_exists(b)  # reset to an unknown password, not deleted


def test_incident_closes_the_old_users_connections(
    make_rig: Callable[..., MqRig], rabbitmq_server: RabbitMQServer,
) -> None:
    rig = make_rig()
    a, b = rig.users
    held = connect(rabbitmq_server, rig.vhost, a, rig.first)
    try:
        wait_connections(rig.target, a, 1)
        record = rig.world.rotate("mq", incident=True)
        assert record.state == "done", record.body.error
        revoked = {s.step: s.evidence for s in record.body.steps}
        assert any(e.get("revoked", {}).get("connections_closed") == 1
                   for e in revoked.values() if isinstance(e, dict))
        closed = False
        deadline = time.monotonic() + WAIT
        for _ in range(int(WAIT / 0.1)):
            try:
                held.process_data_events(0.1)
            except pika.exceptions.AMQPError:
                closed = True
                break
            if time.monotonic() > deadline:
                break
        assert closed, "the broker did not close the old user's connection"
    finally:
        if held.is_open:
            held.close()
    assert not logs_in(rabbitmq_server, rig.vhost, a, rig.first)
    assert logs_in(rabbitmq_server, rig.vhost, b, rig.world.current("mq")[1])


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["done", "rolled-back"])
def test_sigkill_at_every_step_boundary_resumes_and_rabbitmq_accepts_current(
    outcome: str, tmp_path_factory: pytest.TempPathFactory, rabbitmq_server: RabbitMQServer,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(ADMIN_ENV, rabbitmq_server.management_url())
    counter = itertools.count()
    prefix = f"krc{secrets.token_hex(3)}"
    vhost = f"kr-crash-{secrets.token_hex(3)}"
    setup_vhost(rabbitmq_server, vhost)

    def make_world() -> tuple[Path, Inventory]:
        folder = tmp_path_factory.mktemp("rabbitmq-crash")
        # a verify hook that fails makes promote turn the rotation back (Direction.BACK)
        hooks = {"verify": [{"run": "false"}]} if outcome == "rolled-back" else None
        text = inventory_text(class_toml(
            "mq", "rabbitmq-user", "AMQP_URL",
            options(rabbitmq_server, f"{prefix}{next(counter)}", vhost), OVERLAP, hooks))
        (folder / "keyroll.toml").write_text(text)
        return folder, parse_inventory(text, folder / "keyroll.toml")

    def first_user(inventory: Inventory) -> str:
        return f"{inventory.classes['mq'].options['user']}_a"

    original_seed = crash.seed_version

    def seed(store: SQLiteStore, inventory: Inventory, name: str, env: str) -> SecretRef:
        ref = original_seed(store, inventory, name, env)
        setup_first_user(rabbitmq_server, vhost, first_user(inventory), store.read(ref)[1])
        return ref

    def check_target(store: SQLiteStore, ref: SecretRef) -> None:
        version, value = store.read(ref)
        inventory = parse_inventory((store.path.parent / "keyroll.toml").read_text())
        user = str(version.meta.get("role") or first_user(inventory))
        assert logs_in(rabbitmq_server, vhost, user, value), "RabbitMQ refuses the current value"

    try:
        points = crash.run_crash_matrix(make_world, "mq", "dev", check_target=check_target,
                                        seed=seed)
    finally:
        names = [u["name"] for u in rabbitmq_server.api("GET", "/api/users")
                 if str(u["name"]).startswith(prefix)]
        cleanup(rabbitmq_server, names, [vhost])
    with capsys.disabled():
        print("\n" + crash.format_table(f"rabbitmq-user, ends {outcome}", points))
    assert len(points) >= 20
    assert all(p.final == outcome for p in points), [p for p in points if p.final != outcome]


ROTATIONS_UNDER_LOAD = 3
LOAD_OVERLAP = {"min": 1, "settle": 0.5, "max": "1h"}  # seconds: min > the clients' refresh
ROTATION_TIMEOUT = 60.0


@pytest.mark.slow
def test_three_rotations_under_load_fail_no_authentication(
    tmp_path: Path, rabbitmq_server: RabbitMQServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Client processes (`tests.integration.load_client --kind rabbitmq`) open a NEW AMQP
    connection every ~20 ms with the credential they read from the store, and declare a queue
    passively; meanwhile the engine runs three rotations with a real clock. No login may fail:
    each client follows the rotations through its key source, and retire waits until the old
    user has no connection for the settle period."""
    from tests.integration.test_engine_rotation_under_load import Path_, _start_clients, _stop

    monkeypatch.setenv(ADMIN_ENV, rabbitmq_server.management_url())
    base = f"krload{secrets.token_hex(3)}"
    vhost = f"kr-load-{secrets.token_hex(3)}"
    setup_vhost(rabbitmq_server, vhost)
    first = planted()
    setup_first_user(rabbitmq_server, vhost, f"{base}_a", first)
    text = inventory_text(class_toml("mq", "rabbitmq-user", "AMQP_URL",
                                     options(rabbitmq_server, base, vhost), LOAD_OVERLAP))
    world = EngineWorld.create(tmp_path, text)
    planted_values = [first.reveal()]
    try:
        world.seed("mq", first, role=f"{base}_a")
        clients = _start_clients(world, "mq", [Path_("amqp", "rabbitmq", rabbitmq_server.amqp_port,
                                                     vhost)], tmp_path)
        try:
            world.clock.real = True
            engine = world.engine()
            for _ in range(ROTATIONS_UNDER_LOAD):
                record = engine.start("mq", "dev")
                deadline = time.monotonic() + ROTATION_TIMEOUT
                for _ in range(int(ROTATION_TIMEOUT / 0.1)):
                    record = engine.run(record.id)
                    if record.state in ("done", "rolled-back") or time.monotonic() > deadline:
                        break
                    time.sleep(0.1)
                assert record.state == "done", record.body.error or record.body.waiting
                planted_values.append(world.current("mq")[1].reveal())
        finally:
            totals = _stop(clients, tmp_path)
    finally:
        world.close()
        names = [u["name"] for u in rabbitmq_server.api("GET", "/api/users")
                 if str(u["name"]).startswith(base)]
        cleanup(rabbitmq_server, names, [vhost])
    total = totals["amqp"]
    with capsys.disabled():
        print(f"\nrabbitmq-user under load: {ROTATIONS_UNDER_LOAD} rotations, "
              f"attempts={total['attempts']} failed_logins={total['failed_logins']} "
              f"failed_queries={total['failed_queries']} "
              f"credentials seen per client={total['credential_changes']}")
    assert_no_leak([total["output"]], planted_values, where="client output")
    assert total["errors"] == [], total["errors"][:5]
    assert total["failed_logins"] == 0 and total["failed_queries"] == 0
    assert total["attempts"] >= 100
    # each client followed every rotation (first credential + one per rotation)
    assert all(seen == ROTATIONS_UNDER_LOAD + 1 for seen in total["credential_changes"]), total


def test_import_rotate_export_through_the_cli_and_hostile_input(
    tmp_path: Path, rabbitmq_server: RabbitMQServer, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    import base64
    import io
    import sys
    from urllib.parse import unquote

    from keyroll.cli.app import run

    caplog.set_level(logging.DEBUG)
    base = f"krcli{secrets.token_hex(3)}"
    a, b = f"{base}_a", f"{base}_b"
    vhost = f"kr-cli-{secrets.token_hex(3)}"
    setup_vhost(rabbitmq_server, vhost)
    first = planted()
    setup_first_user(rabbitmq_server, vhost, a, first)
    opts = options(rabbitmq_server, base, vhost)
    (tmp_path / "keyroll.toml").write_text(inventory_text(
        class_toml("mq", "rabbitmq-user", "AMQP_URL", opts, {"min": "0", "settle": "0"})))
    monkeypatch.chdir(tmp_path)
    for var in ("KEYROLL_CONFIG", "KEYROLL_STORE", "KEYROLL_NOW"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("KEYROLL_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())
    monkeypatch.setenv("KEYROLL_ACTOR", "alice")
    monkeypatch.setenv(ADMIN_ENV, rabbitmq_server.management_url())
    transcript: list[str] = []

    def keyroll(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = run(list(args))
        captured = capsys.readouterr()
        transcript.extend([captured.out, captured.err])
        return code, captured.out, captured.err

    try:
        assert keyroll("init")[0] == 0
        # what the app has today, as a URL: the password percent-encoded
        url = (f"amqp://{a}:{quote(first.reveal(), safe='')}@127.0.0.1:"
               f"{rabbitmq_server.amqp_port}/{quote(vhost, safe='')}\n")
        code, out, err = keyroll("import", "mq", "--env", "dev", stdin=url)
        assert code == 0, err
        code, out, err = keyroll("rotate", "mq", "--env", "dev")
        assert code == 0, err + out
        export = tmp_path / "app.env"
        assert keyroll("export", "--env", "dev", "-o", str(export))[0] == 0
        line = export.read_text().split("AMQP_URL=", 1)[1].split("\n", 1)[0].strip('"')
        assert f"//{b}:" in line
        new = SecretValue(unquote(line.split(":", 2)[2].split("@", 1)[0]))
        assert logs_in(rabbitmq_server, vhost, b, new)
        assert not logs_in(rabbitmq_server, vhost, a, first)

        # hostile input: one line, exit 2, the credential pasted in the wrong place not shown
        pasted = f"amqp://{a}:{quote(new.reveal(), safe='')}@127.0.0.1/"
        (tmp_path / "keyroll.toml").write_text(inventory_text(class_toml(
            "mq", "rabbitmq-user", "AMQP_URL", {**opts, "amqp_url": pasted}, {"min": "0"})))
        code, out, err = keyroll("inventory", "check")
        assert code == 2 and "options.amqp_url" in err and len(err.strip().splitlines()) == 1
        assert "Traceback" not in err
        (tmp_path / "keyroll.toml").write_text(inventory_text(
            class_toml("mq", "rabbitmq-user", "AMQP_URL", opts, {"min": "0", "settle": "0"})))
        monkeypatch.setenv(ADMIN_ENV, f"htp:/{rabbitmq_server.admin_user}:"
                                      f"{rabbitmq_server.admin_password}@127.0.0.1")
        code, out, err = keyroll("rotate", "mq", "--env", "dev")
        assert code != 0 and f"env var {ADMIN_ENV} must be" in err + out
        assert "Traceback" not in err
        assert logs_in(rabbitmq_server, vhost, b, new)  # nothing changed
    finally:
        names = [u["name"] for u in rabbitmq_server.api("GET", "/api/users")
                 if str(u["name"]).startswith(base)]
        cleanup(rabbitmq_server, names, [vhost])
    assert_no_leak([*transcript, caplog.text, rabbitmq_server.log_text()],
                   [first.reveal(), new.reveal(), rabbitmq_server.admin_password],
                   where="CLI output")
