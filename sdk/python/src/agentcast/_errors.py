"""Typed errors: one class per status the server answers, all under AgentcastError."""

from __future__ import annotations

import json
from typing import Any


class AgentcastError(Exception):
    """A refusal from the server (or a failure to reach it).

    ``status`` is the HTTP status (``None`` when the server could not be reached), ``reason``
    the server's JSON error text (``{"error": "..."}``), or the status phrase when the answer
    had no body (431 from hyper).
    """

    status: int | None = None

    def __init__(self, reason: str, status: int | None = None) -> None:
        if status is not None:
            self.status = status
        self.reason = reason
        super().__init__(f"{self.status}: {reason}" if self.status is not None else reason)


class BadRequest(AgentcastError):
    """400: malformed JSON, a missing, mistyped or duplicate field (the reason names it)."""

    status = 400


class Unauthorized(AgentcastError):
    """401: a wrong API key, or a client token the server refuses."""

    status = 401


class Forbidden(AgentcastError):
    """403: a channel the token does not grant (SSE), or a dev route from a non-loopback host."""

    status = 403


class NotFound(AgentcastError):
    """404: no such route."""

    status = 404


class MethodNotAllowed(AgentcastError):
    """405: a known route with the wrong method."""

    status = 405


class RequestTimeout(AgentcastError):
    """408: the request body did not arrive within the server's handshake timeout."""

    status = 408


class Conflict(AgentcastError):
    """409: an idempotency key reused with a different request."""

    status = 409


class PayloadTooLarge(AgentcastError):
    """413: a body over max_body_bytes, or a batch over max_batch_items."""

    status = 413


class UnsupportedMediaType(AgentcastError):
    """415: a streaming publish with a Content-Type that is not NDJSON."""

    status = 415


class UpgradeRequired(AgentcastError):
    """426: a WebSocket version other than 13."""

    status = 426


class RateLimited(AgentcastError):
    """429: the user already holds its tier's connections_per_user."""

    status = 429


class RequestHeaderFieldsTooLarge(AgentcastError):
    """431: a request head over limits.max_request_head_bytes (16 KiB)."""

    status = 431


class Unavailable(AgentcastError):
    """503: the server is starting, shutting down, failed or overloaded (retried by the SDK)."""

    status = 503


class ConnectionFailed(AgentcastError):
    """The server could not be reached (after the configured retries)."""

    status = None


_BY_STATUS: dict[int, type[AgentcastError]] = {
    c.status: c  # type: ignore[misc,unused-ignore]
    for c in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        RequestTimeout,
        Conflict,
        PayloadTooLarge,
        UnsupportedMediaType,
        UpgradeRequired,
        RateLimited,
        RequestHeaderFieldsTooLarge,
        Unavailable,
    )
}

_PHRASES = {431: "Request Header Fields Too Large"}


def reason_of(body: bytes | str) -> str:
    """The server's error text from a JSON body ``{"error": "..."}``, else the body itself."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        v: Any = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(v, dict) and isinstance(v.get("error"), str):
        return str(v["error"])
    return text.strip()


def error_for(status: int, body: bytes | str = b"") -> AgentcastError:
    """The typed error for an answer with ``status`` and ``body``."""
    reason = reason_of(body) or _PHRASES.get(status, f"HTTP {status}")
    cls = _BY_STATUS.get(status)
    if cls is None:
        return AgentcastError(reason, status)
    return cls(reason)


def from_response(response: Any) -> AgentcastError:
    """The typed error for an ``httpx.Response`` (read)."""
    return error_for(response.status_code, response.content)
