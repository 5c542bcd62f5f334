"""The mock gateway's outgoing events: Stripe-shaped, signed, delivered over HTTP.

The mock records an event in its own transaction (as a job, so it exists if and only if
the change it reports committed); the worker delivers it to kassa's
`/v1/webhooks/mock`, signed with the mock's webhook secret the way Stripe signs. A
delivery that does not get a 2xx is retried with backoff, like Stripe's.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy.orm import Session

from kassa.providers.stripe import signatures
from kassa.storage.outbox import RetryLater, enqueue

DELIVER_EVENT = "mock.deliver_event"

Transport = Callable[[str, bytes, dict[str, str]], int]


def emit(session: Session, kind: str, obj: dict[str, Any], now: datetime) -> None:
    """Record an event for delivery, inside the mock's own transaction."""
    event = {
        "id": "evt_mock_" + secrets.token_hex(10),
        "object": "event",
        "type": kind,
        "created": int(now.timestamp()),
        "livemode": False,
        "data": {"object": obj},
    }
    enqueue(session, DELIVER_EVENT, {"event": event}, now, max_attempts=15)


# One client for every delivery of this process (httpx clients are thread-safe): a client
# per POST built a fresh TLS context and connection pool each time, which cost more CPU
# than everything else a sandbox payment's event does, and never reused a connection.
@functools.cache
def _client() -> httpx.Client:
    return httpx.Client(timeout=10, trust_env=False)  # made on first use, not at import


def http_transport(url: str, body: bytes, headers: dict[str, str]) -> int:
    return _client().post(url, content=body, headers=headers).status_code


class EventDelivery:
    def __init__(
        self,
        secret: str,
        clock: Callable[[], datetime],
        *,
        url: Callable[[], str | None],
        transport: Transport = http_transport,
    ) -> None:
        self._secret = secret
        self._clock = clock
        self._url = url
        self.transport = transport

    def deliver(self, payload: dict[str, Any]) -> None:
        url = self._url()
        if not url:
            raise RetryLater("no URL to deliver mock events to (set KASSA_MOCK_WEBHOOK_URL)")
        body = json.dumps(payload["event"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Stripe-Signature": signatures.sign(body, self._secret, int(self._clock().timestamp())),
        }
        status = self.transport(url, body, headers)
        if not 200 <= status < 300:
            raise RuntimeError(f"delivery answered {status}")
