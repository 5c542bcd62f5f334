"""Cursor pagination, as the services and the API see it (it lives in storage)."""

from __future__ import annotations

from kassa.storage.pagination import ANY_TIME as ANY_TIME
from kassa.storage.pagination import CreatedRange as CreatedRange
from kassa.storage.pagination import Page as Page
from kassa.storage.pagination import paginate as paginate
