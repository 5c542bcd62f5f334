"""What the suite's clients do over HTTP, one step per operation, and what they created.

Every step is one unit of work for `harness.run_load`: it returns None on success, else a
short description of what went wrong. Each client thread has its own `httpx.Client`
(`harness.http_client`, the client every benchmark here uses). What the steps create is
noted in a `Ledger`, which the suite checks against the database at the end.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from harness import Op, OpFactory, http_client

from kassa.providers.stripe import signatures

CURRENCY = "EUR"
EMAIL = "bench@example.com"
# Unlimited stock (None): no order is ever refused, or short, for want of stock.
PRODUCTS = (("BENCH-MUG", 1250), ("BENCH-TEE", 2400), ("BENCH-CAP", 1800), ("BENCH-PIN", 300))
SUCCEEDS = "pm_card_visa"
THREE_D_SECURE = "pm_card_authenticationRequired"
# The sandbox's default webhook secret; servers are started with no other.
WEBHOOK_SECRET = "whsec_kassa_mock_sandbox"
EVENT_PREFIX = "evt_bench_"

Step = Callable[[httpx.Client], str | None]


@dataclass
class Ledger:
    """What the clients created (list.append is atomic: the threads share it)."""

    orders: list[str] = field(default_factory=list)
    paid_by_card: list[str] = field(default_factory=list)  # one sandbox charge each
    paid_by_event: list[str] = field(default_factory=list)  # paid by a bench-signed event
    events: list[str] = field(default_factory=list)
    ceiling_rows: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Intent:
    """A payment waiting at the sandbox: for the browser's confirm, or for an event."""

    order_id: str
    payment_id: str
    intent_id: str
    amount: int


def _problem(response: httpx.Response) -> str:
    return f"HTTP {response.status_code} {response.request.url.path}: {response.text[:200]}"


