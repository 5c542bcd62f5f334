"""Who is acting, for which request: passed to every service call that changes state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from kassa.domain.roles import Role

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
    # The idempotency record this request runs under, if any (see services.idempotency).
    idempotency_pk: int | None = None

    @classmethod
    def system(cls, actor: str = SYSTEM_ACTOR) -> RequestContext:
        return cls(actor_key_id=actor, role=Role.ADMIN)
