"""Client tokens."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt


def mint_token(
    secret: str | bytes,
    user_id: str,
    tier: str | None = None,
    channels: Sequence[str] | None = None,
    ttl: int = 3600,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """An HS256 client JWT the server accepts for ``user_id``: claims ``sub``, ``iat``,
    ``exp`` (now + ``ttl`` s; the server refuses a lifetime over its
    ``jwt_max_lifetime_secs``, 7 days by default), ``tier`` (``free``, ``early``, ``mid``,
    ``enterprise``) and ``channels`` (exact names, ``*``, or prefixes ending ``:*``) when
    given, ``aud`` / ``iss`` when the server checks them. The same token as
    ``agentcast token --user U``."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + int(ttl)}
    if tier is not None:
        claims["tier"] = tier
    if channels is not None:
        claims["channels"] = list(channels)
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
