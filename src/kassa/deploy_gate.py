"""The deploy gate (`kassa check --deploy`): is this configuration fit for production?

It reads the settings only (no database, no network), so it can run in a release
pipeline before anything starts. Each rule is one function in `RULES`, registered with
`@rule("<id>")`: its docstring says what it guards against, and it returns None when the
settings pass, else one line saying what is wrong and what to do. `docs/deploy.md` lists
every rule; a rule's id is stable (`--skip <id>` waives it, e.g. a shop exempt from
printing a tax id), so scripts may rely on it.

Adding a rule: write the function below the others with `@rule("<id>")`, add a test in
tests/integration/test_deploy_gate.py that violates it alone, and a line to the table in
docs/deploy.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from kassa.config import MOCK_SANDBOX_SECRET, Settings

Check = Callable[[Settings], str | None]


@dataclass(frozen=True, slots=True)
class DeployRule:
    id: str
    check: Check

    @property
    def why(self) -> str:
        """The rule's docstring, on one line (what it guards against)."""
        return " ".join((self.check.__doc__ or "").split())


@dataclass(frozen=True, slots=True)
class DeployProblem:
    rule: str
    fix: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.fix}"


RULES: list[DeployRule] = []


def rule(rule_id: str) -> Callable[[Check], Check]:
    """Register a rule under `rule_id` (unique), in the order they are written."""

    def register(check: Check) -> Check:
        if any(existing.id == rule_id for existing in RULES):
            raise ValueError(f"deploy rule {rule_id!r} is defined twice")
        RULES.append(DeployRule(rule_id, check))
        return check

    return register


def problems(settings: Settings, skip: Iterable[str] = ()) -> list[DeployProblem]:
    """Every rule the settings break, in the order of `RULES`; `skip` names rules waived
    (ValueError for a name that is no rule, so a typo cannot waive nothing silently)."""
    waived = set(skip)
    unknown = waived - {r.id for r in RULES}
    if unknown:
        raise ValueError(
            f"no deploy rule named {', '.join(sorted(unknown))}"
            f" (rules: {', '.join(r.id for r in RULES)})"
        )
    found = []
    for each in RULES:
        if each.id in waived:
            continue
        fix = each.check(settings)
        if fix is not None:
            found.append(DeployProblem(each.id, fix))
    return found


# -- the rules --------------------------------------------------------------------------

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_TLS_SSLMODES = frozenset({"require", "verify-ca", "verify-full"})
_LIVE_KEYS = ("sk_live_", "rk_live_")
_TEST_KEYS = ("sk_test_", "rk_test_")


@rule("sqlite_database")
def _sqlite_database(settings: Settings) -> str | None:
    """SQLite serves one writer at a time and lives on one machine's disk: kassa's API
    processes and workers wait on its single write lock, and it has no point-in-time
    recovery. Production runs on PostgreSQL."""
    if settings.database_url.startswith("sqlite"):
        return (
            "KASSA_DATABASE_URL is a SQLite file; set it to PostgreSQL "
            "(postgresql://USER:PASSWORD@HOST:5432/DB)"
        )
    return None


@rule("database_without_tls")
def _database_without_tls(settings: Settings) -> str | None:
    """A PostgreSQL server on another host is reached over the network: without TLS the
    password and every order, payment and customer cross it in clear. libpq's default
    (`sslmode=prefer`) falls back to plain text silently. The URL's `sslmode`, else libpq's
    PGSSLMODE variable, decides."""
    if settings.database_url.startswith("sqlite"):
        return None
    url = urlsplit(settings.database_url)
    query = parse_qs(url.query)
    host = (query.get("host") or [url.hostname or ""])[0]
    if not host or host.startswith("/") or host in _LOCAL_HOSTS:
        return None  # a Unix socket or this machine
    sslmode = (query.get("sslmode") or [os.environ.get("PGSSLMODE", "")])[0]
    if sslmode in _TLS_SSLMODES:
        return None
    return (
        f"KASSA_DATABASE_URL reaches {host} without requiring TLS; add "
        "?sslmode=verify-full (with sslrootcert=…) or at least ?sslmode=require"
    )


@rule("stripe_not_configured")
def _stripe_not_configured(settings: Settings) -> str | None:
    """Without a Stripe key no gateway takes real money: payments would go to the
    sandbox, or nowhere."""
    if not settings.stripe_secret_key:
        return "KASSA_STRIPE_SECRET_KEY is not set; set the live secret key (sk_live_…)"
    return None


@rule("stripe_test_key")
def _stripe_test_key(settings: Settings) -> str | None:
    """A test-mode key charges nobody: orders would be marked paid for test cards."""
    if (settings.stripe_secret_key or "").startswith(_TEST_KEYS):
        return (
            "KASSA_STRIPE_SECRET_KEY is a test-mode key; set the live key (sk_live_… or rk_live_…)"
        )
    return None


@rule("stripe_webhook_secret_missing")
def _stripe_webhook_secret_missing(settings: Settings) -> str | None:
    """Without the endpoint's signing secret every Stripe event is refused, so what
    happens outside kassa's own requests (3-D Secure finished in the browser, refunds and
    disputes in the Dashboard) never reaches it."""
    if settings.stripe_secret_key and not settings.stripe_webhook_secrets:
        return (
            "Stripe is configured but KASSA_STRIPE_WEBHOOK_SECRET is not set; set the signing "
            "secret (whsec_…) of the endpoint https://<your host>/v1/webhooks/stripe"
        )
    return None


