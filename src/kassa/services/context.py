"""Who is acting, for which request: passed to every service call that changes state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kassa.domain.roles import Role, sees_only_own_orders

Clock = Callable[[], datetime]

SYSTEM_ACTOR = "system"
CLI_ACTOR = "cli"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RequestContext:
    actor_key_id: str
    role: Role
    request_id: str | None = None

    @classmethod
    def system(cls, actor: str = SYSTEM_ACTOR) -> RequestContext:
        return cls(actor_key_id=actor, role=Role.ADMIN)

    def may_see(self, created_by_key: str | None) -> bool:
        """Whether this caller may see a customer, order or payment made by
        `created_by_key`: staff see everything, a storefront key only what it created
        (anything else is answered as if it did not exist)."""
        return not sees_only_own_orders(self.role) or created_by_key == self.actor_key_id
