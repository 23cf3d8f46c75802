"""Prometheus metrics, read from the store at scrape time.

`KeyrollCollector` is a custom collector: it holds no counters of its own, it asks
`keyroll.status` and the journal at every scrape, so two dashboards (or a restarted one) agree
and nothing drifts. It registers on its own `CollectorRegistry` (`metrics_registry`), never on
prometheus-client's global one, so several apps in one process (tests) do not collide.

Metrics (secret labels: ``class``, ``environment``, ``kind``, ``tier``):

==================================================== ==========================================
``keyroll_store_up``                                  1 when the store answered this scrape
``keyroll_secret_info{…, owner, blast_radius}``       1 per secret of the inventory
``keyroll_secret_version``                            the current version number
``keyroll_secret_created_timestamp_seconds``          when the current version was created
``keyroll_secret_age_seconds``                        age of the current version
``keyroll_secret_due_timestamp_seconds``              created + cadence
``keyroll_secret_days_left``                          whole days until due (negative: overdue)
``keyroll_secret_cadence_seconds``                    the class's cadence
``keyroll_secret_state{…, state}``                    1 for the secret's state (ok, due,
                                                      overdue, missing), 0 for the others
``keyroll_secret_rotation_in_flight``                 1 while a rotation of the secret runs
``keyroll_key_last_used_timestamp_seconds{…, label}`` when apps last used the version that
                                                      ``current``/``previous``/``pending`` points at
``keyroll_rotations_in_flight{state}``                rotations in each unfinished state
``keyroll_rotation_last_success_timestamp_seconds``   when the last rotation of the secret
                                                      finished (``done``)
``keyroll_rotations_total{class, environment,         finished rotations by outcome (done,
outcome}``                                             rolled-back)
``keyroll_audit_journal_ok``                          1 when the hash chain verifies (from the
                                                      verified-head checkpoint on) and the last
                                                      full check passed
``keyroll_audit_records_total``                       records in the journal
``keyroll_audit_last_record_timestamp_seconds``       time of the newest record
``keyroll_audit_last_full_check_timestamp_seconds``   when the last full check ran
``keyroll_audit_last_full_check_ok``                  1 when it passed
==================================================== ==========================================

Secrets without a current version have no age/due/days-left/version samples (their state is
``missing``). No metric carries a value or a fingerprint.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from keyroll.audit import AuditRecord
from keyroll.dashboard.journal_index import JournalIndex
from keyroll.dashboard.store_cache import StoreCache
from keyroll.errors import KeyrollError
from keyroll.inventory import Inventory
from keyroll.rotation.record import ACTIVE, TERMINAL, Rotation
from keyroll.rotation.rotator import last_tick
from keyroll.runtime.usage import read_usage
from keyroll.status import State, statuses
from keyroll.stores.base import Store

__all__ = ["SECRET_LABELS", "KeyrollCollector", "StoreFactory", "metrics_registry"]

#: The labels every per-secret metric carries.
SECRET_LABELS = ("class", "environment", "kind", "tier")

StoreFactory = Callable[[], AbstractContextManager[Store]]


class KeyrollCollector:
    """Reads every secret's status, the rotations and the journal at each scrape.

    Args:
        store_factory: opens the store for one scrape (a context manager; closed after).
        inventory: the secret classes.
        clock: the time source (frozen in tests).
        journal_actor: the actor name of the read-only journal (never written).
        index: the journal index shared with the dashboard's pages (its own when None): each
            scrape verifies only the records after the last verified head.
        cache: the secrets' state shared with the pages (`StoreCache`; its own when None).
    """

    def __init__(
        self,
        store_factory: StoreFactory,
        inventory: Inventory,
        clock: Callable[[], datetime],
        *,
        journal_actor: str = "keyroll-dashboard",
        index: JournalIndex | None = None,
        cache: StoreCache | None = None,
    ) -> None:
        self._index = index if index is not None else JournalIndex()
        self._cache = cache if cache is not None else StoreCache()
        self._store_factory = store_factory
        self._inventory = inventory
        self._clock = clock
        self._actor = journal_actor

    def describe(self) -> Iterable[Metric]:
        """Nothing: registering must not scrape the store."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Build every family from the store now. A store failure yields ``keyroll_store_up 0``
        (and nothing else) instead of an error, so Prometheus still records the outage."""
        started = time.monotonic()
        up = GaugeMetricFamily("keyroll_store_up", "1 when the store answered this scrape.")
        try:
            with self._store_factory() as store:
                families = self._families(self._cache.view(store))
        except KeyrollError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families
        took = GaugeMetricFamily("keyroll_scrape_duration_seconds",
                                 "How long reading the store for this scrape took.")
        took.add_metric([], time.monotonic() - started)
        yield took

    def _families(self, store: Store) -> list[Metric]:
        now = self._clock()
        rows = statuses(store, self._inventory, now)
        rotations = [Rotation.parse(r) for r in store.list_rotations()]

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=[*SECRET_LABELS, *extra])

        info = gauge("keyroll_secret_info", "One per secret of the inventory (value 1).",
                     ("owner", "blast_radius"))
        version = gauge("keyroll_secret_version", "The current version number of the secret.")
        created = gauge("keyroll_secret_created_timestamp_seconds",
                        "When the current version was created (Unix time).")
        age = gauge("keyroll_secret_age_seconds", "Age of the current version.")
        due = gauge("keyroll_secret_due_timestamp_seconds",
                    "When the secret is due for rotation: created + cadence (Unix time).")
        days_left = gauge("keyroll_secret_days_left",
                          "Whole days until the secret is due; negative once overdue.")
        cadence = gauge("keyroll_secret_cadence_seconds", "How often the class must rotate.")
        state = gauge("keyroll_secret_state",
                      "1 for the secret's state (ok, due, overdue, missing), 0 for the others.",
                      ("state",))
        secret_busy = gauge("keyroll_secret_rotation_in_flight",
                            "1 while a rotation of the secret is unfinished.")
        last_ok = gauge("keyroll_rotation_last_success_timestamp_seconds",
                        "When the secret's last successful rotation finished (Unix time).")
        last_used = gauge("keyroll_key_last_used_timestamp_seconds",
                          "When apps last reported using the version a label points at "
                          "(Unix time; apps report with StoreKeySource(report_usage=True)).",
                          ("label",))

        last_done: dict[tuple[str, str], float] = {}
        finished: dict[tuple[str, str, str], int] = defaultdict(int)
        in_flight = dict.fromkeys(sorted(state.value for state in ACTIVE), 0)
        for record in rotations:
            key = (record.ref.environment, record.ref.name)
            if record.state in ACTIVE:
                in_flight[record.state.value] += 1
            if record.state in TERMINAL:
                finished[(record.ref.name, record.ref.environment, record.state.value)] += 1
            if record.state == "done":
                last_done[key] = max(last_done.get(key, 0.0), _finished_at(record))

        for row in rows:
            labels = [row.cls.name, row.ref.environment, row.cls.kind.value, row.cls.tier.value]
            info.add_metric([*labels, row.cls.owner, row.cls.blast_radius], 1)
            cadence.add_metric(labels, row.cls.cadence_days * 86400)
            for each in State:
                state.add_metric([*labels, each.value], 1 if row.state is each else 0)
            secret_busy.add_metric(labels, 1 if row.rotation is not None else 0)
            if row.version is not None and row.created_at is not None and row.due_at is not None:
                version.add_metric(labels, row.version)
                created.add_metric(labels, row.created_at.timestamp())
                age.add_metric(labels, (now - row.created_at).total_seconds())
                due.add_metric(labels, row.due_at.timestamp())
                if row.days_left is not None:
                    days_left.add_metric(labels, row.days_left)
            if row.version is not None:
                usage = read_usage(store, row.ref)
                labelled = store.get_labels(row.ref)
                kids = {v.number: v.kid for v in store.list_versions(row.ref)}
                for label, number in sorted(labelled.items()):
                    seen = usage.get(kids.get(number, -1))
                    if seen is not None and seen.last_seen is not None:
                        last_used.add_metric([*labels, label.value], seen.last_seen.timestamp())
            done_at = last_done.get((row.ref.environment, row.cls.name))
            if done_at is not None:
                last_ok.add_metric(labels, done_at)

        flying = GaugeMetricFamily("keyroll_rotations_in_flight",
                                   "Unfinished rotations by state.", labels=["state"])
        for name, count in in_flight.items():
            flying.add_metric([name], count)
        totals = CounterMetricFamily("keyroll_rotations", "Finished rotations by outcome.",
                                     labels=["class", "environment", "outcome"])
        for (name, env, outcome), count in sorted(finished.items()):
            totals.add_metric([name, env, outcome], count)

        check = self._index.check(store, self._actor)
        report = check.report
        journal_ok = GaugeMetricFamily("keyroll_audit_journal_ok",
                                       "1 when the audit journal's hash chain verifies "
                                       "(incrementally, and the last full check passed).")
        journal_ok.add_metric([], 1 if report.ok else 0)
        records = CounterMetricFamily("keyroll_audit_records", "Records in the audit journal.")
        records.add_metric([], report.count)
        families: list[Metric] = [info, version, created, age, due, days_left, cadence, state,
                                  secret_busy, last_ok, last_used, flying, totals, journal_ok,
                                  records]
        if check.last_full is not None:
            full_at = GaugeMetricFamily("keyroll_audit_last_full_check_timestamp_seconds",
                                        "When the journal's last full check ran (Unix time).")
            full_at.add_metric([], check.last_full.at.timestamp())
            full_ok = GaugeMetricFamily("keyroll_audit_last_full_check_ok",
                                        "1 when the journal's last full check passed.")
            full_ok.add_metric([], 1 if check.last_full.ok else 0)
            families += [full_at, full_ok]
        ticked = last_tick(store)
        if ticked is not None:
            rotator = GaugeMetricFamily("keyroll_rotator_last_tick_timestamp_seconds",
                                        "When `keyroll serve` last finished a tick (Unix time "
                                        "of its start).")
            rotator.add_metric([], ticked.timestamp())
            families.append(rotator)
        tail = store.audit_tail()
        if tail is not None:
            newest = GaugeMetricFamily("keyroll_audit_last_record_timestamp_seconds",
                                       "Time of the newest audit record (Unix time).")
            newest.add_metric([], _record_time(tail.payload))
            families.append(newest)
        return families


def _finished_at(record: Rotation) -> float:
    return record.updated_at.timestamp()


def _record_time(payload: str) -> float:
    return AuditRecord.from_json(payload).time.timestamp()


def metrics_registry(
    store_factory: StoreFactory, inventory: Inventory, clock: Callable[[], datetime], *,
    index: JournalIndex | None = None, cache: StoreCache | None = None,
) -> CollectorRegistry:
    """A fresh registry holding only a `KeyrollCollector` (not the process-global registry).

    Args:
        index: the dashboard's journal index, so scrapes check only what pages have not.
        cache: the dashboard's `StoreCache`, so scrapes and pages share what they read.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KeyrollCollector(store_factory, inventory, clock, index=index,
                                       cache=cache))
    return registry
