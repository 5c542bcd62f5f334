from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Keys


def test_healthz_and_catalogue_roundtrip(client: TestClient, keys: Keys) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    created = client.post(
        "/v1/products",
        json={"sku": "MUG", "title": "Mug", "unit_amount": 1450, "currency": "eur", "stock": 3},
        headers=keys.headers("ops"),
    )
    assert created.status_code == 201, created.text
    assert created.json()["currency"] == "EUR"
    listed = client.get("/v1/products", headers=keys.headers("storefront")).json()
    assert [p["sku"] for p in listed["data"]] == ["MUG"]
    assert listed["has_more"] is False
