"""agentcast: the Python client of the agentcast event server.

Publish agent events (``Agentcast`` / ``AsyncAgentcast``), emit a run's events
(``client.run(user, run)``), stream an answer token by token (``run.message()``), mint
client tokens (``mint_token``) and consume a user's events (``AsyncAgentcast.subscribe``).
"""

from ._client import Agentcast, AsyncAgentcast, BatchResult
from ._errors import (
    AgentcastError,
    BadRequest,
    Conflict,
    ConnectionFailed,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestHeaderFieldsTooLarge,
    RequestTimeout,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    UpgradeRequired,
    error_for,
    from_response,
)
from ._retry import RetryPolicy
from ._run import AsyncMessage, AsyncRun, Message, PublishStream, Run
from ._stream import AsyncPublishStream
from ._subscribe import Subscription
from ._token import mint_token
from ._types import BatchItemError, Event, Receipt, StreamSummary

__version__ = "0.1.0"

__all__ = [
    "Agentcast",
    "AgentcastError",
    "AsyncAgentcast",
    "AsyncMessage",
    "AsyncPublishStream",
    "AsyncRun",
    "BadRequest",
    "BatchItemError",
    "BatchResult",
    "Conflict",
    "ConnectionFailed",
    "Event",
    "Forbidden",
    "Message",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PublishStream",
    "RateLimited",
    "Receipt",
    "RequestHeaderFieldsTooLarge",
    "RequestTimeout",
    "RetryPolicy",
    "Run",
    "StreamSummary",
    "Subscription",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "UpgradeRequired",
    "error_for",
    "from_response",
    "mint_token",
]
