"""KASSA_SMTP_URL, KASSA_MAIL_FROM and KASSA_SMTP_TIMEOUT_S: taken apart, or refused in one
line that names the variable and never the password."""

from __future__ import annotations

import pytest

from kassa.config import ConfigError, Settings, SmtpServer
from kassa.mail.compose import message_id_of, subject_of

FROM = {"KASSA_MAIL_FROM": "Shop <shop@example.com>"}


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("smtp://127.0.0.1:1025", SmtpServer("127.0.0.1", 1025, "plain")),
        ("smtp://relay", SmtpServer("relay", 25, "plain")),
        (
            "smtp+starttls://u:p@mail.example.com",
            SmtpServer("mail.example.com", 587, "starttls", "u", "p"),
        ),
        ("smtps://mail.example.com", SmtpServer("mail.example.com", 465, "tls")),
        ("SMTPS://mail.example.com:10465", SmtpServer("mail.example.com", 10465, "tls")),
    ],
)
def test_the_url_gives_host_port_and_security(url: str, server: SmtpServer) -> None:
    assert Settings.from_env({"KASSA_SMTP_URL": url, **FROM}).smtp == server


def test_user_and_password_are_percent_decoded_and_kept_out_of_repr() -> None:
    settings = Settings.from_env(
        {"KASSA_SMTP_URL": "smtps://shop%40example.com:p%40ss%3Aw@mail.example.com", **FROM}
    )
    smtp = settings.smtp
    assert smtp is not None
    assert (smtp.username, smtp.password) == ("shop@example.com", "p@ss:w")
    assert "p@ss" not in repr(smtp) and "p%40ss" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KASSA_SMTP_URL": "http://mail.example.com", **FROM}, "must start with smtp://"),
        ({"KASSA_SMTP_URL": "mail.example.com:25", **FROM}, "must start with smtp://"),
        ({"KASSA_SMTP_URL": "smtp://:25", **FROM}, "names no host"),
        ({"KASSA_SMTP_URL": "smtp://host:port", **FROM}, "port that is not a number"),
        ({"KASSA_SMTP_URL": "smtp://host/inbox", **FROM}, "takes no path or query"),
        ({"KASSA_SMTP_URL": "smtp://host:25"}, "KASSA_MAIL_FROM is not"),
        ({"KASSA_MAIL_FROM": "the shop"}, "KASSA_MAIL_FROM is 'the shop'"),
        ({"KASSA_SMTP_TIMEOUT_S": "0"}, "KASSA_SMTP_TIMEOUT_S"),
    ],
)
def test_an_unusable_value_is_one_line_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_a_refused_url_never_shows_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"KASSA_SMTP_URL": "ftp://u:hunter2@host", **FROM})
    assert "hunter2" not in str(caught.value)


def test_unset_means_mail_is_off() -> None:
    assert Settings.from_env({}).smtp is None


def test_every_subject_names_the_order_and_the_message_id_is_stable() -> None:
    assert "K-000042" in subject_of("order_confirmation", "K-000042")
    assert "K-000042" in subject_of("invoice", "K-000042", "RE-2026-000001")
    assert "RE-2026-000001" in subject_of("invoice", "K-000042", "RE-2026-000001")
    assert "K-000042" in subject_of("refund_notice", "K-000042", "GS-2026-000001")
    assert message_id_of("eml_1") == message_id_of("eml_1") == "<eml_1@kassa>"
