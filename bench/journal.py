"""Journal-at-scale benchmark (issue 16 §5): dashboard pages, ``/metrics``, appends and the full
check with 100,000 journal records, on the local store and a real OpenBao, side by side with
the code path before this work.

    .venv/bin/python bench/journal.py [--records 100000] [--old-records 5000] [--requests 30]
                                      [--old-requests 3] [--old-ref f8a0fc4] [--no-openbao]

"Today's code path" is keyroll itself at ``--old-ref`` (the commit before the journal work):
the bench extracts that commit's ``src/`` with ``git archive`` into a temporary folder and
runs the same measurements in a subprocess that imports it, on the same data. Nothing of the
old path is re-implemented, so it is exactly what users ran.

Both code versions' dashboards show the example inventory of ``--old-ref`` (18 classes, as
today's, whose new kinds the old code cannot parse).

How the data is made: ``--records`` chained journal records shaped like real ones (actions of
rotations, 34 secrets over 4 environments, fingerprints, small evidence), a few secrets with
versions and one rotation record. They are written **in bulk in each layout** (the SQLite
``audit`` table with one ``executemany``; OpenBao pages of 100 with one write each), not by
100,000 appends, which would take most of an hour on OpenBao. The old OpenBao layout (one KV
document per record, one write each) is filled with ``--old-records`` only: the old code reads
one document per record on every page, so a 100,000-record page would take minutes; its
figures are measured at ``--old-records`` and the table says so (it grows linearly: the bench
also measures the old path at 1,000 records to show it).

Measured, per store: how long after start the app is ready (the new code builds its journal
index in the background as the server starts; ``/healthz`` says ``journal_index: ready``);
every page ``--requests`` times after one cold request, p50 and p95; ``/`` and ``/metrics``
when each request follows a write by another client (a lock taken and released), so nothing
the new code keeps of the secrets' state holds (its cache follows the store's change markers);
the cost of one
append at 1,000 and at ``--records`` records (median of 100, the two stores in turns); the
full check (``keyroll audit verify --full``: `check_full`) of all records. Targets: pages and
``/metrics`` ≤ 100 ms p95 at 100,000 records, append flat (the ratio at 100,000 vs 1,000
≤ 1.5), full check on OpenBao < 30 s. Nothing is asserted; the last lines say which targets were met.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OLD_REF = "f8a0fc4"
GENESIS = "0" * 64
ENVIRONMENTS = ("dev", "ci", "staging", "prod")
ACTIONS = ("rotation.plan", "rotation.create", "rotation.apply", "rotation.test",
           "rotation.promote", "rotation.overlap", "rotation.retire", "hook.verify")
ROTATION_ID = "r-20261101-bench1"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


# --- data -------------------------------------------------------------------------------------


def _classes() -> list[str]:
    text = (ROOT / "src" / "keyroll" / "example_inventory.toml").read_text()
    return [line.split(".", 1)[1].rstrip("]\n") for line in text.splitlines()
            if line.startswith("[classes.") and line.count(".") == 1]


def make_entries(count: int, seed: int = 7) -> list[tuple[int, str, str, str]]:
    """``count`` chained records (seq, payload, prev_hash, hash), as `keyroll.audit` writes
    them (canonical JSON, sha256 chain); the last 40 belong to `ROTATION_ID`."""
    rng = random.Random(seed)
    classes = _classes()
    out = []
    prev = GENESIS
    for seq in range(1, count + 1):
        rotation = ROTATION_ID if seq > count - 40 else f"r-bench-{seq // 8:06d}"
        name = "jwt-access" if seq > count - 40 else rng.choice(classes)
        env = "prod" if seq > count - 40 else rng.choice(ENVIRONMENTS)
        doc = {
            "seq": seq, "time": (T0 + timedelta(seconds=seq)).isoformat(),
            "actor": rng.choice(("alice", "bob", "keyroll-rotator")),
            "action": ACTIONS[seq % len(ACTIONS)], "environment": env, "secret": name,
            "version": seq // 8 + 1, "fingerprints": [f"{rng.getrandbits(64):016x}"],
            "evidence": {"step": seq % 8, "hooks": [{"name": "reload", "exit": 0,
                                                    "output": "reloaded 3 pods"}]},
            "outcome": "ok", "rotation": rotation,
        }
        payload = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        digest = hashlib.sha256(f"{prev}\n{payload}".encode()).hexdigest()
        out.append((seq, payload, prev, digest))
        prev = digest
    return out


def seed_store(store: Any) -> None:
    """A few secrets with versions and labels, and the rotation record the pages show."""
    from keyroll.generate import generate
    from keyroll.model import Label, SecretRef
    from keyroll.rotation.record import RotationBody
    from keyroll.stores.base import RotationRecord

    for env in ("prod", "dev"):
        for name in ("jwt-access", "jwt-refresh", "field-encryption"):
            ref = SecretRef(env, name)
            store.put_version(ref, generate("base64-48"), created_at=T0)
            store.set_labels(ref, expected={}, new={Label.CURRENT: 1})
    body = RotationBody.parse({"kind": "jwt-signing", "requested_by": "bench"}).to_json()
    store.create_rotation(RotationRecord(ROTATION_ID, SecretRef("prod", "jwt-access"), "done",
                                         0, T0, T0 + timedelta(minutes=5), body))


# --- the worker: one code version (new or old) against one store --------------------------


PAGES = ("/", "/audit", "/api/audit", "/secrets/prod/jwt-access", f"/rotations/{ROTATION_ID}",
         "/metrics")


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def worker(args: argparse.Namespace) -> None:
    """Runs in a subprocess whose ``keyroll`` is the code version under test."""
    sys.path.insert(0, args.src)
    from fastapi.testclient import TestClient

    from keyroll.audit import Journal
    from keyroll.dashboard import create_app
    from keyroll.inventory import parse_inventory
    from keyroll.stores import open_store

    inventory = parse_inventory(Path(args.inventory).read_text())
    result: dict[str, Any] = {}
    if args.mode == "pages":
        started = time.perf_counter()
        app = create_app(lambda: open_store(args.url, base=Path(args.base), create=False),
                         inventory, clock=lambda: T0 + timedelta(days=30))
        # as `keyroll dashboard` and `keyroll serve` do before serving (old code too, so the
        # two differ only in keyroll's own code): startup objects out of the collector's way
        gc.collect()
        gc.freeze()
        with TestClient(app, base_url="http://localhost") as client:
            # the new code builds its journal index in the background at start, and /healthz
            # says when it is ready; the old code has no index (and no such field)
            for _ in range(72_000):  # bounded: two hours at 0.1 s
                health = client.get("/healthz").json()
                if health.get("journal_index", "ready") == "ready":
                    break
                time.sleep(0.1)
            result["ready"] = time.perf_counter() - started
            for page in PAGES:
                began = time.perf_counter()
                resp = client.get(page)
                cold = time.perf_counter() - began
                if resp.status_code != 200:
                    raise SystemExit(f"{page}: HTTP {resp.status_code}: {resp.text[:300]}")
                took = []
                for _ in range(args.requests):
                    began = time.perf_counter()
                    client.get(page)
                    took.append(time.perf_counter() - began)
                result[page] = {"cold": cold, "p50": _p(took, 0.5), "p95": _p(took, 0.95),
                                "n": len(took)}
            # every request after a write by another client (a lock taken and released: what
            # a rotation does), so nothing the new code cached of the secrets' state holds
            from keyroll.model import SecretRef

            ref = SecretRef("prod", "jwt-access")
            for page in ("/", "/metrics"):
                took.clear()
                for _ in range(max(3, args.requests // 3)):
                    with open_store(args.url, base=Path(args.base), create=False) as writer:
                        writer.acquire_lock(ref, "bench-writer", ttl=timedelta(seconds=30))
                        writer.release_lock(ref, "bench-writer")
                    began = time.perf_counter()
                    client.get(page)
                    took.append(time.perf_counter() - began)
                result[f"after write {page}"] = {"p50": _p(took, 0.5), "p95": _p(took, 0.95)}
    elif args.mode == "append":
        # the two stores in turns, so load on the machine falls on both alike
        urls = [args.url, args.url2]
        took: dict[str, list[float]] = {url: [] for url in urls}
        stores = [open_store(url, base=Path(args.base), create=False) for url in urls]
        try:
            journals = [Journal(store, actor="bench") for store in stores]
            for n in range(args.requests):
                for url, journal in zip(urls, journals, strict=True):
                    began = time.perf_counter()
                    journal.append("bench.append", evidence={"n": n})
                    took[url].append(time.perf_counter() - began)
        finally:
            for store in stores:
                store.close()
        result = {"small": _p(took[args.url], 0.5), "big": _p(took[args.url2], 0.5),
                  "n": args.requests}
    elif args.mode == "verify":
        with open_store(args.url, base=Path(args.base), create=False) as store:
            journal = Journal(store, actor="bench")
            began = time.perf_counter()
            try:
                from keyroll.audit_check import check_full
            except ImportError:  # the old code: its only check is the full walk
                report = journal.verify()
            else:
                report = check_full(journal).report
            result = {"seconds": time.perf_counter() - began, "ok": report.ok,
                      "count": report.count}
    print(json.dumps(result))


#: The inventory both code versions' dashboards show: the example of ``--old-ref`` (the
#: example today has kinds the old code cannot parse; both have 18 classes). Set by `main`.
INVENTORY: list[Path] = []


def run_worker(src: Path, mode: str, url: str, base: Path, requests: int,
               env: dict[str, str], url2: str = "") -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--src", str(src),
           "--mode", mode, "--url", url, "--url2", url2, "--base", str(base),
           "--requests", str(requests), "--inventory", str(INVENTORY[0])]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {mode} ({src}) failed:\n{done.stderr[-3000:]}")
    doc: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return doc


# --- filling the stores ---------------------------------------------------------------------


def sqlite_store(folder: Path, key: bytes, entries: list[tuple[int, str, str, str]]) -> str:
    """A local store with the seed and ``entries`` bulk-inserted into its ``audit`` table."""
    from keyroll.stores.sqlite import SQLiteStore

    folder.mkdir(parents=True)
    path = folder / "store.db"
    with SQLiteStore(path, key) as store:
        seed_store(store)
    with sqlite3.connect(path) as db:
        db.executemany("INSERT INTO audit VALUES (?,?,?,?)", entries)
    return f"sqlite:///{path}"


def openbao_store(addr: str, token: str, prefix: str, entries: list[tuple[int, str, str, str]],
                  *, old_layout: bool) -> str:
    """An OpenBao prefix with the seed and ``entries``: in pages (one write per 100), or in
    the old layout (one write per record, as the old code wrote them)."""
    from keyroll.stores.base import AuditEntry
    from keyroll.stores.openbao import OpenBaoStore

    url = f"openbao://{addr.removeprefix('http://')}/secret?prefix={prefix}"
    store = OpenBaoStore.from_url(url, environ={"BAO_TOKEN": token})
    try:
        seed_store(store)
        items = [AuditEntry(*e) for e in entries]
        if old_layout:
            kv: Any = store._kv
            for e in items:
                kv.write(f"{prefix}/_journal/{e.seq}", {"seq": e.seq, "payload": e.payload,
                                                        "prev_hash": e.prev_hash,
                                                        "hash": e.hash}, cas=0)
        else:
            store.journal_pages.bulk_load(items)
    finally:
        store.close()
    return url


def old_source(ref: str, into: Path) -> Path:
    """``src/`` of keyroll at ``ref`` (git archive), unpacked under ``into``."""
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
                          capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot extract keyroll at {ref} (git archive: "
                         f"{done.stderr.decode(errors='replace').strip()}): pass --old-ref")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


# --- the report -----------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def pages_table(title: str, new: dict[str, Any], old: dict[str, Any], empty: dict[str, Any],
                new_n: int, old_n: int) -> list[str]:
    lines = [f"\n{title}",
             f"new: ready (journal index built, /healthz journal_index=ready) {ms(new['ready'])} "
             f"after start; old: {ms(old['ready'])} (no index)",
             f"{'page':<30}{'new p50':>11}{'new p95':>11}{'new cold':>11}"
             f"{'old p50':>11}{'old p95':>11}{'p95, empty':>12}   records new/old"]
    for page in PAGES:
        a, b, c = new[page], old[page], empty[page]
        lines.append(f"{page[:30]:<30}{ms(a['p50']):>11}{ms(a['p95']):>11}{ms(a['cold']):>11}"
                     f"{ms(b['p50']):>11}{ms(b['p95']):>11}{ms(c['p95']):>12}   "
                     f"{new_n:,}/{old_n:,}")
    lines.append("after a write by another client (nothing cached holds): " + ", ".join(
        f"{p} p95 new {ms(new[f'after write {p}']['p95'])} / old {ms(old[f'after write {p}']['p95'])}"
        for p in ("/", "/metrics")))
    lines.append("(cold: the first request, after ready; p95, empty: the new code on the same "
                 "store with no journal at all: what the page costs besides the journal)")
    return lines


def _added(with_journal: dict[str, Any], without: dict[str, Any]) -> float:
    """The largest p95 difference a page shows between the full journal and none."""
    return max(0.0, *(with_journal[p]["p95"] - without[p]["p95"] for p in PAGES))


def _worst(pages: dict[str, Any]) -> float:
    return max(float(pages[p]["p95"]) for p in PAGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--old-records", type=int, default=5_000,
                        help="records in the old OpenBao layout (one document each)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--old-requests", type=int, default=3)
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--no-openbao", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--url2", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--inventory", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="keyroll-bench-journal-"))
    server = None
    try:
        new_src = ROOT / "src"
        old_src = old_source(args.old_ref, work / "old")
        INVENTORY.append(old_src / "keyroll" / "example_inventory.toml")
        key = secrets.token_bytes(32)
        env = {**os.environ, "KEYROLL_MASTER_KEY": __import__("base64").b64encode(key).decode()}
        env.pop("KEYROLL_STORE", None)
        print(f"making {args.records:,} journal records …", flush=True)
        entries = make_entries(args.records)
        small = make_entries(1_000)
        lines: list[str] = [f"journal benchmark: {args.records:,} records; old code = keyroll at "
                            f"{args.old_ref}; {args.requests} requests a page (old: "
                            f"{args.old_requests}) after one cold request; both show the "
                            f"example inventory of {args.old_ref}"]
        met: list[tuple[str, bool]] = []

        # --- local store ---
        print("local store: filling …", flush=True)
        big = sqlite_store(work / "big", key, entries)
        little = sqlite_store(work / "little", key, small)
        empty = sqlite_store(work / "empty", key, [])
        new_pages = run_worker(new_src, "pages", big, work, args.requests, env)
        old_pages = run_worker(old_src, "pages", big, work, args.old_requests, env)
        empty_pages = run_worker(new_src, "pages", empty, work, args.requests, env)
        lines += pages_table(f"local store (SQLite), {args.records:,} records", new_pages,
                             old_pages, empty_pages, args.records, args.records)
        worst = _worst(new_pages)
        met.append((f"local: every page and /metrics p95 ≤ 100 ms ({ms(worst)}; the most the "
                    f"journal adds: {ms(_added(new_pages, empty_pages))})", worst <= 0.1))
        print("local store: appends and full checks …", flush=True)
        rows = []
        append: dict[str, dict[str, float]] = {}
        for label, src in (("new", new_src), ("old", old_src)):
            cost = run_worker(src, "append", little, work, 100, env, url2=big)
            append[label] = cost
            rows.append(f"append ({label}) p50: {ms(cost['small'])} at 1,000, "
                        f"{ms(cost['big'])} at {args.records:,} "
                        f"(×{cost['big'] / cost['small']:.2f}; in turns, 100 each)")
        ratio = append["new"]["big"] / append["new"]["small"]
        met.append((f"local: append flat (×{ratio:.2f} at {args.records:,} vs 1,000)",
                    ratio <= 1.5))
        for label, src in (("new", new_src), ("old", old_src)):
            check = run_worker(src, "verify", big, work, 1, env)
            rows.append(f"full check ({label}) of {check['count']:,} records: "
                        f"{ms(check['seconds'])} (ok={check['ok']})")
        lines += ["", *rows]

        # --- OpenBao ---
        if not args.no_openbao:
            from tests.openbao_server import DevServer

            print("OpenBao: starting a dev server and filling …", flush=True)
            server = DevServer().start()
            env_bao = {**env, "BAO_TOKEN": server.token}
            began = time.perf_counter()
            paged = openbao_store(server.addr, server.token, "bench-pages", entries,
                                  old_layout=False)
            fill_pages = time.perf_counter() - began
            paged_small = openbao_store(server.addr, server.token, "bench-pages-1k", small,
                                        old_layout=False)
            old_entries = entries[:args.old_records]
            began = time.perf_counter()
            legacy = openbao_store(server.addr, server.token, "bench-old", old_entries,
                                   old_layout=True)
            fill_old = time.perf_counter() - began
            legacy_small = openbao_store(server.addr, server.token, "bench-old-1k", small,
                                         old_layout=True)
            empty_bao = openbao_store(server.addr, server.token, "bench-empty", [],
                                      old_layout=False)
            new_bao = run_worker(new_src, "pages", paged, work, args.requests, env_bao)
            empty_bao_pages = run_worker(new_src, "pages", empty_bao, work, args.requests,
                                         env_bao)
            old_bao = run_worker(old_src, "pages", legacy, work, args.old_requests, env_bao)
            old_bao_small = run_worker(old_src, "pages", legacy_small, work, args.old_requests,
                                       env_bao)
            lines += pages_table(f"OpenBao (dev server), new: {args.records:,} records in pages; "
                                 f"old: {args.old_records:,} records, one document each",
                                 new_bao, old_bao, empty_bao_pages, args.records,
                                 args.old_records)
            lines.append("old code at 1,000 records (to show it grows with the journal): " + ", ".join(
                f"{p} {ms(old_bao_small[p]['p50'])}" for p in PAGES))
            worst = _worst(new_bao)
            met.append((f"OpenBao: every page and /metrics p95 ≤ 100 ms ({ms(worst)}; the most "
                        f"the journal adds: {ms(_added(new_bao, empty_bao_pages))})",
                        worst <= 0.1))
            print("OpenBao: appends and full checks …", flush=True)
            rows = [f"filling: {args.records:,} records in pages took {ms(fill_pages)}; "
                    f"{args.old_records:,} in the old layout took {ms(fill_old)}"]
            for label, src, small_url, big_url, big_n in (
                    ("new", new_src, paged_small, paged, args.records),
                    ("old", old_src, legacy_small, legacy, args.old_records)):
                cost = run_worker(src, "append", small_url, work, 100, env_bao, url2=big_url)
                append[f"bao-{label}"] = cost
                rows.append(f"append ({label}) p50: {ms(cost['small'])} at 1,000, "
                            f"{ms(cost['big'])} at {big_n:,} "
                            f"(×{cost['big'] / cost['small']:.2f}; in turns, 100 each)")
            ratio = append["bao-new"]["big"] / append["bao-new"]["small"]
            met.append((f"OpenBao: append flat (×{ratio:.2f} at {args.records:,} vs 1,000)",
                        ratio <= 1.5))
            check = run_worker(new_src, "verify", paged, work, 1, env_bao)
            rows.append(f"full check (new) of {check['count']:,} records: "
                        f"{ms(check['seconds'])} (ok={check['ok']})")
            met.append((f"OpenBao: full check of {check['count']:,} records < 30 s "
                        f"({ms(check['seconds'])})", check["seconds"] < 30))
            old_check = run_worker(old_src, "verify", legacy, work, 1, env_bao)
            per = old_check["seconds"] / max(old_check["count"], 1)
            rows.append(f"full check (old) of {old_check['count']:,} records: "
                        f"{ms(old_check['seconds'])} (ok={old_check['ok']}; "
                        f"{per * 1000:.2f} ms a record, one read each)")
            lines += ["", *rows]

        lines.append("\ntargets:")
        lines += [f"  [{'met' if ok else 'NOT met'}] {what}" for what, ok in met]
        print("\n".join(lines))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