@rule("stripe_webhook_secret_malformed")
def _stripe_webhook_secret_malformed(settings: Settings) -> str | None:
    """Stripe's signing secrets begin with `whsec_`; anything else (an API key pasted in
    the wrong variable) verifies no event."""
    bad = [s for s in settings.stripe_webhook_secrets if not s.startswith("whsec_")]
    if bad:
        return (
            f"KASSA_STRIPE_WEBHOOK_SECRET holds {len(bad)} value(s) that are not signing "
            "secrets; use the endpoint's secret from the Dashboard (whsec_…)"
        )
    return None


@rule("stripe_live_key_custom_api_base")
def _stripe_live_key_custom_api_base(settings: Settings) -> str | None:
    """KASSA_STRIPE_API_BASE points the SDK at a test double (localstripe); with a live
    key it would send the live secret, and real card data, to that host."""
    key = settings.stripe_secret_key or ""
    if key.startswith(_LIVE_KEYS) and settings.stripe_api_base:
        return (
            f"KASSA_STRIPE_API_BASE ({settings.stripe_api_base}) is set with a live Stripe key; "
            "unset it so the SDK talks to api.stripe.com"
        )
    return None


@rule("sandbox_enabled")
def _sandbox_enabled(settings: Settings) -> str | None:
    """The sandbox (`mock`) marks orders paid for test cards: enabled in production, any
    storefront gets goods for nothing."""
    if "mock" in settings.enabled_providers:
        return (
            "KASSA_PROVIDERS enables the sandbox (mock); leave it out "
            "(e.g. KASSA_PROVIDERS=stripe,wallet, the default once Stripe is configured)"
        )
    return None


@rule("sandbox_secret_default")
def _sandbox_secret_default(settings: Settings) -> str | None:
    """The sandbox's default signing secret is published in kassa's source: anyone can
    sign sandbox events with it. Harmless only while the sandbox stays disabled, which
    one changed variable undoes."""
    if MOCK_SANDBOX_SECRET in settings.mock_webhook_secrets:
        return (
            "KASSA_MOCK_WEBHOOK_SECRET is left at the sandbox's public default; set it to a "
            "long random value (e.g. openssl rand -hex 32)"
        )
    return None


@rule("seller_details_missing")
def _seller_details_missing(settings: Settings) -> str | None:
    """Invoices and credit notes name the seller: kassa's demo name, or no address, makes
    documents no bookkeeper can use (and they are immutable once issued)."""
    missing = []
    if settings.seller_name.strip() in ("", Settings.model_fields["seller_name"].default):
        missing.append("KASSA_SELLER_NAME")
    if not settings.seller_address:
        missing.append("KASSA_SELLER_ADDRESS")
    if missing:
        return (
            f"{' and '.join(missing)} not set, so invoices lack the seller's details; set "
            "them (the address as lines separated by |), and KASSA_SELLER_TAX_ID where the "
            "law asks for it"
        )
    return None


@rule("idempotency_retention_too_short")
def _idempotency_retention_too_short(settings: Settings) -> str | None:
    """Clients may retry a request with its Idempotency-Key for 24 hours (the contract);
    a key pruned sooner lets a late retry pay or refund twice."""
    if settings.idempotency_retention_s < 24 * 3600:
        return (
            f"KASSA_IDEMPOTENCY_RETENTION_S is {settings.idempotency_retention_s}; set it to "
            "at least 86400 (the default keeps keys 48 hours)"
        )
    return None


@rule("metrics_public")
def _metrics_public(settings: Settings) -> str | None:
    """With KASSA_METRICS_PUBLIC=1 anyone who reaches the API reads `/metrics`: payment
    volumes by provider and outcome, job backlogs and every route's traffic, without a
    key. Production gives Prometheus an ops key instead."""
    if settings.metrics_public:
        return (
            "KASSA_METRICS_PUBLIC is set, so /metrics answers without a key; unset it and "
            "give Prometheus an ops API key as its bearer token"
        )
    return None


@rule("webhooks_private_targets")
def _webhooks_private_targets(settings: Settings) -> str | None:
    """An outgoing webhook endpoint's URL makes the worker send requests wherever it
    points; allowed to reach private, loopback and link-local addresses, an admin key (or
    whoever holds one) can reach a cloud's metadata service or internal services (SSRF)."""
    if settings.webhooks_allow_private_targets:
        return (
            "KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1 lets webhook endpoints reach private, "
            "loopback and link-local addresses; unset it (only the demo and tests need it)"
        )
    return None


@rule("smtp_without_tls")
def _smtp_without_tls(settings: Settings) -> str | None:
    """Plain SMTP to another host carries the SMTP password, the buyers' addresses, their
    orders and their invoices in clear across the network. A relay on this very host
    (localhost, 127.0.0.1, ::1) never leaves the machine."""
    smtp = settings.smtp
    if smtp is None or smtp.security != "plain" or smtp.loopback:
        return None
    return (
        f"KASSA_SMTP_URL is plain smtp:// to {smtp.host}; use smtps://{smtp.host}:465 or "
        f"smtp+starttls://{smtp.host}:587"
    )
