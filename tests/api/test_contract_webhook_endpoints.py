"""Contract tests for outgoing webhook endpoints (api-contract.md v1.1, "Outgoing webhooks").

Admin keys only. The secret (`whsec_<base64>`) is in the create and rotate answers only;
URLs that are not http(s), or whose host is (or resolves to) a private, loopback or
link-local address, are refused with 422 `webhook_url_not_allowed` unless
KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS=1; event types must be `*` or the contract's.
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.domain.errors import DomainError
from kassa.services.context import RequestContext
from kassa.services.webhook_targets import TargetPolicy, is_public
from kassa.storage.tables import AuditRecord
from tests.conftest import Keys

ENDPOINT_FIELDS = {
    "id",
    "object",
    "url",
    "description",
    "events",
    "disabled",
    "disabled_reason",
    "failing_since",
    "previous_secret_expires_at",
    "created_at",
    "updated_at",
}
PUBLIC = "https://hooks.example.com/kassa"  # resolved by the stub resolver below only


def assert_problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


@pytest.fixture
def public_dns(kassa: Kassa, monkeypatch: pytest.MonkeyPatch) -> None:
    """hooks.example.com resolves to a public address (a stub: no lookup leaves the
    machine, and nothing is ever sent there by these tests); any other name as usual."""
    real = TargetPolicy(allow_private=False)._resolver

    def resolve(host: str, port: int) -> list[str]:
        return ["93.184.215.14"] if host == "hooks.example.com" else list(real(host, port))

    monkeypatch.setattr(kassa.webhook_targets, "_resolver", resolve)


def create(client: TestClient, keys: Keys, **body: Any) -> Any:
    return client.post(
        "/v1/webhook-endpoints",
        json={"url": PUBLIC, "events": ["*"], **body},
        headers=keys.headers("admin"),
    )


@pytest.mark.usefixtures("public_dns")
def test_create_shows_the_secret_once_and_every_read_leaves_it_out(
    client: TestClient, keys: Keys, kassa: Kassa
) -> None:
    r = create(client, keys, events=["order.paid", "refund.succeeded"], description="erp")
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == ENDPOINT_FIELDS | {"secret"}
    assert body["id"].startswith("we_") and body["object"] == "webhook_endpoint"
    assert body["events"] == ["order.paid", "refund.succeeded"] and body["disabled"] is False
    assert body["secret"].startswith("whsec_")
    assert len(base64.b64decode(body["secret"].removeprefix("whsec_"))) >= 24

    got = client.get(f"/v1/webhook-endpoints/{body['id']}", headers=keys.headers("admin"))
    assert got.status_code == 200 and set(got.json()) == ENDPOINT_FIELDS, got.text
    listed = client.get("/v1/webhook-endpoints", headers=keys.headers("admin")).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    assert [e["id"] for e in listed["data"]] == [body["id"]]
    assert "secret" not in listed["data"][0]

    rotated = client.post(
        f"/v1/webhook-endpoints/{body['id']}/rotate-secret", headers=keys.headers("admin")
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["secret"] not in (None, body["secret"])
    assert rotated.json()["previous_secret_expires_at"] is not None
    with kassa.db.transaction(read_only=True) as s:
        records = s.scalars(select(AuditRecord).where(AuditRecord.subject_id == body["id"])).all()
    assert [a.action for a in records] == [
        "webhook_endpoint.created",
        "webhook_endpoint.secret_rotated",
    ]
    for record in records:
        assert "whsec_" not in repr((record.before, record.after))


@pytest.mark.usefixtures("public_dns")
def test_update_and_delete(client: TestClient, keys: Keys, kassa: Kassa) -> None:
    endpoint = create(client, keys).json()
    url = f"/v1/webhook-endpoints/{endpoint['id']}"
    admin = keys.headers("admin")
    r = client.patch(url, json={"events": ["order.created"], "disabled": True}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["order.created"] and r.json()["disabled"] is True
    assert r.json()["disabled_reason"] == "disabled by an admin"
    r = client.patch(url, json={"disabled": False, "description": "shop"}, headers=admin)
    assert r.json()["disabled"] is False and r.json()["disabled_reason"] is None
    assert r.json()["description"] == "shop"
    assert_problem(
        client.patch(url, json={"events": ["order.shipped"]}, headers=admin),
        422,
        "unknown_event_type",
    )
    assert_problem(
        client.patch(url, json={"url": "http://127.0.0.1:9/x"}, headers=admin),
        422,
        "webhook_url_not_allowed",
    )
    assert client.delete(url, headers=admin).status_code == 204
    assert_problem(client.get(url, headers=admin), 404, "webhook_endpoint_not_found")
    assert_problem(client.delete(url, headers=admin), 404, "webhook_endpoint_not_found")
    with kassa.db.transaction(read_only=True) as s:
        actions = s.scalars(
            select(AuditRecord.action).where(AuditRecord.subject_id == endpoint["id"])
        ).all()
    assert actions == [
        "webhook_endpoint.created",
        "webhook_endpoint.updated",
        "webhook_endpoint.updated",
        "webhook_endpoint.deleted",
    ]


@pytest.mark.usefixtures("public_dns")
def test_unknown_event_types_are_refused(client: TestClient, keys: Keys) -> None:
    assert_problem(create(client, keys, events=["order.paid", "nope"]), 422, "unknown_event_type")
    r = create(client, keys, events=[])
    assert r.status_code == 422, r.text
    assert create(client, keys, events=["order.paid", "*"]).json()["events"] == ["*"]


@pytest.mark.parametrize("role", ["ops", "analyst", "storefront"])
def test_only_admin_keys(client: TestClient, keys: Keys, role: str) -> None:
    assert_problem(
        client.get("/v1/webhook-endpoints", headers=keys.headers(role)), 403, "insufficient_role"
    )
    r = client.post(
        "/v1/webhook-endpoints",
        json={"url": PUBLIC, "events": ["*"]},
        headers=keys.headers(role),
    )
    assert_problem(r, 403, "insufficient_role")


def test_delivery_log_and_retry_of_unknown_ids_are_404(client: TestClient, keys: Keys) -> None:
    admin = keys.headers("admin")
    assert_problem(
        client.get("/v1/webhook-endpoints/we_nope/deliveries", headers=admin),
        404,
        "webhook_endpoint_not_found",
    )
    assert_problem(
        client.post("/v1/webhook-deliveries/whd_nope/retry", headers=admin),
        404,
        "webhook_delivery_not_found",
    )


# -- SSRF ---------------------------------------------------------------------------------

REFUSED = [
    "http://127.0.0.1/hook",
    "http://10.0.0.1/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8080/hook",
    "http://localhost:9/hook",  # a name that resolves to loopback
    "https://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[fd00::1]/hook",  # IPv6 unique local
    "http://0.0.0.0:80/",
    "http://192.168.1.20/",
    "http://100.64.0.1/",  # shared address space (CGNAT)
]


@pytest.mark.parametrize("url", REFUSED)
def test_private_targets_are_refused_without_the_setting(
    client: TestClient, keys: Keys, url: str
) -> None:
    r = client.post(
        "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=keys.headers("admin")
    )
    assert_problem(r, 422, "webhook_url_not_allowed")
    assert "KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS" in r.json()["detail"]


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://x/", "/relative", "http://"]
)
def test_only_http_and_https_urls(client: TestClient, keys: Keys, url: str) -> None:
    r = client.post(
        "/v1/webhook-endpoints", json={"url": url, "events": ["*"]}, headers=keys.headers("admin")
    )
    assert_problem(r, 422, "webhook_url_not_allowed")


def test_private_targets_are_allowed_with_the_setting(database_url: str) -> None:
    """Only stored: nothing is ever sent to these addresses by the tests."""
    allowed = Kassa(Settings(database_url=database_url, webhooks_allow_private_targets=True))
    try:
        for url in REFUSED[:5]:
            view = allowed.webhook_endpoints.create(RequestContext.system("test"), url, ["*"])
            assert view.url == url
    finally:
        allowed.close()
    strict = Kassa(Settings(database_url=database_url))
    try:
        with pytest.raises(DomainError) as refused:
            strict.webhook_endpoints.create(RequestContext.system("test"), REFUSED[0], ["*"])
        assert refused.value.code == "webhook_url_not_allowed"
    finally:
        strict.close()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.2", False),
        ("::1", False),
        ("::ffff:10.1.2.3", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("169.254.0.1", False),
        ("224.0.0.1", False),
        ("ff02::1", False),
        ("240.0.0.1", False),
        ("::", False),
    ],
)
def test_which_addresses_count_as_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


def test_a_name_is_checked_against_every_address_it_resolves_to() -> None:
    policy = TargetPolicy(
        allow_private=False, resolver=lambda host, port: ["93.184.215.14", "10.0.0.7"]
    )
    with pytest.raises(DomainError) as refused:
        policy.check("https://mixed.example.com/x")
    assert "10.0.0.7" in refused.value.detail
    pinned = TargetPolicy(
        allow_private=False, resolver=lambda host, port: ["2606:2800:220:1::1"]
    ).pin("https://hooks.example.com:8443/in?x=1")
    assert pinned.url == "https://[2606:2800:220:1::1]:8443/in?x=1"
    assert pinned.host_header == "hooks.example.com:8443"
    assert pinned.sni_hostname == "hooks.example.com"
