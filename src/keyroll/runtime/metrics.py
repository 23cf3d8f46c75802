"""Per-kid key use as Prometheus metrics, when ``prometheus-client`` is installed.

A key source registered with `track` is exported by one collector (registered once, in the
default registry unless `collector` is given another) as::

    keyroll_key_uses_total{ring="file:/etc/keys:JWT_SECRET",kid="1a2b3c4d"} 42
    keyroll_key_last_used_timestamp_seconds{ring="…",kid="1a2b3c4d"} 1.7e9

Kids are random ids (or a MAC of the value keyed by itself, see `keysource`): they reveal
nothing about a key. The engine's usage-aware overlap reads them from a scrape
(``overlap.usage_from``; `parse_usage`). Without ``prometheus-client`` `track` does nothing:
the counters are still kept in `KeySource.usage`. Sources are held weakly.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from keyroll.model import format_kid, parse_kid
from keyroll.runtime.usage import KidUsage

if TYPE_CHECKING:
    from keyroll.runtime.keysource import KeySource

__all__ = ["USES", "collector", "parse_usage", "track"]

#: the counter's name as scraped (prometheus-client adds ``_total`` to counters)
USES = "keyroll_key_uses_total"
_LAST = "keyroll_key_last_used_timestamp_seconds"

_sources: weakref.WeakSet[KeySource] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


class _Collector:
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        uses = CounterMetricFamily("keyroll_key_uses", "Successful verifications or "
                                   "decryptions, per key ring and kid", labels=["ring", "kid"])
        last = GaugeMetricFamily(_LAST, "When a kid was last used (Unix seconds)",
                                 labels=["ring", "kid"])
        for source in list(_sources):
            for kid, use in sorted(source.usage.snapshot().items()):
                labels = [source.name, format_kid(kid)]
                uses.add_metric(labels, use.count)
                if use.last_seen is not None:
                    last.add_metric(labels, use.last_seen.timestamp())
        yield uses
        yield last

    def describe(self) -> Iterator[Any]:
        return iter(())


_COLLECTOR = _Collector()


def collector() -> _Collector:
    """The collector, to register in a registry of your own (``registry.register(...)``)."""
    return _COLLECTOR


def track(source: KeySource) -> bool:
    """Export ``source``'s usage; False when ``prometheus-client`` is not installed."""
    global _registered
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return False
    with _lock:
        _sources.add(source)
        if not _registered:
            REGISTRY.register(_COLLECTOR)
            _registered = True
    return True


def parse_usage(text: str) -> dict[int, KidUsage]:
    """Per-kid usage from a Prometheus text exposition (summed over rings and instances).

    Lines that are not keyroll's metrics, or malformed, are skipped.
    """
    counts: dict[int, int] = {}
    seen: dict[int, float] = {}
    for line in text.splitlines():
        if not line.startswith(("keyroll_key_uses_total{", f"{_LAST}{{")):
            continue
        name, _, rest = line.partition("{")
        labels, _, value = rest.rpartition("}")
        kid_text = next((part.split("=", 1)[1].strip('"') for part in labels.split(",")
                         if part.strip().startswith("kid=")), None)
        try:
            kid = parse_kid(kid_text or "")
            number = float(value.split()[0])
        except (ValueError, IndexError):
            continue
        if name == "keyroll_key_uses_total":
            counts[kid] = counts.get(kid, 0) + int(number)
        else:
            seen[kid] = max(seen.get(kid, 0.0), number)
    return {
        kid: KidUsage(count=counts.get(kid, 0),
                      last_seen=datetime.fromtimestamp(seen[kid], timezone.utc) if kid in seen else None)
        for kid in set(counts) | set(seen)
    }
