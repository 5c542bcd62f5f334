"""`kassa check --deploy`: the production-configuration gate (issue 11, part 4).

A clean production-like configuration passes (exit 0, one `ok` line); each rule broken
alone gives exactly its one line (`<rule>: <what to do>`) and exit 1. The gate reads
the settings only: the database of the clean configuration does not even resolve.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kassa import deploy_gate
from kassa.cli import app as cli
from kassa.config import MOCK_SANDBOX_SECRET, Settings

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"

PRODUCTION = {
    "KASSA_DATABASE_URL": "postgresql://kassa:s3cret@db.internal.invalid:5432/kassa"
    "?sslmode=verify-full",
    "KASSA_STRIPE_SECRET_KEY": "sk_live_51Habc",
    "KASSA_STRIPE_WEBHOOK_SECRET": "whsec_new,whsec_old",
    "KASSA_MOCK_WEBHOOK_SECRET": "9f2c4e1a0b7d4c3e8a6f5d2b1c0e9f8a",
    "KASSA_SELLER_NAME": "Acme Ceramics GmbH",
    "KASSA_SELLER_ADDRESS": "Hauptstr. 1|10115 Berlin|Germany",
    "KASSA_SELLER_TAX_ID": "DE123456789",
}

# Each rule, broken alone: the variables to change (None: unset).
BREAKS: dict[str, dict[str, str | None]] = {
    "sqlite_database": {"KASSA_DATABASE_URL": "sqlite:////var/lib/kassa/kassa.db"},
    "database_without_tls": {
        "KASSA_DATABASE_URL": "postgresql://kassa:s3cret@db.internal.invalid/kassa"
    },
    "stripe_not_configured": {
        "KASSA_STRIPE_SECRET_KEY": None,
        "KASSA_STRIPE_WEBHOOK_SECRET": None,
        "KASSA_PROVIDERS": "wallet",
    },
    "stripe_test_key": {"KASSA_STRIPE_SECRET_KEY": "sk_test_51Habc"},
    "stripe_webhook_secret_missing": {"KASSA_STRIPE_WEBHOOK_SECRET": None},
    "stripe_webhook_secret_malformed": {"KASSA_STRIPE_WEBHOOK_SECRET": "whsec_new,sk_live_oops"},
    "stripe_live_key_custom_api_base": {"KASSA_STRIPE_API_BASE": "http://localstripe:8420"},
    "sandbox_enabled": {"KASSA_PROVIDERS": "stripe,mock,wallet"},
    "sandbox_secret_default": {"KASSA_MOCK_WEBHOOK_SECRET": None},
    "seller_details_missing": {"KASSA_SELLER_NAME": None, "KASSA_SELLER_ADDRESS": None},
    "idempotency_retention_too_short": {"KASSA_IDEMPOTENCY_RETENTION_S": "3600"},
    "metrics_public": {"KASSA_METRICS_PUBLIC": "1"},
    "webhooks_private_targets": {"KASSA_WEBHOOKS_ALLOW_PRIVATE_TARGETS": "1"},
    "smtp_without_tls": {
        "KASSA_SMTP_URL": "smtp://kassa:s3cret@mail.example.com:25",
        "KASSA_MAIL_FROM": "shop@example.com",
    },
}


@pytest.fixture(autouse=True)
def no_kassa_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KASSA_") or name == "PGSSLMODE":
            monkeypatch.delenv(name)


def gate(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], *args: str
) -> tuple[int, list[str], str]:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["check", "--deploy", *args])
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_a_clean_production_configuration_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines, err = gate(monkeypatch, PRODUCTION)
    assert code == 0, (lines, err)
    assert lines == [f"ok: the configuration passes {len(deploy_gate.RULES)} deploy rules"]


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_each_rule_broken_alone_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, rule: str
) -> None:
    code, lines, err = gate(monkeypatch, {**PRODUCTION, **BREAKS[rule]})
    assert code == 1, (lines, err)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{rule}: ") and len(lines[0]) > len(rule) + 20
    assert "1 deploy problem(s)" in err
    # and waived, it passes
    code, lines, _ = gate(monkeypatch, {}, "--skip", rule)
    assert code == 0 and lines[0].endswith(f"(1 waived: {rule})")


def test_every_rule_is_tested_and_documented() -> None:
    ids = [r.id for r in deploy_gate.RULES]
    assert sorted(ids) == sorted(BREAKS)
    docs = DOCS.read_text()
    for each in deploy_gate.RULES:
        assert f"`{each.id}`" in docs, f"docs/deploy.md does not list {each.id}"
        assert each.why, f"rule {each.id} says nothing about why"


def test_the_out_of_the_box_configuration_lists_every_problem_it_has(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, lines, _ = gate(monkeypatch, {})
    assert code == 1
    assert [line.split(":", 1)[0] for line in lines] == [
        "sqlite_database",
        "stripe_not_configured",
        "sandbox_enabled",
        "sandbox_secret_default",
        "seller_details_missing",
    ]


@pytest.mark.parametrize(
    ("url", "pgsslmode", "passes"),
    [
        ("postgresql://k@db.example.com/kassa?sslmode=require", None, True),
        ("postgresql://k@db.example.com/kassa?sslmode=verify-ca", None, True),
        ("postgresql://k@db.example.com/kassa?sslmode=prefer", None, False),
        ("postgresql://k@db.example.com/kassa?sslmode=disable", "verify-full", False),
        ("postgresql://k@db.example.com/kassa", "verify-full", True),
        ("postgresql://k@db.example.com/kassa", "prefer", False),
        ("postgresql://k@10.0.0.5:5432/kassa", None, False),
        ("postgresql://k@localhost/kassa", None, True),
        ("postgresql://k@127.0.0.1:5432/kassa", None, True),
        ("postgresql://k@[::1]:5432/kassa", None, True),
        ("postgresql://k@/kassa?host=/var/run/postgresql", None, True),
        ("postgresql+psycopg://k@db.example.com/kassa?sslmode=verify-full", None, True),
    ],
)
def test_tls_to_the_database(
    monkeypatch: pytest.MonkeyPatch, url: str, pgsslmode: str | None, passes: bool
) -> None:
    if pgsslmode:
        monkeypatch.setenv("PGSSLMODE", pgsslmode)
    found = deploy_gate.problems(Settings.from_env({**PRODUCTION, "KASSA_DATABASE_URL": url}))
    assert [p.rule for p in found] == ([] if passes else ["database_without_tls"])


def test_keys_and_secrets_in_every_form(monkeypatch: pytest.MonkeyPatch) -> None:
    def rules(**env: str) -> list[str]:
        settings = Settings.from_env({**PRODUCTION, **env})
        return [p.rule for p in deploy_gate.problems(settings)]

    assert rules(KASSA_STRIPE_SECRET_KEY="rk_live_restricted") == []
    assert rules(KASSA_STRIPE_SECRET_KEY="rk_test_restricted") == ["stripe_test_key"]
    # a test key against a test double is a test set-up: only the test key is reported
    assert rules(
        KASSA_STRIPE_SECRET_KEY="sk_test_x", KASSA_STRIPE_API_BASE="http://localstripe"
    ) == ["stripe_test_key"]
    # the sandbox's own secret among others still signs: reported
    assert rules(KASSA_MOCK_WEBHOOK_SECRET=f"random123,{MOCK_SANDBOX_SECRET}") == [
        "sandbox_secret_default"
    ]
    assert rules(KASSA_SELLER_NAME="   ") == ["seller_details_missing"]
    assert rules(KASSA_IDEMPOTENCY_RETENTION_S="86400") == []


def test_a_misspelt_waiver_is_an_error_not_a_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    code, lines, err = gate(monkeypatch, {}, "--skip", "sqlite_databse")
    assert code == 2 and lines == []
    assert "no deploy rule named sqlite_databse" in err


def test_an_unusable_setting_is_one_line_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KASSA_IDEMPOTENCY_RETENTION_S", "a day")
    monkeypatch.setattr("sys.argv", ["kassa", "check", "--deploy"])
    from kassa.cli import main

    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 1


@pytest.mark.parametrize(
    ("url", "passes"),
    [
        ("smtps://kassa:s3cret@mail.example.com", True),
        ("smtp+starttls://kassa:s3cret@mail.example.com:587", True),
        ("smtp://localhost:25", True),
        ("smtp://127.0.0.1:2525", True),
        ("smtp://[::1]:25", True),
        ("smtp://10.0.0.5:25", False),
        ("smtp://mail.example.com", False),
    ],
)
def test_smtp_without_tls_spares_a_relay_on_this_host(
    monkeypatch: pytest.MonkeyPatch, url: str, passes: bool
) -> None:
    env = {**PRODUCTION, "KASSA_SMTP_URL": url, "KASSA_MAIL_FROM": "shop@example.com"}
    code, lines, _ = gate(monkeypatch, env)
    assert (code == 0) is passes, lines
