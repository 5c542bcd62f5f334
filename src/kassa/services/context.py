"""Who is acting, for which request: passed to every service call that changes state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kassa.domain.roles import Role, sees_only_own_orders

Clock = Callable[[], datetime]

SYSTEM_ACTOR = "system"
CLI_ACTOR = "cli"
STAFF_ACTOR = "dashboard"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RequestContext:
    actor_key_id: str
    role: Role
    request_id: str | None = None
    # A staff user (`usr_…`) acting through the dashboard: `actor_key_id` is then
    # STAFF_ACTOR, and the audit log records the user beside it.
    actor_user: str | None = None

    @classmethod
    def staff(cls, user_id: str, role: Role, request_id: str | None = None) -> RequestContext:
        """A signed-in staff user, acting with their role."""
        return cls(actor_key_id=STAFF_ACTOR, role=role, request_id=request_id, actor_user=user_id)

    @classmethod
    def system(cls, actor: str = SYSTEM_ACTOR) -> RequestContext:
        return cls(actor_key_id=actor, role=Role.ADMIN)

    def may_see(self, created_by_key: str | None) -> bool:
        """Whether this caller may see a customer, order or payment made by
        `created_by_key`: staff see everything, a storefront key only what it created
        (anything else is answered as if it did not exist)."""
        return not sees_only_own_orders(self.role) or created_by_key == self.actor_key_id
