"""``keyroll scan`` against detect-secrets on the same corpus: speed, recall, false positives.

    .venv/bin/python bench/scan.py [--mb 4] [--values 1000] [--skip-detect-secrets]
        [--old-ref main] [--git-commits N]

It builds a real local store holding ``--values`` versions (every kind of `tests.scan_corpus`
in every state, retired ones destroyed, plus current bulk values), writes a corpus of about
``--mb`` MB of text files (every spelling of each kind's versions and of 100 bulk values,
among random high-entropy non-secrets and look-alikes), then scans it:

- keyroll, store mode: digests of every version + the Aho–Corasick literal matcher
  (``ahocorasick-rs``; the redactor's trie regex without it);
- keyroll, baseline mode: digests only (no value, no store), as the pre-commit hook runs;
- each twice: candidates cut by the C cutter (``keyroll._cutter``, built with the package)
  and by the regular expressions it falls back to without it;
- the same two modes with keyroll as it is at ``--old-ref`` (default ``main``; ``git archive``
  of its ``src/``, its C cutter compiled from its ``_cutter.c``, imported by a subprocess, on
  the same store and files; ``--old-ref ''`` skips it): before and after, side by side;
- detect-secrets (``pip install detect-secrets``; the dev group has it), default plugins.

Recall counts planted lines on which the tool reported something; a false positive is a
reported line where nothing was planted. ``MB/s`` is wall-clock throughput, ``MB/s CPU`` per
second of the scanning process's CPU time (on a shared machine the wall clock also counts
other processes' turns): one process, one core. Nothing is asserted: numbers are for a person
to read.

``--git-commits N`` also times ``keyroll scan --git`` on a repository of N commits (each
rewriting a line of one of 50 files of about 4 kB, every 250th planting a value), built with
``git fast-import``: every blob of history scanned once.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

# keyroll as it was at --old-ref in the subprocess of _old_rows, else this checkout's
sys.path.insert(0, sys.argv[2] if sys.argv[1:2] == ["--old-worker"] else
                str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.scan_corpus import Planted, build_store, noise, plant_lines

import keyroll.recognise as recognise
from keyroll.model import utcnow
from keyroll.scan import Matcher, ScanIndex, export_baseline, load_baseline, scan_items
from keyroll.scan.sources import Item
from keyroll.stores import open_store

ROOT = Path(__file__).resolve().parents[1]
_CUTTER = getattr(recognise, "_cutter", None)


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


def _keyroll(index: ScanIndex, items: list[Item], cutter: object = None
             ) -> tuple[float, float, set[tuple[str, int]], str]:
    """One scan of ``items``; ``cutter``: the C cutter, or None for the regex cutter."""
    if hasattr(recognise, "_cutter"):
        recognise._cutter = cutter  # type: ignore[assignment]
    try:
        matcher = Matcher(index)
        started, cpu = time.perf_counter(), time.process_time()
        result = scan_items(matcher, items, sources=["bench"])
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        if hasattr(recognise, "_cutter"):
            recognise._cutter = _CUTTER  # type: ignore[assignment]
    return elapsed, cpu, {(f.path, f.line) for f in result.findings}, matcher.engine


def _items(corpus: Path) -> list[Item]:
    return [Item(n, (corpus / n).read_text()) for n in sorted(p.name for p in corpus.iterdir())]


def _old_source(ref: str, into: Path) -> Path:
    """``src/`` of keyroll at ``ref`` (git archive), unpacked under ``into``."""
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref, "src"],
                          capture_output=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"cannot extract keyroll at {ref} (git archive: "
                         f"{done.stderr.decode(errors='replace').strip()}): pass --old-ref")
    with tarfile.open(fileobj=BytesIO(done.stdout)) as tar:
        tar.extractall(into, filter="data")
    source = into / "src" / "keyroll" / "_cutter.c"
    if source.exists() and _CUTTER is not None:
        # its C cutter too (git holds the source, not the build), as hatch_build.py compiles
        # it: C against C
        name = "_cutter" + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
        compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        subprocess.run([*compiler, "-O2", "-shared", "-fPIC", "-I",
                        sysconfig.get_paths()["include"], str(source), "-o",
                        str(source.with_name(name))], check=True, timeout=300)
    return into / "src"


def _old_worker(store_url: str, baseline: str, corpus: str) -> None:
    """In the subprocess: both modes with the old keyroll on the same store and files."""
    items = _items(Path(corpus))
    with open_store(store_url) as store:
        index = ScanIndex.from_store(store)
    rows = {}
    for mode, which in (("store", index), ("baseline", load_baseline(Path(baseline)))):
        elapsed, cpu, reported, engine = _keyroll(which, items, _CUTTER)
        rows[mode] = [elapsed, cpu, sorted(reported), engine]
    print(json.dumps(rows))


def _old_rows(old_src: Path, store_url: str, baseline: Path, corpus: Path
              ) -> dict[str, tuple[float, float, set[tuple[str, int]], str]]:
    done = subprocess.run([sys.executable, __file__, "--old-worker", str(old_src), store_url,
                           str(baseline), str(corpus)], capture_output=True, text=True,
                          timeout=3600, check=False, env=os.environ.copy())
    if done.returncode != 0:
        raise SystemExit(f"the old keyroll failed: {done.stderr.strip()[-800:]}")
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return {mode: (row[0], row[1], {tuple(x) for x in row[2]}, row[3])  # type: ignore[misc]
            for mode, row in data.items()}


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
            baseline: ScanIndex, skip_detect_secrets: bool,
            old: dict[str, tuple[float, float, set[tuple[str, int]], str]] | None,
            old_ref: str) -> None:
    items = _items(corpus)
    names = [i.path for i in items]
    megabytes = sum(len(i.text.encode()) for i in items) / 1e6
    short = {(p.path, p.line) for p in planted if len(p.value.text) < 16}
    in_baseline = [p for p in planted if (p.path, p.line) not in short]
    rows = []
    for mode, which in (("store", index), ("baseline", baseline)):
        expected = planted if which is index else in_baseline
        runs = [("C cutter", _CUTTER), ("regex cutter", None)] if _CUTTER else [
            ("regex cutter, no C", None)]
        for how, cutter in runs:
            elapsed, cpu, reported, engine = _keyroll(which, items, cutter)
            recall, false = _score(reported, expected)
            rows.append((f"keyroll ({mode}) {how} [{engine}]", megabytes / elapsed,
                         megabytes / cpu, recall, false, len(expected)))
        if old is not None:
            elapsed, cpu, reported, engine = old[mode]
            recall, false = _score(reported, expected)
            rows.append((f"keyroll ({mode}) at {old_ref} [{engine}]", megabytes / elapsed,
                         megabytes / cpu, recall, false, len(expected)))
    if not skip_detect_secrets:
        elapsed, cpu, reported = _detect_secrets(corpus, names)
        recall, false = _score(reported, planted)
        rows.append(("detect-secrets 1.5 (default plugins)", megabytes / elapsed,
                     megabytes / cpu, recall, false, len(planted)))
    print(f"\ncorpus {title}: {megabytes:.1f} MB in {len(names)} files, "
          f"{len(planted)} planted lines")
    print(f"{'tool':<58} {'MB/s':>7} {'MB/s CPU':>9} {'recall':>7} {'false pos.':>11} "
          f"{'planted':>8}")
    for label, speed, cpu_speed, recall, false, total in rows:
        print(f"{label:<58} {speed:>7.2f} {cpu_speed:>9.2f} {recall:>7.1%} {false:>11} "
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
    if len(sys.argv) > 2 and sys.argv[1] == "--old-worker":
        _old_worker(*sys.argv[3:6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=4.0)
    parser.add_argument("--values", type=int, default=1000)
    parser.add_argument("--skip-detect-secrets", action="store_true")
    parser.add_argument("--old-ref", default="main",
                        help="also time keyroll at this git ref ('' to skip)")
    parser.add_argument("--git-commits", type=int, default=0,
                        help="also scan the history of a repository of this many commits")
    args = parser.parse_args()
    rng = random.Random(3)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; C cutter: "
          f"{'built' if _CUTTER else 'not built (regex cutter only)'}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["KEYROLL_MASTER_KEY"] = ""
        from keyroll.stores.masterkey import create_key_file

        create_key_file(root / "store" / "master.key")
        store_url = f"sqlite:{root / 'store' / 'store.db'}"
        with open_store(store_url) as store:
            values = build_store(store, extra=max(0, args.values - 28))
            index = ScanIndex.from_store(store)
            document, _ = export_baseline(store, utcnow())
        (root / "baseline.json").write_text(json.dumps(document))
        baseline = load_baseline(root / "baseline.json")
        old_src = _old_source(args.old_ref, root / "old") if args.old_ref else None
        print(f"{len(index)} known versions ({len(baseline)} in the baseline: values under 16 "
              "characters are left out of it)")
        for title, build in (("noise: random high-entropy tokens and look-alikes", _corpus),
                             ("code: this repository's sources", _code_corpus)):
            corpus = root / title.split(":")[0]
            corpus.mkdir()
            planted = build(corpus, values, args.mb, rng)
            old = (_old_rows(old_src, store_url, root / "baseline.json", corpus)
                   if old_src is not None else None)
            _report(title, corpus, planted, index, baseline, args.skip_detect_secrets, old,
                    args.old_ref)
        if args.git_commits:
            repo = root / "repo"
            versions = _git_repo(repo, values, args.git_commits, rng)
            _git_report(repo, versions, index, args.git_commits)


if __name__ == "__main__":
    main()
