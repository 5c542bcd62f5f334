"""Configuration, read once from the environment (`KASSA_*`).

Each setting is declared once below, with its default and what it means; its environment
variable is `KASSA_` + the field's name in capitals unless the field names another one
(`validation_alias`). Two ways in:

- `Settings.from_env()` (or `from_env(mapping)`): the environment. Empty variables count as
  unset; a value kassa cannot use is a `ConfigError`, one line naming the variable.
- `Settings(database_url=..., ...)`: exactly the keywords given, the defaults for the rest,
  and no environment at all (what tests and benchmarks use).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

DEFAULT_SQLITE_FILE = "kassa.db"
ENV_PREFIX = "KASSA_"
MOCK_SANDBOX_SECRET = "whsec_kassa_mock_sandbox"

# Every provider kassa can take payments through; `wallet` is the customers' own credit.
KNOWN_PROVIDERS = ("stripe", "mock", "wallet")

# The validation context `from_env` passes: checks that only make sense for a deployment.
_FROM_ENV = "kassa_from_env"


class ConfigError(ValueError):
    """A `KASSA_*` value kassa cannot use; `str()` is one line naming the variable."""


def normalize_database_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and route them to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _default_database_url() -> str:
    return f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


def _comma_list(raw: object) -> object:
    """`a, b,` → ("a", "b"); anything but a string is left to the field's type."""
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def _lines(raw: object) -> object:
    """An address as one variable: lines separated by `|` or newlines."""
    if isinstance(raw, str):
        text = raw.replace("\n", "|")
        return tuple(part.strip() for part in text.split("|") if part.strip())
    return raw


def _providers(raw: str | None, stripe_configured: bool) -> tuple[str, ...]:
    """KASSA_PROVIDERS: the providers that take payments. The sandbox runs beside Stripe
    only when named, so a Stripe shop never takes sandbox "payments" by accident."""
    if not (raw or "").strip():
        return ("stripe", "wallet") if stripe_configured else ("mock", "wallet")
    names = tuple(dict.fromkeys(n.strip().lower() for n in (raw or "").split(",") if n.strip()))
    _check_providers(names, stripe_configured)
    return names


def _check_providers(names: tuple[str, ...], stripe_configured: bool) -> None:
    unknown = [n for n in names if n not in KNOWN_PROVIDERS]
    if unknown:
        raise ValueError(
            f"KASSA_PROVIDERS names unknown provider(s) {', '.join(unknown)}"
            f" (known: {', '.join(KNOWN_PROVIDERS)})"
        )
    if "stripe" in names and not stripe_configured:
        raise ValueError("KASSA_PROVIDERS names stripe but KASSA_STRIPE_SECRET_KEY is not set")


CommaList = Annotated[tuple[str, ...], NoDecode]


