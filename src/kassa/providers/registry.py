"""Which gateways this kassa has, and which of them take payments.

A gateway can be *configured* (kassa can talk to it: refunds of its old payments, a
payment left processing, reconciliation) without being *enabled* for new payments:
`KASSA_PROVIDERS` names the enabled ones, so the sandbox never takes payments in a
Stripe deployment unless it is named.
"""

from __future__ import annotations

from collections.abc import Iterable

from kassa.domain.errors import FieldProblem, invalid
from kassa.providers.base import PaymentProvider


class ProviderRegistry:
    def __init__(
        self,
        providers: dict[str, PaymentProvider],
        default: str,
        enabled: Iterable[str] | None = None,
    ) -> None:
        self._providers = providers
        self.default = default
        # Every name that takes payments, "wallet" included (it is not a gateway).
        self.enabled: frozenset[str] = frozenset(providers if enabled is None else enabled)

    @property
    def names(self) -> list[str]:
        """The enabled gateways, sorted."""
        return sorted(n for n in self._providers if n in self.enabled)

    def is_enabled(self, name: str) -> bool:
        return name in self.enabled

    def require_enabled(self, name: str | None) -> str:
        """The provider a new payment or top-up goes to; 422 `provider_not_enabled`."""
        chosen = name or self.default
        if chosen not in self.enabled:
            raise invalid(
                "provider_not_enabled",
                f"provider {chosen!r} does not take payments here"
                f" (enabled: {', '.join(sorted(self.enabled))})",
                FieldProblem(("body", "provider"), "not an enabled provider"),
            )
        return chosen

    def get(self, name: str | None) -> PaymentProvider:
        """The gateway for a new payment: it must be enabled."""
        chosen = self.require_enabled(name)
        provider = self._providers.get(chosen)
        if provider is None:
            raise invalid(
                "provider_not_enabled",
                f"{chosen!r} is not a payment gateway",
                FieldProblem(("body", "provider"), "not a gateway"),
            )
        return provider

    def existing(self, name: str) -> PaymentProvider:
        """The gateway that took an existing payment (refunds, resumes, checks), enabled
        for new payments or not; KeyError when kassa has no such gateway at all."""
        return self._providers[name]
