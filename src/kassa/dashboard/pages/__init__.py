"""The dashboard's pages, one module per area; each exports one APIRouter."""

from __future__ import annotations

from fastapi import APIRouter

from kassa.dashboard.pages.customers import router as customers
from kassa.dashboard.pages.documents import router as documents
from kassa.dashboard.pages.orders import router as orders
from kassa.dashboard.pages.payments import router as payments
from kassa.dashboard.pages.revenue import router as revenue
from kassa.dashboard.pages.session import router as session

ROUTERS: tuple[APIRouter, ...] = (session, orders, documents)
ROUTERS += (customers, payments, revenue)
