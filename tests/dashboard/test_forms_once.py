"""A create form whose answer shows a secret (an API key, a user's one-time password, a
webhook endpoint's signing secret) acts once however often it is sent: a reload of the
answer re-posts the form, and a double click posts it twice (`services/staff_forms.py`,
`dashboard/once.py`). On SQLite and PostgreSQL; the race of two posts at once on
PostgreSQL with real threads."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from kassa.bootstrap import Kassa
from kassa.config import Settings
from kassa.services.context import RequestContext
from kassa.services.staff_forms import Earlier
from kassa.services.staff_sessions import SESSION_COOKIE
from tests.dashboard.conftest import StaffClient

Staff = Callable[[str], StaffClient]
SYSTEM = RequestContext.system("test")


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Webhook endpoints on this machine are allowed (nothing is delivered here)."""
    return Settings(database_url=database_url, webhooks_allow_private_targets=True)


def key_names(kassa: Kassa) -> list[str]:
    return sorted(k.name for k in kassa.api_keys.list())


def test_a_key_form_sent_twice_creates_one_key_and_the_second_answer_shows_no_secret(
    kassa: Kassa, staff: Staff
) -> None:
    admin = staff("admin")
    form = {"name": "till", "role": "storefront", "form_token": "tok-reloaded"}
    first = admin.post("/dashboard/keys", form)
    assert first.status_code == 200, first.text
    secret = first.text.split('id="secret" readonly value="')[1].split('"')[0]
    (made,) = [k for k in kassa.api_keys.list() if k.name == "till"]

    again = admin.post("/dashboard/keys", form)  # the reload of the answer

    assert again.status_code == 409
    assert "sent already" in again.text and made.id in again.text
    assert secret not in again.text and "kassa_sk_" not in again.text
    assert key_names(kassa).count("till") == 1
    created = kassa.audit.list(action="api_key.created", limit=50).data
    assert [r.subject_id for r in created].count(made.id) == 1


def test_a_refused_first_sending_creates_nothing_and_leaves_the_form_usable(
    kassa: Kassa, staff: Staff
) -> None:
    """A form the service turns down claims nothing for good: sent again (a reload of the
    refusal, after the shop fixed what was wrong), it is judged afresh."""
    admin = staff("admin")
    before = key_names(kassa)
    refused = admin.post("/dashboard/keys", {"name": "x", "role": "owner", "form_token": "tok-1"})
    assert refused.status_code == 422
    assert key_names(kassa) == before
    fixed = admin.post("/dashboard/keys", {"name": "x", "role": "ops", "form_token": "tok-1"})
    assert fixed.status_code == 200, fixed.text
    assert key_names(kassa) == sorted([*before, "x"])


def test_a_form_without_its_token_is_refused_and_creates_nothing(
    kassa: Kassa, staff: Staff
) -> None:
    admin = staff("admin")
    before = key_names(kassa)
    for token in ("", "t" * 65):
        sent = admin.post("/dashboard/keys", {"name": "y", "role": "ops", "form_token": token})
        assert sent.status_code == 403 and "Reload the page" in sent.text
    assert key_names(kassa) == before


def test_each_rendered_form_carries_a_token_of_its_own(staff: Staff) -> None:
    admin = staff("admin")
    for path in ("/dashboard/keys", "/dashboard/users", "/dashboard/webhooks"):
        one, two = (admin.get(path).text for _ in range(2))
        tokens = [p.split('name="form_token" value="')[1].split('"')[0] for p in (one, two)]
        assert len(set(tokens)) == 2 and all(len(t) >= 32 for t in tokens), path


def test_the_same_form_of_another_session_is_its_own(kassa: Kassa, staff: Staff) -> None:
    """The token is claimed per session: two admins cannot collide, even on purpose."""
    one, two = staff("admin"), staff("admin")
    form = {"name": "shared", "role": "analyst", "form_token": "same-token"}
    assert one.post("/dashboard/keys", form).status_code == 200
    assert two.post("/dashboard/keys", form).status_code == 200
    assert key_names(kassa).count("shared") == 2


def test_a_user_form_and_an_endpoint_form_sent_twice_create_one_each(
    kassa: Kassa, staff: Staff
) -> None:
    admin = staff("admin")
    user_form = {"email": "bea@shop.example", "role": "ops", "form_token": "tok-user"}
    first = admin.post("/dashboard/users", user_form)
    assert first.status_code == 200, first.text
    again = admin.post("/dashboard/users", user_form)
    assert again.status_code == 409 and "sent already" in again.text
    (bea,) = [u for u in kassa.staff_users.list(SYSTEM) if u.email == "bea@shop.example"]
    assert bea.id in again.text

    hook = {
        "url": "https://127.0.0.1:9/hook",
        "event:*": "on",
        "form_token": "tok-endpoint",
    }
    assert admin.post("/dashboard/webhooks", hook).status_code == 200
    twice = admin.post("/dashboard/webhooks", hook)
    assert twice.status_code == 409 and "whsec_" not in twice.text
    (endpoint,) = kassa.webhook_endpoints.list(limit=10).data
    assert endpoint.id in twice.text


def race_claims(kassa: Kassa, session_id: str, token: str) -> list[Earlier | None]:
    """Two threads claim `token` at the same instant; what each got."""
    start = threading.Barrier(2)
    results: list[Earlier | None] = []

    def claim() -> None:
        start.wait()
        results.append(kassa.staff_forms.claim(session_id, token))

    threads = [threading.Thread(target=claim) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_two_sendings_at_once_elect_one(kassa: Kassa, staff: Staff, database_url: str) -> None:
    """A double click: two claims of the same form race, on PostgreSQL in threads with
    connections of their own; the unique (session, token) elects exactly one, and the
    other learns what it made once it is recorded. Twenty rounds."""
    if not database_url.startswith("postgres"):
        pytest.skip("concurrent writers: PostgreSQL (SQLite has one writer)")
    admin = staff("admin")
    signed_in = kassa.staff_sessions.resolve(str(admin.client.cookies.get(SESSION_COOKIE)))
    assert signed_in is not None
    session_id = signed_in.id
    for n in range(20):
        token = f"tok-race-{n}"
        results = race_claims(kassa, session_id, token)
        assert sorted(r is None for r in results) == [False, True], results
        kassa.staff_forms.made(session_id, token, f"key_{n}")
        assert kassa.staff_forms.claim(session_id, token) == Earlier(f"key_{n}")
