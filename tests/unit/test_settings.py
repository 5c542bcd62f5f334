"""Settings: each `KASSA_*` variable read as the README describes; keyword construction
takes exactly what it is given; a bad value is one line naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kassa.config import ConfigError, Settings


def test_unset_and_empty_variables_take_the_defaults() -> None:
    for env in ({}, {"KASSA_TAX_RATE_BP": "", "KASSA_SELLER_NAME": "", "KASSA_DATABASE_URL": ""}):
        s = Settings.from_env(env)
        assert s.database_url == f"sqlite:///{Path.cwd() / 'kassa.db'}"
        assert (s.reservation_ttl_s, s.idempotency_retention_s) == (1800, 48 * 3600)
        assert (s.tax_rate_bp, s.seller_name, s.tax_label) == (None, "Kassa Demo Shop", "VAT")
        assert s.mock_webhook_secrets == ("whsec_kassa_mock_sandbox",)
        assert (s.enabled_providers, s.default_provider) == (("mock", "wallet"), "mock")


def test_variables_are_parsed_as_documented() -> None:
    s = Settings.from_env(
        {
            "KASSA_DATABASE_URL": "postgresql://u@db/kassa",
            "KASSA_STRIPE_SECRET_KEY": "sk_test_x",
            "KASSA_STRIPE_WEBHOOK_SECRET": "whsec_new, whsec_old,",
            "KASSA_MOCK_WEBHOOK_SECRET": " , ",
            "KASSA_SELLER_ADDRESS": "Main St 1 | 10115 Berlin\nGermany",
            "KASSA_DEFAULT_PROVIDER": "stripe",
            "KASSA_TAX_RATE_BP": "1900",
            "KASSA_HEALTH_DEGRADE_AT": "0.75",
            "KASSA_TEST_POSTGRES_URL": "not a setting",
        }
    )
    assert s.database_url == "postgresql+psycopg://u@db/kassa"
    assert s.stripe_webhook_secrets == ("whsec_new", "whsec_old")
    assert s.mock_webhook_secrets == ("whsec_kassa_mock_sandbox",)
    assert s.seller_address == ("Main St 1", "10115 Berlin", "Germany")
    assert (s.default_provider, s.enabled_providers) == ("stripe", ("stripe", "wallet"))
    assert (s.tax_rate_bp, s.health_degrade_at) == (1900, 0.75)
    assert "sk_test_x" not in repr(s) and "whsec_new" not in repr(s)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KASSA_RESERVATION_TTL_S": "half an hour"}, "KASSA_RESERVATION_TTL_S must be an integer"),
        ({"KASSA_HEALTH_DEGRADE_AT": "most"}, "KASSA_HEALTH_DEGRADE_AT must be a number"),
        ({"KASSA_TAX_RATE_BP": "19%"}, "KASSA_TAX_RATE_BP must be an integer"),
        ({"KASSA_PROVIDERS": "paypal"}, "unknown provider"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Settings.from_env(env)
    assert "\n" not in str(caught.value)


def test_keywords_are_taken_as_given_without_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KASSA_RESERVATION_TTL_S", "5")
    monkeypatch.setenv("KASSA_PROVIDERS", "wallet")
    s = Settings(database_url="sqlite:///x.db", stripe_webhook_secrets=("a",), stripe_timeout_s=5)
    assert (s.reservation_ttl_s, s.providers, s.stripe_webhook_secrets) == (1800, None, ("a",))
    from_env = Settings.from_env()  # the environment only through from_env
    assert (from_env.reservation_ttl_s, from_env.providers) == (5, ("wallet",))
    with pytest.raises(ValidationError):
        s.reservation_ttl_s = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        Settings(database_url="sqlite:///x.db", no_such_setting=1)  # type: ignore[call-arg]
