"""Authentication is cached per process, and a revoke still reaches every process.

The second `Kassa` below stands for another process (`kassa keys revoke`, or another API
process): it shares the database and nothing else, so only the database can tell the
serving one about the revoke.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services import api_keys
from kassa.services.api_keys import KeyCache
from kassa.services.context import RequestContext
from tests.conftest import Keys


@pytest.fixture
def other_process(settings: Settings) -> Iterator[Kassa]:
    other = Kassa(settings)
    yield other
    other.close()


def _refused_within(client: TestClient, keys: Keys, seconds: float) -> float | None:
    """Seconds until the ops key is refused, or None if it still works after `seconds`."""
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        if client.get("/v1/products", headers=keys.headers("ops")).status_code == 401:
            return time.monotonic() - began
        time.sleep(0.02)
    return None


def _listening(kassa: Kassa) -> None:
    """On PostgreSQL, wait until this process listens for revokes (it starts to on its
    first authentication, and forgets what it cached before: it was not covered)."""
    listener = kassa.api_keys._listener
    if listener is None:
        return
    deadline = time.monotonic() + 10
    while not listener.live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.live


def test_a_known_key_is_answered_from_memory(kassa: Kassa, keys: Keys) -> None:
    assert kassa.api_keys.authenticate(keys.admin) is not None
    _listening(kassa)
    assert kassa.api_keys.cached(keys.ops) is None
    first = kassa.api_keys.authenticate(keys.ops)
    assert first is not None
    assert kassa.api_keys.cached(keys.ops) == first
    assert kassa.api_keys.cached("kassa_sk_unknown") is None


def test_a_revoke_in_another_process_reaches_this_one(
    client: TestClient,
    keys: Keys,
    kassa: Kassa,
    other_process: Kassa,
    is_postgres: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if is_postgres:
        # Only the signal can do it: entries would otherwise live for an hour.
        monkeypatch.setattr(api_keys, "CACHE_MAX_AGE_S", 3600.0)
    assert client.get("/v1/products", headers=keys.headers("ops")).status_code == 200
    if is_postgres:
        assert kassa.api_keys._listener is not None
        _listening(kassa)
        assert client.get("/v1/products", headers=keys.headers("ops")).status_code == 200
        assert kassa.api_keys.cached(keys.ops) is not None  # served from memory now
    other_process.api_keys.revoke(RequestContext.system("test"), keys.ids["ops"])
    bound = 1.0 if is_postgres else api_keys.UNSIGNALLED_MAX_AGE_S + 1.0
    took = _refused_within(client, keys, bound)
    assert took is not None, f"the revoked key was still served after {bound} s"
    assert client.get("/v1/products", headers=keys.headers("admin")).status_code == 200


def test_a_lookup_that_raced_a_revoke_is_not_cached() -> None:
    """A lookup reads the key, a revoke lands (dropping nothing yet cached), then the
    lookup's `put` arrives: it must be discarded, not serve the revoked key."""
    cache = KeyCache()
    generation = cache.generation  # the lookup starts
    cache.drop("digest")  # the revoke's signal arrives meanwhile
    key = api_keys.ApiKeyView(
        id="key_1",
        name="n",
        role=api_keys.Role.OPS,
        secret_prefix="kassa_sk_abcd",
        created_at=api_keys.datetime.now(),
        revoked_at=None,
    )
    cache.put("digest", key, generation)
    assert cache.get("digest", 60.0) is None
    cache.put("digest", key, cache.generation)
    assert cache.get("digest", 60.0) == key