SMTP_SECURITY = {"smtp": "plain", "smtp+starttls": "starttls", "smtps": "tls"}
_SMTP_DEFAULT_PORT = {"plain": 25, "starttls": 587, "tls": 465}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """KASSA_SMTP_URL, taken apart: where the worker sends e-mail, and how."""

    host: str
    port: int
    security: Literal["plain", "starttls", "tls"]
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def loopback(self) -> bool:
        """A server on this very host (a local relay): plain SMTP never leaves the machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False


def parse_smtp_url(url: str) -> SmtpServer:
    """`smtp[+starttls]://[user:password@]host[:port]` or `smtps://…`; a ValueError (one line,
    naming KASSA_SMTP_URL, never the password) if kassa cannot use it."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SMTP_SECURITY:
        raise ValueError(
            f"KASSA_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://,"
            f" got {scheme + '://' if scheme else 'no scheme'}"
        )
    try:
        port = parts.port
    except ValueError:
        raise ValueError("KASSA_SMTP_URL has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise ValueError("KASSA_SMTP_URL names no host (smtp://host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("KASSA_SMTP_URL takes no path or query: smtp://user:password@host:port")
    security = SMTP_SECURITY[scheme]
    return SmtpServer(
        host=parts.hostname,
        port=port or _SMTP_DEFAULT_PORT[security],
        security=security,  # type: ignore[arg-type]
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,
        frozen=True,
        extra="forbid",
        validate_by_name=True,
        validate_by_alias=True,
        use_attribute_docstrings=True,
    )

    database_url: str = Field(default_factory=_default_database_url)
    """Where kassa keeps its data; `postgresql://` URLs go to psycopg 3. Default ./kassa.db."""
    reservation_ttl_s: int = 30 * 60
    """How long a pending order holds a unique item."""
    idempotency_retention_s: int = 48 * 3600
    """How long an Idempotency-Key and its response are kept."""
    job_retention_s: int = Field(default=7 * 24 * 3600, gt=0)
    """How long a finished (done) job is kept before the worker prunes it. Dead jobs are
    never pruned (they wait for an operator), nor queued or running ones."""
    event_retention_s: int = Field(default=30 * 24 * 3600, ge=3 * 24 * 3600)
    """How long an applied provider event is kept before the worker prunes it. The row is
    also what recognises a redelivered event, and Stripe redelivers for up to 3 days, so
    this must stay well beyond that (at least 3 days; default 30): an event redelivered
    after its row is gone would be stored and applied again. Unapplied events are kept."""
    prune_interval_s: int = Field(default=600, gt=0)
    """How often the worker prunes done jobs, applied events and expired Idempotency-Keys."""
    prune_batch: int = Field(default=5000, gt=0)
    """Rows deleted per transaction while pruning, so a pass never holds a long one."""
    idempotency_lock_timeout_s: int = 60
    """A key still "in progress" after this long is taken to belong to a dead process."""
    reservation_sweep_interval_s: int = 30
    """How often the worker releases expired reservations."""

    # -- payments
    stripe_secret_key: str | None = Field(default=None, repr=False)
    """Stripe's API key; setting it makes Stripe the default provider."""
    stripe_api_base: str | None = None
    """Another Stripe API endpoint (localstripe, a test double)."""
    stripe_webhook_secrets: CommaList = Field(
        default=(), validation_alias="KASSA_STRIPE_WEBHOOK_SECRET", repr=False
    )
    """Stripe's webhook signing secrets, comma-separated while one is rotated."""
    stripe_timeout_s: float = 30.0
    """Seconds before a Stripe call counts as timed out (its outcome unknown)."""
    mock_webhook_secrets: CommaList = Field(
        default=(MOCK_SANDBOX_SECRET,), validation_alias="KASSA_MOCK_WEBHOOK_SECRET", repr=False
    )
    """The sandbox's webhook signing secrets, comma-separated; default the sandbox's own."""
    mock_webhook_url: str | None = None
    """Where the sandbox posts its events; default this very server."""
    job_lease_s: int = 60
    """How long a worker owns a job before another may take it over."""
    default_provider_name: str | None = Field(
        default=None, validation_alias="KASSA_DEFAULT_PROVIDER"
    )
    """The provider of a payment that names none: default the first of stripe, mock enabled."""
    providers: Annotated[tuple[str, ...] | None, NoDecode] = None
    """The providers that take payments, comma-separated. Unset: `stripe,wallet` once Stripe
    is configured, else `mock,wallet` (see `_providers`); resolved by `enabled_providers`."""
    payment_resume_after_s: int = 60
    """A payment still `processing` this long after it opened is settled by the worker."""
    payment_max_retries: int = 1
    """Retries of a provider call that failed for a transient reason."""
    retry_base_delay_ms: int = 200
    """First back-off between retries; it doubles up to `retry_max_delay_ms`."""
    retry_max_delay_ms: int = 1000
    """Longest back-off between retries."""
    health_window_s: int = 300
    """The window over which a provider's health is judged."""
    health_min_attempts: int = 20
    """Attempts in the window before a provider can be judged degraded."""
    health_degrade_at: float = 0.5
    """Failure ratio at which a provider counts as degraded."""
    health_recover_below: float = 0.25
    """Failure ratio below which a degraded provider counts as healthy again."""
    health_degrade_p95_ms: int = 10_000
    """95th-percentile latency at which a provider counts as degraded."""

    # -- invoices and credit notes
    seller_name: str = "Kassa Demo Shop"
    """The seller on invoices and credit notes."""
    seller_address: Annotated[tuple[str, ...], NoDecode] = ()
    """The seller's address, lines separated by `|` (or newlines)."""
    seller_tax_id: str | None = None
    """The seller's VAT or tax id."""
    seller_email: str | None = None
    """The seller's contact address on documents."""
    tax_label: str = "VAT"
    """What the tax is called on documents."""
    tax_rate_bp: int | None = None
    """Tax included in prices, in basis points (1900 = 19 %); unset: no tax line."""
    document_locale: str = "en_US"
    """The locale of dates and amounts on documents."""
    document_fallback_fonts: CommaList = ()
    """TTF/OTF files for characters the bundled DejaVu Sans lacks (CJK, ...), comma-separated,
    tried in order."""

    # -- reconciliation
    stuck_payment_after_s: int = 15 * 60
    """A payment `processing` this long is reported as stuck by `kassa check`."""
    check_interval_s: int = Field(default=3600, gt=0)
    """How often the worker runs the checks and stores their findings (one run per
    interval however many workers there are)."""
    check_page_size: int = Field(default=100, ge=1, le=100)
    """Records per page when the checks compare kassa with a provider (Stripe lists at
    most 100): the comparison holds one page at a time, however large the shop."""

    # -- revenue KPIs
    timezone: str = "UTC"
    """The shop's time zone, an IANA name (Europe/Berlin): KPI windows are its calendar days."""

    @field_validator("timezone", mode="after")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ValueError, OSError, KeyError):  # not found, a directory, a path, not TZif
            raise ValueError(
                f"KASSA_TIMEZONE is {name!r}, which is not an IANA time zone name"
                " (e.g. UTC, Europe/Berlin, America/New_York)"
            ) from None
        return name

    # -- operations: metrics and logs
    metrics_public: bool = False
    """Serve `GET /metrics` to anyone (for a Prometheus on a private network); else it
    takes an ops or admin API key."""
    log_format: Literal["text", "json"] = "text"
    """`json`: every log line one JSON object (time, level, logger, message, request_id
    within a request, and the record's own fields); `text`: lines for people."""

    # -- kassa's own events (issue 12)
    outgoing_event_retention_s: int = Field(default=30 * 24 * 3600, gt=0)
    """How long one of kassa's own events (`GET /v1/events`) is kept once the dispatcher
    has handed it on, before the worker prunes it. Events not yet handed on are kept."""
    webhook_delivery_retention_s: int = Field(default=30 * 24 * 3600, gt=0)
    """How long an outgoing webhook delivery that has ended (delivered, or failed for good)
    is kept, with its attempts, before the worker prunes it. Pending ones are kept."""
    email_retention_s: int = Field(default=90 * 24 * 3600, gt=0)
    """How long a sent or failed e-mail's record is kept before the worker prunes it (the
    documents it carried are kept for good). Queued ones are kept."""
    # -- outgoing webhooks (issue 12)
    webhooks_allow_private_targets: bool = False
    """Let webhook endpoints point at private, loopback and link-local addresses (the demo
    and tests, whose receivers run on this machine). Off in production: an endpoint URL is
    an admin's way to make the worker send requests, and inside the network it could reach
    what the internet cannot (a cloud's metadata service, an internal admin API)."""
    webhook_concurrency: int = Field(default=8, ge=1, le=256)
    """Threads of a worker process that send webhook deliveries, apart from its job loops;
    at most 2 deliveries per endpoint are in flight, so one endpoint that hangs holds at
    most 2 of them."""
    webhook_lease_s: int = Field(default=60, gt=0)
    """How long a sender owns a delivery it is sending; a worker killed mid-delivery leaves
    it to be sent again once this has passed. Keep it above the 10 s timeout, or a slow
    delivery may be sent twice (receivers dedupe on webhook-id anyway)."""
    # -- e-mail to the buyer (issue 12)
    smtp_url: str | None = Field(default=None, repr=False)
    """The SMTP server the worker sends the buyer's e-mails through: `smtp://host:port`
    (plain), `smtp+starttls://host:port` (STARTTLS, default port 587) or
    `smtps://host:port` (TLS from the start, default 465); `user:password@` before the
    host to log in (percent-encoded). Unset: no e-mail is queued or sent."""
    mail_from: str | None = None
    """The sender of the buyer's e-mails (`shop@example.com` or `Shop <shop@example.com>`);
    required with KASSA_SMTP_URL."""
    smtp_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds before an SMTP connection or reply counts as timed out."""
    # -- the staff dashboard (issue 13)
    dashboard_idle_timeout_s: int = Field(default=30 * 60, gt=0)
    """A dashboard session unused this long ends (the user signs in again)."""
    dashboard_session_max_s: int = Field(default=12 * 3600, gt=0)
    """A dashboard session ends this long after its sign-in, however busy."""

    # -- parsing: the environment gives strings; keywords give the field's own type

    @field_validator("database_url", mode="after")
    @classmethod
    def _normalize_database_url(cls, url: str) -> str:
        return normalize_database_url(url)

    @field_validator("stripe_webhook_secrets", "document_fallback_fonts", mode="before")
    @classmethod
    def _split_commas(cls, raw: object) -> object:
        return _comma_list(raw)

    @field_validator("mock_webhook_secrets", mode="before")
    @classmethod
    def _split_mock_secrets(cls, raw: object) -> object:
        # A variable that names no secret (", ") keeps the sandbox's own, as unset does.
        if isinstance(raw, str):
            return _comma_list(raw) or (MOCK_SANDBOX_SECRET,)
        return raw

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, raw: object) -> object:
        if isinstance(raw, str):
            names = tuple(n.strip().lower() for n in raw.split(",") if n.strip())
            return tuple(dict.fromkeys(names)) or None
        return raw

    @field_validator("seller_address", mode="before")
    @classmethod
    def _split_lines(cls, raw: object) -> object:
        return _lines(raw)

    @field_validator("smtp_url", mode="after")
    @classmethod
    def _valid_smtp_url(cls, url: str | None) -> str | None:
        if url is not None:
            parse_smtp_url(url)  # a ValueError, one line, names KASSA_SMTP_URL
        return url

    @field_validator("mail_from", mode="after")
    @classmethod
    def _valid_mail_from(cls, sender: str | None) -> str | None:
        if sender is not None and "@" not in parseaddr(sender)[1]:
            raise ValueError(
                f"KASSA_MAIL_FROM is {sender!r}, which is not an e-mail address"
                " (e.g. shop@example.com or 'Shop <shop@example.com>')"
            )
        return sender

    @model_validator(mode="after")
    def _mail_from_with_smtp(self) -> Self:
        if self.smtp_url and not self.mail_from:
            raise ValueError("KASSA_SMTP_URL is set but KASSA_MAIL_FROM is not: whom from?")
        return self

    @model_validator(mode="after")
    def _check_deployment(self, info: ValidationInfo) -> Self:
        """From the environment, KASSA_PROVIDERS must name known providers, and Stripe only
        when it is configured. (Keywords are taken as given: tests build odd shops.)"""
        if not (info.context and info.context.get(_FROM_ENV)):
            return self
        if self.providers is not None:
            _check_providers(self.providers, bool(self.stripe_secret_key))
        if self.default_provider_name and self.default_provider_name not in (
            self.enabled_providers
        ):
            raise ValueError(
                f"KASSA_DEFAULT_PROVIDER is {self.default_provider_name!r}, which is not one of"
                f" the enabled providers ({', '.join(self.enabled_providers)}; KASSA_PROVIDERS)"
            )
        return self

    # -- derived

    @property
    def enabled_providers(self) -> tuple[str, ...]:
        if self.providers is not None:
            return self.providers
        return _providers(None, bool(self.stripe_secret_key))

    @property
    def smtp(self) -> SmtpServer | None:
        """The SMTP server of KASSA_SMTP_URL, or None: e-mail is off."""
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def default_provider(self) -> str:
        if self.default_provider_name:
            return self.default_provider_name
        enabled = self.enabled_providers
        return next((n for n in ("stripe", "mock") if n in enabled), "wallet")

    # -- sources

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword construction reads nothing else; `from_env` is the way to the environment."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings `environ` (default `os.environ`) gives; `ConfigError` if a value is
        unusable."""
        source = _Environment(cls, os.environ if environ is None else environ)
        try:
            return cls.model_validate(source(), context={_FROM_ENV: True})
        except ValidationError as exc:
            raise ConfigError(_explain(cls, exc)) from None


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = dict(environ)
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _variable(settings_cls: type[BaseSettings], key: str | int) -> str:
    """The environment variable behind a validation error's location."""
    field = settings_cls.model_fields.get(str(key))
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    return str(key) if str(key).startswith(ENV_PREFIX) else f"{ENV_PREFIX}{str(key).upper()}"


def _explain(settings_cls: type[BaseSettings], exc: ValidationError) -> str:
    """A pydantic error list as one line, in the words the old hand-written parser used."""
    problems = []
    for error in exc.errors():
        cause = (error.get("ctx") or {}).get("error")
        if error["type"] == "value_error" and cause is not None:
            problems.append(str(cause))
            continue
        name = _variable(settings_cls, error["loc"][0]) if error["loc"] else "settings"
        raw: Any = error.get("input")
        if error["type"] == "int_parsing":
            problems.append(f"{name} must be an integer, got {raw!r}")
        elif error["type"] == "float_parsing":
            problems.append(f"{name} must be a number, got {raw!r}")
        else:
            problems.append(f"{name}: {error['msg'].lower()}, got {raw!r}")
    return "; ".join(problems)
