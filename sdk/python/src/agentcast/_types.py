"""Receipts and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Receipt:
    """A publish's receipt: the event's ``seq`` (``None`` for channel and broadcast events)
    and how many connections it was queued to."""

    seq: int | None
    connections: int

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Receipt:
        return cls(seq=v.get("seq"), connections=int(v.get("connections", 0)))


@dataclass(frozen=True)
class BatchItemError:
    """One batch item the server refused (the rest of the batch is unaffected)."""

    reason: str


@dataclass(frozen=True)
class Event:
    """One event as delivered to a client (WebSocket frame or SSE ``data:``).

    ``raw`` is the whole JSON object; the attributes are its common members. A ``gap``
    (events no longer held) is an Event of type ``gap`` with ``raw["from"]`` and ``raw["to"]``.
    """

    type: str
    raw: dict[str, Any] = field(repr=False)
    seq: int | None = None
    run_id: str | None = None
    channel: str | None = None
    priority: str | None = None
    ts: str | None = None
    data: Any = None
    meta: dict[str, Any] | None = None
    seq_from: int | None = None

    @classmethod
    def from_json(cls, v: dict[str, Any]) -> Event:
        return cls(
            type=v.get("type", ""),
            raw=v,
            seq=v.get("seq"),
            run_id=v.get("run_id"),
            channel=v.get("channel"),
            priority=v.get("priority"),
            ts=v.get("ts"),
            data=v.get("data"),
            meta=v.get("meta"),
            seq_from=v.get("seq_from"),
        )

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)


@dataclass(frozen=True)
class StreamSummary:
    """The end of a streaming publish: how many lines were published and failed, over every
    connection the stream used (a reconnect resends what was not answered)."""

    published: int
    failed: int
    connections: int
