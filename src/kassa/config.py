"""Configuration, read once from the environment (`KASSA_*`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SQLITE_FILE = "kassa.db"


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


def _optional_int(env: dict[str, str], name: str) -> int | None:
    return _int(env, name, 0) if env.get(name) else None


def _lines(raw: str | None) -> tuple[str, ...]:
    """An address as one variable: lines separated by `|` or newlines."""
    text = (raw or "").replace("\n", "|")
    return tuple(part.strip() for part in text.split("|") if part.strip())


def _secrets(raw: str | None) -> tuple[str, ...]:
    return tuple(s.strip() for s in (raw or "").split(",") if s.strip())


# Every provider kassa can take payments through; `wallet` is the customers' own credit.
KNOWN_PROVIDERS = ("stripe", "mock", "wallet")


def _providers(raw: str | None, stripe_configured: bool) -> tuple[str, ...]:
    """KASSA_PROVIDERS: the providers that take payments. The sandbox runs beside Stripe
    only when named, so a Stripe shop never takes sandbox "payments" by accident."""
    if not (raw or "").strip():
        return ("stripe", "wallet") if stripe_configured else ("mock", "wallet")
    names = tuple(dict.fromkeys(n.strip().lower() for n in (raw or "").split(",") if n.strip()))
    unknown = [n for n in names if n not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(
            f"KASSA_PROVIDERS names unknown provider(s) {', '.join(unknown)}"
            f" (known: {', '.join(KNOWN_PROVIDERS)})"
        )
    if "stripe" in names and not stripe_configured:
        raise ValueError("KASSA_PROVIDERS names stripe but KASSA_STRIPE_SECRET_KEY is not set")
    return names


@dataclass(frozen=True)
class Settings:
    database_url: str
    reservation_ttl_s: int = 30 * 60
    idempotency_retention_s: int = 48 * 3600
    # A key still "in progress" after this long is taken to belong to a dead process.
    idempotency_lock_timeout_s: int = 60
    reservation_sweep_interval_s: int = 30
    # payments
    stripe_secret_key: str | None = None
    stripe_api_base: str | None = None
    stripe_webhook_secrets: tuple[str, ...] = ()
    stripe_timeout_s: float = 30.0
    mock_webhook_secrets: tuple[str, ...] = ("whsec_kassa_mock_sandbox",)
    mock_webhook_url: str | None = None
    job_lease_s: int = 60
    default_provider_name: str | None = None
    # None: the contract's default (see `_providers`); resolved by `enabled_providers`.
    providers: tuple[str, ...] | None = None
    # A payment still `processing` this long after it opened is settled by the worker.
    payment_resume_after_s: int = 60
    payment_max_retries: int = 1
    retry_base_delay_ms: int = 200
    retry_max_delay_ms: int = 1000
    health_window_s: int = 300
    health_min_attempts: int = 20
    health_degrade_at: float = 0.5
    health_recover_below: float = 0.25
    health_degrade_p95_ms: int = 10_000
    # invoices and credit notes
    seller_name: str = "Kassa Demo Shop"
    seller_address: tuple[str, ...] = ()
    seller_tax_id: str | None = None
    seller_email: str | None = None
    tax_label: str = "VAT"
    tax_rate_bp: int | None = None
    document_locale: str = "en_US"
    # TTF/OTF files for characters the bundled DejaVu Sans lacks (CJK, ...), tried in order.
    document_fallback_fonts: tuple[str, ...] = ()
    # reconciliation
    stuck_payment_after_s: int = 15 * 60

    @property
    def enabled_providers(self) -> tuple[str, ...]:
        if self.providers is not None:
            return self.providers
        return _providers(None, bool(self.stripe_secret_key))

    @property
    def default_provider(self) -> str:
        if self.default_provider_name:
            return self.default_provider_name
        enabled = self.enabled_providers
        return next((n for n in ("stripe", "mock") if n in enabled), "wallet")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        url = env.get("KASSA_DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"
        stripe_secret_key = env.get("KASSA_STRIPE_SECRET_KEY") or None
        return cls(
            database_url=normalize_database_url(url),
            reservation_ttl_s=_int(env, "KASSA_RESERVATION_TTL_S", 30 * 60),
            idempotency_retention_s=_int(env, "KASSA_IDEMPOTENCY_RETENTION_S", 48 * 3600),
            idempotency_lock_timeout_s=_int(env, "KASSA_IDEMPOTENCY_LOCK_TIMEOUT_S", 60),
            reservation_sweep_interval_s=_int(env, "KASSA_RESERVATION_SWEEP_INTERVAL_S", 30),
            stripe_secret_key=stripe_secret_key,
            providers=_providers(env.get("KASSA_PROVIDERS"), bool(stripe_secret_key)),
            payment_resume_after_s=_int(env, "KASSA_PAYMENT_RESUME_AFTER_S", 60),
            stripe_api_base=env.get("KASSA_STRIPE_API_BASE") or None,
            stripe_webhook_secrets=_secrets(env.get("KASSA_STRIPE_WEBHOOK_SECRET")),
            stripe_timeout_s=_float(env, "KASSA_STRIPE_TIMEOUT_S", 30.0),
            mock_webhook_secrets=_secrets(env.get("KASSA_MOCK_WEBHOOK_SECRET"))
            or ("whsec_kassa_mock_sandbox",),
            mock_webhook_url=env.get("KASSA_MOCK_WEBHOOK_URL") or None,
            job_lease_s=_int(env, "KASSA_JOB_LEASE_S", 60),
            default_provider_name=env.get("KASSA_DEFAULT_PROVIDER") or None,
            payment_max_retries=_int(env, "KASSA_PAYMENT_MAX_RETRIES", 1),
            retry_base_delay_ms=_int(env, "KASSA_RETRY_BASE_DELAY_MS", 200),
            retry_max_delay_ms=_int(env, "KASSA_RETRY_MAX_DELAY_MS", 1000),
            health_window_s=_int(env, "KASSA_HEALTH_WINDOW_S", 300),
            health_min_attempts=_int(env, "KASSA_HEALTH_MIN_ATTEMPTS", 20),
            health_degrade_at=_float(env, "KASSA_HEALTH_DEGRADE_AT", 0.5),
            health_recover_below=_float(env, "KASSA_HEALTH_RECOVER_BELOW", 0.25),
            health_degrade_p95_ms=_int(env, "KASSA_HEALTH_DEGRADE_P95_MS", 10_000),
            seller_name=env.get("KASSA_SELLER_NAME") or "Kassa Demo Shop",
            seller_address=_lines(env.get("KASSA_SELLER_ADDRESS")),
            seller_tax_id=env.get("KASSA_SELLER_TAX_ID") or None,
            seller_email=env.get("KASSA_SELLER_EMAIL") or None,
            tax_label=env.get("KASSA_TAX_LABEL") or "VAT",
            tax_rate_bp=_optional_int(env, "KASSA_TAX_RATE_BP"),
            document_locale=env.get("KASSA_DOCUMENT_LOCALE") or "en_US",
            document_fallback_fonts=_secrets(env.get("KASSA_DOCUMENT_FALLBACK_FONTS")),
            stuck_payment_after_s=_int(env, "KASSA_STUCK_PAYMENT_AFTER_S", 15 * 60),
        )
