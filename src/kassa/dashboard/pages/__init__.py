"""The dashboard's pages, one module per area; each exports one APIRouter."""

from __future__ import annotations

from fastapi import APIRouter

from kassa.dashboard.pages.audit import router as audit
from kassa.dashboard.pages.customers import router as customers
from kassa.dashboard.pages.documents import router as documents
from kassa.dashboard.pages.exports import router as exports
from kassa.dashboard.pages.findings import router as findings
from kassa.dashboard.pages.keys import router as keys
from kassa.dashboard.pages.orders import router as orders
from kassa.dashboard.pages.payments import router as payments
from kassa.dashboard.pages.revenue import router as revenue
from kassa.dashboard.pages.session import router as session
from kassa.dashboard.pages.users import router as users
from kassa.dashboard.pages.webhooks import router as webhooks

ROUTERS: tuple[APIRouter, ...] = (session, orders, documents)
ROUTERS += (customers, payments, revenue)
# the operations pages: findings, webhooks, exports, audit log, API keys, users
ROUTERS += (findings, webhooks, exports, audit, keys, users)
