"""Bounded retries with exponential backoff and jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` attempts after the first; the n-th waits ``backoff * 2**n`` seconds capped
    at ``max_backoff``, half of it fixed and half random (so the waits are spread, and never
    shorter than half the nominal delay)."""

    retries: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0

    def delay(self, attempt: int) -> float:
        d = float(min(self.max_backoff, self.backoff * (2**attempt)))
        return d / 2 + random.uniform(0, d / 2)
