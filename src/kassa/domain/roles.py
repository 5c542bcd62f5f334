"""API key roles and what each may do.

Staff roles are ranked (admin > ops > analyst); `storefront` stands apart: it may
create customers, orders and payments and read what it created, nothing else.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPS = "ops"
    ANALYST = "analyst"
    STOREFRONT = "storefront"


_STAFF_RANK = {Role.ANALYST: 1, Role.OPS: 2, Role.ADMIN: 3}


class Permission(StrEnum):
    READ_CATALOGUE = "read_catalogue"
    WRITE_CATALOGUE = "write_catalogue"
    CREATE_CUSTOMERS = "create_customers"
    READ_CUSTOMERS = "read_customers"
    CREATE_ORDERS = "create_orders"
    READ_ORDERS = "read_orders"
    CANCEL_ORDERS = "cancel_orders"
    FULFILL_ORDERS = "fulfill_orders"
    READ_AUDIT = "read_audit"
    PAY_ORDERS = "pay_orders"
    READ_PAYMENTS = "read_payments"
    LIST_PAYMENTS = "list_payments"  # every payment, not only one order's
    READ_GATEWAYS = "read_gateways"
    READ_ANALYTICS = "read_analytics"
    INSPECT_PROVIDER = "inspect_provider"
    CONFIRM_AS_BROWSER = "confirm_as_browser"
    REFUND_ORDERS = "refund_orders"
    READ_REFUNDS = "read_refunds"
    READ_WALLETS = "read_wallets"
    TOP_UP_WALLETS = "top_up_wallets"
    ADJUST_WALLETS = "adjust_wallets"
    READ_DOCUMENTS = "read_documents"
    LIST_DOCUMENTS = "list_documents"  # every invoice or credit note, not only one's own
    EXPORT_DATA = "export_data"  # CSV exports of orders, payments, refunds, customers, ...
    # v1.1 monitoring: the checks' findings
    READ_FINDINGS = "read_findings"
    RUN_CHECKS = "run_checks"
    ACKNOWLEDGE_FINDINGS = "acknowledge_findings"
    READ_METRICS = "read_metrics"  # GET /metrics (public with KASSA_METRICS_PUBLIC=1)
    READ_EVENTS = "read_events"  # v1.1: kassa's own events, GET /v1/events
    MANAGE_WEBHOOKS = "manage_webhooks"  # v1.1: outgoing webhook endpoints and deliveries
    READ_EMAILS = "read_emails"  # v1.1: the buyer's e-mails, GET /v1/emails


# The least staff role that holds each permission; storefront's own list is separate.
_MIN_STAFF_ROLE: dict[Permission, Role] = {
    Permission.READ_CATALOGUE: Role.ANALYST,
    Permission.WRITE_CATALOGUE: Role.OPS,
    Permission.CREATE_CUSTOMERS: Role.OPS,
    Permission.READ_CUSTOMERS: Role.ANALYST,
    Permission.CREATE_ORDERS: Role.OPS,
    Permission.READ_ORDERS: Role.ANALYST,
    Permission.CANCEL_ORDERS: Role.OPS,
    Permission.FULFILL_ORDERS: Role.OPS,
    Permission.READ_AUDIT: Role.ADMIN,
    Permission.PAY_ORDERS: Role.OPS,
    Permission.READ_PAYMENTS: Role.ANALYST,
    Permission.LIST_PAYMENTS: Role.ANALYST,
    Permission.READ_GATEWAYS: Role.ANALYST,
    Permission.READ_ANALYTICS: Role.ANALYST,
    Permission.INSPECT_PROVIDER: Role.ADMIN,
    Permission.CONFIRM_AS_BROWSER: Role.OPS,
    Permission.REFUND_ORDERS: Role.OPS,
    Permission.READ_REFUNDS: Role.ANALYST,
    Permission.READ_WALLETS: Role.ANALYST,
    Permission.TOP_UP_WALLETS: Role.OPS,
    Permission.ADJUST_WALLETS: Role.ADMIN,
    Permission.READ_DOCUMENTS: Role.ANALYST,
    Permission.LIST_DOCUMENTS: Role.ANALYST,
    Permission.EXPORT_DATA: Role.ANALYST,
    Permission.READ_FINDINGS: Role.OPS,
    Permission.RUN_CHECKS: Role.OPS,
    Permission.ACKNOWLEDGE_FINDINGS: Role.OPS,
    Permission.READ_METRICS: Role.OPS,
    Permission.READ_EVENTS: Role.ANALYST,
    Permission.MANAGE_WEBHOOKS: Role.ADMIN,
    Permission.READ_EMAILS: Role.OPS,
}

_STOREFRONT: frozenset[Permission] = frozenset(
    {
        Permission.READ_CATALOGUE,
        Permission.CREATE_CUSTOMERS,
        Permission.CREATE_ORDERS,
        Permission.READ_ORDERS,  # only the orders it created: enforced by the service
        Permission.PAY_ORDERS,  # only for the orders it created: enforced by the service
        Permission.READ_PAYMENTS,  # likewise only its own
        Permission.CONFIRM_AS_BROWSER,  # the sandbox's stand-in for the shopper's browser
        Permission.TOP_UP_WALLETS,  # a payment, like paying an order
        Permission.READ_DOCUMENTS,  # only its own orders' invoices and credit notes
    }
)


# What limits a storefront key within a permission it holds (enforced by the services),
# for docs/rbac.md (tools/rbac_matrix.py).
STOREFRONT_LIMITS: dict[Permission, str] = {
    Permission.READ_ORDERS: "own orders only (another key's: 404)",
    Permission.PAY_ORDERS: "own orders only (another key's: 404)",
    Permission.READ_PAYMENTS: "own orders' payments only (another key's: 404)",
    Permission.CREATE_ORDERS: "for its own customers or a guest e-mail (another key's: 404)",
    Permission.TOP_UP_WALLETS: "own customers only (another key's: 404)",
    Permission.CONFIRM_AS_BROWSER: "own payments only (another key's: 404)",
    Permission.READ_DOCUMENTS: "own orders' invoices and credit notes only",
}


def allows(role: Role, permission: Permission) -> bool:
    if role is Role.STOREFRONT:
        return permission in _STOREFRONT
    return _STAFF_RANK[role] >= _STAFF_RANK[_MIN_STAFF_ROLE[permission]]


def sees_only_own_orders(role: Role) -> bool:
    return role is Role.STOREFRONT
