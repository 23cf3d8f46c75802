"""Helpers shared by the runtime tests: rotate a secret in the store as the engine would."""

from __future__ import annotations

from keyroll.generate import generate
from keyroll.model import Label, SecretRef, SecretValue, Version
from keyroll.stores.base import Store


def put(store: Store, ref: SecretRef, value: SecretValue, label: Label) -> Version:
    """Store a version and move ``label`` onto it (nothing else moves)."""
    version = store.put_version(ref, value)
    store.set_labels(ref, expected={}, new={label: version.number})
    return version


def rotate(store: Store, ref: SecretRef, value: SecretValue) -> Version:
    """What the engine does: new version as pending, then promote."""
    labels = store.get_labels(ref)
    version = store.put_version(ref, value)
    store.set_labels(
        ref, expected={Label.PENDING: labels.get(Label.PENDING)}, new={Label.PENDING: version.number}
    )
    promote(store, ref)
    return version


def promote(store: Store, ref: SecretRef) -> None:
    """pending → current, current → previous (compare-and-set)."""
    labels = store.get_labels(ref)
    store.set_labels(
        ref,
        expected={
            Label.PENDING: labels[Label.PENDING],
            Label.CURRENT: labels.get(Label.CURRENT),
            Label.PREVIOUS: labels.get(Label.PREVIOUS),
        },
        new={
            Label.CURRENT: labels[Label.PENDING],
            Label.PREVIOUS: labels.get(Label.CURRENT),
            Label.PENDING: None,
        },
    )


def jwt_value() -> SecretValue:
    return generate("base64-48")


def field_value() -> SecretValue:
    return generate("key-32")
