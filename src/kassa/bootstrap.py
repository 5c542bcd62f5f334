"""The composition root: settings, the database, the provider adapters, every service and
the job handlers, wired once (cf. cosmicpython's `bootstrap.py`).

This is the one module that knows every layer: it picks the concrete adapters (the Stripe
gateway when configured, the sandbox, their webhook schemes and event decoders) and hands
services only what they need, so services depend on the provider protocol and never on a
provider package. Adapters (HTTP API, CLI, worker) build one `Kassa` and call its
services; nothing else reaches the database.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from kassa.config import Settings
from kassa.documents import Party
from kassa.domain.calendar import shop_zone
from kassa.domain.payments import HealthThresholds, RetryPolicy
from kassa.mail.smtp import SmtpTransport
from kassa.providers.base import PaymentProvider
from kassa.providers.mock.events import DELIVER_EVENT, EventDelivery
from kassa.providers.mock.provider import MockProvider
from kassa.providers.registry import ProviderRegistry
from kassa.providers.stripe import events as stripe_events
from kassa.providers.stripe import signatures as stripe_signatures
from kassa.services.api_keys import ApiKeys
from kassa.services.audit import AuditLog
from kassa.services.catalogue import Catalogue
from kassa.services.checks import Reconciliation
from kassa.services.context import Clock, utc_now
from kassa.services.customers import Customers
from kassa.services.dispatch import Dispatcher
from kassa.services.emails import Emails, Seller
from kassa.services.event_log import EventLog
from kassa.services.export_sources import RowsExport
from kassa.services.exports import Exports
from kassa.services.findings import CheckFindings
from kassa.services.gateway_health import GatewayHealth
from kassa.services.idempotency import IdempotencyStore
from kassa.services.invoices import (
    ISSUE_CREDIT_NOTE,
    ISSUE_INVOICE,
    Invoices,
    SellerProfile,
)
from kassa.services.jobs import JobHandler, JobQueue
from kassa.services.kpis import Kpis
from kassa.services.metrics import Metrics
from kassa.services.orders import Orders
from kassa.services.payment_analytics import Analytics
from kassa.services.payments import Payments
from kassa.services.pruning import Pruning
from kassa.services.refunds import RESUME_REFUND, Refunds
from kassa.services.settlement import RESUME_PAYMENT
from kassa.services.staff_forms import StaffForms
from kassa.services.staff_sessions import StaffSessions
from kassa.services.staff_users import StaffUsers
from kassa.services.wallets import Wallets
from kassa.services.webhook_delivery import WebhookSender
from kassa.services.webhook_endpoints import WebhookEndpoints
from kassa.services.webhook_fanout import WebhookFanOut
from kassa.services.webhook_targets import TargetPolicy
from kassa.services.webhooks import APPLY_EVENT, Webhooks
from kassa.storage.database import Database
from kassa.storage.migrate import revisions


class Kassa:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        extra_providers: dict[str, PaymentProvider] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.db = Database(settings.database_url)
        revisions()  # read the migration scripts once now, not on the first /healthz
        self.api_keys = ApiKeys(self.db, clock)
        self.audit = AuditLog(self.db, clock)
        self.catalogue = Catalogue(self.db, clock)
        self.customers = Customers(self.db, clock)
        self.orders = Orders(self.db, clock, reservation_ttl_s=settings.reservation_ttl_s)
        self.idempotency = IdempotencyStore(
            self.db,
            clock,
            lock_timeout_s=settings.idempotency_lock_timeout_s,
            retention_s=settings.idempotency_retention_s,
        )

        self.mock = MockProvider(self.db, clock, sleep=sleep)
        providers: dict[str, PaymentProvider] = {self.mock.name: self.mock}
        if settings.stripe_secret_key:  # the SDK is imported only where Stripe is used
            from kassa.providers.stripe.gateway import StripeGateway

            stripe = StripeGateway(
                settings.stripe_secret_key,
                api_base=settings.stripe_api_base,
                timeout_s=settings.stripe_timeout_s,
            )
            providers[stripe.name] = stripe
        providers.update(extra_providers or {})
        self.providers = ProviderRegistry(
            providers,
            settings.default_provider,
            # test and bench doubles passed in by name take payments too
            enabled=(*settings.enabled_providers, *(extra_providers or {})),
        )
        self.gateway_health = GatewayHealth(
            self.db,
            clock,
            HealthThresholds(
                window_s=settings.health_window_s,
                min_attempts=settings.health_min_attempts,
                degrade_at=settings.health_degrade_at,
                recover_below=settings.health_recover_below,
                degrade_p95_ms=settings.health_degrade_p95_ms,
            ),
        )
        self.invoices = Invoices(
            self.db,
            clock,
            SellerProfile(
                Party(
                    name=settings.seller_name,
                    lines=settings.seller_address,
                    tax_id=settings.seller_tax_id,
                    email=settings.seller_email,
                ),
                locale=settings.document_locale,
                tax_label=settings.tax_label,
                tax_rate_bp=settings.tax_rate_bp,
            ),
        )
        # One policy for every provider call: payments, top-ups and refunds retry alike.
        retry_policy = RetryPolicy(
            max_retries=settings.payment_max_retries,
            base_delay_ms=settings.retry_base_delay_ms,
            max_delay_ms=settings.retry_max_delay_ms,
        )
        self.payments = Payments(
            self.db,
            clock,
            self.providers,
            retry_policy,
            self.gateway_health,
            self.invoices,
            sleep=sleep,
            rng=rng,
            resume_after_s=settings.payment_resume_after_s,
        )
        self.analytics = Analytics(self.db, clock)
        self.kpis = Kpis(self.db, clock, settings.timezone)
        self.wallets = Wallets(self.db, clock)
        self.refunds = Refunds(
            self.db,
            clock,
            self.providers,
            retry_policy,
            is_degraded=self.gateway_health.is_degraded,
            sleep=sleep,
            rng=rng,
        )
        self.reconciliation = Reconciliation(
            self.db,
            clock,
            self.providers,
            stuck_after_s=settings.stuck_payment_after_s,
            page_size=settings.check_page_size,
        )
        self.findings = CheckFindings(
            self.db, clock, self.reconciliation, interval_s=settings.check_interval_s
        )
        self.jobs = JobQueue(self.db, clock, lease_s=settings.job_lease_s)
        # CSV exports (issue 11), by calendar days in the shop's time zone (KASSA_TIMEZONE);
        # `kpis` is the KPI daily series, read in the export's own snapshot.
        self.exports = Exports(self.db, clock, shop_zone(settings.timezone))
        self.exports.register("kpis", RowsExport(self.kpis.daily_rows))
        self.pruning = Pruning(
            self.db,
            clock,
            self.idempotency,
            job_retention_s=settings.job_retention_s,
            event_retention_s=settings.event_retention_s,
            batch=settings.prune_batch,
            outgoing_event_retention_s=settings.outgoing_event_retention_s,
            webhook_delivery_retention_s=settings.webhook_delivery_retention_s,
            email_retention_s=settings.email_retention_s,
        )
        self.webhooks = Webhooks(
            self.db,
            clock,
            {  # a provider that is not enabled has no webhook route at all (404)
                name: stripe_signatures.scheme(secrets)  # the sandbox signs like Stripe
                for name, secrets in (
                    ("stripe", settings.stripe_webhook_secrets),
                    ("mock", settings.mock_webhook_secrets),
                )
                if self.providers.is_enabled(name)
            },
            # each provider reads its own events; the sandbox's are Stripe-shaped
            {"stripe": stripe_events.decode, "mock": stripe_events.decode},
            self.invoices,
        )

        # what follows from kassa's own events (issue 12): consumers register here
        self.dispatcher = Dispatcher(self.db, clock)
        self.event_log = EventLog(self.db)  # GET /v1/events
        # outgoing webhooks: endpoints (admin), the fan-out of each event to the endpoints
        # subscribed to it, and the sender the worker runs on threads of its own
        self.webhook_targets = TargetPolicy(allow_private=settings.webhooks_allow_private_targets)
        self.webhook_endpoints = WebhookEndpoints(self.db, clock, self.webhook_targets)
        self.dispatcher.add(WebhookFanOut())
        self.webhook_sender = WebhookSender(
            self.db, clock, self.webhook_targets, lease_s=settings.webhook_lease_s
        )

        # GET /metrics: payments, provider events and jobs, counted in the database
        self.metrics = Metrics(self.db, clock)

        self.mock_webhook_url = settings.mock_webhook_url
        self.mock_events = EventDelivery(
            settings.mock_webhook_secrets[0], clock, url=lambda: self.mock_webhook_url
        )

        # e-mail to the buyer (issue 12): queued from events when SMTP is configured, sent
        # by the worker's mail sender; a lease outlasts the slowest send (every SMTP reply
        # within KASSA_SMTP_TIMEOUT_S, about a dozen of them)
        smtp = settings.smtp
        self.emails = Emails(
            self.db,
            clock,
            seller=Seller(settings.seller_name, settings.seller_email, settings.document_locale),
            transport=SmtpTransport(smtp, settings.smtp_timeout_s) if smtp else None,
            sender=settings.mail_from,
            lease_s=12 * settings.smtp_timeout_s + 60,
            sleep=sleep,
        )
        if self.emails.enabled:
            self.dispatcher.add(self.emails)

        # the staff dashboard (issue 13): its users, and their sessions behind the cookie
        self.staff_users = StaffUsers(self.db, clock)
        self.staff_sessions = StaffSessions(
            self.db,
            clock,
            idle_timeout_s=settings.dashboard_idle_timeout_s,
            max_age_s=settings.dashboard_session_max_s,
        )
        self.staff_forms = StaffForms(self.db, clock)  # a create form acts once

    def job_handlers(self) -> dict[str, JobHandler]:
        """Every kind of background job kassa knows how to run."""
        return {
            APPLY_EVENT: JobHandler(self.webhooks.apply),
            DELIVER_EVENT: JobHandler(self.mock_events.deliver, in_transaction=False),
            RESUME_REFUND: JobHandler(self.refunds.resume, in_transaction=False),
            RESUME_PAYMENT: JobHandler(self.payments.resume, in_transaction=False),
            ISSUE_INVOICE: JobHandler(self.invoices.issue_invoice),
            ISSUE_CREDIT_NOTE: JobHandler(self.invoices.issue_credit_note),
        }

    def close(self) -> None:
        self.api_keys.close()
        self.webhook_sender.close()
        self.db.dispose()