class Shop:
    """kassa at `base_url`, with an API key allowed to order, pay and confirm."""

    def __init__(self, base_url: str, secret: str, ledger: Ledger) -> None:
        self.base_url = base_url
        self.secret = secret
        self.ledger = ledger
        self._sent = 0

    def factory(self, step: Step) -> OpFactory:
        """Each client thread's own connection, running `step` once per unit of work."""

        @contextmanager
        def client() -> Iterator[Op]:
            headers = {"Authorization": f"Bearer {self.secret}"}
            with http_client(self.base_url, headers=headers) as http:
                yield lambda: step(http)

        return client

    def _sku(self) -> str:
        self._sent += 1  # a race here only changes which product an order gets
        return PRODUCTS[self._sent % len(PRODUCTS)][0]

    def _create(self, http: httpx.Client) -> tuple[str | None, str | None]:
        """POST /v1/orders with a fresh Idempotency-Key: (order id, None) or (None, why)."""
        line = {"sku": self._sku(), "quantity": 1}
        body = {"email": EMAIL, "currency": CURRENCY, "lines": [line]}
        response = http.post(
            "/v1/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if response.status_code != 201:
            return None, _problem(response)
        order_id = str(response.json()["id"])
        self.ledger.orders.append(order_id)
        return order_id, None

    def _pay(
        self, http: httpx.Client, order_id: str, method: str | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        body: dict[str, Any] = {"provider": "mock"}
        if method is not None:
            body["payment_method"] = method
        response = http.post(
            f"/v1/orders/{order_id}/payments",
            json=body,
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        if response.status_code != 201:
            return None, _problem(response)
        return response.json(), None

    # -- (a) an order

    def order(self, http: httpx.Client) -> str | None:
        _, problem = self._create(http)
        return problem

    # -- (b) create + pay with a card that succeeds

    def order_and_pay(self, http: httpx.Client) -> str | None:
        order_id, problem = self._create(http)
        if order_id is None:
            return problem
        payment, problem = self._pay(http, order_id, SUCCEEDS)
        if payment is None:
            return problem
        if payment["status"] != "succeeded":
            return f"payment {payment['id']} came back {payment['status']}"
        self.ledger.paid_by_card.append(order_id)
        return None

    # -- set-ups: payments waiting at the sandbox

    def waiting(self, out: deque[Intent], method: str | None) -> Step:
        """Create + pay that stops at the sandbox (3-D Secure asked for, or no payment
        method yet); the payment is put in `out`."""

        def step(http: httpx.Client) -> str | None:
            order_id, problem = self._create(http)
            if order_id is None:
                return problem
            payment, problem = self._pay(http, order_id, method)
            if payment is None:
                return problem
            if payment["status"] != "requires_action" or not payment["provider_payment_id"]:
                return f"payment {payment['id']} came back {payment['status']}"
            out.append(
                Intent(order_id, payment["id"], payment["provider_payment_id"], payment["amount"])
            )
            return None

        return step

    # -- (c) the browser completes 3-D Secure at the sandbox

    def confirm(self, feed: deque[Intent]) -> Step:
        def step(http: httpx.Client) -> str | None:
            intent = _take(feed)
            if intent is None:
                return "no intent left to confirm"
            response = http.post(
                f"/v1/providers/mock/intents/{intent.intent_id}/confirm",
                json={"payment_method": THREE_D_SECURE},
            )
            if response.status_code != 200:
                return _problem(response)
            if response.json()["status"] != "succeeded":
                return f"confirm of {intent.intent_id}: {response.json()['status']}"
            self.ledger.paid_by_card.append(intent.order_id)
            return None

        return step

    # -- (d) a signed sandbox event, acknowledged

    def deliver(self, feed: deque[Intent]) -> Step:
        def step(http: httpx.Client) -> str | None:
            intent = _take(feed)
            if intent is None:
                return "no payment left to report"
            event_id = f"{EVENT_PREFIX}{uuid.uuid4().hex}"
            body = event_body(event_id, intent)
            headers = {
                "Content-Type": "application/json",
                "Stripe-Signature": signatures.sign(body, WEBHOOK_SECRET, int(time.time())),
            }
            response = http.post("/v1/webhooks/mock", content=body, headers=headers)
            if response.status_code != 200:
                return _problem(response)
            if response.json() != {"received": True, "duplicate": False}:
                return f"unexpected acknowledgement {response.text[:200]}"
            self.ledger.events.append(event_id)
            self.ledger.paid_by_event.append(intent.order_id)
            return None

        return step


def _take(feed: deque[Intent]) -> Intent | None:
    try:
        return feed.popleft()  # atomic: each item goes to one client
    except IndexError:
        return None


def event_body(event_id: str, intent: Intent) -> bytes:
    """A Stripe-shaped `payment_intent.succeeded` for one sandbox payment, as the sandbox
    itself would send it."""
    amount = intent.amount
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": "payment_intent.succeeded",
            "created": int(time.time()),
            "livemode": False,
            "data": {
                "object": {
                    "id": intent.intent_id,
                    "object": "payment_intent",
                    "amount": amount,
                    "amount_received": amount,
                    "currency": CURRENCY.lower(),
                    "status": "succeeded",
                    "metadata": {
                        "kassa_payment": intent.payment_id,
                        "kassa_order": intent.order_id,
                    },
                }
            },
        },
        separators=(",", ":"),
    ).encode()


def ceiling_factory(base_url: str, ledger: Ledger) -> OpFactory:
    """The ceiling's clients: the same client, the same kind of body as an order."""

    @contextmanager
    def client() -> Iterator[Op]:
        with http_client(base_url) as http:

            def step() -> str | None:
                body = {
                    "email": EMAIL,
                    "currency": CURRENCY,
                    "lines": [{"sku": PRODUCTS[0][0], "quantity": 1}],
                }
                response = http.post("/orders", json=body)
                if response.status_code != 201:
                    return _problem(response)
                ledger.ceiling_rows.append(int(response.json()["id"]))
                return None

            yield step

    return client
