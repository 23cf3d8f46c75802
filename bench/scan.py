"""``keyroll scan`` against detect-secrets on the same corpus: speed, recall, false positives.

    .venv/bin/python bench/scan.py [--mb 4] [--values 1000] [--skip-detect-secrets]

It builds a real local store holding ``--values`` versions (every kind of `tests.scan_corpus`
in every state, retired ones destroyed, plus current bulk values), writes a corpus of about
``--mb`` MB of text files (every spelling of each kind's versions and of 100 bulk values,
among random high-entropy non-secrets and look-alikes), then scans it:

- keyroll, store mode: digests of every version + the Aho–Corasick literal matcher
  (``ahocorasick-rs``; the redactor's trie regex without it);
- keyroll, baseline mode: digests only (no value, no store), as the pre-commit hook runs;
- detect-secrets (``pip install detect-secrets``; the dev group has it), default plugins.

Recall counts planted lines on which the tool reported something; a false positive is a
reported line where nothing was planted. ``MB/s`` is wall-clock throughput, ``MB/s CPU`` per
second of this process's CPU time (on a shared machine the wall clock also counts other
processes' turns). Nothing is asserted: numbers are for a person to read.

``--git-commits N`` also times ``keyroll scan --git`` on a repository of N commits (each
rewriting a line of one of 50 files of about 4 kB, every 250th planting a value), built with
``git fast-import``: every blob of history scanned once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.scan_corpus import Planted, build_store, noise, plant_lines

from keyroll.model import utcnow
from keyroll.scan import Matcher, ScanIndex, export_baseline, load_baseline, scan_items
from keyroll.scan.sources import Item
from keyroll.stores import open_store


def _code_corpus(folder: Path, values: list, mb: float, rng: random.Random) -> list[Planted]:
    """This repository's own Python sources, repeated to about ``mb`` MB, each copy with
    every spelling of a few values planted among its lines."""
    root = Path(__file__).resolve().parents[1]
    sources = [p.read_text() for p in sorted((root / "src").rglob("*.py"))]
    planted: list[Planted] = []
    size = number = 0
    kinds = [v for v in values if not v.name.startswith("bulk-")]
    while size < mb * 1024 * 1024:
        name = f"code-{number}.py"
        code = "\n".join(sources[number % len(sources):] + sources[:number % len(sources)])
        lines = code.splitlines()
        value = kinds[number % len(kinds)]
        planted_lines, where = plant_lines([value], name, rng, noise_lines=0)
        cut = rng.randrange(len(lines))
        shift = cut
        lines[cut:cut] = planted_lines
        planted += [Planted(p.path, p.line + shift, p.value, p.form) for p in where]
        text = "\n".join(lines) + "\n"
        (folder / name).write_text(text)
        size += len(text)
        number += 1
    return planted


def _corpus(folder: Path, values: list, mb: float, rng: random.Random) -> list[Planted]:
    kinds = [v for v in values if not v.name.startswith("bulk-")]
    bulk = [v for v in values if v.name.startswith("bulk-")][:100]
    planted: list[Planted] = []
    target = int(mb * 1024 * 1024)
    size = 0
    for number, group in enumerate([kinds, bulk]):
        lines, where = plant_lines(group, f"planted-{number}.txt", rng, noise_lines=4000)
        text = "\n".join(lines) + "\n"
        (folder / f"planted-{number}.txt").write_text(text)
        planted += where
        size += len(text)
    filler = noise(rng, kinds)
    number = 0
    while size < target:
        text = "\n".join(next(filler) for _ in range(20_000)) + "\n"
        (folder / f"noise-{number}.log").write_text(text)
        size += len(text)
        number += 1
    return planted


def _score(reported: set[tuple[str, int]], planted: list[Planted]) -> tuple[float, int]:
    expected = {(p.path, p.line) for p in planted}
    return len(reported & expected) / len(expected), len(reported - expected)


def _keyroll(index: ScanIndex, items: list[Item]) -> tuple[float, float, set[tuple[str, int]], str]:
    matcher = Matcher(index)
    started, cpu = time.perf_counter(), time.process_time()
    result = scan_items(matcher, items, sources=["bench"])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    return elapsed, cpu, {(f.path, f.line) for f in result.findings}, matcher.engine


def _detect_secrets(folder: Path, names: list[str]) -> tuple[float, float, set[tuple[str, int]]]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection()
    started, cpu = time.perf_counter(), time.process_time()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        with default_settings():
            for name in names:
                collection.scan_file(name)
    finally:
        os.chdir(cwd)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    reported = {(name, secret.line_number) for name, secret in collection}
    return elapsed, cpu, reported


def _report(title: str, corpus: Path, planted: list[Planted], index: ScanIndex,
            baseline: ScanIndex, skip_detect_secrets: bool) -> None:
    names = sorted(p.name for p in corpus.iterdir())
    items = [Item(n, (corpus / n).read_text()) for n in names]
    megabytes = sum(len(i.text.encode()) for i in items) / 1e6
    short = {(p.path, p.line) for p in planted if len(p.value.text) < 16}
    rows = []
    for label, which in (("keyroll scan (store)", index), ("keyroll scan (baseline)", baseline)):
        elapsed, cpu, reported, engine = _keyroll(which, items)
        expected = planted if which is index else [p for p in planted
                                                   if (p.path, p.line) not in short]
        recall, false = _score(reported, expected)
        rows.append((f"{label} [{engine}]", megabytes / elapsed, megabytes / cpu, recall, false,
                     len(expected)))
    if not skip_detect_secrets:
        elapsed, cpu, reported = _detect_secrets(corpus, names)
        recall, false = _score(reported, planted)
        rows.append(("detect-secrets 1.5 (default plugins)", megabytes / elapsed,
                     megabytes / cpu, recall, false, len(planted)))
    print(f"\ncorpus {title}: {megabytes:.1f} MB in {len(names)} files, "
          f"{len(planted)} planted lines")
    print(f"{'tool':<46} {'MB/s':>7} {'MB/s CPU':>9} {'recall':>7} {'false pos.':>11} "
          f"{'planted':>8}")
    for label, speed, cpu_speed, recall, false, total in rows:
        print(f"{label:<46} {speed:>7.2f} {cpu_speed:>9.2f} {recall:>7.1%} {false:>11} "
              f"{total:>8}")


def _git_repo(repo: Path, values: list, commits: int, rng: random.Random) -> set[tuple[str, int]]:
    """A repository of ``commits`` commits through ``git fast-import``: 50 files of about 4 kB,
    each commit rewriting one line of one of them; every 250th commit plants a value's raw
    spelling. Returns the versions planted, as (class, version)."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    filler = noise(rng, [])
    files = [[next(filler) for _ in range(60)] for _ in range(50)]
    kinds = [v for v in values if "\n" not in v.text and " " not in v.text]
    planted: set[tuple[str, int]] = set()
    chunks: list[bytes] = []
    for number in range(commits):
        lines = files[number % len(files)]
        if number % 250 == 0:
            value = kinds[(number // 250) % len(kinds)]
            lines[rng.randrange(len(lines))] = f"API_TOKEN = {value.text}"
            planted.add((value.name, value.version))
        else:
            lines[rng.randrange(len(lines))] = next(filler)
        body = ("\n".join(lines) + "\n").encode()
        message = f"change {number}".encode()
        chunks += [b"commit refs/heads/main\n",
                   f"committer t <t@example.invalid> {1_700_000_000 + number} +0000\n".encode(),
                   b"data %d\n%s\n" % (len(message), message),
                   b"M 100644 inline src/module_%02d.py\n" % (number % len(files)),
                   b"data %d\n%s\n" % (len(body), body)]
    subprocess.run(["git", "-C", str(repo), "fast-import", "--quiet"], input=b"".join(chunks),
                   check=True)
    return planted


def _git_report(repo: Path, planted: set[tuple[str, int]], index: ScanIndex, commits: int) -> None:
    from keyroll.scan.sources import Skipped, git_history

    matcher = Matcher(index)
    started, cpu = time.perf_counter(), time.process_time()
    items = list(git_history(repo, since=None, skipped=Skipped()))
    read = time.perf_counter() - started
    result = scan_items(matcher, items, sources=["git"])
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    megabytes = sum(len(i.text) for i in items) / 1e6
    found = {(f.entry.name, f.entry.version) for f in result.findings}
    print(f"\ngit history: {commits} commits, {len(items)} blobs, {megabytes:.1f} MB: "
          f"keyroll scan --git [{matcher.engine}] {elapsed:.1f} s wall ({read:.1f} s reading "
          f"the blobs through git), {cpu:.1f} s CPU in keyroll; planted versions found: "
          f"{len(found & planted)}/{len(planted)}, others reported: {len(found - planted)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--values", type=int, default=1000)
    parser.add_argument("--skip-detect-secrets", action="store_true")
    parser.add_argument("--git-commits", type=int, default=0,
                        help="also scan the history of a repository of this many commits")
    args = parser.parse_args()
    rng = random.Random(3)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["KEYROLL_MASTER_KEY"] = ""
        from keyroll.stores.masterkey import create_key_file

        create_key_file(root / "store" / "master.key")
        with open_store(f"sqlite:{root / 'store' / 'store.db'}") as store:
            values = build_store(store, extra=max(0, args.values - 28))
            index = ScanIndex.from_store(store)
            document, _ = export_baseline(store, utcnow())
        (root / "baseline.json").write_text(json.dumps(document))
        baseline = load_baseline(root / "baseline.json")
        print(f"{len(index)} known versions ({len(baseline)} in the baseline: values under 16 "
              "characters are left out of it)")
        for title, build in (("noise: random high-entropy tokens and look-alikes", _corpus),
                             ("code: this repository's sources", _code_corpus)):
            corpus = root / title.split(":")[0]
            corpus.mkdir()
            planted = build(corpus, values, args.mb, rng)
            _report(title, corpus, planted, index, baseline, args.skip_detect_secrets)
        if args.git_commits:
            repo = root / "repo"
            versions = _git_repo(repo, values, args.git_commits, rng)
            _git_report(repo, versions, index, args.git_commits)


if __name__ == "__main__":
    main()
