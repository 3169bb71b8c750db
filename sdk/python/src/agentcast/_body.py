"""Publish bodies, exactly as the server takes them (docs/protocol.md, Publish API)."""

from __future__ import annotations

import uuid
from typing import Any

_FIELDS = (
    "user_id",
    "channel",
    "broadcast",
    "type",
    "run_id",
    "data",
    "priority",
    "idempotency_key",
    "ag_ui",
)


def new_key() -> str:
    """A fresh idempotency key."""
    return uuid.uuid4().hex


def publish_body(
    *,
    type: str | None = None,
    user_id: str | None = None,
    channel: str | None = None,
    broadcast: bool = False,
    data: Any = None,
    run_id: str | None = None,
    priority: str | None = None,
    idempotency_key: str | None = None,
    ag_ui: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of one publish. Only the members given are sent (the server decides what
    is valid: a missing target or type is its 400). An ``idempotency_key`` is always set:
    the caller's, or a fresh one, so that a retry never publishes twice."""
    body: dict[str, Any] = {}
    if user_id is not None:
        body["user_id"] = user_id
    if channel is not None:
        body["channel"] = channel
    if broadcast:
        body["broadcast"] = True
    if type is not None:
        body["type"] = type
    if run_id is not None:
        body["run_id"] = run_id
    if data is not None:
        body["data"] = data
    if priority is not None:
        body["priority"] = priority
    if ag_ui is not None:
        body["ag_ui"] = ag_ui
    body["idempotency_key"] = idempotency_key or new_key()
    return body


def item_body(item: dict[str, Any]) -> dict[str, Any]:
    """A batch item (a dict of :func:`publish_body`'s arguments) as a body with a key."""
    unknown = set(item) - set(_FIELDS)
    if unknown:
        raise TypeError(f"unknown publish fields: {sorted(unknown)}")
    return publish_body(**item)
