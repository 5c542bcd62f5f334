"""Which gateways this kassa has, built from its settings."""

from __future__ import annotations

from kassa.config import Settings
from kassa.domain.errors import FieldProblem, invalid
from kassa.providers.base import PaymentProvider


class ProviderRegistry:
    def __init__(self, providers: dict[str, PaymentProvider], default: str) -> None:
        self._providers = providers
        self.default = default

    @property
    def names(self) -> list[str]:
        return sorted(self._providers)

    def get(self, name: str | None) -> PaymentProvider:
        chosen = name or self.default
        provider = self._providers.get(chosen)
        if provider is None:
            raise invalid(
                "unknown_provider",
                f"provider {chosen!r} is not configured here (have: {', '.join(self.names)})",
                FieldProblem(("body", "provider"), "not a configured provider"),
            )
        return provider


def stripe_from(settings: Settings) -> PaymentProvider | None:
    if not settings.stripe_secret_key:
        return None
    from kassa.providers.stripe_gateway import StripeGateway

    return StripeGateway(
        settings.stripe_secret_key,
        api_base=settings.stripe_api_base,
        timeout_s=settings.stripe_timeout_s,
    )
